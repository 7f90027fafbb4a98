//! The access log on SQLite (see [`crate::store::access_log`]).

use rusqlite::params;

use super::database::SqliteStore;
use crate::db_error::StoreError;
use crate::instants::now_ms;
use crate::store::access_log::{AccessEntry, NewAccess, ReportedAccess, consent};

impl SqliteStore {
    pub async fn record_access(&self, access: NewAccess) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                let consent = access.consent.as_ref();
                conn.prepare_cached(
                    "INSERT INTO access_log (holder_hash, kind, license_id, requester_region,
                        one_thing_id, case_number, at_ms, consent_channel, consent_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    access.holder_hash,
                    access.kind.as_str(),
                    access.license_id,
                    access.requester_region,
                    access.one_thing_id,
                    access.case_number,
                    now_ms(),
                    consent.map(|c| &c.channel),
                    consent.map(|c| c.requested_ms),
                ])?;
                Ok(())
            })
            .await
    }

    /// Records reported lookups in one transaction; returns how many were new.
    pub async fn record_reported_accesses(
        &self,
        reports: Vec<ReportedAccess>,
    ) -> Result<u64, StoreError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let mut added = 0u64;
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO access_log (holder_hash, kind, license_id, requester_region,
                            one_thing_id, case_number, at_ms, report_id, consent_channel,
                            consent_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                         ON CONFLICT (report_id) DO NOTHING",
                    )?;
                    for r in reports {
                        added += insert.execute(params![
                            r.holder_hash,
                            r.kind.as_str(),
                            r.license_id,
                            r.requester_region,
                            r.one_thing_id,
                            r.case_number,
                            r.at_ms,
                            r.report_id,
                            r.consent.as_ref().map(|c| &c.channel),
                            r.consent.as_ref().map(|c| c.requested_ms),
                        ])? as u64;
                    }
                }
                tx.commit()?;
                Ok(added)
            })
            .await
    }

    pub async fn access_log(
        &self,
        holder_hash: String,
        limit: u32,
    ) -> Result<Vec<AccessEntry>, StoreError> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT kind, license_id, requester_region, one_thing_id, case_number, at_ms,
                            consent_channel, consent_ms
                     FROM access_log WHERE holder_hash = ?1 ORDER BY at_ms DESC, id DESC LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![holder_hash, limit], |r| {
                    Ok(AccessEntry {
                        kind: r.get(0)?,
                        license_id: r.get(1)?,
                        requester_region: r.get(2)?,
                        one_thing_id: r.get(3)?,
                        case_number: r.get(4)?,
                        at_ms: r.get(5)?,
                        applicant_request: consent(r.get(6)?, r.get(7)?),
                    })
                })?;
                let mut out = Vec::new();
                for row in rows {
                    out.push(row?);
                }
                Ok(out)
            })
            .await
    }

    pub async fn access_count(
        &self,
        holder_hash: String,
        answered_here: bool,
    ) -> Result<u64, StoreError> {
        let sql = match answered_here {
            true => "SELECT COUNT(*) FROM access_log WHERE holder_hash = ?1 AND report_id IS NULL",
            false => "SELECT COUNT(*) FROM access_log WHERE holder_hash = ?1",
        };
        self.db
            .call(move |conn| Ok(conn.query_row(sql, [holder_hash], |r| r.get(0))?))
            .await
    }
}
