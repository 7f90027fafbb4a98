//! Node settings on PostgreSQL (see [`crate::store::settings`]).

use super::database::PgStore;
use crate::db_error::StoreError;
use crate::store::settings::{ID_HASH_KEY, fresh_secret};

impl PgStore {
    /// The node's secret for keyed hashes of ID numbers; created on first use. Replicas
    /// starting at once may each offer a fresh one: the first stored is everyone's.
    pub async fn id_hash_key(&self) -> Result<Vec<u8>, StoreError> {
        self.observed(async {
            if let Some(key) = self.setting_value(ID_HASH_KEY).await? {
                return Ok(key);
            }
            sqlx::query(
                "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            )
            .bind(ID_HASH_KEY)
            .bind(fresh_secret()?)
            .execute(&self.pool)
            .await?;
            let stored = self.setting_value(ID_HASH_KEY).await?;
            // Settings are never deleted: the row just inserted or kept is there.
            stored.ok_or(StoreError::Postgres(sqlx::Error::RowNotFound))
        })
        .await
    }

    pub async fn setting(&self, name: &'static str) -> Result<Option<Vec<u8>>, StoreError> {
        self.observed(self.setting_value(name)).await
    }

    pub async fn set_setting(&self, name: &'static str, value: Vec<u8>) -> Result<(), StoreError> {
        self.observed(async {
            sqlx::query(
                "INSERT INTO settings (name, value) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn setting_value(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
