//! SQLite files copied with SQLite's online backup API: a consistent snapshot while the
//! node keeps writing (WAL readers do not block it), page by page.

use std::{path::Path, time::Duration};

use rusqlite::{Connection, OpenFlags, backup::Backup};

use super::error::{BackupError, io_error};
use crate::store::StoreError;

/// Pages copied per step, and the pause between steps that lets the node write.
const PAGES_PER_STEP: std::os::raw::c_int = 1024;
const PAUSE: Duration = Duration::from_millis(5);

/// Copies the database at `from` to the new file `to`.
pub(super) async fn copy(from: &Path, to: &Path) -> Result<(), BackupError> {
    let (from, to) = (from.to_owned(), to.to_owned());
    tokio::task::spawn_blocking(move || {
        let source = Connection::open_with_flags(&from, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(StoreError::Sqlite)?;
        // Written beside the target and renamed, so a failed copy leaves no half file.
        let partial = to.with_extension("partial");
        let mut target = Connection::open(&partial).map_err(StoreError::Sqlite)?;
        Backup::new(&source, &mut target)
            .and_then(|b| b.run_to_completion(PAGES_PER_STEP, PAUSE, None))
            .map_err(StoreError::Sqlite)?;
        drop(target);
        std::fs::rename(&partial, &to).map_err(io_error(&to))
    })
    .await
    .map_err(|e| BackupError::Tool(format!("backup task: {e}")))?
}

/// Restores the backup file `from` as the database `to`, which must not exist yet.
pub(super) async fn restore(from: &Path, to: &Path) -> Result<(), BackupError> {
    if to.exists() {
        return Err(BackupError::Refused(format!(
            "{} exists; restore into a new file (move the old one aside first)",
            to.display()
        )));
    }
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    copy(from, to).await
}
