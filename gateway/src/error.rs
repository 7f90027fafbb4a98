//! Errors the gateway itself produces, classified by fault, and the one place where
//! each becomes a gRPC status.

use tonic::{Code, Status};

/// Who is at fault decides the code and whether the caller may retry.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The caller's certificate does not allow the call.
    #[error("{0}")]
    PermissionDenied(String),
    /// Required metadata is missing or malformed.
    #[error("metadata `{key}`: {problem}")]
    InvalidMetadata { key: &'static str, problem: String },
    /// No node is registered for the target region.
    #[error("no node is registered for region {0}")]
    NoRoute(String),
    /// The method is not relayed by this gateway.
    #[error("method {0} is not served by the gateway")]
    UnknownMethod(String),
    /// The message exceeds what the federation relays.
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    /// The caller did not finish sending the request in time.
    #[error("request not complete within {0:?}")]
    Stalled(std::time::Duration),
    /// The caller reset or broke the call while sending it.
    #[error("request interrupted: {0}")]
    ClientGone(String),
    /// The target node could not be reached; safe to retry with the same idempotency key.
    #[error("region {region} is unreachable: {reason}")]
    Unavailable { region: String, reason: String },
}

impl GatewayError {
    /// The status sent to the caller.
    pub fn to_status(&self) -> Status {
        let code = match self {
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::InvalidMetadata { .. } => Code::InvalidArgument,
            Self::NoRoute(_) => Code::NotFound,
            Self::UnknownMethod(_) => Code::Unimplemented,
            Self::TooLarge(_) => Code::ResourceExhausted,
            Self::Stalled(_) => Code::DeadlineExceeded,
            Self::ClientGone(_) => Code::Cancelled,
            Self::Unavailable { .. } => Code::Unavailable,
        };
        let message = match self {
            // Which address failed, and how, is for the operator (the audit line keeps
            // it), not for the calling region.
            Self::Unavailable { region, .. } => {
                format!("region {region} is unreachable; retry with the same idempotency key")
            }
            other => other.to_string(),
        };
        Status::new(code, message)
    }
}
