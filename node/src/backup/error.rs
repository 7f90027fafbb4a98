//! What a backup or a restore fails with.

use std::path::Path;

use crate::store::StoreError;

/// A backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tool(String),
    #[error("{0}")]
    Refused(String),
    #[error("manifest {path}: {problem}")]
    Manifest { path: String, problem: String },
}

pub(super) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}
