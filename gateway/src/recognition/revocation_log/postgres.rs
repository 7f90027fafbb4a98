//! The log's table on PostgreSQL: its schema, an append that keeps sequence numbers in
//! commit order, and reads by sequence number.

use sqlx::PgPool;
use tongban_runtime::postgres::migrate::{MigrateError, migrate};

/// The channel appends notify on (payload: the new sequence number). Only a wake-up:
/// followers read the table, never the payload.
pub const CHANNEL: &str = "tongban_revocations";

/// The component name of the schema in `tongban_schema`.
const COMPONENT: &str = "revocation_log";

/// The schema, one step per version (never edit a step: add one).
const STEPS: &[&str] = &["CREATE TABLE revocation_log (
    seq          BIGSERIAL PRIMARY KEY,
    license_id   TEXT NOT NULL UNIQUE,
    issuer       TEXT NOT NULL,
    reason       TEXT,
    revoked_ms   BIGINT,
    published_by TEXT NOT NULL,
    published_ms BIGINT NOT NULL,
    replica      TEXT NOT NULL
)"];

/// The advisory lock every append holds until it commits ("TongRevL").
const APPEND_LOCK: i64 = 0x546F_6E67_5265_764C;

/// Why the log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("revocation log: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Schema(#[from] MigrateError),
    #[error("revocation log: sequence number {0} is out of range")]
    BadSequence(i64),
    #[error("revocation log: the row of a repeated revocation vanished while it was appended")]
    Vanished,
}

/// A revocation to append, as the publishing replica received it.
#[derive(Debug)]
pub struct NewRevocation<'a> {
    pub license_id: &'a str,
    /// The issuing region's code (named by the license id).
    pub issuer: &'a str,
    pub reason: Option<&'a str>,
    /// When the issuer revoked it (ms since the epoch), if it said.
    pub revoked_ms: Option<i64>,
    /// The verified identity of the caller that published it.
    pub published_by: &'a str,
    pub published_ms: i64,
}

/// Where an append landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// False when the license was in the log already (`seq` is then its row's).
    pub new: bool,
}

/// One row as followers read it.
#[derive(Debug)]
pub struct Logged {
    pub seq: u64,
    pub license_id: String,
    /// The issuing region's code, and the verified identity of the member that
    /// published it: whose revocation it is counted as.
    pub issuer: String,
    pub published_by: String,
    /// When it was published (ms since the epoch): remembered that long from then.
    pub published_ms: i64,
}

/// The log's table, reached through `pool`, appended to as `replica`.
pub struct LogTable {
    pool: PgPool,
    replica: String,
}

impl LogTable {
    pub fn new(pool: PgPool, replica: String) -> Self {
        Self { pool, replica }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Creates or upgrades the table (replicas starting together take turns).
    pub async fn migrate(&self) -> Result<(), LogError> {
        migrate(&self.pool, COMPONENT, STEPS).await?;
        Ok(())
    }

    /// Appends `revocation` unless its license is in the log already; either way its
    /// sequence number once committed.
    pub async fn append(&self, revocation: &NewRevocation<'_>) -> Result<Appended, LogError> {
        let mut tx = self.pool.begin().await?;
        // Appends take turns until they commit. A sequence number is drawn when its row
        // is inserted but seen only once its transaction commits: without the turn,
        // seq 8 could commit before seq 7, and a follower that has read up to 8 reads
        // `seq > 8` from then on and never sees 7.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK)
            .execute(&mut *tx)
            .await?;
        // Every replica a node lists is told: the repeats find the row first, as
        // `ON CONFLICT` would, but without drawing (and wasting) a sequence number.
        if let Some(seq) = logged_seq(&mut tx, revocation.license_id).await? {
            tx.commit().await?;
            return Ok(Appended {
                seq: sequence(seq)?,
                new: false,
            });
        }
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO revocation_log
                 (license_id, issuer, reason, revoked_ms, published_by, published_ms, replica)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (license_id) DO NOTHING
             RETURNING seq",
        )
        .bind(revocation.license_id)
        .bind(revocation.issuer)
        .bind(revocation.reason)
        .bind(revocation.revoked_ms)
        .bind(revocation.published_by)
        .bind(revocation.published_ms)
        .bind(self.replica.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let appended = match inserted {
            Some(seq) => {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(seq.to_string())
                    .execute(&mut *tx)
                    .await?;
                Appended {
                    seq: sequence(seq)?,
                    new: true,
                }
            }
            // Only a writer that skipped the turn can get here.
            None => Appended {
                seq: sequence(
                    logged_seq(&mut tx, revocation.license_id)
                        .await?
                        .ok_or(LogError::Vanished)?,
                )?,
                new: false,
            },
        };
        tx.commit().await?;
        Ok(appended)
    }

    /// Up to `limit` rows after sequence number `after`, in order.
    pub async fn read_after(&self, after: u64, limit: u32) -> Result<Vec<Logged>, LogError> {
        let after = i64::try_from(after).map_err(|_| LogError::BadSequence(i64::MAX))?;
        let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as(
            "SELECT seq, license_id, issuer, published_by, published_ms FROM revocation_log
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(seq, license_id, issuer, published_by, published_ms)| {
                Ok(Logged {
                    seq: sequence(seq)?,
                    license_id,
                    issuer,
                    published_by,
                    published_ms,
                })
            })
            .collect()
    }
}

/// The sequence number of `license_id`'s row, if it has one.
async fn logged_seq(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    license_id: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT seq FROM revocation_log WHERE license_id = $1")
        .bind(license_id)
        .fetch_optional(&mut **tx)
        .await
}

/// A sequence number as read (BIGSERIAL starts at 1).
fn sequence(seq: i64) -> Result<u64, LogError> {
    u64::try_from(seq).map_err(|_| LogError::BadSequence(seq))
}
