//! The catalog ledger shared by gateway replicas: the same records as the file
//! (`ledger`), in a table of the database the replicas share for revocations
//! (`[revocation_log]`), so that a featured item published through one replica is
//! served by all. Sequence numbers are given under an advisory lock, with the rows
//! before them read and applied first: changes are decided one at a time against the
//! whole ledger, whichever replica receives them, and no number is skipped.

use sqlx::{PgPool, Row};
use tongban_runtime::postgres::migrate::{MigrateError, migrate};

use super::ledger::{Change, Recorded};

/// The component name of the schema in `tongban_schema`.
const COMPONENT: &str = "catalog_ledger";

/// The schema, one step per version (never edit a step: add one).
const STEPS: &[&str] = &["CREATE TABLE catalog_ledger (
    seq         BIGINT PRIMARY KEY,
    region      TEXT NOT NULL,
    recorded_ms BIGINT NOT NULL,
    change      TEXT NOT NULL,
    replica     TEXT NOT NULL
)"];

/// The advisory lock a change holds until it commits ("TongCatL").
const CHANGE_LOCK: i64 = 0x546F_6E67_4361_744C;

#[derive(Debug, thiserror::Error)]
pub enum SharedLedgerError {
    #[error("catalog ledger: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Schema(#[from] MigrateError),
    #[error("catalog ledger: row {seq}: {problem}")]
    Corrupt { seq: i64, problem: String },
}

/// The table, reached through the revocation log's pool.
pub struct SharedLedger {
    pool: PgPool,
    replica: String,
}

/// A change in progress: the rows it must apply first, and the turn it holds.
pub struct Turn {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    pub before: Vec<Recorded>,
}

impl SharedLedger {
    pub fn new(pool: PgPool, replica: String) -> Self {
        Self { pool, replica }
    }

    /// Creates or upgrades the table (replicas starting together take turns).
    pub async fn migrate(&self) -> Result<(), SharedLedgerError> {
        migrate(&self.pool, COMPONENT, STEPS).await?;
        Ok(())
    }

    /// Every record after `seq`, in order.
    pub async fn read_after(&self, seq: u64) -> Result<Vec<Recorded>, SharedLedgerError> {
        read_after(&mut *self.pool.acquire().await?, seq).await
    }

    /// Takes the turn to change the catalog: the records after `seq` come with it.
    pub async fn turn(&self, seq: u64) -> Result<Turn, SharedLedgerError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CHANGE_LOCK)
            .execute(&mut *tx)
            .await?;
        let before = read_after(&mut tx, seq).await?;
        Ok(Turn { tx, before })
    }

    /// Appends `recorded` in `turn` and commits.
    pub async fn append(
        &self,
        mut turn: Turn,
        recorded: &Recorded,
    ) -> Result<(), SharedLedgerError> {
        let change = serde_json::to_string(&recorded.change).map_err(|e| corrupt(0, e))?;
        sqlx::query(
            "INSERT INTO catalog_ledger (seq, region, recorded_ms, change, replica)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(signed(recorded.seq)?)
        .bind(&recorded.region)
        .bind(recorded.recorded_ms)
        .bind(change)
        .bind(&self.replica)
        .execute(&mut *turn.tx)
        .await?;
        turn.tx.commit().await?;
        Ok(())
    }
}

impl Turn {
    /// Gives the turn back without a change.
    pub async fn release(self) -> Result<(), SharedLedgerError> {
        self.tx.commit().await?;
        Ok(())
    }
}

async fn read_after(
    conn: &mut sqlx::PgConnection,
    seq: u64,
) -> Result<Vec<Recorded>, SharedLedgerError> {
    let rows = sqlx::query(
        "SELECT seq, region, recorded_ms, change FROM catalog_ledger WHERE seq > $1
         ORDER BY seq",
    )
    .bind(signed(seq)?)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let seq: i64 = row.try_get("seq")?;
            let change: String = row.try_get("change")?;
            let change: Change = serde_json::from_str(&change).map_err(|e| corrupt(seq, e))?;
            Ok(Recorded {
                seq: u64::try_from(seq).map_err(|e| corrupt(seq, e))?,
                region: row.try_get("region")?,
                recorded_ms: row.try_get("recorded_ms")?,
                change,
            })
        })
        .collect()
}

fn signed(seq: u64) -> Result<i64, SharedLedgerError> {
    i64::try_from(seq).map_err(|e| corrupt(-1, e))
}

fn corrupt(seq: i64, problem: impl std::fmt::Display) -> SharedLedgerError {
    SharedLedgerError::Corrupt {
        seq,
        problem: problem.to_string(),
    }
}
