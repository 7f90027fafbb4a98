//! Errors the gateway itself produces, classified by fault, and the one place where each
//! becomes a gRPC status: its code, its public message and whether the caller may retry
//! (stated in the status as `tongban-retry`, see `tongban_proto::contract::retry`).

use tongban_proto::{contract::metadata::MetadataError, contract::retry::Retry};
use tonic::{Code, Status};

/// Who is at fault decides the code and whether the caller may retry.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The caller's certificate does not allow the call.
    #[error("{0}")]
    PermissionDenied(String),
    /// What the caller sent is not signed as its region's, or not verifiably (see
    /// `tongban_proto::rules::message_signature`).
    #[error("{0}")]
    Unauthenticated(String),
    /// Required metadata is missing or malformed.
    #[error("metadata `{key}`: {problem}")]
    InvalidMetadata { key: &'static str, problem: String },
    /// The target region's province does not exist.
    #[error("no node is registered for region {0}")]
    UnknownRegion(String),
    /// No node is registered for a known region (yet).
    #[error("no node is registered for region {0}")]
    NoRoute(String),
    /// The method is not relayed by this gateway.
    #[error("method {0} is not served by the gateway")]
    UnknownMethod(String),
    /// A decoded call's message is not a valid message of its method.
    #[error("message: {0}")]
    InvalidMessage(String),
    /// A decoded call's field is missing or malformed (the value is never echoed).
    #[error("field `{field}`: {problem}")]
    InvalidField {
        field: &'static str,
        problem: String,
    },
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
    /// The call's metadata is larger than the gateway passes on (bytes).
    #[error("the call's metadata is {size} bytes; at most {max} are accepted")]
    MetadataTooLarge { size: usize, max: usize },
    /// The gateway is at a limit for this caller or target (see `crate::admission`);
    /// safe to retry later.
    #[error("{0}")]
    Overloaded(String),
    /// The caller is over a bound of its own (its revocations remembered, or published
    /// a second; see `crate::recognition`); safe to retry after `retry_after`.
    #[error("{problem}")]
    OverQuota {
        problem: String,
        retry_after: std::time::Duration,
    },
    /// The shared revocation log cannot be written, so a revocation is not
    /// acknowledged; safe to retry.
    #[error("the revocation log cannot be written: {0}")]
    RevocationLogUnavailable(String),
    /// A fault of the gateway itself.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The mean wait stated (`grpc-retry-pushback-ms`) on a call shed for overload. Long
/// enough that a shed surge comes back at a rate the gateway answers without slowing
/// the other regions (measured in `tests/tests/integration/overload.rs`: with 200 ms, the steady
/// region's p99 rose 2.1x under a flood of 200 calls at once; with 500 ms, 1.4-1.7x),
/// short against a delivery's life (the outbox retries for days).
pub const OVERLOAD_PUSHBACK: std::time::Duration = std::time::Duration::from_millis(500);

/// [`OVERLOAD_PUSHBACK`] spread over ±50 %: callers shed together (a burst) are told to
/// come back at different times, so they do not return as a burst. The spread comes
/// from a counter scrambled by a multiplicative hash; it needs no better randomness.
fn overload_pushback() -> std::time::Duration {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SHED: AtomicU64 = AtomicU64::new(0);
    let n = SHED.fetch_add(1, Ordering::Relaxed);
    let spread = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % 101;
    OVERLOAD_PUSHBACK.mul_f64(0.5 + spread as f64 / 100.0)
}

impl From<MetadataError> for GatewayError {
    fn from(e: MetadataError) -> Self {
        Self::InvalidMetadata {
            key: e.key,
            problem: e.problem.to_owned(),
        }
    }
}

impl GatewayError {
    /// The gRPC code.
    pub fn code(&self) -> Code {
        match self {
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::InvalidMetadata { .. } | Self::InvalidMessage(_) | Self::InvalidField { .. } => {
                Code::InvalidArgument
            }
            Self::UnknownRegion(_) | Self::NoRoute(_) => Code::NotFound,
            Self::UnknownMethod(_) => Code::Unimplemented,
            Self::TooLarge(_)
            | Self::MetadataTooLarge { .. }
            | Self::Overloaded(_)
            | Self::OverQuota { .. } => Code::ResourceExhausted,
            Self::Stalled(_) => Code::DeadlineExceeded,
            Self::ClientGone(_) => Code::Cancelled,
            Self::Unavailable { .. } | Self::RevocationLogUnavailable(_) => Code::Unavailable,
            Self::Internal(_) => Code::Internal,
        }
    }

    /// Whether, and when, the caller may retry the same call.
    pub fn retry(&self) -> Retry {
        match self {
            // A certificate or registry mistake heals when the operator fixes it; so does
            // a signature refused (a key not yet registered, a clock off): the sender
            // signs each attempt anew.
            Self::PermissionDenied(_) | Self::Unauthenticated(_) | Self::NoRoute(_) => {
                Retry::Configuration
            }
            Self::InvalidMetadata { .. }
            | Self::InvalidMessage(_)
            | Self::InvalidField { .. }
            | Self::UnknownRegion(_)
            | Self::UnknownMethod(_)
            | Self::TooLarge(_)
            | Self::MetadataTooLarge { .. } => Retry::Permanent,
            Self::Stalled(_)
            | Self::ClientGone(_)
            | Self::Unavailable { .. }
            | Self::RevocationLogUnavailable(_)
            | Self::Overloaded(_)
            | Self::OverQuota { .. }
            | Self::Internal(_) => Retry::Transient,
        }
    }

    /// The status sent to the caller.
    pub fn to_status(&self) -> Status {
        let message = match self {
            // Which address failed, and how, is for the operator (the audit line keeps
            // it), not for the calling region.
            Self::Unavailable { region, .. } => {
                format!("region {region} is unreachable; retry with the same idempotency key")
            }
            Self::Internal(_) => "internal error of the gateway; retry later".to_owned(),
            // The database's words are the operator's (the audit line keeps them).
            Self::RevocationLogUnavailable(_) => {
                "the gateways' revocation log cannot be written now; the revocation is not applied, retry".to_owned()
            }
            other => other.to_string(),
        };
        let status = self.retry().mark(Status::new(self.code(), message));
        match self {
            // Shed: the caller is told when to come back, so a surge spreads out
            // instead of returning at once.
            Self::Overloaded(_) => {
                tongban_proto::contract::retry::with_pushback(status, overload_pushback())
            }
            // Over its own bound: told when that bound lets it in again.
            Self::OverQuota { retry_after, .. } => {
                tongban_proto::contract::retry::with_pushback(status, *retry_after)
            }
            _ => status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_states_its_code_and_retry_class_on_the_wire() {
        let cases = [
            (
                GatewayError::PermissionDenied("x".into()),
                Code::PermissionDenied,
                Retry::Configuration,
            ),
            (
                GatewayError::UnknownRegion("990000".into()),
                Code::NotFound,
                Retry::Permanent,
            ),
            (
                GatewayError::NoRoute("650102".into()),
                Code::NotFound,
                Retry::Configuration,
            ),
            (
                GatewayError::TooLarge(5),
                Code::ResourceExhausted,
                Retry::Permanent,
            ),
            (
                GatewayError::Unavailable {
                    region: "44".into(),
                    reason: "tcp: 127.0.0.1:9 refused".into(),
                },
                Code::Unavailable,
                Retry::Transient,
            ),
            (
                GatewayError::Internal("bad header".into()),
                Code::Internal,
                Retry::Transient,
            ),
            (
                GatewayError::MetadataTooLarge {
                    size: 20_000,
                    max: 8192,
                },
                Code::ResourceExhausted,
                Retry::Permanent,
            ),
            (
                GatewayError::Overloaded("over the fair share".into()),
                Code::ResourceExhausted,
                Retry::Transient,
            ),
            (
                GatewayError::RevocationLogUnavailable("pool timed out".into()),
                Code::Unavailable,
                Retry::Transient,
            ),
            (
                GatewayError::OverQuota {
                    problem: "over its rate".into(),
                    retry_after: std::time::Duration::from_millis(20),
                },
                Code::ResourceExhausted,
                Retry::Transient,
            ),
        ];
        for (error, code, retry) in cases {
            let status = error.to_status();
            assert_eq!(status.code(), code, "{error}");
            assert_eq!(Retry::of(&status), retry, "{error}");
            // Only a shed call says when to come back.
            let pushback = tongban_proto::contract::retry::pushback(&status);
            let shed = matches!(
                error,
                GatewayError::Overloaded(_) | GatewayError::OverQuota { .. }
            );
            assert_eq!(pushback.is_some(), shed, "{error}");
            if let GatewayError::OverQuota { retry_after, .. } = error {
                assert_eq!(pushback, Some(retry_after));
            }
        }
        // Shed callers are told to come back at spread-out times around the mean.
        let waits: std::collections::BTreeSet<_> = (0..50)
            .map(|_| {
                let status = GatewayError::Overloaded("x".into()).to_status();
                tongban_proto::contract::retry::pushback(&status).unwrap()
            })
            .collect();
        assert!(waits.len() > 10, "{waits:?}");
        assert!(
            waits
                .iter()
                .all(|w| *w >= OVERLOAD_PUSHBACK / 2 && *w <= OVERLOAD_PUSHBACK.mul_f64(1.5))
        );
        // Node addresses never reach the caller.
        let status = GatewayError::Unavailable {
            region: "44".into(),
            reason: "tcp: 127.0.0.1:9 refused".into(),
        }
        .to_status();
        assert!(
            !status.message().contains("127.0.0.1"),
            "{}",
            status.message()
        );
    }
}
