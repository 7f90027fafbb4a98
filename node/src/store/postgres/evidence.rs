//! Signed messages kept with their cases, on PostgreSQL (the first kept wins, also
//! when two replicas take one call's retries at once).

use sqlx::Row;

use super::database::PgStore;
use crate::db_error::StoreError;
use crate::store::evidence::SignedEvidence;

impl PgStore {
    pub async fn keep_signed(&self, evidence: SignedEvidence) -> Result<(), StoreError> {
        self.observed(async {
            sqlx::query(
                "INSERT INTO signed_messages (case_number, method, idempotency_key,
                    target_region, signer_region, key_id, signed_at, signature, message,
                    received_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (method, idempotency_key) DO NOTHING",
            )
            .bind(evidence.case_number)
            .bind(evidence.method)
            .bind(evidence.idempotency_key)
            .bind(evidence.target_region)
            .bind(evidence.signer_region)
            .bind(evidence.key_id)
            .bind(evidence.signed_at)
            .bind(evidence.signature)
            .bind(evidence.message)
            .bind(evidence.received_ms)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    pub async fn signed_messages(
        &self,
        case_number: String,
    ) -> Result<Vec<SignedEvidence>, StoreError> {
        self.observed(async {
            let rows = sqlx::query(
                "SELECT case_number, method, idempotency_key, target_region, signer_region,
                    key_id, signed_at, signature, message, received_ms
                 FROM signed_messages WHERE case_number = $1 ORDER BY id",
            )
            .bind(case_number)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .iter()
                .map(|r| {
                    Ok::<_, sqlx::Error>(SignedEvidence {
                        case_number: r.try_get(0)?,
                        method: r.try_get(1)?,
                        idempotency_key: r.try_get(2)?,
                        target_region: r.try_get(3)?,
                        signer_region: r.try_get(4)?,
                        key_id: r.try_get(5)?,
                        signed_at: r.try_get(6)?,
                        signature: r.try_get(7)?,
                        message: r.try_get(8)?,
                        received_ms: r.try_get(9)?,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}
