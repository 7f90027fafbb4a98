//! The audit trail as a record, not a log: an append-only file written by a dedicated
//! thread, whatever the log level, in order, made durable per batch (or per record, or
//! left to the OS, by policy), and hash-chained so that an edited, deleted or reordered
//! record is found by [`verify`] (`tongban audit verify`).
//!
//! One record per line: `<seq>\t<hash>\t<json>`, where `seq` counts from 1 and
//! `hash = sha256(<previous hash> "\n" <seq> "\n" <json>)` in lower-case hex (the first
//! record's previous hash is empty). A process that reopens its file continues the
//! chain from the last record. Cutting records off the end leaves a valid shorter chain;
//! signed checkpoints, which would show that, are not written yet.

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
    tongban_proto::digest::sha256_hex(&input)
}

/// Appends records to one chained file.
pub struct ChainWriter {
    out: BufWriter<File>,
    seq: u64,
    prev: String,
    fsync: Fsync,
}

impl ChainWriter {
    /// Opens (creating) the trail at `path`, continuing its chain.
    pub fn open(path: &Path, fsync: Fsync) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let (mut seq, mut prev) = (0, String::new());
        if let Ok(existing) = File::open(path) {
            for line in BufReader::new(existing).lines() {
                let line = line?;
                let mut parts = line.splitn(3, '\t');
                if let (Some(s), Some(h)) = (parts.next(), parts.next())
                    && let Ok(s) = s.parse()
                {
                    seq = s;
                    prev = h.to_owned();
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            out: BufWriter::new(file),
            seq,
            prev,
            fsync,
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
    /// Opens the trail and starts its writer thread; the thread ends, after writing
    /// everything queued, when the last handle is dropped.
    pub fn start(path: &Path, fsync: Fsync) -> io::Result<Self> {
        let writer = ChainWriter::open(path, fsync)?;
        let (tx, rx) = sync_channel(QUEUE);
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("audit-trail".into())
            .spawn(move || write_all(writer, rx, &shown))?;
        Ok(Self {
            tx,
            dropped: Arc::default(),
            path: Arc::new(path.to_owned()),
        })
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

fn write_all(mut writer: ChainWriter, rx: Receiver<String>, path: &str) {
    while let Ok(first) = rx.recv() {
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
    }
    let _ = writer.commit();
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
    #[error("{0}")]
    Io(String),
}

/// Checks a whole trail; returns how many records it holds.
pub fn verify(path: &Path) -> Result<u64, ChainBreak> {
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
        prev.clone_from(hash);
        expected += 1;
    }
    Ok(expected - 1)
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
        assert_eq!(verify(&path), Ok(5));
        let mut w = ChainWriter::open(&path, Fsync::Never).unwrap();
        w.append("{\"call\":\"after restart\"}").unwrap();
        w.commit().unwrap();
        assert_eq!(verify(&path), Ok(6));
    }

    #[test]
    fn edits_deletions_and_reordering_are_found() {
        let path = trail("edited", 5);
        rewrite(&path, |l| l[2] = l[2].replace("\"call\":2", "\"call\":9"));
        assert_eq!(verify(&path), Err(ChainBreak::Edited { line: 3, seq: 3 }));

        let path = trail("deleted", 5);
        rewrite(&path, |l| {
            l.remove(1);
        });
        assert_eq!(
            verify(&path),
            Err(ChainBreak::Missing {
                line: 2,
                from: 2,
                to: 2
            })
        );

        let path = trail("reordered", 5);
        rewrite(&path, |l| l.swap(1, 2));
        assert_eq!(
            verify(&path),
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
        assert_eq!(verify(&path), Err(ChainBreak::Edited { line: 2, seq: 2 }));
    }

    #[test]
    fn a_trail_thread_writes_everything_queued() {
        let dir = std::env::temp_dir().join(format!("tongban-audit-{}-thread", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("trail.log");
        let trail = AuditTrail::start(&path, Fsync::Batch).unwrap();
        for i in 0..1000 {
            trail.record(format!("{{\"call\":{i}}}"));
        }
        drop(trail);
        let mut n = 0;
        for _ in 0..200 {
            n = verify(&path).unwrap_or(0);
            if n == 1000 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(n, 1000);
    }
}
