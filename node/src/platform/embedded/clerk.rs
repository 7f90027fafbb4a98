//! The clerk's work on the embedded platform: the cases awaiting a clerk's action, and
//! the decisions a clerk makes on them (accept, ask for more materials, approve, reject
//! with a reason ...). Every decision is checked against the canonical state machine
//! (`contract::status`), so the feed the node follows never carries a transition the
//! contract forbids; the case row and its feed event are written in one transaction,
//! so the feed misses no decision.

use rusqlite::OptionalExtension;
use tongban_proto::{rules::text, v1::Stage};

use super::{cases::row_to_case, database::EmbeddedPlatform, feed::record_event};
use crate::{
    platform::adapter::PlatformCase,
    platform::contract::status::CanonicalStatus,
    sqlite::{StoreError, now_ms},
};

/// Longest reason a clerk may give: it is shown to the citizen as the case's detail.
pub const MAX_REASON_CHARS: usize = 500;

/// What a clerk does with a case. Each names the canonical state it moves the case to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClerkAction {
    /// Formally accept a received case (受理).
    Accept,
    /// Ask the applicant for more materials (补正).
    RequestMaterials,
    /// The materials asked for arrived: review resumes.
    MaterialsReceived,
    Approve,
    /// Refuse (a reason is required).
    Reject,
    /// End the case without a decision (a reason is required).
    Terminate,
    /// The applicant withdrew the case.
    Withdraw,
}

impl ClerkAction {
    pub const ALL: [Self; 7] = [
        Self::Accept,
        Self::RequestMaterials,
        Self::MaterialsReceived,
        Self::Approve,
        Self::Reject,
        Self::Terminate,
        Self::Withdraw,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::RequestMaterials => "request_materials",
            Self::MaterialsReceived => "materials_received",
            Self::Approve => "approve",
            Self::Reject => "reject",
            Self::Terminate => "terminate",
            Self::Withdraw => "withdraw",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The state the action moves a case to.
    pub fn target(self) -> CanonicalStatus {
        match self {
            Self::Accept | Self::MaterialsReceived => CanonicalStatus::Accepted,
            Self::RequestMaterials => CanonicalStatus::MoreMaterialsNeeded,
            Self::Approve => CanonicalStatus::Approved,
            Self::Reject => CanonicalStatus::Rejected,
            Self::Terminate => CanonicalStatus::Terminated,
            Self::Withdraw => CanonicalStatus::Withdrawn,
        }
    }

    /// A refusal or an end without a decision must say why: the citizen reads it.
    pub fn needs_reason(self) -> bool {
        matches!(self, Self::Reject | Self::Terminate)
    }

    /// The case's detail when the clerk gives no reason.
    fn standard_detail(self) -> &'static str {
        match self {
            Self::Accept => "accepted for handling by the competent department",
            Self::RequestMaterials => "more materials are needed from the applicant",
            Self::MaterialsReceived => "the materials were received; review resumes",
            Self::Approve => "approved; results returned to the filing region",
            Self::Reject => "rejected",
            Self::Terminate => "terminated",
            Self::Withdraw => "withdrawn at the applicant's request",
        }
    }
}

/// Why a clerk's decision was not made.
#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    #[error("no case {0}")]
    UnknownCase(String),
    /// The state machine does not allow the move; nothing was changed.
    #[error(
        "case {case_number} is {}; it cannot become {}",
        from.map_or("in a state outside the machine", CanonicalStatus::as_str),
        to.as_str()
    )]
    InvalidTransition {
        case_number: String,
        from: Option<CanonicalStatus>,
        to: CanonicalStatus,
    },
    #[error("{} needs a reason (the citizen reads it)", .0.as_str())]
    ReasonRequired(ClerkAction),
    #[error("reason {0}")]
    BadReason(&'static str),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// A case as a clerk sees it: the case and when it arrived.
#[derive(Clone, Debug)]
pub struct ClerkCase {
    pub case: PlatformCase,
    pub received_ms: i64,
}

impl ClerkCase {
    /// Its canonical state (`None` for a stage outside the machine, from old data).
    pub fn canonical(&self) -> Option<CanonicalStatus> {
        Stage::try_from(self.case.status.stage)
            .ok()
            .and_then(CanonicalStatus::of_stage)
    }
}

const SELECT_CLERK_CASE: &str = "SELECT id, case_number, one_thing_id, origin_region, stage,
    detail, sequence, updated_ms, received_ms FROM cases";

fn row_to_clerk_case(prefix: &str, r: &rusqlite::Row<'_>) -> rusqlite::Result<ClerkCase> {
    Ok(ClerkCase {
        case: row_to_case(prefix, r)?,
        received_ms: r.get(8)?,
    })
}

/// The reason to record: trimmed, checked as free text, required where the action
/// needs one.
fn checked_reason(action: ClerkAction, reason: &str) -> Result<String, DecisionError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return if action.needs_reason() {
            Err(DecisionError::ReasonRequired(action))
        } else {
            Ok(action.standard_detail().to_owned())
        };
    }
    if let Some(problem) = text::problem(reason) {
        return Err(DecisionError::BadReason(problem));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(DecisionError::BadReason("must be at most 500 characters"));
    }
    Ok(reason.to_owned())
}

impl EmbeddedPlatform {
    /// Cases awaiting a clerk (received, accepted, more materials needed), oldest
    /// first, at most `limit` (1 to 1000).
    pub async fn awaiting_clerk(&self, limit: u32) -> Result<Vec<ClerkCase>, StoreError> {
        let limit = limit.clamp(1, 1000);
        let prefix = self.prefix.clone();
        let open = [
            CanonicalStatus::Received,
            CanonicalStatus::Accepted,
            CanonicalStatus::MoreMaterialsNeeded,
        ]
        .map(|s| s.stage() as i32);
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "{SELECT_CLERK_CASE} WHERE stage IN (?1, ?2, ?3)
                     ORDER BY received_ms, id LIMIT ?4"
                ))?;
                let rows = stmt
                    .query_map(rusqlite::params![open[0], open[1], open[2], limit], |r| {
                        row_to_clerk_case(&prefix, r)
                    })?;
                let mut out = Vec::new();
                for row in rows {
                    out.push(row?);
                }
                Ok(out)
            })
            .await
    }

    /// One case as a clerk sees it.
    pub async fn clerk_case(&self, case_number: &str) -> Result<Option<ClerkCase>, StoreError> {
        let case_number = case_number.to_owned();
        let prefix = self.prefix.clone();
        self.db
            .call(move |conn| {
                let mut stmt =
                    conn.prepare_cached(&format!("{SELECT_CLERK_CASE} WHERE case_number = ?1"))?;
                Ok(stmt
                    .query_row([case_number], |r| row_to_clerk_case(&prefix, r))
                    .optional()?)
            })
            .await
    }

    /// Makes a clerk's decision on a case: checked against the state machine, the case
    /// and its feed event written in one transaction, its sequence one higher; the
    /// node is woken to read the feed. `reason` becomes the case's detail (a standard
    /// sentence when empty; required to reject or terminate).
    pub async fn decide(
        &self,
        case_number: &str,
        action: ClerkAction,
        reason: &str,
    ) -> Result<ClerkCase, DecisionError> {
        let detail = checked_reason(action, reason)?;
        let case_number = case_number.to_owned();
        let prefix = self.prefix.clone();
        let to = action.target();
        let decided = self
            .db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let stage: Option<i32> = tx
                    .query_row(
                        "SELECT stage FROM cases WHERE case_number = ?1",
                        [&case_number],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(stage) = stage else {
                    return Ok(Err(DecisionError::UnknownCase(case_number)));
                };
                let previous = Stage::try_from(stage).ok();
                let from = previous.and_then(CanonicalStatus::of_stage);
                if from.is_none() || !to.may_follow(from) {
                    return Ok(Err(DecisionError::InvalidTransition {
                        case_number,
                        from,
                        to,
                    }));
                }
                let case = tx.query_row(
                    "UPDATE cases SET stage = ?2, detail = ?3, sequence = sequence + 1,
                        updated_ms = ?4
                     WHERE case_number = ?1
                     RETURNING id, case_number, one_thing_id, origin_region, stage, detail,
                        sequence, updated_ms, received_ms",
                    rusqlite::params![case_number, to.stage() as i32, detail, now_ms()],
                    |r| row_to_clerk_case(&prefix, r),
                )?;
                record_event(&tx, &case.case, previous)?;
                tx.commit()?;
                Ok(Ok(case))
            })
            .await??;
        self.changed.notify_one();
        Ok(decided)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::adapter::Platform;
    use tongban_proto::{rules::region::RegionPrefix, v1::Application};

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tongban-clerk-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    async fn with_case(dir: &std::path::Path) -> (std::sync::Arc<EmbeddedPlatform>, String) {
        let prefix = RegionPrefix::parse("44").unwrap();
        let platform = EmbeddedPlatform::open(&dir.join("p.db"), &prefix).unwrap();
        let application = Application {
            case_number: "310000-20260101-00000001".into(),
            one_thing_id: "newborn".into(),
            origin_region: "310000".into(),
            target_region: "440000".into(),
            ..Default::default()
        };
        platform.submit(&application, "h", b"p").await.unwrap();
        (platform, application.case_number)
    }

    #[tokio::test]
    async fn a_case_goes_through_the_machine_and_every_step_is_in_the_feed() {
        let dir = scratch("walk");
        let (platform, number) = with_case(&dir).await;
        let waiting = platform.awaiting_clerk(10).await.unwrap();
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].canonical(), Some(CanonicalStatus::Received));

        use ClerkAction::*;
        for (action, reason, expect) in [
            (Accept, "", CanonicalStatus::Accepted),
            (
                RequestMaterials,
                "需补充出生医学证明",
                CanonicalStatus::MoreMaterialsNeeded,
            ),
            (MaterialsReceived, "", CanonicalStatus::Accepted),
            (Approve, "", CanonicalStatus::Approved),
        ] {
            let case = platform.decide(&number, action, reason).await.unwrap();
            assert_eq!(case.canonical(), Some(expect), "{action:?}");
        }
        let case = platform.clerk_case(&number).await.unwrap().unwrap();
        assert_eq!(case.case.status.sequence, 5);
        assert!(platform.awaiting_clerk(10).await.unwrap().is_empty());

        let page = platform.case_events_after("", 100).await.unwrap();
        let stages: Vec<(Option<Stage>, i32, u64)> = page
            .events
            .iter()
            .map(|e| (e.previous, e.case.status.stage, e.case.status.sequence))
            .collect();
        assert_eq!(
            stages,
            vec![
                (None, Stage::Accepted as i32, 1),
                (Some(Stage::Accepted), Stage::InReview as i32, 2),
                (Some(Stage::InReview), Stage::MoreInfoRequired as i32, 3),
                (Some(Stage::MoreInfoRequired), Stage::InReview as i32, 4),
                (Some(Stage::InReview), Stage::Approved as i32, 5),
            ]
        );
        assert_eq!(page.events[2].case.status.detail, "需补充出生医学证明");
        drop(platform);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn invalid_decisions_change_nothing_and_say_why() {
        let dir = scratch("invalid");
        let (platform, number) = with_case(&dir).await;
        let err = platform
            .decide(&number, ClerkAction::Approve, "")
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                DecisionError::InvalidTransition {
                    from: Some(CanonicalStatus::Received),
                    to: CanonicalStatus::Approved,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("is received; it cannot become approved")
        );
        let err = platform
            .decide(&number, ClerkAction::Reject, "  ")
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            DecisionError::ReasonRequired(ClerkAction::Reject)
        ));
        let err = platform
            .decide(&number, ClerkAction::Terminate, "bad\u{202E}text")
            .await
            .unwrap_err();
        assert!(matches!(err, DecisionError::BadReason(_)));
        let err = platform
            .decide("310000-20260101-00000009", ClerkAction::Accept, "")
            .await
            .unwrap_err();
        assert!(matches!(err, DecisionError::UnknownCase(_)));

        let rejected = platform
            .decide(&number, ClerkAction::Reject, "材料不符合要求")
            .await
            .unwrap();
        assert_eq!(rejected.case.status.detail, "材料不符合要求");
        // A final state takes nothing more.
        for action in ClerkAction::ALL {
            let err = platform.decide(&number, action, "why").await.unwrap_err();
            assert!(matches!(err, DecisionError::InvalidTransition { .. }));
        }
        let page = platform.case_events_after("", 100).await.unwrap();
        assert_eq!(page.events.len(), 2, "only the valid decision was recorded");
        drop(platform);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn actions_parse_by_name() {
        for action in ClerkAction::ALL {
            assert_eq!(ClerkAction::parse(action.as_str()), Some(action));
        }
        assert_eq!(ClerkAction::parse("approve!"), None);
    }
}
