//! The outbox on SQLite (see [`crate::store::outbox`]): one node process drains it, so
//! an entry is due to whoever asks; the forwarder leaves out those in flight.

use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};
use tongban_proto::{contract::retry::Retry, v1::Stage};
use tongban_runtime::observability::trace_context::TraceParent;

use super::database::SqliteStore;
use crate::db_error::StoreError;
use crate::instants::now_ms;
use crate::store::filing::joint_part_detail;
use crate::store::outbox::{
    BacklogRow, DeadLetter, DeadLetterAction, OutboxEntry, OutboxKind, dead_letter_detail,
    held_detail, push_key, revocation_key, revocation_target,
};

impl SqliteStore {
    pub async fn enqueue_push(
        &self,
        case_number: String,
        origin_region: String,
        one_thing_id: String,
        request: tongban_proto::v1::PushStatusRequest,
    ) -> Result<(), StoreError> {
        let seq = request.status.as_ref().map_or(0, |s| s.sequence);
        self.db
            .call(move |conn| {
                insert_outbox(
                    conn,
                    OutboxKind::PushStatus,
                    &case_number,
                    &origin_region,
                    &one_thing_id,
                    &push_key(&case_number, seq),
                    &request.encode_to_vec(),
                    now_ms(),
                )?;
                Ok(())
            })
            .await
    }

    pub async fn revocation_published(&self, license_id: String) -> Result<u64, StoreError> {
        self.db
            .call(move |conn| {
                let closed = conn.execute(
                    "UPDATE outbox SET state = 'done', done_ms = ?3, attempts = attempts + 1
                     WHERE kind = ?1 AND case_number = ?2 AND state = 'pending'",
                    params![OutboxKind::Revoke.as_str(), license_id, now_ms()],
                )?;
                Ok(closed as u64)
            })
            .await
    }

    pub async fn enqueue_revocation(
        &self,
        request: tongban_proto::v1::PublishRevocationRequest,
        endpoints: Vec<String>,
    ) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let payload = request.encode_to_vec();
                let now = now_ms();
                for endpoint in &endpoints {
                    tx.execute(
                        "INSERT OR IGNORE INTO outbox (kind, case_number, target_region,
                            one_thing_id, idempotency_key, payload, next_attempt_ms,
                            created_ms, gateway_endpoint)
                         VALUES (?1, ?2, ?3, '', ?4, ?5, ?6, ?6, ?7)",
                        params![
                            OutboxKind::Revoke.as_str(),
                            request.license_id,
                            revocation_target(&request.license_id),
                            revocation_key(&request.license_id, endpoint),
                            payload,
                            now,
                            endpoint
                        ],
                    )?;
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    /// Pending outbox entries whose next attempt is due, oldest first, at most
    /// `per_target` per target province, leaving out those in `in_flight` (being
    /// attempted now).
    pub async fn due_outbox(
        &self,
        per_target: u32,
        in_flight: Vec<i64>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let in_flight = serde_json::to_string(&in_flight).unwrap_or_else(|_| "[]".into());
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, kind, case_number, target_region, one_thing_id,
                            idempotency_key, payload, attempts, gateway_endpoint,
                            COALESCE(
                                (SELECT trace_parent FROM applications a
                                 WHERE a.case_number = outbox.case_number),
                                (SELECT trace_parent FROM inbound i
                                 WHERE i.case_number = outbox.case_number
                                   AND i.trace_parent IS NOT NULL LIMIT 1)),
                            COALESCE(
                                (SELECT created_ms FROM applications a
                                 WHERE a.case_number = outbox.case_number),
                                created_ms),
                            COALESCE(
                                (SELECT substr(applicant_masked, 1, 2) FROM applications a
                                 WHERE a.case_number = outbox.case_number),
                                (SELECT applicant_home FROM inbound i
                                 WHERE i.case_number = outbox.case_number
                                   AND i.applicant_home IS NOT NULL LIMIT 1)),
                            replayed_ms
                     FROM outbox WHERE id IN (
                        SELECT id FROM (
                            SELECT id, ROW_NUMBER() OVER (
                                PARTITION BY substr(target_region, 1, 2) ORDER BY next_attempt_ms, id) AS rank
                            FROM outbox
                            WHERE state = 'pending' AND next_attempt_ms <= ?1
                              AND id NOT IN (SELECT value FROM json_each(?3)))
                        WHERE rank <= ?2)
                     ORDER BY next_attempt_ms, id",
                )?;
                let rows = stmt.query_map(params![now_ms(), per_target, in_flight], |r| {
                    let kind: String = r.get(1)?;
                    let case_number: String = r.get(2)?;
                    let trace = TraceParent::stored_or_for_case(
                        r.get::<_, Option<String>>(9)?.as_deref(),
                        &case_number,
                    );
                    Ok((
                        kind,
                        OutboxEntry {
                            id: r.get(0)?,
                            kind: OutboxKind::Deliver,
                            case_number,
                            target_region: r.get(3)?,
                            one_thing_id: r.get(4)?,
                            idempotency_key: r.get(5)?,
                            payload: r.get(6)?,
                            attempts: r.get(7)?,
                            gateway_endpoint: r.get(8)?,
                            trace,
                            filed_ms: r.get(10)?,
                            applicant_home: r.get(11)?,
                            replayed_ms: r.get(12)?,
                        },
                    ))
                })?;
                let mut out = Vec::new();
                for row in rows {
                    let (kind, mut entry) = row?;
                    match OutboxKind::parse(&kind) {
                        Some(k) => {
                            entry.kind = k;
                            out.push(entry);
                        }
                        None => tracing::error!(id = entry.id, kind, "unknown outbox kind"),
                    }
                }
                Ok(out)
            })
            .await
    }

    pub async fn outbox_backlog(&self) -> Result<Vec<BacklogRow>, StoreError> {
        self.db
            .call(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT target_region,
                            SUM(state = 'pending'),
                            SUM(state = 'pending' AND attempts > 0),
                            SUM(state = 'pending' AND IFNULL(retry_class, '') = 'configuration'),
                            SUM(state = 'dead'),
                            COALESCE(MIN(CASE WHEN state = 'pending' THEN created_ms END), 0)
                     FROM outbox GROUP BY target_region",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok(BacklogRow {
                        target_region: r.get(0)?,
                        pending: r.get(1)?,
                        failing: r.get(2)?,
                        blocked: r.get(3)?,
                        dead: r.get(4)?,
                        oldest_pending_ms: r.get(5)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    pub async fn pending_outbox(&self) -> Result<u64, StoreError> {
        self.db
            .call(|conn| {
                Ok(conn.query_row(
                    "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
    }

    pub async fn outbox_retry(
        &self,
        id: i64,
        next_attempt_ms: i64,
        error: String,
        class: Retry,
    ) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                conn.execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?2,
                        last_error = ?3, retry_class = ?4 WHERE id = ?1",
                    params![id, next_attempt_ms, error, class.as_str()],
                )?;
                Ok(())
            })
            .await
    }

    pub async fn outbox_dead(&self, id: i64, error: String) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let (kind, case_number, key): (String, String, String) = tx.query_row(
                    "SELECT kind, case_number, idempotency_key FROM outbox WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
                tx.execute(
                    "UPDATE outbox SET state = 'dead', attempts = attempts + 1,
                        last_error = ?2, retry_class = 'permanent', done_ms = ?3
                     WHERE id = ?1",
                    params![id, error, now_ms()],
                )?;
                if let Some(kind) = OutboxKind::parse(&kind).filter(|k| k.tells_the_citizen()) {
                    set_detail(&tx, &case_number, &key, None, held_detail(kind))?;
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, kind, case_number, target_region, one_thing_id, attempts,
                            replays, COALESCE(last_error, ''), created_ms, COALESCE(done_ms, 0)
                     FROM outbox WHERE state = 'dead' ORDER BY done_ms, id LIMIT ?1",
                )?;
                let rows = stmt.query_map([limit], |r| {
                    let kind: String = r.get(1)?;
                    Ok(DeadLetter {
                        id: r.get(0)?,
                        kind: OutboxKind::parse(&kind).map_or("unknown", OutboxKind::as_str),
                        case_number: r.get(2)?,
                        target_region: r.get(3)?,
                        one_thing_id: r.get(4)?,
                        attempts: r.get(5)?,
                        replays: r.get(6)?,
                        error: r.get(7)?,
                        queued_ms: r.get(8)?,
                        dead_ms: r.get(9)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    /// Replays (`close` is `None`) or closes a dead letter, with its case, at once.
    pub async fn dead_letter_action(
        &self,
        id: i64,
        close: Option<String>,
    ) -> Result<DeadLetterAction, StoreError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let Some((kind, case_number, state, key)): Option<(String, String, String, String)> =
                    tx.query_row(
                        "SELECT kind, case_number, state, idempotency_key FROM outbox WHERE id = ?1",
                        [id],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                    )
                    .optional()?
                else {
                    return Ok(DeadLetterAction::Unknown);
                };
                if state != "dead" {
                    return Ok(DeadLetterAction::NotDead);
                }
                let now = now_ms();
                match &close {
                    None => {
                        tx.execute(
                            "UPDATE outbox SET state = 'pending', next_attempt_ms = ?2,
                                done_ms = NULL, retry_class = NULL, replays = replays + 1,
                                replayed_ms = ?2
                             WHERE id = ?1",
                            params![id, now],
                        )?;
                    }
                    Some(reason) => {
                        tx.execute(
                            "UPDATE outbox SET state = 'closed', closed_reason = ?2,
                                done_ms = ?3 WHERE id = ?1",
                            params![id, reason, now],
                        )?;
                    }
                }
                if let Some(kind) = OutboxKind::parse(&kind).filter(|k| k.tells_the_citizen()) {
                    let (stage, detail) = dead_letter_detail(kind, close.as_deref());
                    set_detail(&tx, &case_number, &key, stage, &detail)?;
                }
                tx.commit()?;
                Ok(DeadLetterAction::Done)
            })
            .await
    }

    /// Deletes delivered and closed entries finished before `before_ms`, and the keys
    /// of deliveries received before then, at most `limit` rows of each per call (so a
    /// long backlog of old rows does not hold the connection). Returns the rows
    /// deleted. A delivery retried after its key is gone is still applied once: the
    /// platform is idempotent by case number.
    pub async fn prune(&self, before_ms: i64, limit: u32) -> Result<(usize, usize), StoreError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let outbox = tx.execute(
                    "DELETE FROM outbox WHERE id IN (
                        SELECT id FROM outbox
                        WHERE state IN ('done', 'closed') AND done_ms < ?1 LIMIT ?2)",
                    params![before_ms, limit],
                )?;
                let inbound = tx.execute(
                    "DELETE FROM inbound WHERE rowid IN (
                        SELECT rowid FROM inbound WHERE received_ms < ?1 LIMIT ?2)",
                    params![before_ms, limit],
                )?;
                tx.commit()?;
                Ok((outbox, inbound))
            })
            .await
    }
}

/// Sets what the citizen reads about a case filed here (and its stage, if given).
fn set_detail(
    tx: &rusqlite::Transaction<'_>,
    case_number: &str,
    key: &str,
    stage: Option<Stage>,
    detail: &str,
) -> Result<(), StoreError> {
    // A joint case's part: the part says it, the case combines its parts.
    let parts: Option<String> = tx
        .query_row(
            "SELECT parts FROM applications WHERE case_number = ?1",
            [case_number],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    if let Some((parts, combined)) = joint_part_detail(parts.as_deref(), key, stage, detail)? {
        tx.execute(
            "UPDATE applications SET parts = ?2, stage = ?3, status_detail = ?4,
                status_updated_ms = ?5 WHERE case_number = ?1",
            params![
                case_number,
                parts,
                combined.stage,
                combined.detail,
                now_ms()
            ],
        )?;
        return Ok(());
    }
    tx.execute(
        "UPDATE applications SET stage = COALESCE(?2, stage), status_detail = ?3,
            status_updated_ms = ?4 WHERE case_number = ?1",
        params![case_number, stage.map(|s| s as i32), detail, now_ms()],
    )?;
    Ok(())
}

/// Queues one call. The idempotency key is unique, so queuing the same call again (the
/// live feed and the sweep may report one status change twice) keeps a single entry.
#[allow(clippy::too_many_arguments)]
pub(super) fn insert_outbox(
    conn: &Connection,
    kind: OutboxKind,
    case_number: &str,
    target_region: &str,
    one_thing_id: &str,
    key: &str,
    payload: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR IGNORE INTO outbox (kind, case_number, target_region, one_thing_id,
            idempotency_key, payload, next_attempt_ms, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        params![
            kind.as_str(),
            case_number,
            target_region,
            one_thing_id,
            key,
            payload,
            now
        ],
    )?;
    Ok(())
}
