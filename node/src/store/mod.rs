//! The node's durable store (SQLite, WAL, `synchronous=FULL`).
//!
//! A filing is written with its receipt and — when another region handles it — its
//! outbox entry in one transaction, so an acknowledged application survives a crash of
//! the node and is forwarded after restart. Deliveries received are remembered by
//! idempotency key so a replay creates nothing new.
//!
//! This module holds the [`Store`] handle, the store's schema and its settings; each
//! job adds its own `impl Store` methods in a submodule: `filing` (applications filed
//! here), `outbox` (calls owed to other regions), `inbound` (idempotency keys of
//! deliveries received) and `status` (statuses returned by handling regions).

mod filing;
mod inbound;
mod outbox;
mod status;

use std::path::Path;

use rusqlite::{OptionalExtension, params};

pub use filing::{ApplicationRecord, Filed, NewFiling};
pub use outbox::{OutboxEntry, OutboxKind};
// The SQLite wrapper moved to `crate::sqlite`; these paths stay for existing callers.
pub use crate::sqlite::{Db, StoreError, now_ms, timestamp_ms};

/// The store's schema history, oldest first (see [`crate::sqlite`]). Append a step to
/// change the schema; never edit one. Step 1 is the schema from before versioning,
/// verbatim: `IF NOT EXISTS` lets it adopt databases made then (tables present,
/// user_version 0).
const MIGRATIONS: &[&str] = &[MIGRATION_1];

const MIGRATION_1: &str = r#"
CREATE TABLE IF NOT EXISTS settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS case_counter (
    day  TEXT PRIMARY KEY,
    next INTEGER NOT NULL
);
-- Applications filed at this node (the origin side).
CREATE TABLE IF NOT EXISTS applications (
    case_number        TEXT PRIMARY KEY,
    one_thing_id       TEXT NOT NULL,
    origin_region      TEXT NOT NULL,
    target_region      TEXT NOT NULL,
    applicant_hash     TEXT NOT NULL,
    applicant_masked   TEXT NOT NULL,
    payload            BLOB NOT NULL,
    receipt            TEXT NOT NULL,
    stage              INTEGER NOT NULL,
    status_detail      TEXT NOT NULL,
    status_seq         INTEGER NOT NULL,
    status_updated_ms  INTEGER NOT NULL,
    handling_reference TEXT,
    created_ms         INTEGER NOT NULL,
    -- The portal client's Idempotency-Key and a digest of its request, if it sent one.
    client_key         TEXT UNIQUE,
    client_request_sha TEXT
);
-- Calls this node owes to other regions: deliveries and status pushes.
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL,
    case_number     TEXT NOT NULL,
    target_region   TEXT NOT NULL,
    one_thing_id    TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    payload         BLOB NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error      TEXT,
    created_ms      INTEGER NOT NULL,
    done_ms         INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_ms);
-- Deliveries received from other regions, once per (origin, idempotency key).
CREATE TABLE IF NOT EXISTS inbound (
    origin_prefix   TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    case_number     TEXT NOT NULL,
    payload_sha256  TEXT NOT NULL,
    trace_id        TEXT NOT NULL,
    response        BLOB NOT NULL,
    received_ms     INTEGER NOT NULL,
    PRIMARY KEY (origin_prefix, idempotency_key)
);
"#;

/// The node's store.
#[derive(Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// Opens or creates the store.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            db: Db::open(path, MIGRATIONS)?,
        })
    }

    /// The node's secret for keyed hashes of ID numbers; created on first use.
    pub async fn id_hash_key(&self) -> Result<Vec<u8>, StoreError> {
        self.db
            .call(|conn| {
                let existing: Option<Vec<u8>> = conn
                    .query_row(
                        "SELECT value FROM settings WHERE name = 'id_hash_key'",
                        [],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(key) = existing {
                    return Ok(key);
                }
                let mut key = vec![0u8; 32];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
                    .map_err(|_| {
                        StoreError::Sqlite(rusqlite::Error::InvalidParameterName(
                            "system random generator failed".into(),
                        ))
                    })?;
                conn.execute(
                    "INSERT INTO settings (name, value) VALUES ('id_hash_key', ?1)",
                    params![key],
                )?;
                Ok(key)
            })
            .await
    }

    /// A stored setting.
    pub async fn setting(&self, name: &'static str) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .call(move |conn| {
                Ok(conn
                    .query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| {
                        r.get(0)
                    })
                    .optional()?)
            })
            .await
    }

    /// Stores a setting.
    pub async fn set_setting(&self, name: &'static str, value: Vec<u8>) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT INTO settings (name, value) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    params![name, value],
                )?;
                Ok(())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use tongban_proto::v1::Application;

    use super::*;

    fn set_user_version(path: &Path, version: i64) {
        Connection::open(path)
            .unwrap()
            .pragma_update(None, "user_version", version)
            .unwrap();
    }

    fn user_version(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    /// A store made before migrations (its schema, user_version 0) opens with its rows.
    #[tokio::test]
    async fn a_store_from_before_migrations_keeps_its_rows() {
        let dir = std::env::temp_dir().join(format!("tongban-store-{}-legacy", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("node.sqlite");
        // Real rows, written by the filing code, in a file the old code would have made:
        // step 1 is its schema verbatim, and the old code never set a version.
        let store = Store::open(&path).unwrap();
        let key = store.id_hash_key().await.unwrap();
        store.set_setting("catalog", b"v1".to_vec()).await.unwrap();
        let filed = store
            .file(NewFiling {
                application: Application {
                    one_thing_id: "newborn".into(),
                    origin_region: "310000".into(),
                    target_region: "440000".into(),
                    ..Default::default()
                },
                applicant_hash: "hash".into(),
                applicant_masked: "3101**********0011".into(),
                forward: true,
                receipt: Box::new(|app| format!("{{\"case\":\"{}\"}}", app.case_number)),
                client_key: None,
            })
            .await
            .unwrap();
        drop(store);
        set_user_version(&path, 0);

        let store = Store::open(&path).unwrap();
        assert_eq!(user_version(&path), MIGRATIONS.len() as i64);
        assert_eq!(store.id_hash_key().await.unwrap(), key);
        assert_eq!(store.setting("catalog").await.unwrap().unwrap(), b"v1");
        let case = filed.application.case_number;
        let record = store.application(case.clone()).await.unwrap().unwrap();
        assert_eq!(record.receipt, filed.receipt);
        assert_eq!(record.target_region, "440000");
        assert_eq!(store.pending_outbox().await.unwrap(), 1);
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
