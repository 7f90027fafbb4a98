//! Filing on SQLite: an application gets its case number and is stored with its
//! receipt and its hand-over (an outbox entry) in one transaction; the case counter
//! numbers cases per business day.

use prost::Message;
use rusqlite::{OptionalExtension, params};
use tongban_proto::v1::{Application, CaseStatus, Stage};
use tongban_runtime::observability::trace_context::TraceParent;

use super::{database::SqliteStore, outbox::insert_outbox};
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

impl SqliteStore {
    /// Files an application: assigns its case number, and stores it with its receipt
    /// and its outbox entry in one transaction. Returns the application as filed and
    /// its receipt.
    pub async fn file(&self, filing: NewFiling) -> Result<Filed, StoreError> {
        self.db
            .call(move |conn| {
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
                let tx = conn.transaction()?;
                if let Some((key, sha)) = &client_key
                    && let Some(earlier) = replay_tx(&tx, key, sha)?
                {
                    return Ok(earlier);
                }
                if application.case_number.is_empty() {
                    application.case_number = next_case_number(
                        &tx,
                        &application.origin_region,
                        application.filed_at.as_ref(),
                    )?;
                }
                let payload = application.encode_to_vec();
                let receipt = receipt(&application);
                tx.execute(
                    "INSERT INTO applications (case_number, one_thing_id, origin_region,
                        target_region, applicant_hash, applicant_masked, payload, receipt,
                        stage, status_detail, status_seq, status_updated_ms, created_ms,
                        client_key, client_request_sha, trace_parent, parts)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11, ?11, ?12, ?13, ?14,
                        ?15)",
                    params![
                        application.case_number,
                        application.one_thing_id,
                        application.origin_region,
                        application.target_region,
                        applicant_hash,
                        applicant_masked,
                        payload,
                        receipt,
                        Stage::Submitted as i32,
                        filed_detail(pending_verification),
                        now,
                        client_key.as_ref().map(|(k, _)| k),
                        client_key.as_ref().map(|(_, s)| s),
                        trace.map(|t| t.to_string()),
                        joint.as_ref().map(joint_json),
                    ],
                )?;
                // Either way the hand-over is an outbox entry written with the receipt,
                // so a crash right after the receipt cannot lose the case.
                for (kind, key, entry) in
                    filing_entries(pending_verification, forward, &application, joint.as_ref())
                {
                    insert_hand_over(&tx, kind, &key, &entry, now)?;
                }
                tx.commit()?;
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
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                replay_tx(&tx, &key, &sha)
            })
            .await
    }

    pub async fn reserve_case_number(
        &self,
        origin_region: String,
        filed_at: Option<prost_types::Timestamp>,
    ) -> Result<String, StoreError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let number = next_case_number(&tx, &origin_region, filed_at.as_ref())?;
                tx.commit()?;
                Ok(number)
            })
            .await
    }

    pub async fn complete_verification(
        &self,
        outbox_id: i64,
        application: Application,
        receipt: String,
        forward: bool,
        joint: Option<JointCase>,
    ) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                let now = now_ms();
                let tx = conn.transaction()?;
                tx.execute(
                    "UPDATE applications SET payload = ?2, receipt = ?3, stage = ?4,
                        status_detail = ?5, status_updated_ms = ?6, parts = ?7
                     WHERE case_number = ?1",
                    params![
                        application.case_number,
                        application.encode_to_vec(),
                        receipt,
                        Stage::Submitted as i32,
                        ACCEPTED_DETAIL,
                        now,
                        joint.as_ref().map(joint_json),
                    ],
                )?;
                tx.execute(
                    "UPDATE outbox SET state = 'done', done_ms = ?2, attempts = attempts + 1
                     WHERE id = ?1",
                    params![outbox_id, now],
                )?;
                for (kind, key, entry) in
                    filing_entries(false, forward, &application, joint.as_ref())
                {
                    insert_hand_over(&tx, kind, &key, &entry, now)?;
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    pub async fn refuse_after_verification(
        &self,
        outbox_id: i64,
        case_number: String,
        reason: String,
    ) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                let now = now_ms();
                let tx = conn.transaction()?;
                tx.execute(
                    "UPDATE applications SET stage = ?2, status_detail = ?3, status_updated_ms = ?4
                     WHERE case_number = ?1",
                    params![
                        case_number,
                        Stage::Rejected as i32,
                        refused_detail(&reason),
                        now
                    ],
                )?;
                tx.execute(
                    "UPDATE outbox SET state = 'done', done_ms = ?2, attempts = attempts + 1,
                        last_error = ?3 WHERE id = ?1",
                    params![outbox_id, now, reason],
                )?;
                tx.commit()?;
                Ok(())
            })
            .await
    }

    pub async fn open_promises(&self) -> Result<Vec<OpenPromise>, StoreError> {
        self.db
            .call(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT case_number, one_thing_id, target_region,
                            IFNULL(json_extract(receipt, '$.promised_date'), '')
                     FROM applications WHERE stage BETWEEN ?1 AND ?2",
                )?;
                let rows = stmt.query_map(OPEN_STAGES, |r| {
                    Ok(OpenPromise {
                        case_number: r.get(0)?,
                        one_thing_id: r.get(1)?,
                        target_region: r.get(2)?,
                        promised_date: r.get(3)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    pub async fn application(
        &self,
        case_number: String,
    ) -> Result<Option<ApplicationRecord>, StoreError> {
        self.db
            .call(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT case_number, one_thing_id, origin_region, target_region,
                                applicant_masked, payload, receipt, stage, status_detail,
                                status_seq, status_updated_ms, handling_reference, created_ms,
                                trace_parent, parts
                         FROM applications WHERE case_number = ?1",
                        [case_number],
                        |r| {
                            let updated_ms: i64 = r.get(10)?;
                            Ok(ApplicationRecord {
                                case_number: r.get(0)?,
                                one_thing_id: r.get(1)?,
                                origin_region: r.get(2)?,
                                target_region: r.get(3)?,
                                applicant_masked: r.get(4)?,
                                payload: r.get(5)?,
                                receipt: r.get(6)?,
                                status: CaseStatus {
                                    stage: r.get(7)?,
                                    detail: r.get(8)?,
                                    sequence: r.get(9)?,
                                    updated_at: Some(timestamp_ms(updated_ms)),
                                },
                                handling_reference: r.get(11)?,
                                created_ms: r.get(12)?,
                                trace: TraceParent::stored_or_for_case(
                                    r.get::<_, Option<String>>(13)?.as_deref(),
                                    &r.get::<_, String>(0)?,
                                ),
                                joint: r.get(14)?,
                            })
                        },
                    )
                    .optional()?)
            })
            .await
    }
}

/// The filing made earlier under a client's key, if the request is the same one.
fn replay_tx(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    sha: &str,
) -> Result<Option<Filed>, StoreError> {
    let earlier: Option<(Vec<u8>, String, Option<String>)> = tx
        .query_row(
            "SELECT payload, receipt, client_request_sha FROM applications WHERE client_key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    earlier
        .map(|(payload, receipt, first_sha)| {
            replayed(key, sha, first_sha.as_deref(), &payload, receipt)
        })
        .transpose()
}

/// The next case number of `origin_region` for the business day of `filed_at`.
fn next_case_number(
    tx: &rusqlite::Transaction<'_>,
    origin_region: &str,
    filed_at: Option<&prost_types::Timestamp>,
) -> Result<String, StoreError> {
    let day = business_day(filed_at);
    let seq: i64 = tx.query_row(
        "INSERT INTO case_counter (day, next) VALUES (?1, 2)
         ON CONFLICT (day) DO UPDATE SET next = next + 1
         RETURNING next - 1",
        [&day],
        |r| r.get(0),
    )?;
    Ok(case_number(origin_region, &day, seq))
}

/// Queues the outbox entry of `kind` under `key` that carries `application` (a
/// hand-over or a verification).
pub(super) fn insert_hand_over(
    tx: &rusqlite::Connection,
    kind: OutboxKind,
    key: &str,
    application: &Application,
    now: i64,
) -> Result<(), StoreError> {
    insert_outbox(
        tx,
        kind,
        &application.case_number,
        &application.target_region,
        &application.one_thing_id,
        key,
        &delivery_payload(application),
        now,
    )
}
