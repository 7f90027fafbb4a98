//! Filing on PostgreSQL: an application gets its case number and is stored with its
//! receipt and its hand-over (an outbox entry) in one transaction. Replicas number
//! cases from one counter row per business day, and a client's request filed at two
//! replicas at once is filed once: the other gets it back as a replay.

use prost::Message;
use sqlx::{PgConnection, Row};
use tongban_proto::v1::{Application, CaseStatus, Stage};
use tongban_runtime::observability::trace_context::TraceParent;

use super::{
    database::{PgStore, unsigned},
    outbox::{NewEntry, insert_entry},
};
use crate::db_error::StoreError;
use crate::instants::{now_ms, timestamp_ms};
use crate::joint::JointCase;
use crate::store::{
    filing::{
        ACCEPTED_DETAIL, ApplicationRecord, Filed, NewFiling, OPEN_STAGES, OpenPromise,
        business_day, case_number, delivery_payload, filed_detail, filing_entries, joint_json,
        refused_detail, replayed,
    },
    outbox::OutboxKind,
};

impl PgStore {
    /// Files an application: assigns its case number, and stores it with its receipt
    /// and its outbox entry in one transaction. Returns the application as filed and
    /// its receipt.
    pub async fn file(&self, filing: NewFiling) -> Result<Filed, StoreError> {
        let NewFiling {
            mut application,
            pending_verification,
            applicant_hash,
            applicant_masked,
            forward,
            receipt,
            client_key,
            trace,
            joint,
        } = filing;
        let now = now_ms();
        self.transaction(async |tx| {
            if let Some((key, sha)) = &client_key
                && let Some(earlier) = replay_in(tx, key, sha).await?
            {
                return Ok(earlier);
            }
            if application.case_number.is_empty() {
                application.case_number = next_case_number(
                    tx,
                    &application.origin_region,
                    application.filed_at.as_ref(),
                )
                .await?;
            }
            let receipt = receipt(&application);
            // A unique client key filed by another replica since the lookup above: this
            // insert waits for that transaction and then stores nothing.
            let inserted = sqlx::query(
                "INSERT INTO applications (case_number, one_thing_id, origin_region,
                    target_region, applicant_hash, applicant_masked, payload, receipt,
                    stage, status_detail, status_seq, status_updated_ms, created_ms,
                    client_key, client_request_sha, trace_parent, parts)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $11, $12, $13, $14,
                    $15)
                 ON CONFLICT (client_key) DO NOTHING",
            )
            .bind(&application.case_number)
            .bind(&application.one_thing_id)
            .bind(&application.origin_region)
            .bind(&application.target_region)
            .bind(applicant_hash)
            .bind(applicant_masked)
            .bind(application.encode_to_vec())
            .bind(&receipt)
            .bind(Stage::Submitted as i32)
            .bind(filed_detail(pending_verification))
            .bind(now)
            .bind(client_key.as_ref().map(|(k, _)| k))
            .bind(client_key.as_ref().map(|(_, s)| s))
            .bind(trace.map(|t| t.to_string()))
            .bind(joint.as_ref().map(joint_json))
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                // Only the client key can have conflicted (no other target is named):
                // another replica filed the request since the lookup above, and this
                // insert waited for it to commit. This statement sees that filing; the
                // case number reserved here becomes a gap.
                let (key, sha) = client_key
                    .as_ref()
                    .ok_or(StoreError::Postgres(sqlx::Error::RowNotFound))?;
                return replay_in(tx, key, sha)
                    .await?
                    .ok_or(StoreError::Postgres(sqlx::Error::RowNotFound));
            }
            // Either way the hand-over is an outbox entry written with the receipt, so a
            // crash right after the receipt cannot lose the case.
            let entries =
                filing_entries(pending_verification, forward, &application, joint.as_ref());
            insert_hand_overs(tx, &entries, now).await?;
            Ok(Filed {
                application,
                receipt,
                replayed: false,
            })
        })
        .await
    }

    pub async fn client_replay(
        &self,
        key: String,
        sha: String,
    ) -> Result<Option<Filed>, StoreError> {
        self.observed(async {
            let mut conn = self.pool.acquire().await?;
            replay_in(&mut conn, &key, &sha).await
        })
        .await
    }

    pub async fn reserve_case_number(
        &self,
        origin_region: String,
        filed_at: Option<prost_types::Timestamp>,
    ) -> Result<String, StoreError> {
        self.observed(async {
            let mut conn = self.pool.acquire().await?;
            next_case_number(&mut conn, &origin_region, filed_at.as_ref()).await
        })
        .await
    }

    /// Ends the pre-review of a waiting case: its application and receipt as verified
    /// now, its hand-over queued, its verification entry done, in one transaction.
    /// Nothing happens when the verification entry is no longer pending: another
    /// replica (whose lease this one's outlived) ended the pre-review already.
    pub async fn complete_verification(
        &self,
        outbox_id: i64,
        application: Application,
        receipt: String,
        forward: bool,
        joint: Option<JointCase>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        self.transaction(async |tx| {
            if !finish_entry(tx, outbox_id, now, None).await? {
                return Ok(());
            }
            sqlx::query(
                "UPDATE applications SET payload = $2, receipt = $3, stage = $4,
                    status_detail = $5, status_updated_ms = $6, parts = $7
                 WHERE case_number = $1",
            )
            .bind(&application.case_number)
            .bind(application.encode_to_vec())
            .bind(receipt)
            .bind(Stage::Submitted as i32)
            .bind(ACCEPTED_DETAIL)
            .bind(now)
            .bind(joint.as_ref().map(joint_json))
            .execute(&mut *tx)
            .await?;
            let entries = filing_entries(false, forward, &application, joint.as_ref());
            insert_hand_overs(tx, &entries, now).await?;
            Ok(())
        })
        .await
    }

    /// Ends the pre-review of a waiting case with a refusal the citizen sees (nothing
    /// happens when another replica ended it already).
    pub async fn refuse_after_verification(
        &self,
        outbox_id: i64,
        case_number: String,
        reason: String,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        self.transaction(async |tx| {
            if !finish_entry(tx, outbox_id, now, Some(&reason)).await? {
                return Ok(());
            }
            sqlx::query(
                "UPDATE applications SET stage = $2, status_detail = $3, status_updated_ms = $4
                 WHERE case_number = $1",
            )
            .bind(case_number)
            .bind(Stage::Rejected as i32)
            .bind(refused_detail(&reason))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
        .await
    }

    pub async fn open_promises(&self) -> Result<Vec<OpenPromise>, StoreError> {
        self.observed(async {
            let rows = sqlx::query(
                "SELECT case_number, one_thing_id, target_region,
                        COALESCE(receipt::jsonb ->> 'promised_date', '')
                 FROM applications WHERE stage BETWEEN $1 AND $2",
            )
            .bind(OPEN_STAGES[0])
            .bind(OPEN_STAGES[1])
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(OpenPromise {
                        case_number: r.try_get(0)?,
                        one_thing_id: r.try_get(1)?,
                        target_region: r.try_get(2)?,
                        promised_date: r.try_get(3)?,
                    })
                })
                .collect()
        })
        .await
    }

    pub async fn application(
        &self,
        case_number: String,
    ) -> Result<Option<ApplicationRecord>, StoreError> {
        self.observed(async {
            let row = sqlx::query(
                "SELECT case_number, one_thing_id, origin_region, target_region,
                        applicant_masked, payload, receipt, stage, status_detail,
                        status_seq, status_updated_ms, handling_reference, created_ms,
                        trace_parent, parts
                 FROM applications WHERE case_number = $1",
            )
            .bind(case_number)
            .fetch_optional(&self.pool)
            .await?;
            let Some(r) = row else {
                return Ok(None);
            };
            let case_number: String = r.try_get(0)?;
            let trace_parent: Option<String> = r.try_get(13)?;
            Ok(Some(ApplicationRecord {
                one_thing_id: r.try_get(1)?,
                origin_region: r.try_get(2)?,
                target_region: r.try_get(3)?,
                applicant_masked: r.try_get(4)?,
                payload: r.try_get(5)?,
                receipt: r.try_get(6)?,
                status: CaseStatus {
                    stage: r.try_get(7)?,
                    detail: r.try_get(8)?,
                    sequence: unsigned(r.try_get(9)?, "status_seq")?,
                    updated_at: Some(timestamp_ms(r.try_get(10)?)),
                },
                handling_reference: r.try_get(11)?,
                created_ms: r.try_get(12)?,
                trace: TraceParent::stored_or_for_case(trace_parent.as_deref(), &case_number),
                joint: r.try_get(14)?,
                case_number,
            }))
        })
        .await
    }
}

/// Queues the outbox entries that carry an application (hand-overs, a verification),
/// each of its kind under its key.
pub(super) async fn insert_hand_overs(
    conn: &mut PgConnection,
    entries: &[(OutboxKind, String, Application)],
    now: i64,
) -> Result<(), StoreError> {
    for (kind, key, application) in entries {
        let payload = delivery_payload(application);
        let entry = NewEntry {
            kind: *kind,
            case_number: &application.case_number,
            target_region: &application.target_region,
            one_thing_id: &application.one_thing_id,
            key,
            payload: &payload,
            gateway_endpoint: None,
        };
        insert_entry(conn, &entry, now).await?;
    }
    Ok(())
}

/// Marks a verification entry done (with the refusal, if any) and releases its lease;
/// false when it is not pending any more.
async fn finish_entry(
    conn: &mut PgConnection,
    outbox_id: i64,
    now: i64,
    refusal: Option<&str>,
) -> Result<bool, StoreError> {
    let finished = sqlx::query(
        "UPDATE outbox SET state = 'done', done_ms = $2, attempts = attempts + 1,
            last_error = COALESCE($3, last_error), lease_owner = NULL, lease_until_ms = NULL
         WHERE id = $1 AND state = 'pending'",
    )
    .bind(outbox_id)
    .bind(now)
    .bind(refusal)
    .execute(conn)
    .await?;
    Ok(finished.rows_affected() > 0)
}

/// The filing made earlier under a client's key, if the request is the same one.
async fn replay_in(
    conn: &mut PgConnection,
    key: &str,
    sha: &str,
) -> Result<Option<Filed>, StoreError> {
    let earlier = sqlx::query(
        "SELECT payload, receipt, client_request_sha FROM applications WHERE client_key = $1",
    )
    .bind(key)
    .fetch_optional(conn)
    .await?;
    let Some(r) = earlier else {
        return Ok(None);
    };
    let payload: Vec<u8> = r.try_get(0)?;
    let first_sha: Option<String> = r.try_get(2)?;
    replayed(key, sha, first_sha.as_deref(), &payload, r.try_get(1)?).map(Some)
}

/// The next case number of `origin_region` for the business day of `filed_at`. The
/// upsert locks the day's row until the transaction ends, so replicas numbering at once
/// take turns and never get the same number.
async fn next_case_number(
    conn: &mut PgConnection,
    origin_region: &str,
    filed_at: Option<&prost_types::Timestamp>,
) -> Result<String, StoreError> {
    let day = business_day(filed_at);
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO case_counter (day, next) VALUES ($1, 2)
         ON CONFLICT (day) DO UPDATE SET next = case_counter.next + 1
         RETURNING next - 1",
    )
    .bind(&day)
    .fetch_one(conn)
    .await?;
    Ok(case_number(origin_region, &day, seq))
}
