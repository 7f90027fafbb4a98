//! The audit trail as a record, not a log: an append-only file written by a dedicated
//! thread ([`crate::audit::writer`]), whatever the log level, in order, made durable
//! per batch (or per record, or left to the OS, by policy), and hash-chained
//! ([`crate::audit::chain`]) so that an edited, deleted or reordered record is found by
//! [`crate::audit::verify::verify`] (`tongban audit verify`).
//!
//! A process that reopens its file continues the chain from the last record; a file is
//! written by one process at a time (it is locked), so each replica needs its own
//! (`{host}` in the path names it).
//!
//! Every `checkpoint_every`, and when the writer stops, a signed checkpoint record is
//! appended ([`crate::audit::checkpoint`]) and its head logged: records cut off the end
//! before the last checkpoint, or a trail rewritten with recomputed hashes, no longer
//! verify; a cut after it is shown by the logged head. Records the trail could not keep
//! (a full queue, a failed write) are counted for `/metrics` and stated in the trail by
//! a gap marker, never a silent gap. [`AuditTrail::stop`] writes what is queued and the
//! last checkpoint, and waits for it.

use std::{
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, atomic::Ordering},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

pub use crate::audit::chain::Fsync;
use crate::audit::{
    chain::{ChainWriter, Gap},
    checkpoint::CheckpointSigner,
    writer::{PROCESS_DROPPED, Shared, TrailCounts, Writer},
};

/// Where a trail is written, when it reaches the disk and how often it is signed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrailSettings {
    /// The trail (relative to the config's folder). `{host}` is replaced by the host
    /// name (a pod's name), so replicas sharing a volume each keep their own file.
    pub file: PathBuf,
    /// `batch` (default: durable per batch the writer takes), `always` (per record) or
    /// `never` (left to the OS).
    pub fsync: Fsync,
    /// How often a signed checkpoint is appended (when records were added since).
    #[serde(with = "humantime_serde")]
    pub checkpoint_every: Duration,
    /// How long the writer gathers records before it writes (and, with `batch`,
    /// syncs) them as one batch: a record is on disk within about this long. Calls
    /// never wait for it; a longer window means fewer writes and syncs per record. At
    /// most 1 s is used.
    #[serde(with = "humantime_serde")]
    pub batch_every: Duration,
    /// The gateway's: also emit every relayed call's record as an event on the
    /// `tongban::audit` log target, for operators who route the log to a sink of their
    /// own. Off by default: the trail is the record, and the copy cost the gateway a
    /// tenth of its CPU per call. Nodes do not log their records.
    pub log_events: bool,
}

impl TrailSettings {
    /// Defaults with the trail at `file`.
    pub fn at(file: &str) -> Self {
        Self {
            file: PathBuf::from(file),
            fsync: Fsync::Batch,
            checkpoint_every: Duration::from_secs(60),
            batch_every: BATCH_EVERY,
            log_events: false,
        }
    }

    /// The file, `{host}` replaced by this host's name.
    pub fn path(&self) -> PathBuf {
        let file = self.file.to_string_lossy();
        if !file.contains("{host}") {
            return self.file.clone();
        }
        let host = crate::process::host::host_name().unwrap_or_else(|| "localhost".to_owned());
        PathBuf::from(file.replace("{host}", &host))
    }
}

impl Default for TrailSettings {
    fn default() -> Self {
        Self::at("audit.log")
    }
}

/// Records waiting for the trail's writer thread at most; beyond, a record is dropped
/// and counted (and a gap marker written) rather than slowing the calls it records.
const QUEUE: usize = 65_536;

/// The writer's default batch window (`batch_every`).
pub const BATCH_EVERY: Duration = Duration::from_millis(10);

/// How long [`AuditTrail::stop`] waits for the writer unless told otherwise.
pub const STOP_WAIT: Duration = Duration::from_secs(5);

/// The handles' common part: when the last handle goes, the writer is told to end.
struct Handles {
    shared: Arc<Shared>,
    counts: Arc<TrailCounts>,
    path: PathBuf,
    queue: usize,
    /// Taken by the first [`AuditTrail::stop`].
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handles {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

/// A handle to a trail written by its own thread. Cloning it is cheap.
#[derive(Clone)]
pub struct AuditTrail {
    handles: Arc<Handles>,
}

impl AuditTrail {
    /// Opens the trail at `path` and starts its writer thread, which appends a
    /// checkpoint signed by `signer` (if any) as the settings say; the thread ends,
    /// after writing everything pending and a last checkpoint, at [`AuditTrail::stop`]
    /// or when the last handle is dropped.
    pub fn start(
        path: &Path,
        settings: &TrailSettings,
        signer: Option<CheckpointSigner>,
    ) -> io::Result<Self> {
        Self::start_with_queue(path, settings, signer, QUEUE)
    }

    pub(crate) fn start_with_queue(
        path: &Path,
        settings: &TrailSettings,
        signer: Option<CheckpointSigner>,
        queue: usize,
    ) -> io::Result<Self> {
        let chain = ChainWriter::open(path, settings.fsync)?;
        let shared = Arc::new(Shared::default());
        let counts = Arc::new(TrailCounts::default());
        let writer = Writer {
            chain: Some(chain),
            path: path.to_owned(),
            fsync: settings.fsync,
            signer,
            counts: counts.clone(),
            gap: Gap::default(),
        };
        let every = settings.checkpoint_every.max(Duration::from_millis(10));
        let batch_every = settings.batch_every.min(Duration::from_secs(1));
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("audit-trail".into())
            .spawn(move || writer.run(&thread_shared, every, batch_every))?;
        Ok(Self {
            handles: Arc::new(Handles {
                shared,
                counts,
                path: path.to_owned(),
                queue,
                writer: Mutex::new(Some(handle)),
            }),
        })
    }

    /// The trail `settings` name, its checkpoints signed with the key of the
    /// certificate in `tls` (the process's federation identity).
    pub fn open(
        settings: &TrailSettings,
        tls: &crate::trust::tls::TlsFiles,
    ) -> Result<Self, String> {
        let path = settings.path();
        let signer = CheckpointSigner::from_files(&tls.cert, &tls.key)?;
        Self::start(&path, settings, Some(signer)).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Queues one record (a JSON object). A line break in it (JSON allows one only
    /// between tokens) becomes a space: a record is one line.
    pub fn record(&self, json: String) {
        self.record_with(|lines| {
            lines.extend(
                json.bytes()
                    .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
            )
        });
    }

    /// Queues one record that `write` appends to the pending lines: a JSON object on
    /// one line (no line break), such as `serde_json::to_writer` writes. What it
    /// appends is taken as one record.
    pub fn record_with(&self, write: impl FnOnce(&mut Vec<u8>)) {
        let handles = &self.handles;
        let wake = match handles.shared.pending.lock() {
            Ok(mut pending) if !pending.stop && pending.records < handles.queue => {
                write(&mut pending.lines);
                pending.lines.push(b'\n');
                pending.records += 1;
                std::mem::take(&mut pending.idle)
            }
            _ => {
                self.dropped_one();
                return;
            }
        };
        if wake {
            handles.shared.wake.notify_one();
        }
    }

    fn dropped_one(&self) {
        let counts = &self.handles.counts;
        // The writer states the gap in the trail with its next write.
        counts.pending_drops.fetch_add(1, Ordering::Relaxed);
        PROCESS_DROPPED.fetch_add(1, Ordering::Relaxed);
        let n = counts.dropped_total.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::error!(dropped = n, path = %self.handles.path.display(), "audit trail cannot keep up; records dropped");
        }
    }

    /// Records dropped because the writer could not keep up (or had stopped).
    pub fn dropped(&self) -> u64 {
        self.handles.counts.dropped()
    }

    /// Records lost because writing them failed.
    pub fn unwritten(&self) -> u64 {
        self.handles.counts.unwritten()
    }

    /// Stops the writer: everything queued before this call is written, then a last
    /// signed checkpoint, and the thread is joined, waiting at most `wait` (logged if
    /// exceeded: the checkpoint may then be missing). Returns whether it ended in time.
    /// Blocking; records queued after it are dropped and counted.
    pub fn stop(&self, wait: Duration) -> bool {
        let handles = &self.handles;
        let Some(handle) = handles.writer.lock().ok().and_then(|mut h| h.take()) else {
            return true;
        };
        let deadline = Instant::now() + wait;
        handles.shared.stop();
        while !handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !handle.is_finished() {
            tracing::error!(path = %self.handles.path.display(), waited = ?wait, "audit trail writer did not finish in time; its last checkpoint may be missing");
            return false;
        }
        if handle.join().is_err() {
            tracing::error!(path = %self.handles.path.display(), "audit trail writer panicked");
            return false;
        }
        tracing::info!(path = %self.handles.path.display(), "audit trail closed");
        true
    }

    /// [`AuditTrail::stop`] with [`STOP_WAIT`], off the async runtime's threads: what a
    /// process's shutdown path calls once its listeners have drained.
    pub async fn close(&self) -> bool {
        let trail = self.clone();
        tokio::task::spawn_blocking(move || trail.stop(STOP_WAIT))
            .await
            .unwrap_or(false)
    }
}
