//! Citizens' evaluations of decided cases (好差评): at the node the case was filed at,
//! the one evaluation per case and its delivery to the handling region (an outbox entry
//! written in the same transaction); at the handling region, the evaluation received
//! and, for a poor one, the follow-up it opens with its deadline.

use tongban_proto::v1::SubmitEvaluationRequest;

/// An evaluation given at this node's portal.
pub struct NewEvaluation {
    pub request: SubmitEvaluationRequest,
    /// The handling region (6 digits) and the one-thing, as the case was filed.
    pub target_region: String,
    pub one_thing_id: String,
    /// Deliver it through the gateway (the handling region is another node's);
    /// otherwise it is received here directly.
    pub forward: bool,
}

/// What became of an evaluation given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evaluated {
    Recorded,
    /// The case was evaluated before: one evaluation per case.
    AlreadyEvaluated,
}

/// An evaluation as the handling region keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedEvaluation {
    pub case_number: String,
    pub origin_region: String,
    pub one_thing_id: String,
    pub level: i32,
    pub comment: String,
    pub evaluated_ms: i64,
    /// For a poor rating: the follow-up's deadline, `YYYY-MM-DD` (empty where the
    /// calendar could not set one); `None` for no follow-up.
    pub follow_up_due: Option<String>,
}

/// What became of an evaluation received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    New,
    /// The same evaluation again (a retry): nothing changes; the follow-up's deadline
    /// as it was set when it first arrived.
    Repeat(Option<String>),
    /// Another evaluation of a case already evaluated: refused.
    Conflict,
}

/// The idempotency key of a case's evaluation: one per case.
pub fn evaluation_key(case_number: &str) -> String {
    format!("evaluate:{case_number}")
}
