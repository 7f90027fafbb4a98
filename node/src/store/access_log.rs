//! The access log: every lookup other regions (or this one) made of a person's data
//! held here — identity assertions and licenses — with who asked, when, and for which
//! one-thing and case. The person can read their own entries through the portal.

use rusqlite::params;

use super::database::Store;
use crate::sqlite::{StoreError, now_ms};

/// What was looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    Identity,
    License,
    HolderLicenses,
}

impl AccessKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::License => "license",
            Self::HolderLicenses => "licenses",
        }
    }
}

/// One lookup of a person's data.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AccessEntry {
    /// `identity`, `license` or `licenses`.
    pub kind: String,
    pub license_id: Option<String>,
    /// 6-digit code (or prefix) of the region that asked.
    pub requester_region: String,
    pub one_thing_id: String,
    pub case_number: String,
    pub at_ms: i64,
}

impl Store {
    /// Records one lookup of the data of the person with `holder_hash`.
    pub async fn record_access(
        &self,
        holder_hash: String,
        kind: AccessKind,
        license_id: Option<String>,
        requester_region: String,
        one_thing_id: String,
        case_number: String,
    ) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO access_log (holder_hash, kind, license_id, requester_region,
                        one_thing_id, case_number, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    holder_hash,
                    kind.as_str(),
                    license_id,
                    requester_region,
                    one_thing_id,
                    case_number,
                    now_ms()
                ])?;
                Ok(())
            })
            .await
    }

    /// The person's access log, newest first (at most `limit` entries).
    pub async fn access_log(
        &self,
        holder_hash: String,
        limit: u32,
    ) -> Result<Vec<AccessEntry>, StoreError> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT kind, license_id, requester_region, one_thing_id, case_number, at_ms
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

    /// How many lookups of this person's data were recorded (tests count issuer calls).
    pub async fn access_count(&self, holder_hash: String) -> Result<u64, StoreError> {
        self.db
            .call(move |conn| {
                Ok(conn.query_row(
                    "SELECT COUNT(*) FROM access_log WHERE holder_hash = ?1",
                    [holder_hash],
                    |r| r.get(0),
                )?)
            })
            .await
    }
}
