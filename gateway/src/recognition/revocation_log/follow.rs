//! Following the log: list, then watch. At start every row is read (by sequence number,
//! a page at a time) and applied; then the rows after the last one applied, each time
//! something wakes the follower: a notification, a reconnect of the listener (when
//! notifications may have been lost), or the poll timer (when all of them were).

use std::{future::Future, sync::Arc, time::Duration};

use tokio::sync::Notify;
use tongban_runtime::process::shutdown::ShutdownSignal;

use super::{
    postgres::{LogError, LogTable, Logged},
    progress::LogProgress,
};

/// Rows read at once: a page of license ids is a few hundred kilobytes.
pub const PAGE: u32 = 10_000;

/// What applies revocations read from the log (the recognition service).
pub trait ApplyRevocations: Send + Sync + 'static {
    /// Remembers the revocations of `rows` (in log order), those published within the
    /// time revocations are remembered, and drops what was cached of them; how many
    /// this replica did not know yet.
    fn apply(&self, rows: &[Logged]) -> impl Future<Output = usize> + Send;
}

/// How the follower reads: the table, what it applies to, where it reports.
pub struct Follower<A> {
    pub table: Arc<LogTable>,
    pub apply: Arc<A>,
    pub progress: Arc<LogProgress>,
    /// Woken by notifications and reconnects of the listener.
    pub wake: Arc<Notify>,
    pub poll_interval: Duration,
}

impl<A: ApplyRevocations> Follower<A> {
    /// Follows the log until `shutdown`.
    pub async fn run(self, shutdown: ShutdownSignal) {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        // The schema first: a replica may start before any other created the table.
        while let Err(error) = self.table.migrate().await {
            self.progress.read_failed(&error);
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
        }
        let mut last = 0;
        loop {
            match self.catch_up(&mut last).await {
                Ok(()) => self.progress.caught_up(),
                Err(error) => self.progress.read_failed(&error),
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }

    /// Reads and applies every row after `last` (moved past each page applied).
    async fn catch_up(&self, last: &mut u64) -> Result<(), LogError> {
        loop {
            let page = self.table.read_after(*last, PAGE).await?;
            let Some(end) = page.last().map(|row| row.seq) else {
                return Ok(());
            };
            let rows = page.len();
            self.apply.apply(&page).await;
            *last = end;
            self.progress.applied(rows, end);
            // A short page was the end (a row committed since is notified).
            if rows < PAGE as usize {
                return Ok(());
            }
        }
    }
}
