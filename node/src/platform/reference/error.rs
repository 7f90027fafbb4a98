//! Why the reference platform could not start. Each names the file or address at fault
//! and never a secret's content.

use std::path::PathBuf;

use tongban_runtime::process::config::ConfigError;

use crate::sqlite::StoreError;

/// Start-up failures of the reference platform.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A secret file (token, HMAC secret, hash key) could not be read or made.
    #[error("{path}: {reason}")]
    Secret { path: PathBuf, reason: String },
    /// A TLS file is missing or unusable; says which.
    #[error("TLS: {path}: {reason}")]
    Tls { path: PathBuf, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("binding {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}
