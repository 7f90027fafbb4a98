//! The trail's writer thread: takes records off the queue in batches, appends them,
//! signs checkpoints, and never leaves a silent gap. Records the queue had no room for
//! ([`TrailCounts`]) and records a failed write lost are stated in a gap marker
//! ([`Gap`]) as soon as a write succeeds again; after a failed write the file is
//! reopened from its last whole record so the chain continues from what is on disk.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, RecvTimeoutError},
    },
    time::{Duration, Instant},
};

use crate::audit::{
    chain::{ChainWriter, Gap},
    checkpoint::CheckpointSigner,
};

/// What the trail's handles send the writer.
pub(crate) enum Message {
    Record(String),
    /// Write what is queued, a last checkpoint, and end.
    Stop,
}

/// Records a trail lost, counted by the handles (queue full) and the writer (failed
/// writes). `*_total` only grow (for `/metrics`); `pending_drops` is what the next gap
/// marker has to state.
#[derive(Debug, Default)]
pub struct TrailCounts {
    pub(crate) dropped_total: AtomicU64,
    pub(crate) unwritten_total: AtomicU64,
    pub(crate) pending_drops: AtomicU64,
}

impl TrailCounts {
    /// Records dropped on a full queue so far.
    pub fn dropped(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    /// Records lost to failed writes so far.
    pub fn unwritten(&self) -> u64 {
        self.unwritten_total.load(Ordering::Relaxed)
    }
}

/// Records this process's trails lost, for `/metrics` (a process writes one trail, and
/// its collector reads these whoever opened it): dropped on a full queue, and lost to
/// failed writes.
pub(crate) static PROCESS_DROPPED: AtomicU64 = AtomicU64::new(0);
static PROCESS_UNWRITTEN: AtomicU64 = AtomicU64::new(0);

/// Records this process's audit trails lost so far: (dropped on a full queue, lost to
/// failed writes).
pub fn process_losses() -> (u64, u64) {
    (
        PROCESS_DROPPED.load(Ordering::Relaxed),
        PROCESS_UNWRITTEN.load(Ordering::Relaxed),
    )
}

/// Records taken off the queue at once at most.
const BATCH: usize = 4096;

pub(crate) struct Writer {
    /// `None` after a failed write whose reopening failed too: retried per batch.
    pub(crate) chain: Option<ChainWriter>,
    pub(crate) path: std::path::PathBuf,
    pub(crate) fsync: crate::audit::chain::Fsync,
    pub(crate) signer: Option<CheckpointSigner>,
    pub(crate) counts: Arc<TrailCounts>,
    /// Lost records not yet stated in the trail.
    pub(crate) gap: Gap,
}

impl Writer {
    /// The thread's body: until stopped or every handle is gone.
    pub(crate) fn run(mut self, rx: Receiver<Message>, every: Duration) {
        let mut due = Instant::now() + every;
        let mut stopping = false;
        while !stopping {
            let wait = due.saturating_duration_since(Instant::now());
            let mut batch = match rx.recv_timeout(wait) {
                Ok(Message::Record(first)) => vec![first],
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    stopping = true;
                    Vec::new()
                }
                Err(RecvTimeoutError::Timeout) => Vec::new(),
            };
            // At stop, everything queued before it is written too.
            while stopping || batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(Message::Record(more)) => batch.push(more),
                    Ok(Message::Stop) => stopping = true,
                    Err(_) => break,
                }
            }
            self.write_batch(&batch);
            if stopping || Instant::now() >= due {
                self.checkpoint();
                due = Instant::now() + every;
            }
        }
    }

    /// Appends a gap marker (if records were lost since the last) and `batch`, then
    /// commits; on failure counts what was lost and reopens the file.
    pub(crate) fn write_batch(&mut self, batch: &[String]) {
        let drops = self.counts.pending_drops.swap(0, Ordering::Relaxed);
        self.gap.dropped += drops;
        if batch.is_empty() && self.gap.is_empty() {
            return;
        }
        if self.chain.is_none() {
            self.chain = self.reopen_after_failure();
        }
        let marker = (!self.gap.is_empty()).then(|| self.gap.to_json());
        let Some(chain) = self.chain.as_mut() else {
            self.lost(batch.len() as u64);
            return;
        };
        let before = chain.records();
        let written = marker
            .iter()
            .chain(batch)
            .try_for_each(|json| chain.append(json))
            .and_then(|()| chain.commit());
        match written {
            Ok(()) => {
                if marker.is_some() {
                    tracing::warn!(path = %self.path.display(), dropped = self.gap.dropped, unwritten = self.gap.unwritten, "audit gap marker written");
                }
                self.gap = Gap::default();
            }
            Err(error) => {
                tracing::error!(%error, path = %self.path.display(), records = batch.len(), "audit trail write failed");
                self.restart();
                // What reached the disk after all (a whole line is a record).
                let kept = self
                    .chain
                    .as_ref()
                    .map_or(0, |c| c.records().saturating_sub(before));
                let marker_kept = marker.is_some() && kept > 0;
                if marker_kept {
                    self.gap = Gap::default();
                }
                let batch_kept = kept.saturating_sub(u64::from(marker_kept));
                self.lost((batch.len() as u64).saturating_sub(batch_kept));
            }
        }
    }

    fn lost(&mut self, records: u64) {
        self.gap.unwritten += records;
        self.counts
            .unwritten_total
            .fetch_add(records, Ordering::Relaxed);
        PROCESS_UNWRITTEN.fetch_add(records, Ordering::Relaxed);
    }

    /// Drops the failed writer and reopens the file from its last whole record.
    fn restart(&mut self) {
        if let Some(chain) = self.chain.take() {
            chain.discard();
        }
        self.chain = self.reopen_after_failure();
    }

    fn reopen_after_failure(&self) -> Option<ChainWriter> {
        match ChainWriter::open(&self.path, self.fsync) {
            Ok(chain) => Some(chain),
            Err(error) => {
                tracing::error!(%error, path = %self.path.display(), "audit trail cannot be reopened");
                None
            }
        }
    }

    fn checkpoint(&mut self) {
        let (Some(signer), Some(chain)) = (&self.signer, self.chain.as_mut()) else {
            return;
        };
        let path = self.path.display();
        match chain.checkpoint(signer) {
            // Logged too: a copy of the head outside the file, which shows a cut made
            // after it.
            Ok(Some((covers, head))) => tracing::info!(%path, covers, head, "audit checkpoint"),
            Ok(None) => {}
            Err(error) => {
                tracing::error!(%error, %path, "audit checkpoint failed");
                // The next checkpoint covers these records; the chain continues from
                // what is on disk.
                self.restart();
            }
        }
    }
}
