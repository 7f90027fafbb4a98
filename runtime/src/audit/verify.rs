//! Checking a trail: its chain, its signed checkpoints, and the gaps it states
//! (`tongban audit verify`).

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::Path,
};

use crate::audit::{
    chain::{Gap, chain_hash},
    checkpoint::{self, Anchors},
};

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
    /// Gap markers: records the writer lost (dropped on a full queue or a failed
    /// write) and said so in the trail. The chain holds; the record of calls does not.
    pub gaps: u64,
    /// The records those markers say were lost, summed.
    pub lost: Gap,
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
        if let Some(gap) = Gap::parse(json) {
            verified.gaps += 1;
            verified.lost.dropped += gap.dropped;
            verified.lost.unwritten += gap.unwritten;
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
