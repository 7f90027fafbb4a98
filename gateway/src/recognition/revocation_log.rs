//! The shared revocation log: one ordered list of every revocation, on PostgreSQL, that
//! every gateway replica follows, so that a revocation published to any one of them is
//! answered "revoked" by all (behind one load-balanced address a node cannot tell them
//! apart). Configured by `[revocation_log]`; without it a revocation stays with the
//! replica that receives it, and no database is needed.
//!
//! - `postgres`: the table — append (in commit order), read by sequence number.
//! - `follow`: list, then watch; catch up after every wake-up.
//! - `progress`: how far this replica has read — its readiness and metrics.
//!
//! A revocation is acknowledged only once it is in the log (then applied here at once,
//! without waiting for the follower); when the log cannot be written it is refused as
//! UNAVAILABLE and the issuer's node publishes it again.

mod follow;
mod postgres;
mod progress;
#[cfg(test)]
mod tests;

use std::{sync::Arc, time::Duration};

use tokio::{sync::Notify, task::JoinHandle};
use tongban_runtime::{
    postgres::{config::PostgresConfigError, listen::wake_on_notify},
    process::shutdown::ShutdownSignal,
    serving::admin::ReadinessCheck,
};

pub use follow::ApplyRevocations;
pub use postgres::{Appended, LogError, Logged, NewRevocation};
pub use progress::{
    APPEND_FAILURES_TOTAL, APPLIED_TOTAL, LAST_READ, READ_FAILURES_TOTAL, SEQUENCE,
};

use crate::config::RevocationLogSettings;

/// What the listener wakes the follower for.
const CHANNELS: &[&str] = &[postgres::CHANNEL];

/// This replica's handle on the log: appends, and the follower it runs.
pub struct RevocationLog {
    table: Arc<postgres::LogTable>,
    progress: Arc<progress::LogProgress>,
    poll_interval: Duration,
}

impl RevocationLog {
    /// The log of `settings` (connected on first use: a replica starts, not ready,
    /// while its database is down), its metrics registered in `metrics`.
    pub fn open(
        settings: &RevocationLogSettings,
        metrics: &mut prometheus_client::registry::Registry,
    ) -> Result<Self, PostgresConfigError> {
        let replica = settings.replica_name();
        let pool = settings
            .database
            .pool(&format!("tongban-gateway {replica}"))?;
        let name = format!("revocation log {}", settings.database.display_url());
        Ok(Self {
            table: Arc::new(postgres::LogTable::new(pool, replica)),
            progress: Arc::new(progress::LogProgress::new(
                name,
                settings.max_staleness,
                metrics,
            )),
            poll_interval: settings.poll_interval,
        })
    }

    /// Appends `revocation` (or finds it there); its sequence number once committed.
    pub async fn append(&self, revocation: &NewRevocation<'_>) -> Result<Appended, LogError> {
        let appended = self.table.append(revocation).await;
        if appended.is_err() {
            self.progress.append_failed();
        }
        appended
    }

    /// Readiness: the log was loaded and has been read within `max_staleness`.
    pub fn readiness(&self) -> ReadinessCheck {
        let progress = self.progress.clone();
        Arc::new(move || progress.check())
    }

    /// The log's database (the replicas' shared catalog ledger is kept there too).
    pub fn pool(&self) -> sqlx::PgPool {
        self.table.pool().clone()
    }

    /// This replica's name, as written with what it appends.
    pub fn replica(&self) -> &str {
        self.table.replica()
    }

    /// How often the log is read when nothing wakes the reader.
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// The last sequence number applied here.
    pub fn last_applied(&self) -> u64 {
        self.progress.last_seq()
    }

    /// Follows the log until `shutdown`, applying what it reads to `apply`; listens for
    /// notifications meanwhile.
    pub fn spawn_follower<A: ApplyRevocations>(
        &self,
        apply: Arc<A>,
        shutdown: ShutdownSignal,
    ) -> JoinHandle<()> {
        let wake = Arc::new(Notify::new());
        tokio::spawn(wake_on_notify(
            self.table.pool().clone(),
            CHANNELS,
            wake.clone(),
            shutdown.clone(),
        ));
        let follower = follow::Follower {
            table: self.table.clone(),
            apply,
            progress: self.progress.clone(),
            wake,
            poll_interval: self.poll_interval,
        };
        tokio::spawn(follower.run(shutdown))
    }
}
