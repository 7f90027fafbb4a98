//! The catalog ledger: every publication and adoption of a featured one-thing, in the
//! order the gateway accepted them, kept in a file (`catalog_ledger`) so that they
//! outlive a restart. The catalog served is the one configured, with the ledger
//! replayed over it; its version names the ledger's length (`2026.12-3-L2`).
//!
//! One JSON object per line, appended and synced before the change is answered. A
//! crash can tear only the last line (an append is one write): that change was never
//! acknowledged, and the next append writes over it. Any other unreadable line stops
//! the start: the ledger is the federation's record of who offers what, not a cache.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tongban_proto::rules::catalog::CatalogItem;

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// 1, 2, … in the order accepted.
    pub seq: u64,
    /// The region (prefix) whose node asked for it, from its certificate.
    pub region: String,
    /// When it was accepted, ms since the epoch.
    pub recorded_ms: i64,
    pub change: Change,
}

/// What a region asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// A featured item published, or a new version of it.
    Publish { item: Box<CatalogItem> },
    /// Another region's featured item adopted, on a Beijing date.
    Adopt { item_id: String, adopted_on: String },
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("catalog ledger {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("catalog ledger {path}, line {line}: {problem}")]
    Corrupt {
        path: String,
        line: usize,
        problem: String,
    },
}

/// The ledger file. Read at start without writing (`--check` runs on a read-only
/// filesystem); opened for writing, and a torn last line cut off, at the first append.
pub struct LedgerFile {
    path: PathBuf,
    /// How many bytes the whole lines take: where the next record goes.
    whole: u64,
    file: Option<tokio::fs::File>,
}

impl LedgerFile {
    /// Reads the ledger at `path` (none yet is an empty ledger).
    pub fn open(path: &Path) -> Result<(Self, Vec<Recorded>), LedgerError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(LedgerError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let (recorded, whole) = read(path, &bytes)?;
        if whole < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                cut = bytes.len() - whole,
                "catalog ledger: a torn last line (an unacknowledged change) is cut off at \
                 the next change"
            );
        }
        let ledger = Self {
            path: path.to_owned(),
            whole: whole as u64,
            file: None,
        };
        Ok((ledger, recorded))
    }

    /// Appends `recorded` and syncs it to disk.
    pub async fn append(&mut self, recorded: &Recorded) -> Result<(), LedgerError> {
        let mut line = serde_json::to_vec(recorded).map_err(|e| LedgerError::Corrupt {
            path: self.path.display().to_string(),
            line: 0,
            problem: e.to_string(),
        })?;
        line.push(b'\n');
        let path = self.path.display().to_string();
        let io = |source| LedgerError::Io {
            path: path.clone(),
            source,
        };
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    tokio::fs::create_dir_all(dir).await.map_err(io)?;
                }
                let file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&self.path)
                    .await
                    .map_err(io)?;
                self.file.insert(file)
            }
        };
        // Writes at the end of the whole lines: over a torn line, or after a failed
        // append (never acknowledged either).
        file.set_len(self.whole).await.map_err(io)?;
        file.seek(std::io::SeekFrom::Start(self.whole))
            .await
            .map_err(io)?;
        file.write_all(&line).await.map_err(io)?;
        file.sync_data().await.map_err(io)?;
        self.whole += line.len() as u64;
        Ok(())
    }
}

/// The records of `bytes`, and how many bytes the whole lines take.
fn read(path: &Path, bytes: &[u8]) -> Result<(Vec<Recorded>, usize), LedgerError> {
    let mut recorded: Vec<Recorded> = Vec::new();
    let mut at = 0;
    for (index, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let corrupt = |problem: String| LedgerError::Corrupt {
            path: path.display().to_string(),
            line: index + 1,
            problem,
        };
        if !line.ends_with(b"\n") {
            // The last line, never finished: never acknowledged either.
            break;
        }
        let one: Recorded = serde_json::from_slice(line).map_err(|e| corrupt(e.to_string()))?;
        let expected = recorded.last().map_or(1, |r| r.seq + 1);
        if one.seq != expected {
            return Err(corrupt(format!("seq {} where {expected} was due", one.seq)));
        }
        recorded.push(one);
        at += line.len();
    }
    Ok((recorded, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adoption(seq: u64) -> Recorded {
        Recorded {
            seq,
            region: "44".into(),
            recorded_ms: 1_764_900_000_000,
            change: Change::Adopt {
                item_id: "sh-foreigner-work".into(),
                adopted_on: "2026-12-05".into(),
            },
        }
    }

    #[tokio::test]
    async fn records_survive_a_reopen_and_a_torn_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger").join("catalog.jsonl");
        let (mut ledger, none) = LedgerFile::open(&path).unwrap();
        assert!(none.is_empty());
        ledger.append(&adoption(1)).await.unwrap();
        ledger.append(&adoption(2)).await.unwrap();
        drop(ledger);
        // A crash in the middle of the third append.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(br#"{"seq":3,"region":"#);
        std::fs::write(&path, &bytes).unwrap();
        let (mut ledger, read) = LedgerFile::open(&path).unwrap();
        assert_eq!(read, vec![adoption(1), adoption(2)]);
        ledger.append(&adoption(3)).await.unwrap();
        drop(ledger);
        let (_, read) = LedgerFile::open(&path).unwrap();
        assert_eq!(read.len(), 3);
    }

    #[test]
    fn a_damaged_ledger_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.jsonl");
        let line = |r: &Recorded| format!("{}\n", serde_json::to_string(r).unwrap());
        std::fs::write(
            &path,
            format!("{}not json\n{}", line(&adoption(1)), line(&adoption(2))),
        )
        .unwrap();
        let error = LedgerFile::open(&path).err().unwrap().to_string();
        assert!(error.contains("line 2"), "{error}");
        std::fs::write(
            &path,
            format!("{}{}", line(&adoption(1)), line(&adoption(3))),
        )
        .unwrap();
        let error = LedgerFile::open(&path).err().unwrap().to_string();
        assert!(error.contains("seq 3 where 2 was due"), "{error}");
    }
}
