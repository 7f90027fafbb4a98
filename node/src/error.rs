//! Errors of the node's federation service, and the one place where each becomes a gRPC
//! status: its code and whether the caller may retry (stated in the status as
//! `tongban-retry`, see `tongban_proto::contract::retry`).

use tongban_proto::contract::retry::Retry;
use tongban_proto::rules::region::RegionCode;
use tonic::{Code, Status};

use crate::{platform::PlatformError, store::StoreError};

/// Failures while serving the gateway's calls.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    PermissionDenied(String),
    /// The sending region's signature is missing, unknown here or does not verify.
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{field}: {problem}")]
    InvalidArgument { field: String, problem: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// The application names a catalog version this node does not have: the sender
    /// keeps it pending until the catalogs agree.
    #[error("{0}")]
    UnknownCatalog(String),
    /// This node cannot sign what was asked (no signing key in force): an operator must
    /// configure one.
    #[error("{0}")]
    NotIssuing(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
}

impl NodeError {
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The gRPC code.
    pub fn code(&self) -> Code {
        match self {
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::InvalidArgument { .. } => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::NotIssuing(_) | Self::UnknownCatalog(_) => Code::Unavailable,
            Self::Platform(PlatformError::Conflict(_)) => Code::FailedPrecondition,
            Self::Store(_) | Self::Platform(_) => Code::Unavailable,
        }
    }

    /// Whether, and when, the caller may retry the same call.
    pub fn retry(&self) -> Retry {
        match self {
            // Refusals of the caller's rights and routing mismatches come from a
            // certificate or registry being changed: they heal once it is fixed.
            // A signature refused likewise: a key not yet in this node's copy of the
            // registry, a sender without its key, a clock off, or a gateway that altered
            // the call; the sender signs each attempt anew, so the case waits, never lost.
            Self::PermissionDenied(_)
            | Self::Unauthenticated(_)
            | Self::NotFound(_)
            | Self::NotIssuing(_)
            | Self::UnknownCatalog(_) => Retry::Configuration,
            // The platform answered what the contract does not allow, or a status code
            // the node's table does not map: it heals once the platform or the table is
            // fixed, not with time.
            Self::Platform(
                PlatformError::Contract(_)
                | PlatformError::UnmappedStatus(_)
                | PlatformError::Unsupported(_),
            ) => Retry::Configuration,
            Self::InvalidArgument { .. }
            | Self::FailedPrecondition(_)
            | Self::Platform(PlatformError::Conflict(_)) => Retry::Permanent,
            // Storage and platform trouble pass: the sender keeps its outbox entry and
            // retries with the same key.
            Self::Store(_) | Self::Platform(_) => Retry::Transient,
        }
    }
}

/// A region code a message carries in `field`, or INVALID_ARGUMENT naming the field.
pub fn region_code(value: &str, field: &str) -> Result<RegionCode, NodeError> {
    RegionCode::parse(value).map_err(|e| NodeError::invalid(field, e.to_string()))
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Self {
        let code = e.code();
        if code == Code::Unavailable && matches!(e, NodeError::Store(_) | NodeError::Platform(_)) {
            tracing::error!(error = %e, "node storage or platform failure");
        }
        e.retry().mark(Status::new(code, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_state_their_retry_class() {
        let cases = [
            (
                NodeError::invalid("application", "required"),
                Code::InvalidArgument,
                Retry::Permanent,
            ),
            (
                NodeError::PermissionDenied("gateway only".into()),
                Code::PermissionDenied,
                Retry::Configuration,
            ),
            (
                NodeError::NotFound("not handled here".into()),
                Code::NotFound,
                Retry::Configuration,
            ),
            (
                NodeError::FailedPrecondition("key reused".into()),
                Code::FailedPrecondition,
                Retry::Permanent,
            ),
            (
                NodeError::UnknownCatalog("catalog 2027.1 unknown".into()),
                Code::Unavailable,
                Retry::Configuration,
            ),
            (
                NodeError::Platform(PlatformError::Unavailable("down".into())),
                Code::Unavailable,
                Retry::Transient,
            ),
            (
                NodeError::Platform(PlatformError::Contract("answered 400".into())),
                Code::Unavailable,
                Retry::Configuration,
            ),
        ];
        for (error, code, retry) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code);
            assert_eq!(Retry::of(&status), retry, "{status:?}");
        }
    }
}
