//! Filing: an application gets its case number and is stored with its receipt and its
//! hand-over (an outbox entry) in one transaction; the case counter numbers cases per
//! business day.

use prost::Message;
use rusqlite::{OptionalExtension, params};
use tongban_proto::v1::{Application, CaseStatus, Stage};

use super::{
    database::Store,
    outbox::{OutboxKind, insert_outbox},
};
use crate::sqlite::StoreError;
use tongban_runtime::observability::trace_context::TraceParent;

use crate::sqlite::{now_ms, timestamp_ms};

/// An application filed at this node, with its last known status.
#[derive(Clone, Debug)]
pub struct ApplicationRecord {
    pub case_number: String,
    pub one_thing_id: String,
    pub origin_region: String,
    pub target_region: String,
    pub applicant_masked: String,
    pub payload: Vec<u8>,
    pub receipt: String,
    pub status: CaseStatus,
    pub handling_reference: Option<String>,
    pub created_ms: i64,
    /// The trace context the case's calls are made under.
    pub trace: TraceParent,
}

/// A new filing: the application (its case number reserved, or empty to assign one now)
/// and how to describe it.
pub struct NewFiling {
    pub application: Application,
    /// Pre-review could not verify everything now (an issuing region is unreachable):
    /// the case waits in pre-review, and its hand-over waits for the verification.
    pub pending_verification: bool,
    pub applicant_hash: String,
    pub applicant_masked: String,
    /// Forward through the gateway (the handling region is another node's); otherwise
    /// the case goes to this node's own platform.
    pub forward: bool,
    /// Builds the receipt JSON once the case number is known.
    pub receipt: Box<dyn FnOnce(&Application) -> String + Send>,
    /// The client's idempotency key and a digest of its request: a retry with the same
    /// key and request gets the first filing back instead of a second case.
    pub client_key: Option<(String, String)>,
    /// The trace context of the filing, under which the case's calls are made.
    pub trace: Option<TraceParent>,
}

/// The outcome of [`Store::file`].
pub struct Filed {
    pub application: Application,
    pub receipt: String,
    /// True when the client's idempotency key had filed this before.
    pub replayed: bool,
}

impl Store {
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
                        client_key, client_request_sha, trace_parent)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11, ?11, ?12, ?13, ?14)",
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
                        if pending_verification {
                            PENDING_DETAIL
                        } else {
                            "accepted at the filing region"
                        },
                        now,
                        client_key.as_ref().map(|(k, _)| k),
                        client_key.as_ref().map(|(_, s)| s),
                        trace.map(|t| t.to_string()),
                    ],
                )?;
                // Either way the hand-over is an outbox entry written with the receipt,
                // so a crash right after the receipt cannot lose the case.
                let request = tongban_proto::v1::DeliverApplicationRequest {
                    application: Some(application.clone()),
                };
                let (kind, key) = if pending_verification {
                    (
                        OutboxKind::Verify,
                        format!("verify:{}", application.case_number),
                    )
                } else {
                    hand_over(forward, &application.case_number)
                };
                insert_outbox(
                    &tx,
                    kind,
                    &application.case_number,
                    &application.target_region,
                    &application.one_thing_id,
                    &key,
                    &request.encode_to_vec(),
                    now,
                )?;
                tx.commit()?;
                Ok(Filed {
                    application,
                    receipt,
                    replayed: false,
                })
            })
            .await
    }

    /// The earlier filing under a client's idempotency key, if any (refused when the key
    /// was used for a different request).
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

    /// Reserves the next case number of `origin_region` for the business day of
    /// `filed_at`: pre-review names the case in its lookups before it is filed. A
    /// filing refused afterwards leaves a gap in the numbers, never a reuse.
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

    /// Ends the pre-review of a waiting case: its application and receipt as verified
    /// now, its hand-over queued, its verification entry done, in one transaction.
    pub async fn complete_verification(
        &self,
        outbox_id: i64,
        application: Application,
        receipt: String,
        forward: bool,
    ) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                let now = now_ms();
                let tx = conn.transaction()?;
                tx.execute(
                    "UPDATE applications SET payload = ?2, receipt = ?3, stage = ?4,
                        status_detail = 'accepted at the filing region', status_updated_ms = ?5
                     WHERE case_number = ?1",
                    params![
                        application.case_number,
                        application.encode_to_vec(),
                        receipt,
                        Stage::Submitted as i32,
                        now
                    ],
                )?;
                tx.execute(
                    "UPDATE outbox SET state = 'done', done_ms = ?2, attempts = attempts + 1
                     WHERE id = ?1",
                    params![outbox_id, now],
                )?;
                let (kind, key) = hand_over(forward, &application.case_number);
                let request = tongban_proto::v1::DeliverApplicationRequest {
                    application: Some(application.clone()),
                };
                insert_outbox(
                    &tx,
                    kind,
                    &application.case_number,
                    &application.target_region,
                    &application.one_thing_id,
                    &key,
                    &request.encode_to_vec(),
                    now,
                )?;
                tx.commit()?;
                Ok(())
            })
            .await
    }

    /// Ends the pre-review of a waiting case with a refusal the citizen sees.
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
                        format!("not accepted at pre-review: {reason}"),
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

    /// An application filed here.
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
                                trace_parent
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
                            })
                        },
                    )
                    .optional()?)
            })
            .await
    }
}

/// The status detail of a case waiting in pre-review.
const PENDING_DETAIL: &str =
    "received; waiting in pre-review until the applicant's identity or licenses can be verified";

/// The outbox entry that hands a case over: to the gateway, or to this node's platform.
fn hand_over(forward: bool, case_number: &str) -> (OutboxKind, String) {
    if forward {
        (OutboxKind::Deliver, format!("deliver:{case_number}"))
    } else {
        (OutboxKind::LocalSubmit, format!("local:{case_number}"))
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
    let Some((payload, receipt, first_sha)) = earlier else {
        return Ok(None);
    };
    if first_sha.as_deref() != Some(sha) {
        return Err(StoreError::KeyReused(key.to_owned()));
    }
    let application = Application::decode(payload.as_slice())
        .map_err(|e| StoreError::Join(format!("stored application: {e}")))?;
    Ok(Some(Filed {
        application,
        receipt,
        replayed: true,
    }))
}

/// The next case number of `origin_region` for the business day of `filed_at`.
fn next_case_number(
    tx: &rusqlite::Transaction<'_>,
    origin_region: &str,
    filed_at: Option<&prost_types::Timestamp>,
) -> Result<String, StoreError> {
    let day = filed_at
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .map(|t| t.to_offset(tongban_proto::rules::calendar::BUSINESS_OFFSET))
        .unwrap_or_else(tongban_proto::rules::calendar::business_now);
    let day = format!("{:04}{:02}{:02}", day.year(), day.month() as u8, day.day());
    let seq: i64 = tx.query_row(
        "INSERT INTO case_counter (day, next) VALUES (?1, 2)
         ON CONFLICT (day) DO UPDATE SET next = next + 1
         RETURNING next - 1",
        [&day],
        |r| r.get(0),
    )?;
    Ok(format!("{origin_region}-{day}-{seq:08}"))
}
