//! What the node's databases fail with — SQLite (the store's embedded kind and the
//! embedded platform) and PostgreSQL (the store shared by replicas) — and the note of
//! the last fault that readiness reports.

use std::sync::{Arc, Mutex};

use tongban_runtime::postgres::{config::PostgresConfigError, migrate::MigrateError};

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("database task failed: {0}")]
    Join(String),
    /// The call's own code panicked. Its transaction was rolled back and the connection
    /// stays usable by the next call.
    #[error("database call panicked: {0}")]
    Panicked(String),
    #[error("database {path}: migrating to schema version {version}: {source}")]
    Migration {
        path: String,
        version: usize,
        source: rusqlite::Error,
    },
    /// The file was migrated by a newer build; running older code on it could misread
    /// or damage what the newer schema means, so it is refused.
    #[error("database {path} has schema version {found}; this build knows versions up to {known}")]
    TooNew {
        path: String,
        found: i64,
        known: usize,
    },
    // Lives here, not in the store, because `Db::call` closures return this one error type.
    #[error("idempotency key {0:?} was used for a different filing")]
    KeyReused(String),
    #[error("system random generator failed")]
    Random,
    #[error("database: {0}")]
    Postgres(#[from] sqlx::Error),
    /// The database could not be reached, or refused the login, at start.
    #[error("database {url}: {source}")]
    PostgresOpen { url: String, source: sqlx::Error },
    /// The PostgreSQL schema could not be brought up to date (at start).
    #[error("database schema: {0}")]
    PostgresMigration(#[from] MigrateError),
    #[error("database settings: {0}")]
    PostgresConfig(#[from] PostgresConfigError),
}

impl StoreError {
    /// Whether this failure is the database's own (disk, file, connection, panic), which
    /// the next caller would meet too, rather than a caller's (a constraint, a missing
    /// row).
    pub(crate) fn is_fault(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            Self::Panicked(_) | Self::Join(_) => true,
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                C::SystemIoFailure
                    | C::DiskFull
                    | C::DatabaseCorrupt
                    | C::NotADatabase
                    | C::CannotOpen
                    | C::ReadOnly
                    | C::PermissionDenied
                    | C::DatabaseBusy
            ),
            Self::Postgres(e) | Self::PostgresOpen { source: e, .. } => postgres_fault(e),
            Self::PostgresMigration(
                MigrateError::Step { source, .. } | MigrateError::Database { source, .. },
            ) => postgres_fault(source),
            _ => false,
        }
    }
}

/// Whether a PostgreSQL error is the server's or the link's (unreachable, gone,
/// overloaded, out of disk, a standby after a fail-over) rather than the statement's.
fn postgres_fault(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // SQLSTATE classes: 08 connection exception, 53 insufficient resources
            // (disk full, out of memory, too many connections), 57P operator
            // intervention (shutdown, starting up), 58 system error (I/O), XX internal;
            // 25006 a read-only transaction (connected to a standby).
            ["08", "53", "57P", "58", "XX"]
                .iter()
                .any(|class| code.starts_with(class))
                || code == "25006"
        }),
        _ => false,
    }
}

/// The fault the last call of a database met, if it met one: readiness reports it
/// until a call goes through again.
#[derive(Clone, Default)]
pub(crate) struct FaultNote(Arc<Mutex<Option<String>>>);

impl FaultNote {
    /// Keeps what `result` says: its fault, or that the database answered.
    pub(crate) fn note<T>(&self, result: &Result<T, StoreError>) {
        *lock(&self.0) = match result {
            Err(e) if e.is_fault() => Some(e.to_string()),
            _ => None,
        };
    }

    /// `Err` with the reason while the last call met a fault.
    pub(crate) fn health(&self) -> Result<(), String> {
        match &*lock(&self.0) {
            Some(reason) => Err(reason.clone()),
            None => Ok(()),
        }
    }
}

/// Locks `mutex` even if a panic poisoned it: what it guards (a connection whose
/// transaction was rolled back, a health note) is whole again after the panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
