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
    sync::{
        Arc, Mutex,
        atomic::Ordering,
        mpsc::{SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

pub use crate::audit::chain::Fsync;
use crate::audit::{
    chain::{ChainWriter, Gap},
    checkpoint::CheckpointSigner,
    writer::{Message, PROCESS_DROPPED, TrailCounts, Writer},
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
}

impl TrailSettings {
    /// Defaults with the trail at `file`.
    pub fn at(file: &str) -> Self {
        Self {
            file: PathBuf::from(file),
            fsync: Fsync::Batch,
            checkpoint_every: Duration::from_secs(60),
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

/// Records queued for the trail's writer thread at most; beyond, a record is dropped
/// and counted (and a gap marker written) rather than slowing the calls it records.
const QUEUE: usize = 65_536;

/// How long [`AuditTrail::stop`] waits for the writer unless told otherwise.
pub const STOP_WAIT: Duration = Duration::from_secs(5);

/// A handle to a trail written by its own thread. Cloning it is cheap.
#[derive(Clone)]
pub struct AuditTrail {
    tx: SyncSender<Message>,
    counts: Arc<TrailCounts>,
    path: Arc<PathBuf>,
    /// Taken by the first [`AuditTrail::stop`].
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl AuditTrail {
    /// Opens the trail at `path` and starts its writer thread, which appends a
    /// checkpoint signed by `signer` (if any) as the settings say; the thread ends,
    /// after writing everything queued and a last checkpoint, at [`AuditTrail::stop`]
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
        let (tx, rx) = sync_channel(queue);
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
        let handle = std::thread::Builder::new()
            .name("audit-trail".into())
            .spawn(move || writer.run(rx, every))?;
        Ok(Self {
            tx,
            counts,
            path: Arc::new(path.to_owned()),
            writer: Arc::new(Mutex::new(Some(handle))),
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

    /// Queues one record (a JSON object).
    pub fn record(&self, json: String) {
        match self.tx.try_send(Message::Record(json)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                // The writer states the gap in the trail with its next write.
                self.counts.pending_drops.fetch_add(1, Ordering::Relaxed);
                PROCESS_DROPPED.fetch_add(1, Ordering::Relaxed);
                let n = self.counts.dropped_total.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::error!(dropped = n, path = %self.path.display(), "audit trail cannot keep up; records dropped");
                }
            }
        }
    }

    /// Records dropped because the writer could not keep up (or had stopped).
    pub fn dropped(&self) -> u64 {
        self.counts.dropped()
    }

    /// Records lost because writing them failed.
    pub fn unwritten(&self) -> u64 {
        self.counts.unwritten()
    }

    /// Stops the writer: everything queued before this call is written, then a last
    /// signed checkpoint, and the thread is joined, waiting at most `wait` (logged if
    /// exceeded: the checkpoint may then be missing). Returns whether it ended in time.
    /// Blocking; records queued after it are dropped and counted.
    pub fn stop(&self, wait: Duration) -> bool {
        let Some(handle) = self.writer.lock().ok().and_then(|mut h| h.take()) else {
            return true;
        };
        let deadline = Instant::now() + wait;
        let mut stop = Message::Stop;
        // A full queue makes room as the writer drains it.
        loop {
            match self.tx.try_send(stop) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    stop = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Full(_)) => break,
            }
        }
        while !handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !handle.is_finished() {
            tracing::error!(path = %self.path.display(), waited = ?wait, "audit trail writer did not finish in time; its last checkpoint may be missing");
            return false;
        }
        if handle.join().is_err() {
            tracing::error!(path = %self.path.display(), "audit trail writer panicked");
            return false;
        }
        tracing::info!(path = %self.path.display(), "audit trail closed");
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
