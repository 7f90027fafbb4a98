//! The outbox, as every backend keeps it: calls this node owes to other regions
//! (deliveries, status pushes) and hand-overs to its own platform, kept until they
//! succeed or are refused for good, so what was acknowledged is not lost to a crash or
//! an unreachable region. Here are its entries' kinds and shapes, their idempotency
//! keys, and what the citizen reads while one is held.

use tongban_proto::contract::metadata::MAX_IDEMPOTENCY_KEY;
use tongban_proto::v1::Stage;
use tongban_runtime::observability::trace_context::TraceParent;

/// What an outbox entry asks the forwarder to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxKind {
    /// `Gateway.DeliverApplication` with an encoded `DeliverApplicationRequest`.
    Deliver,
    /// `Gateway.PushStatus` with an encoded `PushStatusRequest`.
    PushStatus,
    /// Hand a case filed and handled here to this node's own platform (an encoded
    /// `DeliverApplicationRequest`).
    LocalSubmit,
    /// `Gateway.PublishRevocation` with an encoded `PublishRevocationRequest`, to the one
    /// gateway replica named by the entry (every replica gets its own entry).
    Revoke,
    /// Pre-review of a case filed while an issuing region was unreachable: verify it,
    /// then hand it over (an encoded `DeliverApplicationRequest`).
    Verify,
    /// `Gateway.SubmitEvaluation` with an encoded `SubmitEvaluationRequest`.
    Evaluate,
    /// `Gateway.RaiseDispute` with an encoded `RaiseDisputeRequest`.
    Dispute,
    /// `Gateway.SettleDispute` with an encoded `SettleDisputeRequest`.
    Settle,
}

impl OutboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deliver => "deliver",
            Self::PushStatus => "push_status",
            Self::LocalSubmit => "local_submit",
            Self::Revoke => "revoke",
            Self::Verify => "verify",
            Self::Evaluate => "evaluate",
            Self::Dispute => "dispute",
            Self::Settle => "settle_dispute",
        }
    }

    /// Whether the entry carries a case the citizen follows (its hand-over, or its
    /// pre-review): a dead letter or a closing shows in the case's status.
    pub(super) fn tells_the_citizen(self) -> bool {
        matches!(self, Self::Deliver | Self::Verify)
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        match s {
            "deliver" => Some(Self::Deliver),
            "push_status" => Some(Self::PushStatus),
            "local_submit" => Some(Self::LocalSubmit),
            "revoke" => Some(Self::Revoke),
            "verify" => Some(Self::Verify),
            "evaluate" => Some(Self::Evaluate),
            "dispute" => Some(Self::Dispute),
            "settle_dispute" => Some(Self::Settle),
            _ => None,
        }
    }
}

/// One due outbox entry.
#[derive(Clone, Debug)]
pub struct OutboxEntry {
    pub id: i64,
    pub kind: OutboxKind,
    pub case_number: String,
    pub target_region: String,
    pub one_thing_id: String,
    pub idempotency_key: String,
    pub payload: Vec<u8>,
    pub attempts: u32,
    /// For [`OutboxKind::Revoke`]: the gateway replica it goes to.
    pub gateway_endpoint: Option<String>,
    /// The trace context of the entry's case: the filing's (deliveries), the received
    /// delivery's (status pushes).
    pub trace: TraceParent,
    /// When the entry's case was filed here (for a delivery), else when the entry was
    /// queued; Unix milliseconds.
    pub filed_ms: i64,
    /// The applicant's home province: of the case filed here (deliveries), of the
    /// delivery received (status pushes); `None` when not known.
    pub applicant_home: Option<String>,
    /// When an operator last replayed it as a dead letter, Unix milliseconds.
    pub replayed_ms: Option<i64>,
}

/// The outbox backlog towards one target region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BacklogRow {
    pub target_region: String,
    /// Entries still to deliver (those `failing` and `blocked` included).
    pub pending: i64,
    /// Pending entries whose attempts so far all failed (they wait for a retry).
    pub failing: i64,
    /// Pending entries whose last attempt was refused for a configuration reason (a
    /// region not registered, a certificate or registry mistake): they wait for an
    /// operator, not for time.
    pub blocked: i64,
    /// Dead letters: refused for a reason retrying cannot change, waiting for an
    /// operator to replay or close them.
    pub dead: i64,
    /// Queue time of the oldest pending entry (Unix ms); meaningless when none pend.
    pub oldest_pending_ms: i64,
}

/// An entry refused for good, as an operator reviews it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub kind: &'static str,
    pub case_number: String,
    pub target_region: String,
    pub one_thing_id: String,
    pub attempts: u32,
    /// How often an operator replayed it already.
    pub replays: u32,
    /// The receiver's refusal.
    pub error: String,
    pub queued_ms: i64,
    pub dead_ms: i64,
}

/// What an operator's action on a dead letter found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadLetterAction {
    Done,
    /// No entry with that id.
    Unknown,
    /// The entry is not a dead letter (pending, delivered or closed already).
    NotDead,
}

/// What the citizen reads while a delivery is held as a dead letter. The receiver's
/// own words stay with the operator: they may quote form values.
pub(super) const HELD_DETAIL: &str = "accepted here; the handling region did not take the \
    delivery, and staff of the filing region are reviewing it";
const REPLAYED_DETAIL: &str = "accepted here; delivery to the handling region resumed";
pub(super) const UNVERIFIED_DETAIL: &str = "accepted here; its pre-review could not be \
    completed in time, and staff of the filing region are reviewing it";
const REVERIFYING_DETAIL: &str = "accepted here; pre-review resumed";

/// What the citizen reads of a case whose entry of `kind` became a dead letter.
pub(super) fn held_detail(kind: OutboxKind) -> &'static str {
    match kind {
        OutboxKind::Verify => UNVERIFIED_DETAIL,
        _ => HELD_DETAIL,
    }
}

/// What an operator's action on a dead delivery (or pre-review) does to its case: the
/// stage it takes (if it changes) and what the citizen reads. `close` is the reason of a
/// closing, `None` for a replay.
pub(super) fn dead_letter_detail(kind: OutboxKind, close: Option<&str>) -> (Option<Stage>, String) {
    match (close, kind) {
        (None, OutboxKind::Verify) => (None, REVERIFYING_DETAIL.to_owned()),
        (None, _) => (None, REPLAYED_DETAIL.to_owned()),
        (Some(reason), _) => (
            Some(Stage::Rejected),
            format!("closed by the filing region: {reason}"),
        ),
    }
}

/// The idempotency key of the push of a case's status number `sequence`: the live feed
/// and the sweep may report one change twice, and it is queued once.
pub(super) fn push_key(case_number: &str, sequence: u64) -> String {
    format!("status:{case_number}:{sequence}")
}

/// The idempotency key of a revocation's publication to one gateway replica, bounded
/// by construction: `revoke:<license id>:<endpoint>` while that is a valid key (as keys
/// already queued are), else `revoke:` and the SHA-256 of both (71 characters) — a long
/// license id and a long endpoint made a key over 128 characters, refused by the gateway
/// on every attempt until it became a dead letter.
pub fn revocation_key(license_id: &str, endpoint: &str) -> String {
    let plain = format!("revoke:{license_id}:{endpoint}");
    if plain.len() <= MAX_IDEMPOTENCY_KEY && plain.bytes().all(|b| b.is_ascii_graphic()) {
        return plain;
    }
    let mut both = Vec::with_capacity(license_id.len() + 1 + endpoint.len());
    both.extend_from_slice(license_id.as_bytes());
    both.push(0);
    both.extend_from_slice(endpoint.as_bytes());
    format!("revoke:{}", tongban_proto::rules::digest::sha256_hex(&both))
}

/// The region a revocation is counted under: its license's issuing region.
pub(super) fn revocation_target(license_id: &str) -> &str {
    license_id.get(..6).unwrap_or_default()
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn revocation_keys_are_bounded_by_construction() {
        // Short ones stay as they were (keys already queued keep matching).
        let short = revocation_key("440305-HR-0000012", "https://gw-1:7443");
        assert_eq!(short, "revoke:440305-HR-0000012:https://gw-1:7443");
        // A long license id with a long endpoint: a valid key all the same, and distinct.
        let id = format!("1.2.156.3005.2.{}.001.U", "1".repeat(60));
        let endpoint = format!("https://{}.example:7443", "gateway-replica".repeat(4));
        let long = revocation_key(&id, &endpoint);
        assert!(long.len() <= MAX_IDEMPOTENCY_KEY, "{long}");
        assert!(long.bytes().all(|b| b.is_ascii_graphic()));
        assert_ne!(long, revocation_key(&id, "https://other:7443"));
    }
}
