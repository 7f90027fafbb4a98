//! What the kit's calls fail with.

use std::path::Path;

/// Kit failures: writing a federation's files, starting or controlling its members.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error("{0}")]
    Pki(#[from] tongban_runtime::trust::pki::PkiError),
    #[error("{0}")]
    Gateway(#[from] tongban_gateway::server::GatewayStartError),
    #[error("{0}")]
    Node(#[from] tongban_node::server::NodeStartError),
    #[error("{0}")]
    Config(#[from] tongban_runtime::process::config::ConfigError),
    #[error("{0}")]
    Store(#[from] tongban_node::store::StoreError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Postgres(#[from] crate::postgres::PostgresError),
    #[error("{0}")]
    Other(String),
}

/// Maps an I/O error on `path` to [`KitError::Io`] naming it.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KitError + '_ {
    move |source| KitError::Io {
        path: path.display().to_string(),
        source,
    }
}
