//! The embedded platform's feeds: every status change of a case and every revocation,
//! in the order they were made, each at a cursor (its row id, in decimal) from which a
//! reader resumes. A change and its event are written in one transaction, so the feed
//! misses none.

use tongban_proto::v1::Stage;

use super::database::EmbeddedPlatform;
use crate::{
    platform::{
        adapter::{CaseEvent, EventPage, PlatformCase, PlatformError},
        contract::wire::MAX_PAGE,
        register::{PlatformRevocation, RevocationPage},
    },
    sqlite::{StoreError, timestamp_ms},
};

/// Appends `case`'s new state to the feed, with the stage it left.
pub(super) fn record_event(
    tx: &rusqlite::Transaction<'_>,
    case: &PlatformCase,
    previous: Option<Stage>,
) -> Result<(), StoreError> {
    let at_ms = case
        .status
        .updated_at
        .as_ref()
        .map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000));
    tx.prepare_cached(
        "INSERT INTO case_events (case_number, previous_stage, stage, detail, sequence, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(rusqlite::params![
        case.case_number,
        previous.map(|s| s as i32),
        case.status.stage,
        case.status.detail,
        case.status.sequence as i64,
        at_ms
    ])?;
    Ok(())
}

/// Appends a revocation to the feed (the first one of a license only).
pub(super) fn record_revocation(
    tx: &rusqlite::Transaction<'_>,
    license_number: &str,
    reason: &str,
    revoked_ms: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO revocation_log (license_number, reason, revoked_ms)
         VALUES (?1, ?2, ?3)",
    )?
    .execute(rusqlite::params![license_number, reason, revoked_ms])?;
    Ok(())
}

/// A cursor's row id: `""` is the beginning; anything else must be a row id we gave.
fn parse_cursor(cursor: &str) -> Result<i64, PlatformError> {
    if cursor.is_empty() {
        return Ok(0);
    }
    cursor
        .parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| PlatformError::Contract(format!("unknown cursor {cursor:?}")))
}

/// Where a page of either feed ends: its last item's cursor (the one asked after, for
/// an empty page), and whether more may follow (the page is full).
fn page_end<T>(
    items: &[T],
    asked: &str,
    limit: u32,
    cursor: impl Fn(&T) -> &String,
) -> (String, bool) {
    let next = items
        .last()
        .map_or_else(|| asked.to_owned(), |i| cursor(i).clone());
    (next, items.len() as u32 == limit)
}

impl EmbeddedPlatform {
    /// Status changes after `cursor`, oldest first, at most `limit` (capped at 1000).
    pub async fn case_events_after(
        &self,
        cursor: &str,
        limit: u32,
    ) -> Result<EventPage, PlatformError> {
        let after = parse_cursor(cursor)?;
        let limit = limit.clamp(1, MAX_PAGE);
        let prefix = self.prefix.clone();
        let events = self
            .db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT e.id, c.id, e.case_number, c.one_thing_id, c.origin_region,
                            e.stage, e.detail, e.sequence, e.at_ms, e.previous_stage
                     FROM case_events e JOIN cases c ON c.case_number = e.case_number
                     WHERE e.id > ?1 ORDER BY e.id LIMIT ?2",
                )?;
                let rows = stmt.query_map(rusqlite::params![after, limit], |r| {
                    let id: i64 = r.get(0)?;
                    let case_id: i64 = r.get(1)?;
                    let at_ms: i64 = r.get(8)?;
                    let previous: Option<i32> = r.get(9)?;
                    Ok(CaseEvent {
                        cursor: id.to_string(),
                        case: PlatformCase {
                            reference: format!("{prefix}P{case_id:010}"),
                            case_number: r.get(2)?,
                            one_thing_id: r.get(3)?,
                            origin_region: r.get(4)?,
                            status: tongban_proto::v1::CaseStatus {
                                stage: r.get(5)?,
                                detail: r.get(6)?,
                                sequence: r.get::<_, i64>(7)? as u64,
                                updated_at: Some(timestamp_ms(at_ms)),
                            },
                        },
                        previous: previous.and_then(|p| Stage::try_from(p).ok()),
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
        let (next_cursor, more) = page_end(&events, cursor, limit, |e| &e.cursor);
        Ok(EventPage {
            events,
            next_cursor,
            more,
        })
    }

    /// Revocations after `cursor`, oldest first, at most `limit` (capped at 1000).
    pub async fn revocation_log_after(
        &self,
        cursor: &str,
        limit: u32,
    ) -> Result<RevocationPage, PlatformError> {
        let after = parse_cursor(cursor)?;
        let limit = limit.clamp(1, MAX_PAGE);
        let revocations = self
            .db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, license_number, reason, revoked_ms FROM revocation_log
                     WHERE id > ?1 ORDER BY id LIMIT ?2",
                )?;
                let rows = stmt.query_map(rusqlite::params![after, limit], |r| {
                    Ok(PlatformRevocation {
                        cursor: r.get::<_, i64>(0)?.to_string(),
                        license_id: r.get(1)?,
                        reason: r.get(2)?,
                        revoked_ms: r.get(3)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
        let (next_cursor, more) = page_end(&revocations, cursor, limit, |r| &r.cursor);
        Ok(RevocationPage {
            revocations,
            next_cursor,
            more,
        })
    }
}
