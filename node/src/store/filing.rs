//! Filing, as every backend does it: what a filing and its record are, the outbox entry
//! that hands a case over, what the citizen reads meanwhile, and how case numbers are
//! formed (a number per origin region and business day).

use prost::Message;
use tongban_proto::v1::{Application, CaseStatus, DeliverApplicationRequest};
use tongban_runtime::observability::trace_context::TraceParent;

use super::outbox::OutboxKind;
use crate::db_error::StoreError;
use crate::joint::JointCase;

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
    /// 多地联办: the parts of a joint case (JSON of [`JointCase`]).
    pub joint: Option<String>,
}

impl ApplicationRecord {
    /// The parts of a joint case; `None` for a case handled by one region (or, logged,
    /// parts this version cannot read).
    pub fn joint(&self) -> Option<JointCase> {
        let parts = self.joint.as_deref()?;
        serde_json::from_str(parts)
            .inspect_err(
                |error| tracing::error!(%error, case = %self.case_number, "joint parts unreadable"),
            )
            .ok()
    }
}

/// The stages of a case not yet decided, first and last: submitted to
/// more-materials-needed (approved, rejected, withdrawn and terminated come after).
pub const OPEN_STAGES: [i32; 2] = [
    tongban_proto::v1::Stage::Submitted as i32,
    tongban_proto::v1::Stage::MoreInfoRequired as i32,
];

/// An open case filed here (not yet decided) with the date its receipt promised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenPromise {
    pub case_number: String,
    pub one_thing_id: String,
    /// The handling region (6 digits).
    pub target_region: String,
    /// `YYYY-MM-DD`; empty where the calendar could not promise one.
    pub promised_date: String,
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
    /// 多地联办: the case's parts; their hand-overs replace the case's one.
    pub joint: Option<JointCase>,
}

/// A status a handling region reported (or its answer to a delivery), to apply to a
/// case filed here.
#[derive(Clone, Debug)]
pub struct StatusReport {
    pub case_number: String,
    /// For a joint case, the part it is about; `None` from this node's own platform
    /// means the part handled here.
    pub part: Option<String>,
    /// The handling platform's reference (a delivery's answer).
    pub reference: Option<String>,
    pub status: CaseStatus,
}

/// What applying a [`StatusReport`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusApplied {
    /// It was newer than what the case (or its part) had.
    pub applied: bool,
    /// The case as the citizen sees it is decided by it (approved or rejected) now.
    pub decided: bool,
}

impl StatusApplied {
    /// For a case one region handles: a decision applied decides it.
    pub(super) fn whole(applied: bool, stage: i32) -> Self {
        Self {
            applied,
            decided: applied && decision(stage),
        }
    }
}

/// Whether `stage` decides a case (approved or rejected).
fn decision(stage: i32) -> bool {
    matches!(
        tongban_proto::v1::Stage::try_from(stage),
        Ok(tongban_proto::v1::Stage::Approved | tongban_proto::v1::Stage::Rejected)
    )
}

/// A joint case after one part's report: what to write back.
pub(super) struct JointUpdate {
    pub parts: String,
    pub combined: CaseStatus,
    /// Parts that start now: outbox entries to write in the same transaction.
    pub hand_overs: Vec<(OutboxKind, String, Application)>,
    pub applied: StatusApplied,
}

/// Applies `report` to the joint case stored as `parts` (JSON) with the case's
/// application `payload`: `None` when it is not newer (nothing to write). A report
/// without a part is the part handled here.
pub(super) fn apply_joint(
    parts: &str,
    payload: &[u8],
    stage_before: i32,
    report: &StatusReport,
) -> Result<Option<JointUpdate>, StoreError> {
    let mut joint: JointCase = serde_json::from_str(parts)
        .map_err(|e| StoreError::Join(format!("stored joint parts: {e}")))?;
    let part = match &report.part {
        Some(part) => part.clone(),
        None => match joint.local_part() {
            Some(part) => part.id.clone(),
            None => return Ok(None),
        },
    };
    let outcome = joint.apply(&part, &report.status, report.reference.as_deref());
    if !outcome.applied {
        return Ok(None);
    }
    let case = Application::decode(payload)
        .map_err(|e| StoreError::Join(format!("stored application: {e}")))?;
    let combined = joint.combined();
    let hand_overs = joint_hand_overs(&case, &joint, &outcome.started);
    Ok(Some(JointUpdate {
        parts: joint_json(&joint),
        applied: StatusApplied {
            applied: true,
            decided: decision(combined.stage) && !decision(stage_before),
        },
        combined,
        hand_overs,
    }))
}

/// What the filing region says of the hand-over under outbox key `key` (held as a dead
/// letter, replayed, closed) when it carries a joint case's part (`…:<part>`): the
/// case's parts and combined status to write; `None` for any other entry.
pub(super) fn joint_part_detail(
    parts: Option<&str>,
    key: &str,
    stage: Option<tongban_proto::v1::Stage>,
    detail: &str,
) -> Result<Option<(String, CaseStatus)>, StoreError> {
    let (Some(parts), Some(part)) = (parts, key.splitn(3, ':').nth(2)) else {
        return Ok(None);
    };
    let mut joint: JointCase = serde_json::from_str(parts)
        .map_err(|e| StoreError::Join(format!("stored joint parts: {e}")))?;
    if !joint.set_part(part, stage, detail) {
        return Ok(None);
    }
    Ok(Some((joint_json(&joint), joint.combined())))
}

/// A joint case as its column keeps it.
pub(super) fn joint_json(joint: &JointCase) -> String {
    serde_json::to_string(joint).unwrap_or_default()
}

/// The hand-overs of a joint case's parts `started`: each to its region under its own
/// key (or to this node's platform), carrying the part's application.
pub(super) fn joint_hand_overs(
    case: &Application,
    joint: &JointCase,
    started: &[usize],
) -> Vec<(OutboxKind, String, Application)> {
    started
        .iter()
        .filter_map(|&i| {
            let part = joint.parts.get(i)?;
            let application = joint.part_application(case, i)?;
            let (kind, key) = hand_over(!part.local, &case.case_number);
            Some((kind, format!("{key}:{}", part.id), application))
        })
        .collect()
}

/// The outbox entries written with a filing (or once its pre-review completes): its
/// verification when pre-review waits, else its hand-over, or a joint case's parts'
/// that start at once.
pub(super) fn filing_entries(
    pending_verification: bool,
    forward: bool,
    application: &Application,
    joint: Option<&JointCase>,
) -> Vec<(OutboxKind, String, Application)> {
    match joint {
        _ if pending_verification => vec![(
            OutboxKind::Verify,
            format!("verify:{}", application.case_number),
            application.clone(),
        )],
        Some(joint) => joint_hand_overs(application, joint, &joint.started()),
        None => {
            let (kind, key) = hand_over(forward, &application.case_number);
            vec![(kind, key, application.clone())]
        }
    }
}

/// The outcome of [`super::Store::file`].
pub struct Filed {
    pub application: Application,
    pub receipt: String,
    /// True when the client's idempotency key had filed this before.
    pub replayed: bool,
}

/// The status detail of a case accepted and handed over.
pub(super) const ACCEPTED_DETAIL: &str = "accepted at the filing region";

/// The status detail of a case waiting in pre-review.
pub(super) const PENDING_DETAIL: &str =
    "received; waiting in pre-review until the applicant's identity or licenses can be verified";

/// The status detail of a case pre-review refused after waiting.
pub(super) fn refused_detail(reason: &str) -> String {
    format!("not accepted at pre-review: {reason}")
}

/// What the citizen reads of a case just filed.
pub(super) fn filed_detail(pending_verification: bool) -> &'static str {
    if pending_verification {
        PENDING_DETAIL
    } else {
        ACCEPTED_DETAIL
    }
}

/// The outbox entry that hands a case over: to the gateway, or to this node's platform.
pub(super) fn hand_over(forward: bool, case_number: &str) -> (OutboxKind, String) {
    if forward {
        (OutboxKind::Deliver, format!("deliver:{case_number}"))
    } else {
        (OutboxKind::LocalSubmit, format!("local:{case_number}"))
    }
}

/// The payload of a hand-over or verification entry.
pub(super) fn delivery_payload(application: &Application) -> Vec<u8> {
    DeliverApplicationRequest {
        application: Some(application.clone()),
    }
    .encode_to_vec()
}

/// The earlier filing under client key `key`, for a retry of the request with digest
/// `sha`: refused when the key filed a different request (`first_sha`). The stored
/// payload is this node's own; unreadable only if the database was damaged.
pub(super) fn replayed(
    key: &str,
    sha: &str,
    first_sha: Option<&str>,
    payload: &[u8],
    receipt: String,
) -> Result<Filed, StoreError> {
    if first_sha != Some(sha) {
        return Err(StoreError::KeyReused(key.to_owned()));
    }
    let application = Application::decode(payload)
        .map_err(|e| StoreError::Join(format!("stored application: {e}")))?;
    Ok(Filed {
        application,
        receipt,
        replayed: true,
    })
}

/// The business day (`YYYYMMDD`, the federation's offset) of `filed_at`, or of now,
/// that numbers a case.
pub(super) fn business_day(filed_at: Option<&prost_types::Timestamp>) -> String {
    let day = filed_at
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .map(|t| t.to_offset(tongban_proto::rules::calendar::BUSINESS_OFFSET))
        .unwrap_or_else(tongban_proto::rules::calendar::business_now);
    format!("{:04}{:02}{:02}", day.year(), day.month() as u8, day.day())
}

/// Case number `seq` of `origin_region` on `day`.
pub(super) fn case_number(origin_region: &str, day: &str, seq: i64) -> String {
    format!("{origin_region}-{day}-{seq:08}")
}
