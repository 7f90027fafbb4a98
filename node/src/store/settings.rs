//! Node settings: the keyed-hash secret for ID numbers and small named values (the
//! catalog copy).

use rusqlite::{OptionalExtension, params};

use super::database::Store;
use crate::sqlite::StoreError;

impl Store {
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
