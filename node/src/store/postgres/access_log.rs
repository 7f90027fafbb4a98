//! The access log on PostgreSQL (see [`crate::store::access_log`]).

use sqlx::Row;

use super::{database::PgStore, database::unsigned};
use crate::db_error::StoreError;
use crate::instants::now_ms;
use crate::store::access_log::{AccessEntry, NewAccess, ReportedAccess, consent};

impl PgStore {
    pub async fn record_access(&self, access: NewAccess) -> Result<(), StoreError> {
        self.observed(async {
            let consent = access.consent.as_ref();
            sqlx::query(
                "INSERT INTO access_log (holder_hash, kind, license_id, requester_region,
                    one_thing_id, case_number, at_ms, consent_channel, consent_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&access.holder_hash)
            .bind(access.kind.as_str())
            .bind(&access.license_id)
            .bind(&access.requester_region)
            .bind(&access.one_thing_id)
            .bind(&access.case_number)
            .bind(now_ms())
            .bind(consent.map(|c| &c.channel))
            .bind(consent.map(|c| c.requested_ms))
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    /// Records reported lookups in one transaction; returns how many were new.
    pub async fn record_reported_accesses(
        &self,
        reports: Vec<ReportedAccess>,
    ) -> Result<u64, StoreError> {
        self.observed(async {
            let mut tx = self.pool.begin().await?;
            let mut added = 0u64;
            for r in reports {
                added += sqlx::query(
                    "INSERT INTO access_log (holder_hash, kind, license_id, requester_region,
                        one_thing_id, case_number, at_ms, report_id, consent_channel,
                        consent_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (report_id) DO NOTHING",
                )
                .bind(r.holder_hash)
                .bind(r.kind.as_str())
                .bind(r.license_id)
                .bind(r.requester_region)
                .bind(r.one_thing_id)
                .bind(r.case_number)
                .bind(r.at_ms)
                .bind(r.report_id)
                .bind(r.consent.as_ref().map(|c| c.channel.clone()))
                .bind(r.consent.as_ref().map(|c| c.requested_ms))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
            Ok(added)
        })
        .await
    }

    pub async fn access_log(
        &self,
        holder_hash: String,
        limit: u32,
    ) -> Result<Vec<AccessEntry>, StoreError> {
        self.observed(async {
            let rows = sqlx::query(
                "SELECT kind, license_id, requester_region, one_thing_id, case_number, at_ms,
                        consent_channel, consent_ms
                 FROM access_log WHERE holder_hash = $1 ORDER BY at_ms DESC, id DESC LIMIT $2",
            )
            .bind(holder_hash)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            let entry = |r: &sqlx::postgres::PgRow| -> Result<AccessEntry, sqlx::Error> {
                Ok(AccessEntry {
                    kind: r.try_get(0)?,
                    license_id: r.try_get(1)?,
                    requester_region: r.try_get(2)?,
                    one_thing_id: r.try_get(3)?,
                    case_number: r.try_get(4)?,
                    at_ms: r.try_get(5)?,
                    applicant_request: consent(r.try_get(6)?, r.try_get(7)?),
                })
            };
            Ok(rows.iter().map(entry).collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    pub async fn access_count(
        &self,
        holder_hash: String,
        answered_here: bool,
    ) -> Result<u64, StoreError> {
        let sql = match answered_here {
            true => "SELECT COUNT(*) FROM access_log WHERE holder_hash = $1 AND report_id IS NULL",
            false => "SELECT COUNT(*) FROM access_log WHERE holder_hash = $1",
        };
        self.observed(async {
            let count: i64 = sqlx::query_scalar(sql)
                .bind(holder_hash)
                .fetch_one(&self.pool)
                .await?;
            unsigned(count, "count")
        })
        .await
    }
}
