//! The outbox on PostgreSQL (see [`crate::store::outbox`]), drained by every replica of
//! the node at once.
//!
//! A replica claims the entries it attempts: [`PgStore::due_outbox`] leases them to it
//! in one short transaction, committed before any call is made, so no transaction stays
//! open across a call. Other replicas pass over leased entries until the lease ends
//! (the replica died, or an attempt outlived it): then any replica may claim the entry
//! again. Settling an entry releases its lease; a settlement that comes too late (the
//! entry was claimed again and settled by another replica) leaves it alone. A lease
//! that ends mid-attempt costs at most a second call with the same idempotency key,
//! which the receiver applies once.
//!
//! Leases count in the database's clock, not the replicas', so replicas whose clocks
//! differ still agree when one ends.

use prost::Message;
use sqlx::{PgConnection, Row, postgres::PgRow};
use tongban_proto::{contract::retry::Retry, v1::Stage};
use tongban_runtime::observability::trace_context::TraceParent;

use super::{database::PgStore, database::notify_outbox, database::unsigned};
use crate::db_error::StoreError;
use crate::instants::now_ms;
use crate::store::filing::joint_part_detail;
use crate::store::outbox::{
    BacklogRow, DeadLetter, DeadLetterAction, OutboxEntry, OutboxKind, dead_letter_detail,
    held_detail, push_key, revocation_key, revocation_target,
};

/// The advisory lock (transaction-scoped) that the replica pruning holds: one replica
/// prunes at a time, the others skip their turn.
pub(super) const PRUNE_LOCK: i64 = 0x7462_6e67_7072_756e; // "tbngprun"

/// Claims due entries: at most `$2` per target province, oldest first, leased to `$4`
/// for `$5` ms; `$1` is now on this replica's clock (retry times are set on it), `$3`
/// the entries this replica has in flight.
///
/// PostgreSQL refuses `FOR UPDATE` beside a window function, so the fairness is had the
/// other way round: the due provinces first, then each province's oldest `$2` entries
/// locked in a lateral subquery with `SKIP LOCKED`. An entry another replica is
/// claiming right now is skipped and the province's next one taken instead; one it
/// claimed after this statement began is checked again once its lock is free, and left
/// out for its lease.
const CLAIM_DUE: &str = "
WITH claimed AS (
    UPDATE outbox
    SET lease_owner = $4,
        lease_until_ms = CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT) + $5
    WHERE id IN (
        SELECT due.id
        FROM (SELECT DISTINCT substr(target_region, 1, 2) AS province FROM outbox
              WHERE state = 'pending' AND next_attempt_ms <= $1) AS provinces
        CROSS JOIN LATERAL (
            SELECT id FROM outbox
            WHERE state = 'pending'
              AND substr(target_region, 1, 2) = provinces.province
              AND next_attempt_ms <= $1
              AND (lease_until_ms IS NULL
                   OR lease_until_ms < CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT))
              AND id <> ALL($3)
            ORDER BY next_attempt_ms, id
            LIMIT $2
            FOR UPDATE SKIP LOCKED) AS due)
    RETURNING id, kind, case_number, target_region, one_thing_id, idempotency_key,
              payload, attempts, gateway_endpoint, next_attempt_ms, created_ms, replayed_ms)
SELECT c.id, c.kind, c.case_number, c.target_region, c.one_thing_id, c.idempotency_key,
       c.payload, c.attempts, c.gateway_endpoint,
       COALESCE(a.trace_parent,
                (SELECT trace_parent FROM inbound i
                 WHERE i.case_number = c.case_number AND i.trace_parent IS NOT NULL
                 LIMIT 1)),
       COALESCE(a.created_ms, c.created_ms),
       COALESCE(substr(a.applicant_masked, 1, 2),
                (SELECT applicant_home FROM inbound i
                 WHERE i.case_number = c.case_number AND i.applicant_home IS NOT NULL
                 LIMIT 1)),
       c.replayed_ms
FROM claimed c LEFT JOIN applications a ON a.case_number = c.case_number
ORDER BY c.next_attempt_ms, c.id";

/// One call to queue.
pub(super) struct NewEntry<'a> {
    pub kind: OutboxKind,
    pub case_number: &'a str,
    pub target_region: &'a str,
    pub one_thing_id: &'a str,
    pub key: &'a str,
    pub payload: &'a [u8],
    /// For [`OutboxKind::Revoke`]: the gateway replica it goes to.
    pub gateway_endpoint: Option<&'a str>,
}

impl PgStore {
    pub async fn enqueue_push(
        &self,
        case_number: String,
        origin_region: String,
        one_thing_id: String,
        request: tongban_proto::v1::PushStatusRequest,
    ) -> Result<(), StoreError> {
        let seq = request.status.as_ref().map_or(0, |s| s.sequence);
        self.transaction(async |tx| {
            let entry = NewEntry {
                kind: OutboxKind::PushStatus,
                case_number: &case_number,
                target_region: &origin_region,
                one_thing_id: &one_thing_id,
                key: &push_key(&case_number, seq),
                payload: &request.encode_to_vec(),
                gateway_endpoint: None,
            };
            insert_entry(tx, &entry, now_ms()).await?;
            Ok(())
        })
        .await
    }

    pub async fn revocation_published(&self, license_id: String) -> Result<u64, StoreError> {
        self.observed(async {
            let closed = sqlx::query(
                "UPDATE outbox SET state = 'done', done_ms = $3, attempts = attempts + 1,
                    lease_owner = NULL, lease_until_ms = NULL
                 WHERE kind = $1 AND case_number = $2 AND state = 'pending'",
            )
            .bind(OutboxKind::Revoke.as_str())
            .bind(license_id)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
            Ok(closed.rows_affected())
        })
        .await
    }

    pub async fn enqueue_revocation(
        &self,
        request: tongban_proto::v1::PublishRevocationRequest,
        endpoints: Vec<String>,
    ) -> Result<(), StoreError> {
        let payload = request.encode_to_vec();
        let now = now_ms();
        self.transaction(async |tx| {
            for endpoint in &endpoints {
                let entry = NewEntry {
                    kind: OutboxKind::Revoke,
                    case_number: &request.license_id,
                    target_region: revocation_target(&request.license_id),
                    one_thing_id: "",
                    key: &revocation_key(&request.license_id, endpoint),
                    payload: &payload,
                    gateway_endpoint: Some(endpoint),
                };
                insert_entry(tx, &entry, now).await?;
            }
            Ok(())
        })
        .await
    }

    /// Claims pending outbox entries whose next attempt is due for this replica (see
    /// the module docs), oldest first, at most `per_target` per target province,
    /// leaving out those in `in_flight` (being attempted now) and those leased to other
    /// replicas. The claim is committed when they are returned.
    pub async fn due_outbox(
        &self,
        per_target: u32,
        in_flight: Vec<i64>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.observed(async {
            let rows = sqlx::query(CLAIM_DUE)
                .bind(now_ms())
                .bind(i64::from(per_target))
                .bind(in_flight)
                .bind(&*self.replica)
                .bind(self.lease_ms)
                .fetch_all(&self.pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let kind: String = row.try_get(1)?;
                match OutboxKind::parse(&kind) {
                    Some(kind) => out.push(due_entry(row, kind)?),
                    // Claimed, so the lease holds it away from the others until it ends.
                    None => {
                        tracing::error!(id = row.try_get::<i64, _>(0)?, kind, "unknown outbox kind")
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Extends this replica's leases of `ids` (those still pending and still its own) by
    /// a whole lease from now: an attempt that runs long keeps its entry.
    pub async fn renew_outbox_leases(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        self.observed(async {
            sqlx::query(
                "UPDATE outbox
                 SET lease_until_ms = CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT) + $3
                 WHERE id = ANY($1) AND state = 'pending' AND lease_owner = $2",
            )
            .bind(ids)
            .bind(&*self.replica)
            .bind(self.lease_ms)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    /// Releases this replica's leases of `ids` (those still pending).
    pub async fn release_outbox(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        self.observed(async {
            sqlx::query(
                "UPDATE outbox SET lease_owner = NULL, lease_until_ms = NULL
                 WHERE id = ANY($1) AND state = 'pending' AND lease_owner = $2",
            )
            .bind(ids)
            .bind(&*self.replica)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    pub async fn outbox_backlog(&self) -> Result<Vec<BacklogRow>, StoreError> {
        self.observed(async {
            let rows = sqlx::query(
                "SELECT target_region,
                        COUNT(*) FILTER (WHERE state = 'pending'),
                        COUNT(*) FILTER (WHERE state = 'pending' AND attempts > 0),
                        COUNT(*) FILTER (WHERE state = 'pending'
                                          AND retry_class = 'configuration'),
                        COUNT(*) FILTER (WHERE state = 'dead'),
                        COALESCE(MIN(created_ms) FILTER (WHERE state = 'pending'), 0)
                 FROM outbox GROUP BY target_region",
            )
            .fetch_all(&self.pool)
            .await?;
            let backlog = |r: &PgRow| -> Result<BacklogRow, sqlx::Error> {
                Ok(BacklogRow {
                    target_region: r.try_get(0)?,
                    pending: r.try_get(1)?,
                    failing: r.try_get(2)?,
                    blocked: r.try_get(3)?,
                    dead: r.try_get(4)?,
                    oldest_pending_ms: r.try_get(5)?,
                })
            };
            Ok(rows.iter().map(backlog).collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    pub async fn pending_outbox(&self) -> Result<u64, StoreError> {
        self.observed(async {
            let count: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")
                    .fetch_one(&self.pool)
                    .await?;
            unsigned(count, "count")
        })
        .await
    }

    /// Schedules another attempt, keeping the class of this failure, and releases the
    /// lease. Left alone when the entry is settled or leased to another replica now.
    pub async fn outbox_retry(
        &self,
        id: i64,
        next_attempt_ms: i64,
        error: String,
        class: Retry,
    ) -> Result<(), StoreError> {
        self.observed(async {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = $2,
                    last_error = $3, retry_class = $4, lease_owner = NULL, lease_until_ms = NULL
                 WHERE id = $1 AND state = 'pending'
                   AND (lease_owner IS NULL OR lease_owner = $5)",
            )
            .bind(id)
            .bind(next_attempt_ms)
            .bind(error)
            .bind(class.as_str())
            .bind(&*self.replica)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    /// Makes an entry the receiver refused for good a dead letter. Its case stays
    /// where it was (a receipt is not taken back by a machine): the citizen reads that
    /// staff are reviewing it, until an operator replays or closes it. Left alone when
    /// the entry is settled or leased to another replica now.
    pub async fn outbox_dead(&self, id: i64, error: String) -> Result<(), StoreError> {
        self.transaction(async |tx| {
            let dead = sqlx::query(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1,
                    last_error = $2, retry_class = 'permanent', done_ms = $3,
                    lease_owner = NULL, lease_until_ms = NULL
                 WHERE id = $1 AND state = 'pending'
                   AND (lease_owner IS NULL OR lease_owner = $4)
                 RETURNING kind, case_number, idempotency_key",
            )
            .bind(id)
            .bind(error)
            .bind(now_ms())
            .bind(&*self.replica)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(dead) = dead else {
                return Ok(());
            };
            let kind: String = dead.try_get(0)?;
            if let Some(kind) = OutboxKind::parse(&kind).filter(|k| k.tells_the_citizen()) {
                let case_number = dead.try_get::<String, _>(1)?;
                let key = dead.try_get::<String, _>(2)?;
                set_detail(tx, &case_number, &key, None, held_detail(kind)).await?;
            }
            Ok(())
        })
        .await
    }

    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        self.observed(async {
            let rows = sqlx::query(
                "SELECT id, kind, case_number, target_region, one_thing_id, attempts,
                        replays, COALESCE(last_error, ''), created_ms, COALESCE(done_ms, 0)
                 FROM outbox WHERE state = 'dead' ORDER BY done_ms, id LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(dead_letter).collect()
        })
        .await
    }

    /// Replays (`close` is `None`) or closes a dead letter, with its case, at once. The
    /// entry's row is locked first, so two operators acting at once (at two replicas)
    /// act once.
    pub async fn dead_letter_action(
        &self,
        id: i64,
        close: Option<String>,
    ) -> Result<DeadLetterAction, StoreError> {
        self.transaction(async |tx| {
            let Some(row) = sqlx::query(
                "SELECT kind, case_number, state, idempotency_key FROM outbox
                     WHERE id = $1 FOR UPDATE",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            else {
                return Ok(DeadLetterAction::Unknown);
            };
            let (kind, case_number, state): (String, String, String) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            let key: String = row.try_get(3)?;
            if state != "dead" {
                return Ok(DeadLetterAction::NotDead);
            }
            let now = now_ms();
            match &close {
                None => {
                    sqlx::query(
                        "UPDATE outbox SET state = 'pending', next_attempt_ms = $2,
                            done_ms = NULL, retry_class = NULL, replays = replays + 1,
                            replayed_ms = $2, lease_owner = NULL, lease_until_ms = NULL
                         WHERE id = $1",
                    )
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    notify_outbox(tx).await?;
                }
                Some(reason) => {
                    sqlx::query(
                        "UPDATE outbox SET state = 'closed', closed_reason = $2, done_ms = $3
                         WHERE id = $1",
                    )
                    .bind(id)
                    .bind(reason)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            if let Some(kind) = OutboxKind::parse(&kind).filter(|k| k.tells_the_citizen()) {
                let (stage, detail) = dead_letter_detail(kind, close.as_deref());
                set_detail(tx, &case_number, &key, stage, &detail).await?;
            }
            Ok(DeadLetterAction::Done)
        })
        .await
    }

    /// Deletes delivered and closed entries finished before `before_ms`, and the keys
    /// of deliveries received before then, at most `limit` rows of each per call (short
    /// transactions). Returns the rows deleted. One replica prunes at a time: a replica
    /// that finds another pruning deletes nothing and returns `(0, 0)`. A delivery
    /// retried after its key is gone is still applied once: the platform is idempotent
    /// by case number.
    pub async fn prune(&self, before_ms: i64, limit: u32) -> Result<(usize, usize), StoreError> {
        self.transaction(async |tx| {
            let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(PRUNE_LOCK)
                .fetch_one(&mut *tx)
                .await?;
            if !ours {
                return Ok((0, 0));
            }
            let outbox = sqlx::query(
                "DELETE FROM outbox WHERE id IN (
                    SELECT id FROM outbox
                    WHERE state IN ('done', 'closed') AND done_ms < $1 LIMIT $2)",
            )
            .bind(before_ms)
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await?;
            let inbound = sqlx::query(
                "DELETE FROM inbound WHERE (origin_prefix, idempotency_key) IN (
                    SELECT origin_prefix, idempotency_key FROM inbound
                    WHERE received_ms < $1 LIMIT $2)",
            )
            .bind(before_ms)
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await?;
            // At most `limit` rows each, which a usize holds.
            let count = |rows: u64| usize::try_from(rows).unwrap_or(usize::MAX);
            Ok((
                count(outbox.rows_affected()),
                count(inbound.rows_affected()),
            ))
        })
        .await
    }
}

/// A claimed entry as the forwarder attempts it (the columns of [`CLAIM_DUE`]).
fn due_entry(r: &PgRow, kind: OutboxKind) -> Result<OutboxEntry, StoreError> {
    let case_number: String = r.try_get(2)?;
    let trace_parent: Option<String> = r.try_get(9)?;
    Ok(OutboxEntry {
        id: r.try_get(0)?,
        kind,
        trace: TraceParent::stored_or_for_case(trace_parent.as_deref(), &case_number),
        case_number,
        target_region: r.try_get(3)?,
        one_thing_id: r.try_get(4)?,
        idempotency_key: r.try_get(5)?,
        payload: r.try_get(6)?,
        attempts: unsigned(i64::from(r.try_get::<i32, _>(7)?), "attempts")?,
        gateway_endpoint: r.try_get(8)?,
        filed_ms: r.try_get(10)?,
        applicant_home: r.try_get(11)?,
        replayed_ms: r.try_get(12)?,
    })
}

fn dead_letter(r: &PgRow) -> Result<DeadLetter, StoreError> {
    let kind: String = r.try_get(1)?;
    Ok(DeadLetter {
        id: r.try_get(0)?,
        kind: OutboxKind::parse(&kind).map_or("unknown", OutboxKind::as_str),
        case_number: r.try_get(2)?,
        target_region: r.try_get(3)?,
        one_thing_id: r.try_get(4)?,
        attempts: unsigned(i64::from(r.try_get::<i32, _>(5)?), "attempts")?,
        replays: unsigned(i64::from(r.try_get::<i32, _>(6)?), "replays")?,
        error: r.try_get(7)?,
        queued_ms: r.try_get(8)?,
        dead_ms: r.try_get(9)?,
    })
}

/// Sets what the citizen reads about a case filed here (and its stage, if given).
async fn set_detail(
    conn: &mut PgConnection,
    case_number: &str,
    key: &str,
    stage: Option<Stage>,
    detail: &str,
) -> Result<(), StoreError> {
    // A joint case's part: the part says it, the case combines its parts (the row
    // locked, as a status report locks it).
    let parts: Option<String> =
        sqlx::query_scalar("SELECT parts FROM applications WHERE case_number = $1 FOR UPDATE")
            .bind(case_number)
            .fetch_optional(&mut *conn)
            .await?
            .flatten();
    if let Some((parts, combined)) = joint_part_detail(parts.as_deref(), key, stage, detail)? {
        sqlx::query(
            "UPDATE applications SET parts = $2, stage = $3, status_detail = $4,
                status_updated_ms = $5 WHERE case_number = $1",
        )
        .bind(case_number)
        .bind(parts)
        .bind(combined.stage)
        .bind(combined.detail)
        .bind(now_ms())
        .execute(conn)
        .await?;
        return Ok(());
    }
    sqlx::query(
        "UPDATE applications SET stage = COALESCE($2, stage), status_detail = $3,
            status_updated_ms = $4 WHERE case_number = $1",
    )
    .bind(case_number)
    .bind(stage.map(|s| s as i32))
    .bind(detail)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(())
}

/// Queues one call, in the caller's transaction, and wakes the replicas' forwarders
/// when it commits. The idempotency key is unique, so queuing the same call again (the
/// live feed and the sweep may report one status change twice, two replicas may queue
/// it at once) keeps a single entry.
pub(super) async fn insert_entry(
    conn: &mut PgConnection,
    entry: &NewEntry<'_>,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outbox (kind, case_number, target_region, one_thing_id,
            idempotency_key, payload, next_attempt_ms, created_ms, gateway_endpoint)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(entry.kind.as_str())
    .bind(entry.case_number)
    .bind(entry.target_region)
    .bind(entry.one_thing_id)
    .bind(entry.key)
    .bind(entry.payload)
    .bind(now)
    .bind(entry.gateway_endpoint)
    .execute(&mut *conn)
    .await?;
    notify_outbox(conn).await
}
