//! The PostgreSQL store's handle, opened and checked; what its job files share.

use std::{future::Future, sync::Arc, time::Duration};

use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Notify;
use tongban_runtime::{
    postgres::{config::PostgresConfig, listen::wake_on_notify_from_others, migrate::migrate},
    process::shutdown::ShutdownSignal,
};

use crate::db_error::{FaultNote, StoreError};

/// The channel a write to the outbox notifies.
pub(super) const OUTBOX_CHANNEL: &str = "tongban_outbox";

/// The node's store in a PostgreSQL database shared by the node's replicas.
#[derive(Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
    /// This replica's name: the owner of the outbox leases it takes.
    pub(super) replica: Arc<str>,
    /// How long a claimed outbox entry stays this replica's, in milliseconds.
    pub(super) lease_ms: i64,
    pub(super) trouble: FaultNote,
}

impl PgStore {
    /// Connects as `replica` (its connections' `application_name`) and brings the
    /// schema up to date; fails if the database cannot be reached now.
    pub async fn open(
        config: &PostgresConfig,
        replica: &str,
        lease: Duration,
    ) -> Result<Self, StoreError> {
        // One connection first, so an unreachable database or a refused login is told
        // as such (the pool would only say that it timed out).
        let options = config.connect_options(replica)?;
        let unreachable = |source| StoreError::PostgresOpen {
            url: config.display_url(),
            source,
        };
        let probe = tokio::time::timeout(
            config.pool.acquire_timeout,
            PgConnection::connect_with(&options),
        )
        .await
        .map_err(|_| unreachable(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))?
        .map_err(unreachable)?;
        // The probe is done with; a failed goodbye changes nothing.
        let _ = probe.close().await;
        let pool = config.pool(replica)?;
        migrate(&pool, super::schema::COMPONENT, super::schema::MIGRATIONS).await?;
        Ok(Self {
            pool,
            replica: replica.into(),
            lease_ms: i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
            trouble: FaultNote::default(),
        })
    }

    /// `Err` with the reason while the database is failing (the last call could not
    /// reach it, lost its connection, waited too long for one, or met the server's
    /// own fault); `Ok` once a call succeeds again.
    pub fn health(&self) -> Result<(), String> {
        self.trouble.health()
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    pub fn lease(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.lease_ms).unwrap_or(0))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Wakes `wake` whenever a replica writes to the outbox, until shutdown.
    pub fn wake_ups(
        &self,
        wake: Arc<Notify>,
        shutdown: ShutdownSignal,
    ) -> impl Future<Output = ()> + Send + 'static {
        wake_on_notify_from_others(
            self.pool.clone(),
            &[OUTBOX_CHANNEL],
            Some(self.replica.clone()),
            wake,
            shutdown,
        )
    }

    /// Runs one call, noting for [`Self::health`] whether it met a fault.
    pub(super) async fn observed<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let result = call.await;
        self.trouble.note(&result);
        result
    }

    /// Runs `body` in one transaction, noted like [`Self::observed`]: committed when it
    /// returns `Ok`, else rolled back. Either is awaited before the call returns, so no
    /// row lock outlives the call (a transaction merely dropped is rolled back later,
    /// when its connection is next used).
    pub(super) async fn transaction<T>(
        &self,
        body: impl AsyncFnOnce(&mut PgConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.observed(async {
            let mut tx = self.pool.begin().await?;
            match body(&mut tx).await {
                Ok(value) => {
                    tx.commit().await?;
                    Ok(value)
                }
                Err(e) => {
                    // The error is the news; a failed rollback ends the connection anyway.
                    let _ = tx.rollback().await;
                    Err(e)
                }
            }
        })
        .await
    }
}

/// Wakes the replicas' forwarders when the transaction on `conn` commits (PostgreSQL
/// delivers a notification only then, and drops it with a rollback).
pub(super) async fn notify_outbox(conn: &mut PgConnection) -> Result<(), StoreError> {
    // The payload names the sending replica (its connection's application_name), which
    // wakes itself and passes over its own notification.
    sqlx::query("SELECT pg_notify($1, current_setting('application_name'))")
        .bind(OUTBOX_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// A count or number the database keeps signed, as the unsigned one callers use; a
/// negative one (never written) reads as a decoding error.
pub(super) fn unsigned<T: TryFrom<i64>>(value: i64, column: &str) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| {
        StoreError::Postgres(sqlx::Error::ColumnDecode {
            index: column.to_owned(),
            source: format!("{value} is out of range").into(),
        })
    })
}

/// An unsigned number from a caller as the signed one the database keeps; beyond
/// `i64::MAX` it is refused, as SQLite refuses it.
pub(super) fn signed(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::Postgres(sqlx::Error::Encode(
            format!("{what} {value} is out of range").into(),
        ))
    })
}
