//! Disputes of wrong data (异议处理), as every backend keeps them: one table for both
//! sides, by role. A dispute raised here (a window flagged a recognized license or
//! identity of a case filed here) is written with its delivery to the issuer (an
//! outbox entry) in one transaction; one received here (this region issued the data)
//! waits in the issuer's queue until its staff settle it, and the settlement goes back
//! to the flagging region the same way.

use serde::Serialize;

/// A dispute raised at this node's window.
pub const RAISED: &str = "raised";
/// A dispute about data this region issued, raised elsewhere.
pub const RECEIVED: &str = "received";

/// One dispute, on either side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dispute {
    /// `<case number>:<n>`, given by the flagging region.
    pub dispute_id: String,
    /// [`RAISED`] or [`RECEIVED`].
    pub role: String,
    pub case_number: String,
    /// Raised here: the issuing region it went to; received: the flagging region (6
    /// digits).
    pub counterpart: String,
    pub one_thing_id: String,
    /// `license` or `identity`.
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_id: Option<String>,
    /// `identity` or the license's type, as the responsibility list counts data.
    pub data: String,
    pub reason: String,
    pub raised_ms: i64,
    /// `corrected` or `confirmed`; `None` while open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrected_license_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settled_ms: Option<i64>,
}

/// A settlement: its outcome and what the issuer says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub outcome: String,
    pub note: String,
    pub corrected_license_id: Option<String>,
    pub settled_ms: i64,
}

/// What became of a settlement at the issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Settled now, its return to the flagging region queued.
    Now(Dispute),
    /// It was settled before (as it says).
    Already(Dispute),
    /// No such dispute here.
    Unknown,
}

/// Open disputes by role, counterpart and data (for the gauges).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenDisputes {
    pub role: String,
    pub counterpart: String,
    pub data: String,
    pub open: i64,
}

/// The idempotency key of a dispute's delivery to its issuer.
pub fn raise_key(dispute_id: &str) -> String {
    format!("dispute:{dispute_id}")
}

/// The idempotency key of a settlement's return to the flagging region.
pub fn settle_key(flagging_region: &str, dispute_id: &str) -> String {
    format!("settle:{flagging_region}:{dispute_id}")
}

/// The columns a [`Dispute`] is read from, in its fields' order (a literal: the
/// backends' queries are static strings).
macro_rules! columns {
    () => {
        "dispute_id, role, case_number, counterpart, one_thing_id, subject, license_id, \
         data, reason, raised_ms, outcome, note, corrected_license_id, settled_ms"
    };
}
pub(crate) use columns;
