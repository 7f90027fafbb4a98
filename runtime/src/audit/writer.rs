//! The trail's writer thread: takes records off the queue in batches, appends them,
//! signs checkpoints, and never leaves a silent gap. Records the queue had no room for
//! ([`TrailCounts`]) and records a failed write lost are stated in a gap marker
//! ([`Gap`]) as soon as a write succeeds again; after a failed write the file is
//! reopened from its last whole record so the chain continues from what is on disk.

use std::{
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::audit::{
    chain::{ChainWriter, Gap},
    checkpoint::CheckpointSigner,
};

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

/// What the trail keeps of a record that is not UTF-8 (no recorder writes one: they
/// write serde_json's output), so the chain still counts it.
const NOT_UTF8: &str = r#"{"audit":"unreadable"}"#;

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

/// Records not yet taken by the writer, as one buffer of lines (each ended by `\n`):
/// a record is serialized straight into it, so recording allocates nothing of its own
/// and the writer takes a whole batch with one swap. A queue of messages cost an
/// allocation and often a futex wake (and the writer a sync) per record.
#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) lines: Vec<u8>,
    pub(crate) records: usize,
    /// The writer sleeps until told of a first record: set by it before it waits,
    /// cleared (with one wake-up) by the record that finds it set.
    pub(crate) idle: bool,
    pub(crate) stop: bool,
}

/// What the handles and the writer thread share.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) pending: Mutex<Pending>,
    pub(crate) wake: Condvar,
}

impl Shared {
    /// Tells the writer to write what is pending, a last checkpoint, and end.
    pub(crate) fn stop(&self) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.stop = true;
        }
        self.wake.notify_all();
    }
}

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
    /// The thread's body: until stopped or every handle is gone. It sleeps until a
    /// first record arrives (or a checkpoint is due), gathers for `batch_every`, then
    /// writes and commits everything pending as one batch: one wake-up, one write and
    /// (with `batch`) one sync per window, however many calls it holds.
    pub(crate) fn run(mut self, shared: &Shared, every: Duration, batch_every: Duration) {
        let mut due = Instant::now() + every;
        let mut batch = Vec::new();
        let mut stopping = false;
        while !stopping {
            let Ok(mut pending) = shared.pending.lock() else {
                return;
            };
            if pending.records == 0 && !pending.stop {
                pending.idle = true;
                let wait = due.saturating_duration_since(Instant::now());
                pending = match shared
                    .wake
                    .wait_timeout_while(pending, wait, |p| p.idle && !p.stop)
                {
                    Ok((pending, _)) => pending,
                    Err(_) => return,
                };
                pending.idle = false;
                if pending.records > 0 && !pending.stop {
                    // Woken by a first record: let the window fill.
                    drop(pending);
                    std::thread::sleep(batch_every);
                    pending = match shared.pending.lock() {
                        Ok(pending) => pending,
                        Err(_) => return,
                    };
                }
            }
            let window = Instant::now();
            // Everything recorded before a stop is written too.
            stopping = pending.stop;
            std::mem::swap(&mut batch, &mut pending.lines);
            pending.records = 0;
            drop(pending);
            self.write_batch(&batch);
            batch.clear();
            if stopping || Instant::now() >= due {
                self.checkpoint();
                due = Instant::now() + every;
            }
            if !stopping {
                // At most one batch per window, so a busy trail is not synced as often
                // as the disk allows.
                std::thread::sleep(batch_every.saturating_sub(window.elapsed()));
            }
        }
    }

    /// Appends a gap marker (if records were lost since the last) and the records of
    /// `lines` (each ended by `\n`), then commits; on failure counts what was lost and
    /// reopens the file.
    pub(crate) fn write_batch(&mut self, lines: &[u8]) {
        let batch: Vec<&str> = lines
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| std::str::from_utf8(line).unwrap_or(NOT_UTF8))
            .collect();
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
            .map(String::as_str)
            .chain(batch.iter().copied())
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
