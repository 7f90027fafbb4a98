//! Errors of the node's federation service and where each becomes a gRPC status.

use tonic::{Code, Status};

use crate::{platform::PlatformError, store::StoreError};

/// Failures while serving the gateway's calls.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{field}: {problem}")]
    InvalidArgument { field: String, problem: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// A transient disagreement (catalog versions); the sender should retry later.
    #[error("{0}")]
    Retry(String),
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
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Self {
        let code = match &e {
            NodeError::PermissionDenied(_) => Code::PermissionDenied,
            NodeError::InvalidArgument { .. } => Code::InvalidArgument,
            NodeError::NotFound(_) => Code::NotFound,
            NodeError::FailedPrecondition(_) => Code::FailedPrecondition,
            NodeError::Retry(_) => Code::Unavailable,
            NodeError::Platform(PlatformError::Conflict(_)) => Code::FailedPrecondition,
            // Storage and platform trouble is transient from the caller's view: the
            // sender keeps the outbox entry and retries with the same key.
            NodeError::Store(_) | NodeError::Platform(_) => Code::Unavailable,
        };
        if code == Code::Unavailable {
            tracing::error!(error = %e, "node storage or platform failure");
        }
        Status::new(code, e.to_string())
    }
}
