//! What the citizen is told at once (一次告知): the receipt of a filing, and the names
//! it shows for stages and for the federation's verdicts.

use serde::{Deserialize, Serialize};
pub use tongban_proto::contract::codes::stage_name;
use tongban_proto::{
    rules::catalog,
    v1::{Application, VerdictOutcome, VerdictReason, VerdictSource},
};

/// What the citizen is told at once (一次告知).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Receipt {
    pub case_number: String,
    pub one_thing_id: String,
    pub one_thing_name: String,
    /// Region that accepted the filing (this node's).
    pub origin_region: String,
    /// Competent region that handles the case.
    pub handling_region: String,
    pub handling_region_name: String,
    pub mode: catalog::HandlingMode,
    /// RFC 3339.
    pub filed_at: String,
    /// YYYY-MM-DD.
    pub promised_date: String,
    pub materials_received: Vec<MaterialNote>,
    pub materials_missing: Vec<MaterialNote>,
    /// True when the case is handled by another region and forwarded through the gateway.
    pub forwarded: bool,
    /// The applicant's identity as their home region confirmed it.
    #[serde(default)]
    pub identity: Option<IdentityNote>,
    /// Materials satisfied by electronic licenses (from any region), not paper.
    #[serde(default)]
    pub materials_recognized: Vec<RecognizedMaterial>,
    /// Licenses the applicant cited that were not accepted, and why.
    #[serde(default)]
    pub materials_not_recognized: Vec<MaterialProblem>,
    /// Form fields filled in from recognized licenses (无感申报).
    #[serde(default)]
    pub prefilled_fields: Vec<String>,
    /// 多地联办: the parts, each with the region that handles it and its promise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<crate::joint::PartView>,
    /// `complete`, or `pending` while an issuing region cannot be asked: the case then
    /// waits in pre-review and is handed over once verified.
    #[serde(default)]
    pub verification: String,
    /// The trace of the case's calls across regions (32 hex digits), for support staff
    /// and SREs following it.
    #[serde(default)]
    pub trace_id: String,
}

/// The identity check on a receipt.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct IdentityNote {
    /// `recognized` or `cannot_verify_now`.
    pub outcome: String,
    pub issuing_region: String,
    /// Where the answer came from: `issuer`, `cache`.
    pub source: String,
}

/// A material satisfied by a recognized license.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct RecognizedMaterial {
    pub id: String,
    pub name: String,
    pub license_id: String,
    pub license_type: String,
    pub issuing_region: String,
    /// `issuer`, `cache` or `grace`.
    pub source: String,
}

/// A cited license that was not accepted.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct MaterialProblem {
    pub id: String,
    pub license_id: String,
    /// `not_recognized`, `revoked`, `expired`, `not_found`, `cannot_verify_now`.
    pub outcome: String,
    /// The precise reason (`signature_invalid`, `type_not_recognized`, ...).
    pub reason: String,
    pub detail: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct MaterialNote {
    pub id: String,
    pub name: String,
}

impl Receipt {
    /// The receipt as stored (filled in from the application if it cannot be read).
    pub fn stored(stored: &str, application: &Application) -> Receipt {
        serde_json::from_str(stored).unwrap_or_else(|_| Receipt {
            case_number: application.case_number.clone(),
            one_thing_id: application.one_thing_id.clone(),
            one_thing_name: String::new(),
            origin_region: application.origin_region.clone(),
            handling_region: application.target_region.clone(),
            handling_region_name: String::new(),
            mode: catalog::HandlingMode::try_from(application.mode)
                .unwrap_or(catalog::HandlingMode::FullyOnline),
            filed_at: String::new(),
            promised_date: application.promised_date.clone(),
            materials_received: Vec::new(),
            materials_missing: Vec::new(),
            forwarded: false,
            identity: None,
            materials_recognized: Vec::new(),
            materials_not_recognized: Vec::new(),
            prefilled_fields: application.prefilled_fields.clone(),
            parts: Vec::new(),
            verification: String::new(),
            trace_id: String::new(),
        })
    }
}

/// The name a verdict outcome shows (`recognized`, `cannot_verify_now`).
pub fn outcome_name(outcome: i32) -> String {
    VerdictOutcome::try_from(outcome)
        .map(|o| {
            o.as_str_name()
                .trim_start_matches("VERDICT_OUTCOME_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| "unspecified".into())
}

/// The name of a verdict reason (`issuer_unavailable`).
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
