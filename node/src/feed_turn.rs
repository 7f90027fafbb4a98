//! Following a platform feed from a cursor kept in the store, one replica at a time:
//! with several replicas on one PostgreSQL store, each would read every page and
//! race on the kept cursor. The replica holding the job's turn follows; the others
//! wait for it, and whoever takes it over starts from the cursor as last kept.

use std::time::Duration;

use tongban_runtime::process::shutdown::ShutdownSignal;

use crate::store::{Store, Turn};

/// Waits for this replica's turn at `job`, then reads the cursor kept under
/// `cursor_setting` (empty when none yet); `None` on shutdown.
pub async fn take(
    store: &Store,
    job: &'static str,
    cursor_setting: &'static str,
    poll: Duration,
    shutdown: &ShutdownSignal,
) -> Option<(Turn, String)> {
    let mut turn = loop {
        match store.take_turn(job).await {
            Ok(Some(turn)) => break turn,
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, job, "feed turn not taken; retrying"),
        }
        if pause(poll, shutdown).await {
            return None;
        }
    };
    loop {
        match store.setting(cursor_setting).await {
            Ok(kept) => {
                let cursor = kept
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                return Some((turn, cursor));
            }
            Err(error) => tracing::warn!(%error, job, "feed cursor unreadable; retrying"),
        }
        if pause(poll, shutdown).await || !turn.still_held().await {
            return None;
        }
    }
}

/// Sleeps `poll`; `true` when shutdown came first.
async fn pause(poll: Duration, shutdown: &ShutdownSignal) -> bool {
    tokio::select! {
        _ = shutdown.clone().wait() => true,
        _ = tokio::time::sleep(poll) => false,
    }
}
