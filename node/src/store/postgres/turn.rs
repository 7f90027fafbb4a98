//! One replica at a time for a job every replica could do (following the platform's
//! feeds): a session advisory lock on a connection of its own, held while the job runs.
//! The lock goes when the session does, so a replica that dies or loses its database
//! hands the job on without anyone cleaning up.

use sqlx::{Connection, PgConnection};

use super::database::PgStore;
use crate::db_error::StoreError;

/// This replica's turn at a job.
pub struct PgTurn {
    conn: PgConnection,
}

impl PgStore {
    /// Takes the turn at `job` if no replica holds it; `None` while another does.
    pub async fn take_turn(&self, job: &'static str) -> Result<Option<PgTurn>, StoreError> {
        let options = self.pool.connect_options();
        let mut conn = PgConnection::connect_with(&options).await?;
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(format!("tongban-turn:{job}"))
            .fetch_one(&mut conn)
            .await?;
        if held {
            Ok(Some(PgTurn { conn }))
        } else {
            // Not ours: the session ends, nothing stays held.
            let _ = conn.close().await;
            Ok(None)
        }
    }
}

impl PgTurn {
    /// Whether the turn is still this replica's: its session is alive (the lock lives
    /// as long as the session).
    pub async fn still_held(&mut self) -> bool {
        self.conn.ping().await.is_ok()
    }
}
