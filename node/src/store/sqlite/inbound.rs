//! Deliveries received from other regions, remembered per (origin, idempotency key)
//! with their answer, so a replayed delivery gets the first answer and creates nothing.

use rusqlite::{OptionalExtension, params};

use super::database::SqliteStore;
use crate::db_error::StoreError;
use crate::instants::now_ms;
use tongban_runtime::observability::trace_context::TraceParent;

impl SqliteStore {
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
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT OR IGNORE INTO inbound (origin_prefix, idempotency_key, case_number,
                        payload_sha256, trace_id, response, received_ms, trace_parent,
                        applicant_home)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        origin_prefix,
                        key,
                        case_number,
                        payload_sha256,
                        trace.map(|t| t.trace_id_hex()).unwrap_or_default(),
                        response,
                        now_ms(),
                        trace.map(|t| t.to_string()),
                        applicant_home,
                    ],
                )?;
                Ok(())
            })
            .await
    }
}
