//! 多地联办 (joint handling): one case filed at one window, split into the catalog's
//! parts, each handled by its own competent region and delivered on its own (its own
//! outbox entry and idempotency key), while the citizen follows one case.
//!
//! This is the filing region's book of such a case: each part's region, state and
//! promise, kept with the application (the `parts` column, as JSON) and changed only in
//! the store transaction that applies a part's status, so a part that waits for another
//! is handed over in the same transaction that records the approval it waited for:
//! a crash can neither lose that hand-over nor make it twice (its key is per part).
//!
//! Which part a status belongs to is known without trusting the message: a part's
//! status comes from the region that handles it (the gateway-verified and signing
//! region of a push), and no two parts of a case are handled by the same node (the
//! filing refuses that, [`crate::filing::joint_plan`]).

use serde::{Deserialize, Serialize};
use tongban_proto::v1::{Application, CaseStatus, HandlingMode, Stage};

/// The parts of one joint case, in the catalog's order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JointCase {
    pub parts: Vec<PartProgress>,
}

/// One part of a joint case as the filing region follows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartProgress {
    /// The catalog part's id, e.g. `move_out`.
    pub id: String,
    /// Its name, e.g. `户口迁出`.
    pub name: String,
    /// The region that handles it (6 digits).
    pub region: String,
    /// Handled by this node's own platform rather than forwarded.
    pub local: bool,
    /// Parts that must be approved before this one starts.
    pub after: Vec<String>,
    /// `YYYY-MM-DD` promised at filing (a part that waits counts from the promise of
    /// what it waits for); empty where the calendar could not promise one.
    pub promised_date: String,
    /// Handed over to its region (its outbox entry written).
    pub started: bool,
    /// Its stage as its region reports it (`Submitted` until it answers).
    pub stage: i32,
    pub detail: String,
    /// The last sequence its region reported; a report not newer is ignored.
    pub sequence: u64,
    /// The handling platform's own reference, once it answered.
    #[serde(default)]
    pub reference: Option<String>,
}

/// What applying one part's status changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PartApplied {
    /// The report was newer than what the part had.
    pub applied: bool,
    /// Parts (indexes) that start now: their hand-overs are due.
    pub started: Vec<usize>,
}

/// A part as the citizen reads it with the case's status.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartView {
    pub id: String,
    pub name: String,
    pub handling_region: String,
    /// `submitted` … `approved`, or `waiting` while it waits for another part.
    pub stage: String,
    pub detail: String,
    pub promised_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handling_reference: Option<String>,
}

/// What the citizen reads of a part that waits.
pub fn waiting_detail(after: &[String]) -> String {
    format!("waits until {} is approved", after.join(", "))
}

impl PartProgress {
    fn decided_against(&self) -> bool {
        matches!(
            Stage::try_from(self.stage),
            Ok(Stage::Rejected | Stage::Withdrawn | Stage::Terminated)
        )
    }

    fn approved(&self) -> bool {
        self.stage == Stage::Approved as i32
    }
}

impl JointCase {
    /// The part handled by the region whose reports `owns` accepts, if exactly one.
    pub fn part_of(&self, owns: impl Fn(&str) -> bool) -> Option<&PartProgress> {
        self.only(|p| owns(&p.region))
    }

    /// The one part handled here, if exactly one is.
    pub fn local_part(&self) -> Option<&PartProgress> {
        self.only(|p| p.local)
    }

    /// The one part `which` picks; `None` for none or several.
    fn only(&self, which: impl Fn(&PartProgress) -> bool) -> Option<&PartProgress> {
        let mut parts = self.parts.iter().filter(|p| which(p));
        let part = parts.next()?;
        parts.next().is_none().then_some(part)
    }

    /// Records part `part_id`'s status if newer than what it had; an approval starts
    /// the parts that waited only for approved parts, a refusal tells those that waited
    /// for it that they will not start.
    pub fn apply(
        &mut self,
        part_id: &str,
        status: &CaseStatus,
        reference: Option<&str>,
    ) -> PartApplied {
        let Some(index) = self.parts.iter().position(|p| p.id == part_id) else {
            return PartApplied::default();
        };
        let part = &mut self.parts[index];
        if let Some(reference) = reference.filter(|r| !r.is_empty()) {
            part.reference = Some(reference.to_owned());
        }
        if status.sequence <= part.sequence {
            return PartApplied::default();
        }
        part.stage = status.stage;
        part.detail = status.detail.clone();
        part.sequence = status.sequence;
        PartApplied {
            applied: true,
            started: self.after_change(index),
        }
    }

    /// What part `index`'s new stage means for the parts that wait for it: approved, it
    /// starts those whose every prerequisite is approved (their indexes); refused, it
    /// tells them they will not start.
    fn after_change(&mut self, index: usize) -> Vec<usize> {
        let part = &self.parts[index];
        let (approved, against) = (part.approved(), part.decided_against());
        let (id, name) = (part.id.clone(), part.name.clone());
        let mut started = Vec::new();
        for i in 0..self.parts.len() {
            let waiting = &self.parts[i];
            if waiting.started || !waiting.after.contains(&id) {
                continue;
            }
            if approved && self.prerequisites_approved(i) {
                let waiting = &mut self.parts[i];
                waiting.started = true;
                waiting.stage = Stage::Submitted as i32;
                waiting.detail = format!(
                    "handed over to region {} after {name} was approved",
                    waiting.region
                );
                started.push(i);
            } else if against {
                self.parts[i].detail = format!("will not start: {name} was not approved");
            }
        }
        started
    }

    /// What the filing region itself says of part `part_id`: its hand-over held as a
    /// dead letter, replayed, or closed by an operator (`stage` then `Rejected`, and the
    /// parts that wait for it will not start). False when the case has no such part.
    pub fn set_part(&mut self, part_id: &str, stage: Option<Stage>, detail: &str) -> bool {
        let Some(index) = self.parts.iter().position(|p| p.id == part_id) else {
            return false;
        };
        let part = &mut self.parts[index];
        part.detail = detail.to_owned();
        if let Some(stage) = stage {
            part.stage = stage as i32;
            self.after_change(index);
        }
        true
    }

    fn prerequisites_approved(&self, index: usize) -> bool {
        self.parts[index]
            .after
            .iter()
            .all(|a| self.parts.iter().any(|p| &p.id == a && p.approved()))
    }

    /// The one status the citizen reads: refused if any part was (naming it); approved
    /// when every part is; more materials needed if a part needs them; submitted while
    /// no started part has been acknowledged; else in review. Its sequence is the sum
    /// of the parts', which grows with every change of any part.
    pub fn combined(&self) -> CaseStatus {
        let stage_of = |s: Stage| self.parts.iter().find(|p| p.stage == s as i32);
        let sequence = self.parts.iter().map(|p| p.sequence).sum();
        let named = |p: &PartProgress| format!("{} (region {})", p.name, p.region);
        let (stage, detail) = if let Some(p) =
            [Stage::Rejected, Stage::Terminated, Stage::Withdrawn]
                .into_iter()
                .find_map(stage_of)
        {
            (p.stage, format!("{}: {}", named(p), p.detail))
        } else if self.parts.iter().all(PartProgress::approved) {
            (Stage::Approved as i32, "every part approved".to_owned())
        } else if let Some(p) = stage_of(Stage::MoreInfoRequired) {
            (p.stage, format!("{}: {}", named(p), p.detail))
        } else if self
            .parts
            .iter()
            .filter(|p| p.started)
            .all(|p| p.stage == Stage::Submitted as i32)
        {
            let waiting: Vec<_> = self.parts.iter().filter(|p| p.started).map(named).collect();
            (
                Stage::Submitted as i32,
                format!("accepted here; handed over: {}", waiting.join(", ")),
            )
        } else {
            let open: Vec<_> = self
                .parts
                .iter()
                .filter(|p| !p.approved())
                .map(|p| {
                    format!(
                        "{} {}",
                        named(p),
                        tongban_proto::contract::codes::stage_name(p.stage)
                    )
                })
                .collect();
            (
                Stage::InReview as i32,
                format!("in progress: {}", open.join("; ")),
            )
        };
        CaseStatus {
            stage,
            detail,
            updated_at: None,
            sequence,
        }
    }

    /// The application part `index` is handed over with: the case's own, addressed to
    /// the part's region, naming the part, the regions of the others and its promise.
    pub fn part_application(&self, case: &Application, index: usize) -> Option<Application> {
        let part = self.parts.get(index)?;
        let mut application = case.clone();
        application.mode = HandlingMode::Joint as i32;
        application.target_region = part.region.clone();
        application.part_id = part.id.clone();
        application.promised_date = part.promised_date.clone();
        application.joint_regions = self
            .parts
            .iter()
            .filter(|p| p.id != part.id)
            .map(|p| p.region.clone())
            .collect();
        Some(application)
    }

    /// Each part as the citizen reads it.
    pub fn views(&self) -> Vec<PartView> {
        self.parts
            .iter()
            .map(|p| PartView {
                id: p.id.clone(),
                name: p.name.clone(),
                handling_region: p.region.clone(),
                stage: if p.started {
                    tongban_proto::contract::codes::stage_name(p.stage)
                } else {
                    "waiting".to_owned()
                },
                detail: p.detail.clone(),
                promised_date: p.promised_date.clone(),
                handling_reference: p.reference.clone(),
            })
            .collect()
    }

    /// Indexes of the parts started at filing (those that wait for none).
    pub fn started(&self) -> Vec<usize> {
        (0..self.parts.len())
            .filter(|&i| self.parts[i].started)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(id: &str, region: &str, after: &[&str]) -> PartProgress {
        PartProgress {
            id: id.into(),
            name: format!("part {id}"),
            region: region.into(),
            local: false,
            after: after.iter().map(|a| (*a).to_owned()).collect(),
            promised_date: String::new(),
            started: after.is_empty(),
            stage: Stage::Submitted as i32,
            detail: if after.is_empty() {
                String::new()
            } else {
                waiting_detail(&after.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
            },
            sequence: 0,
            reference: None,
        }
    }

    fn status(stage: Stage, sequence: u64, detail: &str) -> CaseStatus {
        CaseStatus {
            stage: stage as i32,
            detail: detail.into(),
            updated_at: None,
            sequence,
        }
    }

    fn transfer() -> JointCase {
        JointCase {
            parts: vec![part("out", "310115", &[]), part("in", "440305", &["out"])],
        }
    }

    #[test]
    fn the_transfer_in_starts_once_the_transfer_out_is_approved() {
        let mut case = transfer();
        assert_eq!(case.started(), vec![0]);
        assert_eq!(case.combined().stage, Stage::Submitted as i32);
        let applied = case.apply("out", &status(Stage::Accepted, 1, "accepted"), Some("SH-1"));
        assert_eq!(
            applied,
            PartApplied {
                applied: true,
                started: vec![]
            }
        );
        assert_eq!(case.parts[0].reference.as_deref(), Some("SH-1"));
        assert_eq!(case.combined().stage, Stage::InReview as i32);
        // An older or repeated report changes nothing.
        assert!(
            !case
                .apply("out", &status(Stage::Accepted, 1, "again"), None)
                .applied
        );
        assert!(
            !case
                .apply("nowhere", &status(Stage::Approved, 9, ""), None)
                .applied
        );
        let applied = case.apply("out", &status(Stage::Approved, 2, "ok"), None);
        assert_eq!(applied.started, vec![1]);
        assert!(case.parts[1].started);
        assert!(case.parts[1].detail.contains("after part out was approved"));
        // The part that started is submitted: the case is in review meanwhile.
        assert_eq!(case.combined().stage, Stage::InReview as i32);
        case.apply("in", &status(Stage::Accepted, 1, "accepted"), None);
        case.apply("in", &status(Stage::Approved, 3, "settled"), None);
        let combined = case.combined();
        assert_eq!(combined.stage, Stage::Approved as i32);
        assert_eq!(combined.sequence, 5);
    }

    #[test]
    fn a_refused_part_names_itself_and_its_dependants_never_start() {
        let mut case = transfer();
        case.apply("out", &status(Stage::Rejected, 2, "no such register"), None);
        assert!(!case.parts[1].started);
        assert_eq!(
            case.parts[1].detail,
            "will not start: part out was not approved"
        );
        let combined = case.combined();
        assert_eq!(combined.stage, Stage::Rejected as i32);
        assert_eq!(
            combined.detail,
            "part out (region 310115): no such register"
        );
    }

    #[test]
    fn a_part_closed_by_the_filing_region_is_refused_and_its_dependants_never_start() {
        let mut case = transfer();
        assert!(case.set_part("out", None, "held for review"));
        assert_eq!(case.combined().stage, Stage::Submitted as i32);
        assert_eq!(case.views()[0].detail, "held for review");
        assert!(case.set_part("out", Some(Stage::Rejected), "closed: wrong region"));
        assert_eq!(
            case.parts[1].detail,
            "will not start: part out was not approved"
        );
        assert_eq!(case.combined().stage, Stage::Rejected as i32);
        assert!(!case.set_part("nowhere", None, ""));
    }

    #[test]
    fn a_part_waits_for_every_part_it_names() {
        let mut case = JointCase {
            parts: vec![
                part("a", "110105", &[]),
                part("b", "310115", &[]),
                part("c", "440305", &["a", "b"]),
            ],
        };
        assert!(
            case.apply("a", &status(Stage::Approved, 2, ""), None)
                .started
                .is_empty()
        );
        assert_eq!(
            case.apply("b", &status(Stage::Approved, 2, ""), None)
                .started,
            vec![2]
        );
        let more = case.apply("c", &status(Stage::MoreInfoRequired, 2, "photo"), None);
        assert!(more.applied);
        assert_eq!(case.combined().stage, Stage::MoreInfoRequired as i32);
    }

    #[test]
    fn the_part_application_is_addressed_to_its_region() {
        let case = transfer();
        let base = Application {
            case_number: "310000-20261204-00000001".into(),
            target_region: "310115".into(),
            ..Default::default()
        };
        let app = case.part_application(&base, 1).unwrap();
        assert_eq!(app.target_region, "440305");
        assert_eq!(app.part_id, "in");
        assert_eq!(app.joint_regions, vec!["310115".to_owned()]);
        assert_eq!(app.mode, HandlingMode::Joint as i32);
        assert!(case.part_application(&base, 2).is_none());
        assert_eq!(
            case.part_of(|r| r.starts_with("44")).map(|p| p.id.as_str()),
            Some("in")
        );
        assert!(case.part_of(|_| true).is_none());
    }
}
