//! SQLite files copied with SQLite's online backup API: a consistent snapshot while the
//! node keeps writing.
//!
//! The copy is made in one step, in one read transaction. The stores are in WAL mode,
//! where a reader never blocks the writer, so nothing waits for it. A copy made a few
//! pages at a time instead starts over whenever another connection writes between two
//! steps, so a busy node's store larger than one step would never finish copying.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use rusqlite::{
    Connection, OpenFlags,
    backup::{Backup, StepResult},
};

use super::error::{BackupError, io_error};
use crate::store::StoreError;

/// How long the source may stay locked (a checkpoint, a recovery) before the copy gives
/// up, and the pause between tries.
const BUSY_LIMIT: Duration = Duration::from_secs(30);
const BUSY_PAUSE: Duration = Duration::from_millis(20);

/// Copies the database at `from` to the new file `to`.
pub(super) async fn copy(from: &Path, to: &Path) -> Result<(), BackupError> {
    let (from, to) = (from.to_owned(), to.to_owned());
    tokio::task::spawn_blocking(move || {
        let source = Connection::open_with_flags(&from, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(StoreError::Sqlite)?;
        source
            .busy_timeout(BUSY_PAUSE)
            .map_err(StoreError::Sqlite)?;
        // Written beside the target and renamed, so a failed copy leaves no half file.
        let partial = to.with_extension("partial");
        let mut target = Connection::open(&partial).map_err(StoreError::Sqlite)?;
        let copied = copy_whole(&source, &mut target);
        drop(target);
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, &to).map_err(io_error(&to))
    })
    .await
    .map_err(|e| BackupError::Tool(format!("backup task: {e}")))?
}

/// Every page of `source` into `target` in one step, retried while the source is locked.
fn copy_whole(source: &Connection, target: &mut Connection) -> Result<(), BackupError> {
    let backup = Backup::new(source, target).map_err(StoreError::Sqlite)?;
    let deadline = Instant::now() + BUSY_LIMIT;
    loop {
        match backup.step(-1).map_err(StoreError::Sqlite)? {
            StepResult::Done => return Ok(()),
            StepResult::More => {}
            StepResult::Busy | StepResult::Locked => {
                if Instant::now() > deadline {
                    return Err(BackupError::Tool(format!(
                        "the database stayed locked for {} s",
                        BUSY_LIMIT.as_secs()
                    )));
                }
                std::thread::sleep(BUSY_PAUSE);
            }
            // A future result kind: treat as not done yet.
            _ => std::thread::sleep(BUSY_PAUSE),
        }
    }
}

/// Refuses when the database file `to` exists: a restore writes new files only.
pub(super) fn ensure_absent(to: &Path) -> Result<(), BackupError> {
    if to.exists() {
        return Err(BackupError::Refused(format!(
            "{} exists; restore into a new file (move the old one aside first)",
            to.display()
        )));
    }
    Ok(())
}

/// Restores the backup file `from` as the database `to`, which must not exist yet.
pub(super) async fn restore(from: &Path, to: &Path) -> Result<(), BackupError> {
    ensure_absent(to)?;
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    copy(from, to).await
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use super::*;

    /// A store of some 8,000 pages, written to by another connection every fraction of
    /// a millisecond while it is copied: the copy ends, and holds every row committed
    /// before it began. (Copied 1,024 pages a step, it started over at each write and
    /// had not ended after 20 s.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_database_is_copied_whole() {
        let dir = std::env::temp_dir().join(format!("tongban-backup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let source = dir.join("busy.sqlite");
        let conn = Connection::open(&source).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 8000)
             INSERT INTO t (b) SELECT randomblob(4000) FROM n;",
        )
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        // The copy starts once a row beyond the first 8000 is committed (a fixed sleep
        // was sometimes shorter than the writer's start on a busy machine).
        let (first_insert, inserted) = std::sync::mpsc::channel();
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    conn.execute("INSERT INTO t (b) VALUES (randomblob(100))", [])
                        .unwrap();
                    let _ = first_insert.send(());
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        };
        inserted
            .recv_timeout(Duration::from_secs(20))
            .expect("the writer inserts");
        let target = dir.join("copy.sqlite");
        let copied = tokio::time::timeout(Duration::from_secs(20), copy(&source, &target)).await;
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        copied.expect("the copy ends").unwrap();
        let copy = Connection::open(&target).unwrap();
        let rows: i64 = copy
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert!(rows > 8000, "{rows} rows copied");
        let check: String = copy
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        drop(copy);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
