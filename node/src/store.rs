//! The node's durable store (SQLite, WAL, `synchronous=FULL`).
//!
//! A filing is written with its receipt and — when another region handles it — its
//! outbox entry in one transaction, so an acknowledged application survives a crash of
//! the node and is forwarded after restart. Deliveries received are remembered by
//! idempotency key so a replay creates nothing new.

use std::path::Path;

use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};
use tongban_proto::v1::{Application, CaseStatus, Stage};

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

/// What an outbox entry asks the forwarder to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxKind {
    /// `Gateway.DeliverApplication` with an encoded `DeliverApplicationRequest`.
    Deliver,
    /// `Gateway.PushStatus` with an encoded `PushStatusRequest`.
    PushStatus,
    /// Hand a case filed and handled here to this node's own platform (an encoded
    /// `DeliverApplicationRequest`).
    LocalSubmit,
}

impl OutboxKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Deliver => "deliver",
            Self::PushStatus => "push_status",
            Self::LocalSubmit => "local_submit",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "deliver" => Some(Self::Deliver),
            "push_status" => Some(Self::PushStatus),
            "local_submit" => Some(Self::LocalSubmit),
            _ => None,
        }
    }
}

/// One due outbox entry.
#[derive(Clone, Debug)]
pub struct OutboxEntry {
    pub id: i64,
    pub kind: OutboxKind,
    pub case_number: String,
    pub target_region: String,
    pub one_thing_id: String,
    pub idempotency_key: String,
    pub payload: Vec<u8>,
    pub attempts: u32,
}

/// An application filed at this node, with its last known status.
#[derive(Clone, Debug)]
pub struct ApplicationRecord {
    pub case_number: String,
    pub one_thing_id: String,
    pub origin_region: String,
    pub target_region: String,
    pub applicant_masked: String,
    pub payload: Vec<u8>,
    pub receipt: String,
    pub status: CaseStatus,
    pub handling_reference: Option<String>,
    pub created_ms: i64,
}

/// A new filing: the application (without case number yet) and how to describe it.
pub struct NewFiling {
    pub application: Application,
    pub applicant_hash: String,
    pub applicant_masked: String,
    /// Forward through the gateway (the handling region is another node's); otherwise
    /// the case goes to this node's own platform.
    pub forward: bool,
    /// Builds the receipt JSON once the case number is known.
    pub receipt: Box<dyn FnOnce(&Application) -> String + Send>,
    /// The client's idempotency key and a digest of its request: a retry with the same
    /// key and request gets the first filing back instead of a second case.
    pub client_key: Option<(String, String)>,
}

/// The outcome of [`Store::file`].
pub struct Filed {
    pub application: Application,
    pub receipt: String,
    /// True when the client's idempotency key had filed this before.
    pub replayed: bool,
}

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

    /// Files an application: assigns its case number, and stores it with its receipt
    /// and its outbox entry in one transaction. Returns the application as filed and
    /// its receipt.
    pub async fn file(&self, filing: NewFiling) -> Result<Filed, StoreError> {
        self.db
            .call(move |conn| {
                let NewFiling {
                    mut application,
                    applicant_hash,
                    applicant_masked,
                    forward,
                    receipt,
                    client_key,
                } = filing;
                let now = now_ms();
                let tx = conn.transaction()?;
                if let Some((key, sha)) = &client_key {
                    let earlier: Option<(Vec<u8>, String, Option<String>)> = tx
                        .query_row(
                            "SELECT payload, receipt, client_request_sha FROM applications
                             WHERE client_key = ?1",
                            [key],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                        .optional()?;
                    if let Some((payload, receipt, first_sha)) = earlier {
                        if first_sha.as_deref() != Some(sha.as_str()) {
                            return Err(StoreError::KeyReused(key.clone()));
                        }
                        let application = Application::decode(payload.as_slice())
                            .map_err(|e| StoreError::Join(format!("stored application: {e}")))?;
                        return Ok(Filed {
                            application,
                            receipt,
                            replayed: true,
                        });
                    }
                }
                let day = application
                    .filed_at
                    .as_ref()
                    .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
                    .map(|t| t.to_offset(crate::context::BUSINESS_OFFSET))
                    .unwrap_or_else(crate::context::business_now);
                let day = format!("{:04}{:02}{:02}", day.year(), day.month() as u8, day.day());
                let seq: i64 = tx.query_row(
                    "INSERT INTO case_counter (day, next) VALUES (?1, 2)
                     ON CONFLICT (day) DO UPDATE SET next = next + 1
                     RETURNING next - 1",
                    [&day],
                    |r| r.get(0),
                )?;
                application.case_number = format!("{}-{day}-{seq:08}", application.origin_region);
                let payload = application.encode_to_vec();
                let receipt = receipt(&application);
                tx.execute(
                    "INSERT INTO applications (case_number, one_thing_id, origin_region,
                        target_region, applicant_hash, applicant_masked, payload, receipt,
                        stage, status_detail, status_seq, status_updated_ms, created_ms,
                        client_key, client_request_sha)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11, ?11, ?12, ?13)",
                    params![
                        application.case_number,
                        application.one_thing_id,
                        application.origin_region,
                        application.target_region,
                        applicant_hash,
                        applicant_masked,
                        payload,
                        receipt,
                        Stage::Submitted as i32,
                        "accepted at the filing region",
                        now,
                        client_key.as_ref().map(|(k, _)| k),
                        client_key.as_ref().map(|(_, s)| s),
                    ],
                )?;
                // Either way the hand-over is an outbox entry written with the receipt,
                // so a crash right after the receipt cannot lose the case.
                let request = tongban_proto::v1::DeliverApplicationRequest {
                    application: Some(application.clone()),
                };
                let (kind, key) = if forward {
                    (
                        OutboxKind::Deliver,
                        format!("deliver:{}", application.case_number),
                    )
                } else {
                    (
                        OutboxKind::LocalSubmit,
                        format!("local:{}", application.case_number),
                    )
                };
                insert_outbox(
                    &tx,
                    kind,
                    &application.case_number,
                    &application.target_region,
                    &application.one_thing_id,
                    &key,
                    &request.encode_to_vec(),
                    now,
                )?;
                tx.commit()?;
                Ok(Filed {
                    application,
                    receipt,
                    replayed: false,
                })
            })
            .await
    }

    /// Queues a status push to the origin region of a case handled here.
    pub async fn enqueue_push(
        &self,
        case_number: String,
        origin_region: String,
        one_thing_id: String,
        request: tongban_proto::v1::PushStatusRequest,
    ) -> Result<(), StoreError> {
        let seq = request.status.as_ref().map_or(0, |s| s.sequence);
        self.db
            .call(move |conn| {
                insert_outbox(
                    conn,
                    OutboxKind::PushStatus,
                    &case_number,
                    &origin_region,
                    &one_thing_id,
                    &format!("status:{case_number}:{seq}"),
                    &request.encode_to_vec(),
                    now_ms(),
                )?;
                Ok(())
            })
            .await
    }

    /// Pending outbox entries whose next attempt is due.
    pub async fn due_outbox(&self, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, kind, case_number, target_region, one_thing_id,
                            idempotency_key, payload, attempts
                     FROM outbox WHERE state = 'pending' AND next_attempt_ms <= ?1
                     ORDER BY next_attempt_ms, id LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![now_ms(), limit], |r| {
                    let kind: String = r.get(1)?;
                    Ok((
                        kind,
                        OutboxEntry {
                            id: r.get(0)?,
                            kind: OutboxKind::Deliver,
                            case_number: r.get(2)?,
                            target_region: r.get(3)?,
                            one_thing_id: r.get(4)?,
                            idempotency_key: r.get(5)?,
                            payload: r.get(6)?,
                            attempts: r.get(7)?,
                        },
                    ))
                })?;
                let mut out = Vec::new();
                for row in rows {
                    let (kind, mut entry) = row?;
                    match OutboxKind::parse(&kind) {
                        Some(k) => {
                            entry.kind = k;
                            out.push(entry);
                        }
                        None => tracing::error!(id = entry.id, kind, "unknown outbox kind"),
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Number of outbox entries not yet delivered.
    pub async fn pending_outbox(&self) -> Result<u64, StoreError> {
        self.db
            .call(|conn| {
                Ok(conn.query_row(
                    "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
    }

    /// Marks an entry delivered; for a delivery, records the handling region's answer on
    /// the application in the same transaction.
    pub async fn outbox_done(
        &self,
        id: i64,
        delivered: Option<(String, String, CaseStatus)>,
    ) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                tx.execute(
                    "UPDATE outbox SET state = 'done', done_ms = ?2, attempts = attempts + 1
                     WHERE id = ?1",
                    params![id, now_ms()],
                )?;
                if let Some((case_number, reference, status)) = delivered {
                    tx.execute(
                        "UPDATE applications SET handling_reference = ?2 WHERE case_number = ?1",
                        params![case_number, reference],
                    )?;
                    apply_status_tx(&tx, &case_number, &status)?;
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    /// Schedules another attempt.
    pub async fn outbox_retry(
        &self,
        id: i64,
        next_attempt_ms: i64,
        error: String,
    ) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                conn.execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?2,
                        last_error = ?3 WHERE id = ?1",
                    params![id, next_attempt_ms, error],
                )?;
                Ok(())
            })
            .await
    }

    /// Gives up on an entry the receiver refused for good; a refused delivery marks its
    /// application rejected so the citizen sees why.
    pub async fn outbox_failed(&self, id: i64, error: String) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let (kind, case_number): (String, String) = tx.query_row(
                    "SELECT kind, case_number FROM outbox WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                tx.execute(
                    "UPDATE outbox SET state = 'failed', attempts = attempts + 1,
                        last_error = ?2, done_ms = ?3 WHERE id = ?1",
                    params![id, error, now_ms()],
                )?;
                if OutboxKind::parse(&kind) == Some(OutboxKind::Deliver) {
                    tx.execute(
                        "UPDATE applications SET stage = ?2, status_detail = ?3,
                            status_updated_ms = ?4 WHERE case_number = ?1",
                        params![
                            case_number,
                            Stage::Rejected as i32,
                            format!("not accepted by the handling region: {error}"),
                            now_ms()
                        ],
                    )?;
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    /// An application filed here.
    pub async fn application(
        &self,
        case_number: String,
    ) -> Result<Option<ApplicationRecord>, StoreError> {
        self.db
            .call(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT case_number, one_thing_id, origin_region, target_region,
                                applicant_masked, payload, receipt, stage, status_detail,
                                status_seq, status_updated_ms, handling_reference, created_ms
                         FROM applications WHERE case_number = ?1",
                        [case_number],
                        |r| {
                            let updated_ms: i64 = r.get(10)?;
                            Ok(ApplicationRecord {
                                case_number: r.get(0)?,
                                one_thing_id: r.get(1)?,
                                origin_region: r.get(2)?,
                                target_region: r.get(3)?,
                                applicant_masked: r.get(4)?,
                                payload: r.get(5)?,
                                receipt: r.get(6)?,
                                status: CaseStatus {
                                    stage: r.get(7)?,
                                    detail: r.get(8)?,
                                    sequence: r.get(9)?,
                                    updated_at: Some(timestamp_ms(updated_ms)),
                                },
                                handling_reference: r.get(11)?,
                                created_ms: r.get(12)?,
                            })
                        },
                    )
                    .optional()?)
            })
            .await
    }

    /// Records a status from the handling region if it is newer than what is stored.
    /// Returns whether it was applied.
    pub async fn apply_status(
        &self,
        case_number: String,
        status: CaseStatus,
    ) -> Result<bool, StoreError> {
        self.db
            .call(move |conn| apply_status_tx(conn, &case_number, &status))
            .await
    }

    /// The earlier delivery with this key, if any: its case number, the SHA-256 of its
    /// application (hex) and the stored answer.
    pub async fn inbound(
        &self,
        origin_prefix: String,
        key: String,
    ) -> Result<Option<(String, String, Vec<u8>)>, StoreError> {
        self.db
            .call(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT case_number, payload_sha256, response FROM inbound
                         WHERE origin_prefix = ?1 AND idempotency_key = ?2",
                        params![origin_prefix, key],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?)
            })
            .await
    }

    /// Remembers the answer to a delivery, with the trace it came in; the first answer
    /// for a key wins.
    #[allow(clippy::too_many_arguments)]
    pub async fn remember_inbound(
        &self,
        origin_prefix: String,
        key: String,
        case_number: String,
        payload_sha256: String,
        trace_id: String,
        response: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT OR IGNORE INTO inbound (origin_prefix, idempotency_key, case_number,
                        payload_sha256, trace_id, response, received_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        origin_prefix,
                        key,
                        case_number,
                        payload_sha256,
                        trace_id,
                        response,
                        now_ms()
                    ],
                )?;
                Ok(())
            })
            .await
    }
}

#[allow(clippy::too_many_arguments)]
fn insert_outbox(
    conn: &Connection,
    kind: OutboxKind,
    case_number: &str,
    target_region: &str,
    one_thing_id: &str,
    key: &str,
    payload: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR IGNORE INTO outbox (kind, case_number, target_region, one_thing_id,
            idempotency_key, payload, next_attempt_ms, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        params![
            kind.as_str(),
            case_number,
            target_region,
            one_thing_id,
            key,
            payload,
            now
        ],
    )?;
    Ok(())
}

fn apply_status_tx(
    conn: &Connection,
    case_number: &str,
    status: &CaseStatus,
) -> Result<bool, StoreError> {
    let updated_ms = status.updated_at.as_ref().map_or_else(now_ms, |t| {
        t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
    });
    let changed = conn.execute(
        "UPDATE applications SET stage = ?2, status_detail = ?3, status_seq = ?4,
            status_updated_ms = ?5
         WHERE case_number = ?1 AND status_seq < ?4",
        params![
            case_number,
            status.stage,
            status.detail,
            status.sequence,
            updated_ms
        ],
    )?;
    Ok(changed > 0)
}

#[cfg(test)]
mod tests {
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
