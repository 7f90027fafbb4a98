//! Signed messages kept with their cases.

use rusqlite::params;

use super::database::SqliteStore;
use crate::db_error::StoreError;
use crate::store::evidence::SignedEvidence;

impl SqliteStore {
    pub async fn keep_signed(&self, evidence: SignedEvidence) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT OR IGNORE INTO signed_messages (case_number, method, idempotency_key,
                        target_region, signer_region, key_id, signed_at, signature, message,
                        received_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        evidence.case_number,
                        evidence.method,
                        evidence.idempotency_key,
                        evidence.target_region,
                        evidence.signer_region,
                        evidence.key_id,
                        evidence.signed_at,
                        evidence.signature,
                        evidence.message,
                        evidence.received_ms,
                    ],
                )?;
                Ok(())
            })
            .await
    }

    pub async fn signed_messages(
        &self,
        case_number: String,
    ) -> Result<Vec<SignedEvidence>, StoreError> {
        self.db
            .call(move |conn| {
                let mut statement = conn.prepare(
                    "SELECT case_number, method, idempotency_key, target_region, signer_region,
                        key_id, signed_at, signature, message, received_ms
                     FROM signed_messages WHERE case_number = ?1 ORDER BY id",
                )?;
                let rows = statement.query_map(params![case_number], |r| {
                    Ok(SignedEvidence {
                        case_number: r.get(0)?,
                        method: r.get(1)?,
                        idempotency_key: r.get(2)?,
                        target_region: r.get(3)?,
                        signer_region: r.get(4)?,
                        key_id: r.get(5)?,
                        signed_at: r.get(6)?,
                        signature: r.get(7)?,
                        message: r.get(8)?,
                        received_ms: r.get(9)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }
}
