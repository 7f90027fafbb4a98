//! The canonical case state machine, and the table that maps a province's own status
//! codes onto it.
//!
//! ```text
//! received ──► accepted ──► approved | rejected | withdrawn | terminated
//!    │            ▲  │
//!    │            │  ▼
//!    │      more_materials_needed ──► withdrawn | terminated
//!    └──► rejected | withdrawn | terminated
//! ```
//!
//! Every status that crosses the contract is one of these; every change is checked
//! against the machine where it is made (the reference platform's clerk) and where it
//! is read (the node's follower of the event feed). A province's codes (已接件, 已受理,
//! 待补正, 办结, 不予受理 …) map onto it through the node's `[platform.status_codes]`;
//! a code missing there is a configuration error, never guessed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tongban_proto::v1::Stage;

/// The canonical states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CanonicalStatus {
    /// The platform took the case over (已接件).
    Received,
    /// Formally accepted for handling (已受理).
    Accepted,
    /// The applicant must supply more materials (待补正).
    MoreMaterialsNeeded,
    Approved,
    /// Refused (不予受理 / 不予许可).
    Rejected,
    /// Withdrawn by the applicant.
    Withdrawn,
    /// Ended by the platform without a decision (终止).
    Terminated,
}

impl CanonicalStatus {
    pub const ALL: [Self; 7] = [
        Self::Received,
        Self::Accepted,
        Self::MoreMaterialsNeeded,
        Self::Approved,
        Self::Rejected,
        Self::Withdrawn,
        Self::Terminated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Accepted => "accepted",
            Self::MoreMaterialsNeeded => "more_materials_needed",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Withdrawn => "withdrawn",
            Self::Terminated => "terminated",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// A decision or an end: nothing follows.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Approved | Self::Rejected | Self::Withdrawn | Self::Terminated
        )
    }

    /// Whether a case may move from `from` (`None`: a new case) to `self`.
    pub fn may_follow(self, from: Option<Self>) -> bool {
        use CanonicalStatus::*;
        match from {
            None => self == Received,
            Some(Received) => matches!(self, Accepted | Rejected | Withdrawn | Terminated),
            Some(Accepted) => matches!(
                self,
                MoreMaterialsNeeded | Approved | Rejected | Withdrawn | Terminated
            ),
            Some(MoreMaterialsNeeded) => matches!(self, Accepted | Withdrawn | Terminated),
            Some(Approved | Rejected | Withdrawn | Terminated) => false,
        }
    }

    /// The federation's stage for this state: what the filing region and the citizen see.
    pub fn stage(self) -> Stage {
        match self {
            Self::Received => Stage::Accepted,
            Self::Accepted => Stage::InReview,
            Self::MoreMaterialsNeeded => Stage::MoreInfoRequired,
            Self::Approved => Stage::Approved,
            Self::Rejected => Stage::Rejected,
            Self::Withdrawn => Stage::Withdrawn,
            Self::Terminated => Stage::Terminated,
        }
    }

    /// The state a federation stage stands for at the handling region; `None` for
    /// stages the handling platform never reports (submitted, unspecified).
    pub fn of_stage(stage: Stage) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.stage() == stage)
    }
}

/// Whether a case handled here may move between these federation stages (`None`: a
/// new case). Stages outside the machine are never allowed.
pub fn stage_transition_allowed(from: Option<Stage>, to: Stage) -> bool {
    let Some(to) = CanonicalStatus::of_stage(to) else {
        return false;
    };
    match from {
        None => to.may_follow(None),
        Some(from) => CanonicalStatus::of_stage(from).is_some_and(|from| to.may_follow(Some(from))),
    }
}

/// A status code the table does not map: a configuration error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the platform reported status code {code:?}, which [platform.status_codes] does not map; \
     add it (onto one of received, accepted, more_materials_needed, approved, rejected, \
     withdrawn, terminated) and restart the node"
)]
pub struct UnmappedStatus {
    pub code: String,
}

/// A province's status codes, each mapped onto a canonical state. Several codes may map
/// onto one state; a code maps onto exactly one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StatusCodes(BTreeMap<String, CanonicalStatus>);

impl StatusCodes {
    pub fn new(map: BTreeMap<String, CanonicalStatus>) -> Self {
        Self(map)
    }

    /// The codes the reference platform speaks, typical of provincial platforms.
    pub fn reference() -> Self {
        Self(
            [
                ("已接件", CanonicalStatus::Received),
                ("已受理", CanonicalStatus::Accepted),
                ("待补正", CanonicalStatus::MoreMaterialsNeeded),
                ("办结", CanonicalStatus::Approved),
                ("不予受理", CanonicalStatus::Rejected),
                ("已撤回", CanonicalStatus::Withdrawn),
                ("已终止", CanonicalStatus::Terminated),
            ]
            .into_iter()
            .map(|(code, status)| (code.to_owned(), status))
            .collect(),
        )
    }

    /// The canonical state of `code`.
    pub fn canonical(&self, code: &str) -> Result<CanonicalStatus, UnmappedStatus> {
        self.0.get(code).copied().ok_or_else(|| UnmappedStatus {
            code: code.to_owned(),
        })
    }

    /// A code for `status` (the first in code order), for a platform that speaks them.
    pub fn code_of(&self, status: CanonicalStatus) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, s)| **s == status)
            .map(|(code, _)| code.as_str())
    }

    /// The canonical states no code maps onto (a platform that reports them cannot be
    /// followed; the node warns at start).
    pub fn unreachable(&self) -> Vec<CanonicalStatus> {
        CanonicalStatus::ALL
            .into_iter()
            .filter(|s| !self.0.values().any(|v| v == s))
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, CanonicalStatus)> {
        self.0.iter().map(|(code, status)| (code.as_str(), *status))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Default for StatusCodes {
    fn default() -> Self {
        Self::reference()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_allows_exactly_its_transitions() {
        use CanonicalStatus::*;
        let allowed: Vec<(Option<CanonicalStatus>, CanonicalStatus)> = vec![
            (None, Received),
            (Some(Received), Accepted),
            (Some(Received), Rejected),
            (Some(Received), Withdrawn),
            (Some(Received), Terminated),
            (Some(Accepted), MoreMaterialsNeeded),
            (Some(Accepted), Approved),
            (Some(Accepted), Rejected),
            (Some(Accepted), Withdrawn),
            (Some(Accepted), Terminated),
            (Some(MoreMaterialsNeeded), Accepted),
            (Some(MoreMaterialsNeeded), Withdrawn),
            (Some(MoreMaterialsNeeded), Terminated),
        ];
        let froms = std::iter::once(None).chain(CanonicalStatus::ALL.map(Some));
        for from in froms {
            for to in CanonicalStatus::ALL {
                assert_eq!(
                    to.may_follow(from),
                    allowed.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    #[test]
    fn stages_and_states_map_both_ways() {
        for status in CanonicalStatus::ALL {
            assert_eq!(CanonicalStatus::of_stage(status.stage()), Some(status));
            assert_eq!(CanonicalStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(CanonicalStatus::of_stage(Stage::Submitted), None);
        assert!(!stage_transition_allowed(
            Some(Stage::Approved),
            Stage::InReview
        ));
        assert!(stage_transition_allowed(
            Some(Stage::Accepted),
            Stage::InReview
        ));
        assert!(!stage_transition_allowed(None, Stage::Submitted));
    }

    #[test]
    fn an_unmapped_code_is_an_error_naming_it() {
        let codes = StatusCodes::reference();
        assert_eq!(codes.canonical("办结"), Ok(CanonicalStatus::Approved));
        let err = codes.canonical("挂起").unwrap_err();
        assert!(err.to_string().contains("挂起"), "{err}");
        assert!(codes.unreachable().is_empty());
        let partial = StatusCodes::new(
            [("A".to_owned(), CanonicalStatus::Received)]
                .into_iter()
                .collect(),
        );
        assert_eq!(partial.unreachable().len(), 6);
    }
}
