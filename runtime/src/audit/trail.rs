//! The audit trail as a record, not a log: an append-only file written by a dedicated
//! thread, whatever the log level, in order, made durable per batch (or per record, or
//! left to the OS, by policy), and hash-chained so that an edited, deleted or reordered
//! record is found by [`verify`] (`tongban audit verify`).
//!
//! One record per line: `<seq>\t<hash>\t<json>`, where `seq` counts from 1 and
//! `hash = sha256(<previous hash> "\n" <seq> "\n" <json>)` in lower-case hex (the first
//! record's previous hash is empty). A process that reopens its file continues the
//! chain from the last record; a file is written by one process at a time (it is
//! locked), so each replica needs its own (`{host}` in the path names it).
//!
//! Every `checkpoint_every`, and when the writer stops, a signed checkpoint record is
//! appended ([`crate::audit::checkpoint`]) and its head logged: records cut off the end
//! before the last checkpoint, or a trail rewritten with recomputed hashes, no longer
//! verify; a cut after it is shown by the logged head.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
};

use serde::{Deserialize, Serialize};

use crate::audit::checkpoint::{self, Anchors, CheckpointSigner};

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
    pub checkpoint_every: std::time::Duration,
}

impl TrailSettings {
    /// Defaults with the trail at `file`.
    pub fn at(file: &str) -> Self {
        Self {
            file: PathBuf::from(file),
            fsync: Fsync::Batch,
            checkpoint_every: std::time::Duration::from_secs(60),
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

/// When the trail's writes reach the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// After every record (slowest, loses nothing).
    Always,
    /// After every batch the writer takes from its queue (a crash loses at most the
    /// records of the batch being written).
    #[default]
    Batch,
    /// Left to the operating system.
    Never,
}

fn chain_hash(prev: &str, seq: u64, json: &str) -> String {
    let mut input = Vec::with_capacity(prev.len() + json.len() + 24);
    input.extend_from_slice(prev.as_bytes());
    input.push(b'\n');
    input.extend_from_slice(seq.to_string().as_bytes());
    input.push(b'\n');
    input.extend_from_slice(json.as_bytes());
    tongban_proto::rules::digest::sha256_hex(&input)
}

/// Appends records to one chained file.
pub struct ChainWriter {
    out: BufWriter<File>,
    seq: u64,
    prev: String,
    fsync: Fsync,
    /// The number of records the last checkpoint covers (its own seq minus one).
    checkpointed: Option<u64>,
}

impl ChainWriter {
    /// Opens (creating) the trail at `path`, continuing its chain.
    pub fn open(path: &Path, fsync: Fsync) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        // One writer per file: a second process would fork the chain.
        file.try_lock().map_err(|_| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "{} is being written by another process (give each replica its own \
                     file, e.g. with {{host}} in the path)",
                    path.display()
                ),
            )
        })?;
        let (mut seq, mut prev, mut checkpointed) = (0, String::new(), None);
        for line in BufReader::new(File::open(path)?).lines() {
            let line = line?;
            let mut parts = line.splitn(3, '\t');
            if let (Some(s), Some(h), json) = (parts.next(), parts.next(), parts.next())
                && let Ok(s) = s.parse::<u64>()
            {
                if json.is_some_and(|j| checkpoint::parse(j).is_some()) {
                    // The file is not trusted here: seq 0 is a malformed line, not an
                    // underflow.
                    checkpointed = Some(s.saturating_sub(1));
                }
                seq = s;
                prev = h.to_owned();
            }
        }
        Ok(Self {
            out: BufWriter::new(file),
            seq,
            prev,
            fsync,
            checkpointed,
        })
    }

    /// Appends one record (a JSON object on one line).
    pub fn append(&mut self, json: &str) -> io::Result<()> {
        self.seq += 1;
        let hash = chain_hash(&self.prev, self.seq, json);
        writeln!(self.out, "{}\t{hash}\t{json}", self.seq)?;
        self.prev = hash;
        if self.fsync == Fsync::Always {
            self.commit()?;
        }
        Ok(())
    }

    /// Appends a checkpoint signed by `signer` if records were added since the last;
    /// returns what it covers (records and head).
    pub fn checkpoint(&mut self, signer: &CheckpointSigner) -> io::Result<Option<(u64, String)>> {
        if self.seq == 0 || self.checkpointed.is_some_and(|c| c + 1 == self.seq) {
            return Ok(None);
        }
        let (covers, head) = (self.seq, self.prev.clone());
        let json = signer.sign(covers, &head).map_err(io::Error::other)?;
        self.append(&json)?;
        self.checkpointed = Some(covers);
        self.commit()?;
        Ok(Some((covers, head)))
    }

    /// Makes what was appended durable, as the policy says.
    pub fn commit(&mut self) -> io::Result<()> {
        self.out.flush()?;
        if self.fsync != Fsync::Never {
            self.out.get_ref().sync_data()?;
        }
        Ok(())
    }
}

/// Records queued for the trail's writer thread at most; beyond, a record is dropped
/// and counted rather than slowing the calls it records.
const QUEUE: usize = 65_536;

/// A handle to a trail written by its own thread. Cloning it is cheap.
#[derive(Clone)]
pub struct AuditTrail {
    tx: SyncSender<String>,
    dropped: Arc<AtomicU64>,
    path: Arc<PathBuf>,
}

impl AuditTrail {
    /// Opens the trail at `path` and starts its writer thread, which appends a
    /// checkpoint signed by `signer` (if any) as the settings say; the thread ends,
    /// after writing everything queued and a last checkpoint, when the last handle is
    /// dropped.
    pub fn start(
        path: &Path,
        settings: &TrailSettings,
        signer: Option<CheckpointSigner>,
    ) -> io::Result<Self> {
        let writer = ChainWriter::open(path, settings.fsync)?;
        let (tx, rx) = sync_channel(QUEUE);
        let shown = path.display().to_string();
        let every = settings
            .checkpoint_every
            .max(std::time::Duration::from_millis(10));
        std::thread::Builder::new()
            .name("audit-trail".into())
            .spawn(move || write_all(writer, rx, &shown, signer, every))?;
        Ok(Self {
            tx,
            dropped: Arc::default(),
            path: Arc::new(path.to_owned()),
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
        match self.tx.try_send(json) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::error!(dropped = n, path = %self.path.display(), "audit trail cannot keep up; records dropped");
                }
            }
        }
    }

    /// Records dropped because the writer could not keep up (or failed).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn write_all(
    mut writer: ChainWriter,
    rx: Receiver<String>,
    path: &str,
    signer: Option<CheckpointSigner>,
    every: std::time::Duration,
) {
    let checkpoint = |writer: &mut ChainWriter| {
        let Some(signer) = &signer else { return };
        match writer.checkpoint(signer) {
            // Logged too: a copy of the head outside the file, which shows a cut made
            // after it.
            Ok(Some((covers, head))) => tracing::info!(path, covers, head, "audit checkpoint"),
            Ok(None) => {}
            Err(error) => tracing::error!(%error, path, "audit checkpoint failed"),
        }
    };
    let mut due = std::time::Instant::now() + every;
    loop {
        let wait = due.saturating_duration_since(std::time::Instant::now());
        let first = match rx.recv_timeout(wait) {
            Ok(first) => first,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                checkpoint(&mut writer);
                due = std::time::Instant::now() + every;
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let written = batch
            .iter()
            .try_for_each(|json| writer.append(json))
            .and_then(|()| writer.commit());
        if let Err(error) = written {
            tracing::error!(%error, path, records = batch.len(), "audit trail write failed");
        }
        if std::time::Instant::now() >= due {
            checkpoint(&mut writer);
            due = std::time::Instant::now() + every;
        }
    }
    let _ = writer.commit();
    checkpoint(&mut writer);
}

/// Where and how a trail's chain breaks.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("line {line}: not a trail record (`<seq>\\t<hash>\\t<json>`)")]
    Malformed { line: usize },
    #[error(
        "line {line}: record {seq} was edited (its hash does not match its content and the record before it)"
    )]
    Edited { line: usize, seq: u64 },
    #[error("line {line}: records {from} to {to} are missing (deleted)")]
    Missing { line: usize, from: u64, to: u64 },
    #[error("line {line}: record {seq} is out of order (expected {expected})")]
    Reordered {
        line: usize,
        seq: u64,
        expected: u64,
    },
    #[error("line {line}: checkpoint {seq} does not hold: {reason}")]
    Checkpoint {
        line: usize,
        seq: u64,
        reason: String,
    },
    #[error(
        "the trail holds {records} records, but a checkpoint covering {expected} was given: records were cut off the end"
    )]
    Truncated { records: u64, expected: u64 },
    #[error("{0}")]
    Io(String),
}

/// What a verified trail holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub checkpoints: u64,
    /// The last checkpoint: how many records it covers and their head.
    pub last_checkpoint: Option<(u64, String)>,
    /// Signers of the checkpoints (identity URIs).
    pub signers: std::collections::BTreeSet<String>,
}

/// Checks a whole trail: its chain, every checkpoint's signature (and, with `anchors`,
/// that each signer's certificate is the federation's), and, if `expected` names a
/// checkpoint known from elsewhere (the process log), that the trail still holds it.
pub fn verify(
    path: &Path,
    anchors: Option<&Anchors>,
    expected: Option<(u64, &str)>,
) -> Result<Verified, ChainBreak> {
    let file = File::open(path).map_err(|e| ChainBreak::Io(format!("{}: {e}", path.display())))?;
    let mut records = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line_no = index + 1;
        let line = line.map_err(|e| ChainBreak::Io(e.to_string()))?;
        let mut parts = line.splitn(3, '\t');
        let (Some(seq), Some(hash), Some(json)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ChainBreak::Malformed { line: line_no });
        };
        let seq: u64 = seq
            .parse()
            .map_err(|_| ChainBreak::Malformed { line: line_no })?;
        records.push((seq, hash.to_owned(), json.to_owned()));
    }
    let expected_checkpoint = expected;
    let mut verified = Verified::default();
    let (mut expected, mut prev) = (1u64, String::new());
    for (index, (seq, hash, json)) in records.iter().enumerate() {
        let line = index + 1;
        let seq = *seq;
        if seq != expected {
            // The expected record further on: moved; nowhere: deleted.
            let later = records[index..].iter().any(|(s, _, _)| *s == expected);
            return Err(if later || seq < expected {
                ChainBreak::Reordered {
                    line,
                    seq,
                    expected,
                }
            } else {
                ChainBreak::Missing {
                    line,
                    from: expected,
                    to: seq - 1,
                }
            });
        }
        if chain_hash(&prev, seq, json) != *hash {
            return Err(ChainBreak::Edited { line, seq });
        }
        if let Some(parsed) = checkpoint::parse(json) {
            let checked = parsed.and_then(|c| c.check(seq - 1, &prev, anchors).map(|()| c));
            match checked {
                Ok(c) => {
                    verified.checkpoints += 1;
                    verified.signers.insert(c.signer);
                    verified.last_checkpoint = Some((c.covers, c.head));
                }
                Err(reason) => return Err(ChainBreak::Checkpoint { line, seq, reason }),
            }
        }
        if let Some((covers, head)) = expected_checkpoint
            && covers == seq
            && head != hash.as_str()
        {
            return Err(ChainBreak::Edited { line, seq });
        }
        prev.clone_from(hash);
        expected += 1;
    }
    verified.records = expected - 1;
    if let Some((covers, _)) = expected_checkpoint
        && covers > verified.records
    {
        return Err(ChainBreak::Truncated {
            records: verified.records,
            expected: covers,
        });
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trail(name: &str, records: usize) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tongban-audit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("trail.log");
        let mut w = ChainWriter::open(&path, Fsync::Batch).unwrap();
        for i in 0..records {
            w.append(&format!("{{\"call\":{i}}}")).unwrap();
        }
        w.commit().unwrap();
        path
    }

    fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<String>)) {
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        edit(&mut lines);
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn an_intact_trail_verifies_and_a_reopened_one_continues_its_chain() {
        let path = trail("intact", 5);
        assert_eq!(verify(&path, None, None).map(|v| v.records), Ok(5));
        let mut w = ChainWriter::open(&path, Fsync::Never).unwrap();
        w.append("{\"call\":\"after restart\"}").unwrap();
        w.commit().unwrap();
        assert_eq!(verify(&path, None, None).map(|v| v.records), Ok(6));
    }

    #[test]
    fn edits_deletions_and_reordering_are_found() {
        let path = trail("edited", 5);
        rewrite(&path, |l| l[2] = l[2].replace("\"call\":2", "\"call\":9"));
        assert_eq!(
            verify(&path, None, None).map(|v| v.records),
            Err(ChainBreak::Edited { line: 3, seq: 3 })
        );

        let path = trail("deleted", 5);
        rewrite(&path, |l| {
            l.remove(1);
        });
        assert_eq!(
            verify(&path, None, None).map(|v| v.records),
            Err(ChainBreak::Missing {
                line: 2,
                from: 2,
                to: 2
            })
        );

        let path = trail("reordered", 5);
        rewrite(&path, |l| l.swap(1, 2));
        assert_eq!(
            verify(&path, None, None).map(|v| v.records),
            Err(ChainBreak::Reordered {
                line: 2,
                seq: 3,
                expected: 2
            })
        );

        // Renumbered to hide a deletion: the hashes no longer chain.
        let path = trail("renumbered", 5);
        rewrite(&path, |l| {
            l.remove(1);
            for (i, line) in l.iter_mut().enumerate() {
                let rest = line.split_once('\t').unwrap().1.to_owned();
                *line = format!("{}\t{rest}", i + 1);
            }
        });
        assert_eq!(
            verify(&path, None, None).map(|v| v.records),
            Err(ChainBreak::Edited { line: 2, seq: 2 })
        );
    }

    #[test]
    fn a_trail_thread_writes_everything_queued() {
        let dir = std::env::temp_dir().join(format!("tongban-audit-{}-thread", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("trail.log");
        let trail = AuditTrail::start(&path, &TrailSettings::at("unused"), None).unwrap();
        for i in 0..1000 {
            trail.record(format!("{{\"call\":{i}}}"));
        }
        drop(trail);
        let mut n = 0;
        for _ in 0..200 {
            n = verify(&path, None, None).map(|v| v.records).unwrap_or(0);
            if n == 1000 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(n, 1000);
    }

    /// A signer with a certificate from a fresh CA in `dir`; the CA's anchors.
    fn signer(dir: &Path) -> (CheckpointSigner, Anchors) {
        crate::trust::tls::install_crypto_provider();
        let ca = crate::trust::pki::DevCa::generate("trail test CA").unwrap();
        ca.write(dir).unwrap();
        let id = crate::trust::identity::PeerIdentity::Gateway;
        let leaf = ca.issue(&id, std::time::Duration::from_secs(600)).unwrap();
        let (cert, key) = crate::trust::pki::write_leaf(dir, &id, &leaf).unwrap();
        let anchors = checkpoint::anchors(&dir.join("ca.pem")).unwrap();
        (CheckpointSigner::from_files(&cert, &key).unwrap(), anchors)
    }

    /// Rewrites every hash from the first record on, as someone who edits a record and
    /// knows the chain's rule would.
    fn rehash(lines: &mut [String]) {
        let mut prev = String::new();
        for line in lines.iter_mut() {
            let mut parts = line.splitn(3, '\t');
            let (seq, _, json) = (parts.next().unwrap(), parts.next(), parts.next().unwrap());
            let seq: u64 = seq.parse().unwrap();
            let hash = chain_hash(&prev, seq, json);
            *line = format!("{seq}\t{hash}\t{json}");
            prev = hash;
        }
    }

    #[test]
    fn checkpoints_are_signed_and_show_a_cut_or_a_rewrite() {
        let path = trail("checkpointed", 5);
        let dir = path.parent().unwrap().to_owned();
        let (signer, anchors) = signer(&dir);
        let mut w = ChainWriter::open(&path, Fsync::Batch).unwrap();
        let (covers, head) = w.checkpoint(&signer).unwrap().unwrap();
        assert_eq!(covers, 5);
        assert!(
            w.checkpoint(&signer).unwrap().is_none(),
            "nothing new to sign"
        );
        w.append("{\"call\":5}").unwrap();
        w.append("{\"call\":6}").unwrap();
        w.commit().unwrap();
        drop(w);

        let v = verify(&path, Some(&anchors), Some((5, &head))).unwrap();
        assert_eq!(v.records, 8);
        assert_eq!(v.checkpoints, 1);
        assert_eq!(v.last_checkpoint, Some((5, head.clone())));
        assert!(v.signers.contains("spiffe://tongban/gateway"));

        // Cut before the checkpoint: a valid shorter chain, but the logged head is gone.
        rewrite(&path, |l| l.truncate(3));
        assert_eq!(
            verify(&path, Some(&anchors), Some((5, &head))),
            Err(ChainBreak::Truncated {
                records: 3,
                expected: 5
            })
        );

        // An edit with every hash recomputed: the signed head no longer matches.
        let path = trail("rewritten", 5);
        let mut w = ChainWriter::open(&path, Fsync::Batch).unwrap();
        w.checkpoint(&signer).unwrap();
        drop(w);
        rewrite(&path, |l| {
            l[1] = l[1].replace("\"call\":1", "\"call\":7");
            rehash(l);
        });
        let broken = verify(&path, None, None).unwrap_err();
        assert!(
            matches!(&broken, ChainBreak::Checkpoint { line: 6, seq: 6, reason } if reason.contains("the trail has 5")),
            "{broken}"
        );

        // A checkpoint signed by a stranger's certificate holds alone, not with the CA.
        let stranger_dir = dir.join("stranger");
        std::fs::create_dir_all(&stranger_dir).unwrap();
        let (stranger, _) = self::signer(&stranger_dir);
        let path = trail("stranger", 2);
        let mut w = ChainWriter::open(&path, Fsync::Batch).unwrap();
        w.checkpoint(&stranger).unwrap();
        drop(w);
        assert!(verify(&path, None, None).is_ok());
        let broken = verify(&path, Some(&anchors), None).unwrap_err();
        assert!(
            broken.to_string().contains("not the federation's"),
            "{broken}"
        );

        // A forged signature.
        rewrite(&path, |l| {
            let sig = l[2].rfind("\"signature\":\"").unwrap() + 13;
            let flipped = if &l[2][sig..sig + 1] == "0" { "1" } else { "0" };
            l[2].replace_range(sig..sig + 1, flipped);
            rehash(l);
        });
        let broken = verify(&path, None, None).unwrap_err();
        assert!(broken.to_string().contains("does not verify"), "{broken}");
    }

    #[test]
    fn a_trail_is_written_by_one_process_at_a_time() {
        let path = trail("locked", 1);
        let _first = ChainWriter::open(&path, Fsync::Batch).unwrap();
        let second = ChainWriter::open(&path, Fsync::Batch).err().unwrap();
        assert!(second.to_string().contains("another process"), "{second}");
    }

    #[test]
    fn the_writer_signs_a_last_checkpoint_when_it_stops() {
        let dir = std::env::temp_dir().join(format!("tongban-audit-{}-signed", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (signer, anchors) = signer(&dir);
        let path = dir.join("trail.log");
        let trail = AuditTrail::start(&path, &TrailSettings::at("unused"), Some(signer)).unwrap();
        for i in 0..10 {
            trail.record(format!("{{\"call\":{i}}}"));
        }
        drop(trail);
        let mut last = None;
        for _ in 0..200 {
            if let Ok(v) = verify(&path, Some(&anchors), None)
                && v.checkpoints == 1
            {
                last = v.last_checkpoint;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(last.map(|(covers, _)| covers), Some(10));
    }
}
