//! The register as the platform contract answers it: persons and licenses by the
//! holder's ID number (the `residents.id_number` column), as a province's platform keys
//! its register, rather than by the node's keyed hash; the purpose of use of each such
//! call recorded; and whether a feed cursor is one the platform gave out.

use rusqlite::OptionalExtension;
use time::format_description::well_known::Rfc3339;
use tongban_proto::{rules::calendar::BUSINESS_OFFSET, v1::AssuranceLevel};

use super::database::EmbeddedPlatform;
use crate::{
    platform::contract::{
        headers::Purpose,
        wire::{License, Person},
    },
    sqlite::{StoreError, now_ms},
};

/// An instant (Unix milliseconds) as the contract writes it: RFC 3339 in business time
/// (`2026-12-03T09:30:00.123+08:00`).
pub fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| t.to_offset(BUSINESS_OFFSET))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The contract's name of an assurance level.
pub fn level_name(level: i32) -> &'static str {
    match AssuranceLevel::try_from(level) {
        Ok(AssuranceLevel::High) => "high",
        Ok(AssuranceLevel::Substantial) => "substantial",
        _ => "low",
    }
}

/// The licenses joined with their holder, who is keyed by hash in `licenses`.
const SELECT_LICENSE: &str = "SELECT l.license_number, l.license_type, l.issuer_region,
    r.id_number, r.name, l.fields, l.valid_from, l.valid_until, l.issued_ms, l.revoked_ms,
    l.revoke_reason
    FROM licenses l JOIN residents r ON r.id_hash = l.holder_hash";

fn row_to_license(r: &rusqlite::Row<'_>) -> rusqlite::Result<License> {
    let fields: String = r.get(5)?;
    let revoked_ms: Option<i64> = r.get(9)?;
    Ok(License {
        license_id: r.get(0)?,
        license_type: r.get(1)?,
        issuing_region: r.get(2)?,
        holder_id_number: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
        holder_name: r.get(4)?,
        fields: serde_json::from_str(&fields).unwrap_or_default(),
        valid_from: r.get(6)?,
        valid_until: r.get(7)?,
        issued_at: rfc3339_ms(r.get(8)?),
        revoked_at: revoked_ms.map(rfc3339_ms),
        revocation_reason: revoked_ms.and(r.get(10)?),
    })
}

impl EmbeddedPlatform {
    /// A person of the register by ID number (normalized: upper-case check character).
    pub async fn person_by_id_number(&self, id_number: &str) -> Result<Option<Person>, StoreError> {
        let id_number = id_number.to_owned();
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id_number, name, home_region, level FROM residents
                     WHERE id_number = ?1",
                )?;
                Ok(stmt
                    .query_row([id_number], |r| {
                        Ok(Person {
                            id_number: r.get(0)?,
                            name: r.get(1)?,
                            home_region: r.get(2)?,
                            assurance_level: level_name(r.get(3)?).to_owned(),
                        })
                    })
                    .optional()?)
            })
            .await
    }

    /// A license issued here, with its holder's ID number and name.
    pub async fn license_with_holder(
        &self,
        license_id: &str,
    ) -> Result<Option<License>, StoreError> {
        let license_id = license_id.to_owned();
        self.db
            .call(move |conn| {
                let mut stmt =
                    conn.prepare_cached(&format!("{SELECT_LICENSE} WHERE l.license_number = ?1"))?;
                Ok(stmt.query_row([license_id], row_to_license).optional()?)
            })
            .await
    }

    /// Every license issued here to the holder with this ID number, by license id.
    pub async fn licenses_by_holder_id(&self, id_number: &str) -> Result<Vec<License>, StoreError> {
        let id_number = id_number.to_owned();
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "{SELECT_LICENSE} WHERE r.id_number = ?1 ORDER BY l.license_number"
                ))?;
                let rows = stmt.query_map([id_number], row_to_license)?;
                let mut out = Vec::new();
                for row in rows {
                    out.push(row?);
                }
                Ok(out)
            })
            .await
    }

    /// Records the purpose of use of a register call. `subject` is what the call was
    /// about: a masked ID number or a license id, never a plain ID number.
    pub async fn record_purpose(
        &self,
        operation: &'static str,
        purpose: &Purpose,
        subject: &str,
    ) -> Result<(), StoreError> {
        let (one_thing, case) = (purpose.one_thing_id.clone(), purpose.case_number.clone());
        let subject = subject.to_owned();
        self.db
            .call(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO purpose_log (at_ms, operation, one_thing, case_number, subject)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(rusqlite::params![
                    now_ms(),
                    operation,
                    one_thing,
                    case,
                    subject
                ])?;
                Ok(())
            })
            .await
    }

    /// The purposes recorded, newest last: (operation, one-thing, case, subject).
    pub async fn purposes(
        &self,
        limit: u32,
    ) -> Result<Vec<(String, String, String, String)>, StoreError> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT operation, one_thing, case_number, subject FROM
                     (SELECT * FROM purpose_log ORDER BY id DESC LIMIT ?1) ORDER BY id",
                )?;
                let rows = stmt.query_map([limit], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?;
                let mut out = Vec::new();
                for row in rows {
                    out.push(row?);
                }
                Ok(out)
            })
            .await
    }

    /// Reads the database once: `Err` while it cannot serve (health probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .call(|conn| {
                conn.prepare_cached("SELECT 1 FROM cases LIMIT 1")?
                    .exists([])?;
                Ok(())
            })
            .await
    }

    /// Whether `cursor` is the beginning (`""`) or a position the case-event feed gave.
    pub async fn knows_event_cursor(&self, cursor: &str) -> Result<bool, StoreError> {
        self.knows_cursor("case_events", cursor).await
    }

    /// Whether `cursor` is the beginning (`""`) or a position the revocation feed gave.
    pub async fn knows_revocation_cursor(&self, cursor: &str) -> Result<bool, StoreError> {
        self.knows_cursor("revocation_log", cursor).await
    }

    async fn knows_cursor(&self, table: &'static str, cursor: &str) -> Result<bool, StoreError> {
        if cursor.is_empty() {
            return Ok(true);
        }
        // Only canonical decimals: "007" is not a cursor the feed gave.
        let Some(id) = cursor
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0 && id.to_string() == cursor)
        else {
            return Ok(false);
        };
        self.db
            .call(move |conn| {
                let mut stmt =
                    conn.prepare_cached(&format!("SELECT 1 FROM {table} WHERE id = ?1"))?;
                Ok(stmt.exists([id])?)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_written_in_business_time() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T08:00:00+08:00");
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T08:00:01.5+08:00");
        assert_eq!(level_name(AssuranceLevel::High as i32), "high");
        assert_eq!(level_name(99), "low");
    }
}
