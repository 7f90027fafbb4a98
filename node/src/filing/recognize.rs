//! Pre-review through the federation: the applicant's identity verified with their
//! home region, the licenses they cite looked up at their issuing regions, and the
//! licenses their home region holds for them fetched for the materials still missing
//! (减证便民: the citizen brings no paper a region already issued). All through the
//! gateway, which verifies, caches and judges each answer against the
//! mutual-recognition catalog; the same for every applicant, whatever their region.

use std::{collections::BTreeMap, time::Duration};

use futures_util::future::join_all;
use tongban_proto::{
    rules::catalog::{CatalogItem, HandlingMode, MaterialKind},
    rules::consent,
    v1::{
        IdentityVerdict, LicenseVerdict, ListLicensesRequest, ListLicensesResponse,
        LookupLicenseRequest, LookupPurpose, VerdictOutcome, VerdictReason, VerdictSource,
        VerifyIdentityRequest,
    },
};
use tongban_runtime::observability::trace_context::TraceParent;

use super::check::{Checked, CitedLicense};
use crate::gateway_client::{CallFailed, GatewayClient};

/// What the federation said of one license.
#[derive(Clone, Debug)]
pub struct LicenseFinding {
    /// The material it was cited for, or that it satisfies.
    pub material_id: String,
    pub verdict: LicenseVerdict,
    /// What the license states, when it was recognized.
    pub fields: BTreeMap<String, String>,
}

impl LicenseFinding {
    pub fn recognized(&self) -> bool {
        self.verdict.outcome == VerdictOutcome::Recognized as i32
    }
}

/// Everything pre-review learned from the federation.
#[derive(Clone, Debug)]
pub struct Findings {
    pub identity: IdentityVerdict,
    /// The cited licenses, then those fetched from the home region, one per material
    /// at most.
    pub licenses: Vec<LicenseFinding>,
    /// False when some region could not be asked now: the application waits in
    /// pre-review and the lookups are tried again.
    pub complete: bool,
}

impl Findings {
    /// Whether the identity check refused the applicant for good.
    pub fn identity_refused(&self) -> bool {
        !matches!(
            VerdictOutcome::try_from(self.identity.outcome),
            Ok(VerdictOutcome::Recognized) | Ok(VerdictOutcome::CannotVerifyNow)
        )
    }

    /// How many answers came from the gateway's cache.
    pub fn cached(&self) -> usize {
        let cached = |s: i32| s == VerdictSource::Cache as i32;
        usize::from(cached(self.identity.source))
            + self
                .licenses
                .iter()
                .filter(|l| cached(l.verdict.source))
                .count()
    }

    /// The federation did not answer within pre-review's time: nothing is known yet.
    fn unanswered() -> Findings {
        Findings {
            identity: unverified_identity("the federation did not answer in time".into()),
            licenses: Vec::new(),
            complete: false,
        }
    }
}

/// Where the applicant asked for their data to be fetched: at a counter for a case
/// accepted there on the competent region's behalf (代收代办), else online.
fn channel(mode: HandlingMode) -> &'static str {
    match mode {
        HandlingMode::ProxyAcceptance => "window",
        HandlingMode::FullyOnline | HandlingMode::Joint => "portal",
    }
}

/// Asks the federation on pre-review's behalf.
#[derive(Clone)]
pub struct Recognizer {
    pub client: GatewayClient,
    /// How long pre-review waits for all its lookups together.
    pub timeout: Duration,
}

impl Recognizer {
    /// Verifies the applicant, looks up the licenses they cite and fetches the home
    /// region's licenses for required license materials still missing, all at once,
    /// for `case_number`, because the applicant asked for it by filing at `filed_ms`
    /// (Unix milliseconds): every lookup carries their request.
    pub async fn recognize(
        &self,
        checked: &Checked,
        (case_number, filed_ms): (&str, i64),
        trace: TraceParent,
    ) -> Findings {
        let purpose = LookupPurpose {
            one_thing_id: checked.item.id.clone(),
            case_number: case_number.to_owned(),
            applicant_request: Some(consent::request(channel(checked.mode), filed_ms)),
        };
        let asked = async {
            tokio::join!(
                self.verify_identity(checked, &purpose, trace),
                self.look_up_cited(checked, &purpose, trace),
                self.fetch_from_home(checked, &purpose, trace),
            )
        };
        let Ok((identity, lookups, home)) = tokio::time::timeout(self.timeout, asked).await else {
            return Findings::unanswered();
        };
        let identity = identity.unwrap_or_else(|failed| {
            unverified_identity(format!(
                "identity could not be verified now ({})",
                failed.status.code()
            ))
        });
        let mut licenses = cited_findings(&checked.cited, lookups);
        let answered_now = !cannot_verify_now(identity.outcome)
            && licenses
                .iter()
                .all(|l| !cannot_verify_now(l.verdict.outcome));
        let home_answered = add_from_home(&checked.item, home, &mut licenses);
        Findings {
            identity,
            licenses,
            complete: answered_now && home_answered,
        }
    }

    async fn verify_identity(
        &self,
        checked: &Checked,
        purpose: &LookupPurpose,
        trace: TraceParent,
    ) -> Result<IdentityVerdict, CallFailed> {
        let request = VerifyIdentityRequest {
            id_number: checked.applicant.as_str().to_owned(),
            name: checked.name.clone(),
            purpose: Some(purpose.clone()),
        };
        self.client.verify_identity(request, Some(trace)).await
    }

    /// Each cited license at its issuing region, in the order cited.
    async fn look_up_cited(
        &self,
        checked: &Checked,
        purpose: &LookupPurpose,
        trace: TraceParent,
    ) -> Vec<Result<LicenseVerdict, CallFailed>> {
        join_all(checked.cited.iter().map(|c| {
            let request = LookupLicenseRequest {
                license_id: c.license_id.clone(),
                // Any type the catalog accepts for the material will do.
                license_type: String::new(),
                purpose: Some(purpose.clone()),
                material_id: c.material_id.clone(),
                holder_id_number: checked.applicant.as_str().to_owned(),
            };
            self.client.lookup_license(request, Some(trace))
        }))
        .await
    }

    /// The licenses the home region holds for the applicant, when a required license
    /// material was not cited (`None`: nothing was asked).
    async fn fetch_from_home(
        &self,
        checked: &Checked,
        purpose: &LookupPurpose,
        trace: TraceParent,
    ) -> Option<Result<ListLicensesResponse, CallFailed>> {
        if !wanted_from_home(&checked.item, &checked.cited) {
            return None;
        }
        let request = ListLicensesRequest {
            holder_id_number: checked.applicant.as_str().to_owned(),
            issuing_region: String::new(),
            purpose: Some(purpose.clone()),
        };
        Some(self.client.list_licenses(request, Some(trace)).await)
    }
}

/// Whether a required license material was left uncited.
fn wanted_from_home(item: &CatalogItem, cited: &[CitedLicense]) -> bool {
    item.materials.iter().any(|m| {
        m.required
            && m.kind == MaterialKind::License
            && !cited.iter().any(|c| c.material_id == m.id)
    })
}

/// The cited licenses' verdicts; a lookup that failed counts as one that cannot be
/// verified now.
fn cited_findings(
    cited: &[CitedLicense],
    answers: Vec<Result<LicenseVerdict, CallFailed>>,
) -> Vec<LicenseFinding> {
    cited
        .iter()
        .zip(answers)
        .map(|(c, answer)| {
            let verdict = answer.unwrap_or_else(|failed| LicenseVerdict {
                license_id: c.license_id.clone(),
                outcome: VerdictOutcome::CannotVerifyNow as i32,
                reason: VerdictReason::IssuerUnavailable as i32,
                detail: format!(
                    "license could not be looked up now ({})",
                    failed.status.code()
                ),
                ..Default::default()
            });
            finding(c.material_id.clone(), verdict)
        })
        .collect()
}

/// Adds, for each required material still missing, the first recognized license of
/// the home region's that stands in for it. False when the home region could not be
/// asked now.
fn add_from_home(
    item: &CatalogItem,
    home: Option<Result<ListLicensesResponse, CallFailed>>,
    licenses: &mut Vec<LicenseFinding>,
) -> bool {
    let list = match home {
        None => return true,
        Some(Err(_)) => return false,
        Some(Ok(list)) if cannot_verify_now(list.outcome) => return false,
        // The home region answered that it holds nothing usable: nothing to add.
        Some(Ok(list)) if list.outcome != VerdictOutcome::Recognized as i32 => return true,
        Some(Ok(list)) => list,
    };
    for m in &item.materials {
        let taken = licenses
            .iter()
            .any(|l| l.material_id == m.id && l.recognized());
        if taken || !m.required {
            continue;
        }
        if let Some(v) = list
            .licenses
            .iter()
            .find(|v| v.satisfies_materials.contains(&m.id))
        {
            licenses.push(finding(m.id.clone(), v.clone()));
        }
    }
    true
}

fn cannot_verify_now(outcome: i32) -> bool {
    outcome == VerdictOutcome::CannotVerifyNow as i32
}

/// An identity verdict saying the home region cannot be asked now.
fn unverified_identity(detail: String) -> IdentityVerdict {
    IdentityVerdict {
        outcome: VerdictOutcome::CannotVerifyNow as i32,
        reason: VerdictReason::IssuerUnavailable as i32,
        detail,
        ..Default::default()
    }
}

fn finding(material_id: String, verdict: LicenseVerdict) -> LicenseFinding {
    // What the gateway verified the license to state (its cached answers carry no
    // signature to decode it from again).
    let fields = if verdict.outcome == VerdictOutcome::Recognized as i32 {
        verdict.fields.clone()
    } else {
        BTreeMap::new()
    };
    LicenseFinding {
        material_id,
        verdict,
        fields,
    }
}
