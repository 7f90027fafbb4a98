//! SQLite connections for the node's databases (its store and the embedded platform):
//! crash-safe settings on open, versioned schema migrations, and calls from async code
//! on the blocking pool.
//!
//! Each database declares its schema as an ordered list of migration steps. A database
//! records how many it has run in `PRAGMA user_version`; opening it runs the rest, each
//! in its own transaction. A schema change is therefore a new step at the end of the
//! list, never an edit of an old one: databases in the field have already run the old
//! ones and will not run them again.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use rusqlite::{Connection, TransactionBehavior};

use crate::db_error::{FaultNote, lock};

// The error moved to `crate::db_error` (PostgreSQL fails with it too), and the clock
// to the store; these paths stay for existing callers.
pub use crate::db_error::StoreError;
pub use crate::instants::{now_ms, timestamp_ms};

/// A SQLite connection used from async code: calls run on the blocking pool, one at a
/// time. SQLite serialises writers anyway; one connection keeps transactions simple.
///
/// A call that panics cannot take the connection with it: the panic is caught, any
/// transaction it left open is rolled back, and the call fails with
/// [`StoreError::Panicked`]. [`Db::health`] tells whether the last call met trouble
/// that the process cannot serve through (a full or failing disk, a corrupt file, a
/// panic), so readiness can report it.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    trouble: FaultNote,
}

impl Db {
    /// Opens (creating) a database file with crash-safe settings and runs the steps of
    /// `migrations` it has not run yet (see the module docs). Step `i` (from 0) takes
    /// the schema from version `i` to `i + 1`.
    pub fn open(path: &Path, migrations: &[&str]) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        migrate(&mut conn, path, migrations)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            trouble: FaultNote::default(),
        })
    }

    /// `Err` with the reason while the database is failing (the last call met a fault
    /// of the disk or the file, or panicked); `Ok` once a call succeeds again.
    pub fn health(&self) -> Result<(), String> {
        self.trouble.health()
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let trouble = self.trouble.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = lock(&conn);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut guard)))
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".to_owned());
                    Err(StoreError::Panicked(what))
                });
            // A `Transaction` rolls back when dropped, also while unwinding; this covers
            // a panic between a raw `BEGIN` and its `COMMIT`.
            if !guard.is_autocommit() {
                let _ = guard.execute_batch("ROLLBACK");
            }
            trouble.note(&result);
            result
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
    }
}

/// Brings the schema of `conn` up to `migrations.len()`.
///
/// Each step runs in its own transaction together with its `user_version` bump (the
/// version lives in the file header, so it commits or rolls back with the step): a crash
/// or a failing step leaves the database at the last complete version. A step is plain
/// SQL without `BEGIN`/`COMMIT`; as it runs inside a transaction, `PRAGMA foreign_keys`
/// has no effect in it.
fn migrate(conn: &mut Connection, path: &Path, migrations: &[&str]) -> Result<(), StoreError> {
    let known = migrations.len();
    let current = user_version(conn).map_err(|source| StoreError::Open {
        path: path.display().to_string(),
        source,
    })?;
    let current = match usize::try_from(current) {
        Ok(v) if v <= known => v,
        _ => {
            return Err(StoreError::TooNew {
                path: path.display().to_string(),
                found: current,
                known,
            });
        }
    };
    for (index, step) in migrations.iter().enumerate().skip(current) {
        let version = index + 1;
        let fail = |source| StoreError::Migration {
            path: path.display().to_string(),
            version,
            source,
        };
        // IMMEDIATE takes the write lock before the version is read again, so two
        // processes opening the same file cannot both run a step.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        if user_version(&tx).map_err(fail)? >= version as i64 {
            continue;
        }
        tx.execute_batch(step).map_err(fail)?;
        tx.pragma_update(None, "user_version", version as i64)
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        tracing::debug!(path = %path.display(), version, "database schema migrated");
    }
    Ok(())
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A fresh folder for one test's database files.
    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tongban-sqlite-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Reads `sql` (one integer) through a separate connection, as another process would.
    fn count(path: &Path, sql: &str) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    }

    fn version(path: &Path) -> i64 {
        count(path, "PRAGMA user_version")
    }

    // Not idempotent on purpose: running a step twice fails or adds a second row.
    const STEP_1: &str = "CREATE TABLE things (name TEXT NOT NULL);
        CREATE TABLE log (step INTEGER NOT NULL); INSERT INTO log VALUES (1);";
    const STEP_2: &str = "ALTER TABLE things ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
        INSERT INTO log VALUES (2);";

    #[test]
    fn a_fresh_database_gets_every_step() {
        let dir = scratch("fresh");
        let path = dir.join("db.sqlite");
        let db = Db::open(&path, &[STEP_1, STEP_2]).unwrap();
        assert_eq!(version(&path), 2);
        assert_eq!(count(&path, "SELECT COUNT(*) FROM log"), 2);
        assert_eq!(count(&path, "SELECT COUNT(size) FROM things"), 0);
        drop(db);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reopening_runs_nothing_twice() {
        let dir = scratch("reopen");
        let path = dir.join("db.sqlite");
        drop(Db::open(&path, &[STEP_1, STEP_2]).unwrap());
        drop(Db::open(&path, &[STEP_1, STEP_2]).unwrap());
        assert_eq!(version(&path), 2);
        assert_eq!(count(&path, "SELECT COUNT(*) FROM log"), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_step_added_later_runs_once() {
        let dir = scratch("later");
        let path = dir.join("db.sqlite");
        drop(Db::open(&path, &[STEP_1]).unwrap());
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute("INSERT INTO things (name) VALUES ('kept')", [])
                .unwrap();
        }
        assert_eq!(version(&path), 1);
        drop(Db::open(&path, &[STEP_1, STEP_2]).unwrap());
        drop(Db::open(&path, &[STEP_1, STEP_2]).unwrap());
        assert_eq!(version(&path), 2);
        assert_eq!(
            count(&path, "SELECT COUNT(*) FROM log WHERE step = 2"),
            1,
            "the new step ran once"
        );
        assert_eq!(
            count(
                &path,
                "SELECT COUNT(*) FROM things WHERE name = 'kept' AND size = 0"
            ),
            1
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_legacy_database_at_version_0_opens_and_keeps_its_rows() {
        // Before migrations, a database was made by running its `IF NOT EXISTS` schema
        // on every open, and stayed at user_version 0. That schema is now step 1.
        let legacy = "CREATE TABLE IF NOT EXISTS things (name TEXT NOT NULL);";
        let dir = scratch("legacy");
        let path = dir.join("db.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(legacy).unwrap();
            conn.execute("INSERT INTO things (name) VALUES ('old')", [])
                .unwrap();
        }
        assert_eq!(version(&path), 0);
        drop(Db::open(&path, &[legacy, "CREATE TABLE more (x INTEGER);"]).unwrap());
        assert_eq!(version(&path), 2);
        assert_eq!(
            count(&path, "SELECT COUNT(*) FROM things WHERE name = 'old'"),
            1
        );
        assert_eq!(count(&path, "SELECT COUNT(*) FROM more"), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failing_step_leaves_the_last_complete_version() {
        let dir = scratch("failing");
        let path = dir.join("db.sqlite");
        let broken = "CREATE TABLE half (x INTEGER); INSERT INTO no_such_table VALUES (1);";
        let err = Db::open(&path, &[STEP_1, broken]).err().unwrap();
        assert!(
            matches!(err, StoreError::Migration { version: 2, .. }),
            "{err}"
        );
        assert_eq!(version(&path), 1);
        assert_eq!(
            count(
                &path,
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'half'"
            ),
            0,
            "the failed step was rolled back whole"
        );
        drop(Db::open(&path, &[STEP_1, STEP_2]).unwrap());
        assert_eq!(version(&path), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A call that panics mid-transaction fails alone: its writes are rolled back, the
    /// database reports the trouble, and the next call works and clears it.
    #[tokio::test]
    async fn a_panicking_call_does_not_poison_the_connection() {
        let dir = scratch("panic");
        let path = dir.join("db.sqlite");
        let db = Db::open(&path, &[STEP_1]).unwrap();
        let failed = db
            .call(|conn| {
                let tx = conn.transaction()?;
                tx.execute("INSERT INTO things (name) VALUES ('half')", [])?;
                if tx.is_autocommit() {
                    return Ok(());
                }
                panic!("bug in a store call");
            })
            .await;
        assert!(
            matches!(&failed, Err(StoreError::Panicked(m)) if m.contains("bug in a store call")),
            "{failed:?}"
        );
        assert!(db.health().is_err());
        let raw = db
            .call(|conn| -> Result<(), StoreError> {
                conn.execute_batch("BEGIN; INSERT INTO things (name) VALUES ('raw');")?;
                panic!("after a raw BEGIN");
            })
            .await;
        assert!(matches!(raw, Err(StoreError::Panicked(_))), "{raw:?}");
        let names: i64 = db
            .call(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM things", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(names, 0, "both panicked calls were rolled back");
        assert_eq!(db.health(), Ok(()));
        drop(db);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_database_from_a_newer_build_is_refused() {
        let dir = scratch("newer");
        let path = dir.join("db.sqlite");
        drop(Db::open(&path, &[STEP_1, STEP_2]).unwrap());
        let err = Db::open(&path, &[STEP_1]).err().unwrap();
        assert!(
            matches!(
                err,
                StoreError::TooNew {
                    found: 2,
                    known: 1,
                    ..
                }
            ),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
