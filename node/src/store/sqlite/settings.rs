//! Node settings on SQLite (see [`crate::store::settings`]).

use rusqlite::{OptionalExtension, params};

use super::database::SqliteStore;
use crate::db_error::StoreError;
use crate::store::settings::{ID_HASH_KEY, fresh_secret};

impl SqliteStore {
    /// The node's secret for keyed hashes of ID numbers; created on first use.
    pub async fn id_hash_key(&self) -> Result<Vec<u8>, StoreError> {
        self.db
            .call(|conn| {
                let existing: Option<Vec<u8>> = conn
                    .query_row(
                        "SELECT value FROM settings WHERE name = ?1",
                        [ID_HASH_KEY],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(key) = existing {
                    return Ok(key);
                }
                let key = fresh_secret()?;
                conn.execute(
                    "INSERT INTO settings (name, value) VALUES (?1, ?2)",
                    params![ID_HASH_KEY, key],
                )?;
                Ok(key)
            })
            .await
    }

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
