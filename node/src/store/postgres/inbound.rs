//! Deliveries received from other regions, on PostgreSQL: remembered per (origin,
//! idempotency key) with their answer; the first answer stored wins, also when two
//! replicas answer one delivery at once.

use sqlx::Row;
use tongban_runtime::observability::trace_context::TraceParent;

use super::database::PgStore;
use crate::db_error::StoreError;
use crate::instants::now_ms;

impl PgStore {
    pub async fn inbound(
        &self,
        origin_prefix: String,
        key: String,
    ) -> Result<Option<(String, String, Vec<u8>)>, StoreError> {
        self.observed(async {
            let row = sqlx::query(
                "SELECT case_number, payload_sha256, response FROM inbound
                 WHERE origin_prefix = $1 AND idempotency_key = $2",
            )
            .bind(origin_prefix)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
            Ok(row
                .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .transpose()?)
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn remember_inbound(
        &self,
        origin_prefix: String,
        key: String,
        case_number: String,
        payload_sha256: String,
        trace: Option<TraceParent>,
        applicant_home: String,
        response: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.observed(async {
            sqlx::query(
                "INSERT INTO inbound (origin_prefix, idempotency_key, case_number,
                    payload_sha256, trace_id, response, received_ms, trace_parent,
                    applicant_home)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (origin_prefix, idempotency_key) DO NOTHING",
            )
            .bind(origin_prefix)
            .bind(key)
            .bind(case_number)
            .bind(payload_sha256)
            .bind(trace.map(|t| t.trace_id_hex()).unwrap_or_default())
            .bind(response)
            .bind(now_ms())
            .bind(trace.map(|t| t.to_string()))
            .bind(applicant_home)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }
}
