//! Pre-review through the federation: the applicant's identity verified with their
//! home region, the licenses they cite looked up at their issuing regions, and the
//! licenses their home region holds for them fetched for the materials still missing
//! (减证便民: the citizen brings no paper a region already issued). All through the
//! gateway, which verifies, caches and judges each answer against the
//! mutual-recognition catalog; the same for every applicant, whatever their region.

use std::{collections::BTreeMap, time::Duration};

use futures_util::future::join_all;
use tongban_proto::{
    catalog::CatalogItem,
    resident_id::ResidentId,
    v1::{
        IdentityVerdict, LicenseVerdict, ListLicensesRequest, LookupLicenseRequest, LookupPurpose,
        VerdictOutcome, VerdictReason, VerdictSource, VerifyIdentityRequest,
    },
};
use tongban_runtime::trace_context::TraceParent;

use crate::gateway_client::GatewayClient;

/// A license the applicant cites for a material.
#[derive(Clone, Debug)]
pub struct CitedLicense {
    pub material_id: String,
    pub license_id: String,
}

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
}

fn cannot_verify(detail: String) -> (VerdictOutcome, VerdictReason, String) {
    (
        VerdictOutcome::CannotVerifyNow,
        VerdictReason::IssuerUnavailable,
        detail,
    )
}

/// Asks the federation on pre-review's behalf.
#[derive(Clone)]
pub struct Recognizer {
    pub client: GatewayClient,
    /// How long pre-review waits for all its lookups together.
    pub timeout: Duration,
}

impl Recognizer {
    /// Verifies `applicant`, looks up `cited` and fetches the home region's licenses
    /// for required license materials still missing, for `item` and `case_number`.
    pub async fn recognize(
        &self,
        item: &CatalogItem,
        applicant: &ResidentId,
        name: &str,
        cited: &[CitedLicense],
        case_number: &str,
        trace: TraceParent,
    ) -> Findings {
        let purpose = LookupPurpose {
            one_thing_id: item.id.clone(),
            case_number: case_number.to_owned(),
        };
        let trace = || Some(trace);
        let identity = self.client.verify_identity(
            VerifyIdentityRequest {
                id_number: applicant.as_str().to_owned(),
                name: name.to_owned(),
                purpose: Some(purpose.clone()),
            },
            trace(),
        );
        let lookups = join_all(cited.iter().map(|c| {
            self.client.lookup_license(
                LookupLicenseRequest {
                    license_id: c.license_id.clone(),
                    // Any type the catalog accepts for the material will do.
                    license_type: String::new(),
                    purpose: Some(purpose.clone()),
                    material_id: c.material_id.clone(),
                    holder_id_number: applicant.as_str().to_owned(),
                },
                trace(),
            )
        }));
        let cited_ids: Vec<&str> = cited.iter().map(|c| c.material_id.as_str()).collect();
        let wanted_from_home = item.materials.iter().any(|m| {
            m.required
                && m.kind == tongban_proto::catalog::MaterialKind::License
                && !cited_ids.contains(&m.id.as_str())
        });
        let home = async {
            if !wanted_from_home {
                return None;
            }
            Some(
                self.client
                    .list_licenses(
                        ListLicensesRequest {
                            holder_id_number: applicant.as_str().to_owned(),
                            issuing_region: String::new(),
                            purpose: Some(purpose.clone()),
                        },
                        trace(),
                    )
                    .await,
            )
        };
        let all = async { tokio::join!(identity, lookups, home) };
        let Ok((identity, lookups, home)) = tokio::time::timeout(self.timeout, all).await else {
            let (outcome, reason, detail) =
                cannot_verify("the federation did not answer in time".into());
            return Findings {
                identity: IdentityVerdict {
                    outcome: outcome as i32,
                    reason: reason as i32,
                    detail,
                    ..Default::default()
                },
                licenses: Vec::new(),
                complete: false,
            };
        };
        let mut complete = true;
        let identity = identity.unwrap_or_else(|failed| {
            let (outcome, reason, detail) = cannot_verify(format!(
                "identity could not be verified now ({})",
                failed.status.code()
            ));
            IdentityVerdict {
                outcome: outcome as i32,
                reason: reason as i32,
                detail,
                ..Default::default()
            }
        });
        if identity.outcome == VerdictOutcome::CannotVerifyNow as i32 {
            complete = false;
        }
        let mut licenses = Vec::new();
        for (c, verdict) in cited.iter().zip(lookups) {
            let verdict = verdict.unwrap_or_else(|failed| {
                let (outcome, reason, detail) = cannot_verify(format!(
                    "license could not be looked up now ({})",
                    failed.status.code()
                ));
                LicenseVerdict {
                    license_id: c.license_id.clone(),
                    outcome: outcome as i32,
                    reason: reason as i32,
                    detail,
                    ..Default::default()
                }
            });
            if verdict.outcome == VerdictOutcome::CannotVerifyNow as i32 {
                complete = false;
            }
            licenses.push(finding(c.material_id.clone(), verdict));
        }
        match home {
            None => {}
            Some(Ok(list)) if list.outcome == VerdictOutcome::Recognized as i32 => {
                // Each still-missing material gets the first recognized license that
                // stands in for it.
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
            }
            Some(Ok(list)) if list.outcome == VerdictOutcome::CannotVerifyNow as i32 => {
                complete = false;
            }
            // The home region answered that it holds nothing usable: nothing to add.
            Some(Ok(_)) => {}
            Some(Err(_)) => complete = false,
        }
        Findings {
            identity,
            licenses,
            complete,
        }
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

/// The name a verdict outcome or reason shows (`recognized`, `issuer_unavailable`).
pub fn outcome_name(outcome: i32) -> String {
    VerdictOutcome::try_from(outcome)
        .map(|o| {
            o.as_str_name()
                .trim_start_matches("VERDICT_OUTCOME_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| "unspecified".into())
}

/// The name of a verdict reason.
pub fn reason_name(reason: i32) -> String {
    VerdictReason::try_from(reason)
        .map(|r| {
            r.as_str_name()
                .trim_start_matches("VERDICT_REASON_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| "unspecified".into())
}

/// The name of a verdict source.
pub fn source_name(source: i32) -> String {
    VerdictSource::try_from(source)
        .map(|r| {
            r.as_str_name()
                .trim_start_matches("VERDICT_SOURCE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| "unspecified".into())
}
