//! The chained file itself: the hash rule, the writer that appends to it, and the gap
//! marker, the record that says how many records never reached the file.
//!
//! One record per line: `<seq>\t<hash>\t<json>`, where `seq` counts from 1 and
//! `hash = sha256(<previous hash> "\n" <seq> "\n" <json>)` in lower-case hex (the first
//! record's previous hash is empty).

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Read, Write},
    path::Path,
};

use serde::{Deserialize, Serialize};

use crate::audit::checkpoint::{self, CheckpointSigner};

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

pub(crate) fn chain_hash(prev: &str, seq: u64, json: &str) -> String {
    let mut input = Vec::with_capacity(prev.len() + json.len() + 24);
    input.extend_from_slice(prev.as_bytes());
    input.push(b'\n');
    input.extend_from_slice(seq.to_string().as_bytes());
    input.push(b'\n');
    input.extend_from_slice(json.as_bytes());
    tongban_proto::rules::digest::sha256_hex(&input)
}

/// Records that never reached the trail, stated in the trail itself: a gap marker is
/// a chained record like any other, so the chain still verifies and the gap shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Gap {
    /// Records dropped because the writer's queue was full.
    pub dropped: u64,
    /// Records lost because writing them failed (disk full, I/O error).
    pub unwritten: u64,
}

impl Gap {
    pub fn is_empty(&self) -> bool {
        self.dropped == 0 && self.unwritten == 0
    }

    pub fn total(&self) -> u64 {
        self.dropped + self.unwritten
    }

    /// The marker record's JSON: `{"gap": {...}}`.
    pub fn to_json(self) -> String {
        format!(
            "{{\"gap\":{{\"dropped\":{},\"unwritten\":{}}}}}",
            self.dropped, self.unwritten
        )
    }

    /// The gap a record states, if it is a marker.
    pub fn parse(json: &str) -> Option<Gap> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Marker {
            gap: Gap,
        }
        if !json.starts_with("{\"gap\":") {
            return None;
        }
        serde_json::from_str::<Marker>(json).ok().map(|m| m.gap)
    }
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
    /// Opens (creating) the trail at `path`, continuing its chain. A last line cut
    /// short (a crash or a full disk mid-write) is removed first: it was never a
    /// record, and the chain continues from the last whole one.
    pub fn open(path: &Path, fsync: Fsync) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
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
        let mut text = Vec::new();
        (&file).read_to_end(&mut text)?;
        let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if whole < text.len() {
            tracing::warn!(path = %path.display(), bytes = text.len() - whole, "audit trail ended in a partial line; removed");
            file.set_len(whole as u64)?;
        }
        let (mut seq, mut prev, mut checkpointed) = (0, String::new(), None);
        for line in String::from_utf8_lossy(&text[..whole]).lines() {
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

    /// Records in the file's chain (including what is buffered).
    pub fn records(&self) -> u64 {
        self.seq
    }

    /// After a failed write: closes the file without flushing (the buffered bytes
    /// would add a partial line) and releases its lock, so that [`ChainWriter::open`]
    /// continues the chain from what is really on disk.
    pub fn discard(self) {
        let (file, _discarded) = self.out.into_parts();
        drop(file);
    }

    /// Appends one record (a JSON object on one line).
    pub fn append(&mut self, json: &str) -> io::Result<()> {
        let seq = self.seq + 1;
        let hash = chain_hash(&self.prev, seq, json);
        writeln!(self.out, "{seq}\t{hash}\t{json}")?;
        (self.seq, self.prev) = (seq, hash);
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
