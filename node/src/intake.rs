//! Filing an application at this node: pre-review (智能预审) against the catalog and,
//! through the federation, of the applicant's identity and licenses; the decision of
//! the handling region; the durable write of application, receipt and outbox entry;
//! and the receipt the citizen gets (一次告知: what was accepted, what was recognized
//! from licenses, what is still missing, what was filled in for them).
//!
//! In steps: [`Intake::check`] reads the request against the catalog (no network);
//! [`Intake::recognize`] asks the federation; [`Intake::compose`] builds application and
//! receipt from both; the store files them in one transaction. A filing whose lookups
//! cannot complete now (an issuing region unreachable) is receipted and waits in
//! pre-review; [`Intake::resume`] finishes it from the outbox.

use opentelemetry::{KeyValue, trace::SpanKind};
use std::{collections::BTreeMap, sync::Arc};
use tongban_runtime::trace_context::TraceParent;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tongban_proto::{
    catalog::{self, CatalogItem},
    resident_id::ResidentId,
    v1::{self, Application, MaterialRef, MaterialSource, Stage},
};

use crate::{
    context::NodeContext,
    platform::PlatformError,
    recognition::{CitedLicense, Findings, Recognizer, outcome_name, reason_name, source_name},
    store::{NewFiling, StoreError, now_ms, timestamp_ms},
};

/// A filing as the portal or counter sends it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilingRequest {
    /// Catalog id of the one-thing.
    pub one_thing_id: String,
    pub applicant: ApplicantInput,
    /// The one form: field name → value.
    #[serde(default)]
    pub form: BTreeMap<String, String>,
    /// Materials provided with the filing.
    #[serde(default)]
    pub materials: Vec<MaterialInput>,
    /// Handling mode; default: the first mode the catalog item offers.
    #[serde(default)]
    pub mode: Option<catalog::HandlingMode>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicantInput {
    pub id_number: String,
    pub name: String,
    #[serde(default)]
    pub phone: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MaterialInput {
    pub material_id: String,
    pub source: MaterialSourceInput,
    pub reference: String,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaterialSourceInput {
    License,
    Upload,
    Paper,
}

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

/// One problem with a filing, named by its path in the request (`form.start_date`,
/// `applicant.id_number`, `materials[0].material_id`).
#[derive(Clone, Debug, Serialize)]
pub struct FieldProblem {
    pub field: String,
    pub problem: String,
}

impl std::fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl From<catalog::FieldError> for FieldProblem {
    fn from(e: catalog::FieldError) -> Self {
        field(format!("form.{}", e.field), e.problem)
    }
}

/// Why a filing was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The applicant's home region does not confirm the identity.
    #[error("{0}")]
    IdentityRefused(FieldProblem),
    /// The filing itself is wrong; every problem is listed with its field.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldProblem>),
    /// The client's idempotency key was used before for a different filing.
    #[error("Idempotency-Key {0:?} was used for a different filing")]
    KeyReused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
}

fn field(field: impl Into<String>, problem: impl Into<String>) -> FieldProblem {
    FieldProblem {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Files applications at this node.
pub struct Intake {
    pub ctx: Arc<NodeContext>,
    /// Wakes the forwarder when an outbox entry was written.
    pub outbox_written: Arc<Notify>,
    /// Asks the federation for identity and licenses.
    pub recognizer: Recognizer,
}

/// A filing request read against the catalog (before anything is asked of anyone).
pub struct Checked {
    pub item: CatalogItem,
    pub catalog_version: String,
    pub applicant: ResidentId,
    pub name: String,
    pub phone: String,
    pub mode: catalog::HandlingMode,
    pub form: BTreeMap<String, String>,
    /// Uploads and paper materials, as given.
    pub provided: Vec<MaterialRef>,
    /// Licenses the applicant cites for materials.
    pub cited: Vec<CitedLicense>,
}

/// An application and its receipt, ready to file.
pub struct Composed {
    pub application: Application,
    pub receipt: Receipt,
    pub forward: bool,
}

impl Intake {
    /// Pre-reviews and files; the receipt is returned only once everything is durable.
    pub async fn file(
        &self,
        request: FilingRequest,
        client_key: Option<String>,
        parent: Option<TraceParent>,
    ) -> Result<(Receipt, bool), IntakeError> {
        // Digest of the request as parsed (sorted form map, fixed field order), so a
        // retry with the same key must carry the same filing.
        let client_key = client_key.map(|key| {
            let canonical = serde_json::to_vec(&request).unwrap_or_default();
            (key, tongban_proto::digest::sha256_hex(&canonical))
        });
        let now = tongban_proto::calendar::business_now();
        let checked = self.check(&request, now.date())?;
        // A retry gets its first receipt, without asking the federation again.
        if let Some((key, sha)) = &client_key
            && let Some(earlier) = self
                .ctx
                .store
                .client_replay(key.clone(), sha.clone())
                .await
                .map_err(store_error)?
        {
            return Ok((receipt_of(&earlier.receipt, &earlier.application), true));
        }
        let filed_at = timestamp_ms(now_ms());
        let case_number = self
            .ctx
            .store
            .reserve_case_number(self.ctx.region.to_string(), Some(filed_at))
            .await?;
        // The filing's span: the case's calls (lookups now, deliveries later) are its
        // children.
        let mut span = self.ctx.traces.span(
            "file application",
            SpanKind::Server,
            parent.as_ref(),
            vec![
                KeyValue::new("tongban.one_thing", checked.item.id.clone()),
                KeyValue::new("tongban.origin", self.ctx.region.to_string()),
            ],
        );
        let trace = span
            .context()
            .unwrap_or_else(|| TraceParent::for_case(&case_number));
        let findings = self.recognize(&checked, &case_number, trace).await;
        if findings.identity_refused() {
            span.fail("identity not confirmed");
            return Err(IntakeError::IdentityRefused(field(
                "applicant",
                findings.identity.detail.clone(),
            )));
        }
        let mut composed = self
            .compose(&checked, &findings, &case_number, filed_at, now)
            .inspect_err(|_| span.fail("refused at pre-review"))?;
        composed.receipt.trace_id = trace.trace_id_hex();
        span.set("tongban.target", composed.application.target_region.clone());
        span.set("tongban.cached_lookups", findings.cached() as i64);
        let applicant_hash = checked.applicant.keyed_hash(&self.ctx.id_hash_key);
        let receipt_json = serde_json::to_string(&composed.receipt).unwrap_or_default();
        let filing = self
            .ctx
            .store
            .file(NewFiling {
                client_key,
                application: composed.application,
                pending_verification: !findings.complete,
                applicant_hash: applicant_hash.clone(),
                applicant_masked: checked.applicant.masked(),
                forward: composed.forward,
                receipt: Box::new(move |_| receipt_json),
                trace: Some(trace),
            })
            .await
            .map_err(store_error)?;
        let filed = &filing.application;
        if !filing.replayed {
            if let Some(metrics) = &self.ctx.metrics {
                metrics.filed(checked.applicant.as_str(), &filed.one_thing_id);
            }
            self.ctx.audit.filed(
                &filed.case_number,
                &filed.one_thing_id,
                &filed.target_region,
                &trace.trace_id_hex(),
            );
        }
        tracing::info!(
            case = %filed.case_number,
            one_thing = %filed.one_thing_id,
            applicant = &applicant_hash[..12],
            handling_region = %filed.target_region,
            forward = composed.forward,
            verification = %composed.receipt.verification,
            recognized = composed.receipt.materials_recognized.len(),
            cached = findings.cached(),
            replayed = filing.replayed,
            trace_id = %trace.trace_id_hex(),
            "application filed"
        );
        // The forwarder hands the case over (to the gateway, or to our own platform),
        // or goes on with its pre-review.
        self.outbox_written.notify_one();
        Ok((receipt_of(&filing.receipt, filed), filing.replayed))
    }

    /// Reads a request against the catalog: every problem named by its field, nothing
    /// asked of the federation yet. Required fields that a recognized license can fill
    /// in may be left empty here.
    pub fn check(
        &self,
        request: &FilingRequest,
        today: time::Date,
    ) -> Result<Checked, IntakeError> {
        let catalog = self.ctx.catalog.get();
        let mut errors = Vec::new();
        let item = catalog.item(&request.one_thing_id);
        if item.is_none() {
            errors.push(field(
                "one_thing_id",
                format!(
                    "unknown one-thing {:?} in catalog {}",
                    request.one_thing_id, catalog.version
                ),
            ));
        }
        let applicant =
            match ResidentId::parse(&request.applicant.id_number, self.ctx.regions, today) {
                Ok(id) => Some(id),
                Err(e) => {
                    errors.push(field("applicant.id_number", e.to_string()));
                    None
                }
            };
        if request.applicant.name.trim().is_empty() {
            errors.push(field("applicant.name", "is required"));
        } else if request.applicant.name.chars().count() > 64 {
            errors.push(field("applicant.name", "is longer than 64 characters"));
        } else if let Some(problem) = tongban_proto::text::problem(&request.applicant.name) {
            errors.push(field("applicant.name", problem));
        }
        let Some(item) = item else {
            return Err(IntakeError::Invalid(errors));
        };
        if let Err(form_errors) = item.validate_form(&request.form, self.ctx.regions, today) {
            errors.extend(
                form_errors
                    .0
                    .into_iter()
                    .filter(|e| !prefillable_and_empty(item, &request.form, &e.field))
                    .map(FieldProblem::from),
            );
        }
        // Default: the item's first offered mode.
        let mode = request
            .mode
            .or_else(|| item.modes.first().copied())
            .unwrap_or(catalog::HandlingMode::FullyOnline);
        if !item.allows_mode(mode) {
            errors.push(field(
                "mode",
                format!("{mode:?} is not offered for {}", item.id),
            ));
        } else if mode == catalog::HandlingMode::Joint {
            // 多地联办 needs the other regions' parts collected and delivered to each of
            // them; until that exists, say so rather than accept and handle it as one.
            errors.push(field(
                "mode",
                "joint handling across several regions is not supported by this node yet",
            ));
        }
        let (provided, cited) = self.materials(item, &request.materials, &mut errors);
        let Some(applicant) = applicant else {
            return Err(IntakeError::Invalid(errors));
        };
        if !errors.is_empty() {
            return Err(IntakeError::Invalid(errors));
        }
        Ok(Checked {
            item: item.clone(),
            catalog_version: catalog.version.clone(),
            applicant,
            name: request.applicant.name.trim().to_owned(),
            phone: request.applicant.phone.trim().to_owned(),
            mode,
            form: request.form.clone(),
            provided,
            cited,
        })
    }

    /// Asks the federation about the applicant and their licenses, for `case_number`.
    pub async fn recognize(
        &self,
        checked: &Checked,
        case_number: &str,
        trace: TraceParent,
    ) -> Findings {
        self.recognizer
            .recognize(
                &checked.item,
                &checked.applicant,
                &checked.name,
                &checked.cited,
                case_number,
                trace,
            )
            .await
    }

    /// The application and receipt from a checked request and what the federation said.
    pub fn compose(
        &self,
        checked: &Checked,
        findings: &Findings,
        case_number: &str,
        filed_at: prost_types::Timestamp,
        now: time::OffsetDateTime,
    ) -> Result<Composed, IntakeError> {
        let item = &checked.item;
        let today = now.date();
        // 无感申报: fields a recognized license states, filled in where left empty.
        let mut form = checked.form.clone();
        let mut prefilled = Vec::new();
        for f in &item.form {
            let Some(prefill) = &f.prefill else { continue };
            if form.get(&f.name).is_some_and(|v| !v.trim().is_empty()) {
                continue;
            }
            let value = findings
                .licenses
                .iter()
                .filter(|l| l.recognized() && l.verdict.license_type == prefill.license_type)
                .find_map(|l| l.fields.get(&prefill.field));
            if let Some(value) = value {
                form.insert(f.name.clone(), value.clone());
                prefilled.push(f.name.clone());
            }
        }
        // The filled-in form must pass as any other; while verification is pending, a
        // field a license may still fill stays open.
        if let Err(form_errors) = item.validate_form(&form, self.ctx.regions, today) {
            let errors: Vec<FieldProblem> = form_errors
                .0
                .into_iter()
                .filter(|e| findings.complete || !prefillable_and_empty(item, &form, &e.field))
                .map(FieldProblem::from)
                .collect();
            if !errors.is_empty() {
                return Err(IntakeError::Invalid(errors));
            }
        }
        let target = item
            .competent_region(&checked.applicant.home_region(), &form, &self.ctx.region)
            .map_err(|e| IntakeError::Invalid(vec![e.into()]))?;
        // Route to the province of a historical or county code: provinces (or their
        // delegated nodes) are what the registry knows.
        let target = if self.ctx.regions.is_known(&target) {
            target
        } else {
            target.province()
        };
        let forward = !self.ctx.prefix.contains(&target);

        // Materials: what was given, plus every material a recognized license satisfies.
        let mut materials = checked.provided.clone();
        let mut recognized = Vec::new();
        let mut problems = Vec::new();
        for l in &findings.licenses {
            let name = item
                .material(&l.material_id)
                .map(|m| m.name.clone())
                .unwrap_or_default();
            if l.recognized() {
                if materials.iter().any(|m| m.material_id == l.material_id) {
                    continue;
                }
                materials.push(MaterialRef {
                    material_id: l.material_id.clone(),
                    source: MaterialSource::License as i32,
                    reference: l.verdict.license_id.clone(),
                });
                recognized.push(RecognizedMaterial {
                    id: l.material_id.clone(),
                    name,
                    license_id: l.verdict.license_id.clone(),
                    license_type: l.verdict.license_type.clone(),
                    issuing_region: l.verdict.issuing_region.clone(),
                    source: source_name(l.verdict.source),
                });
            } else {
                problems.push(MaterialProblem {
                    id: l.material_id.clone(),
                    license_id: l.verdict.license_id.clone(),
                    outcome: outcome_name(l.verdict.outcome),
                    reason: reason_name(l.verdict.reason),
                    detail: l.verdict.detail.clone(),
                });
            }
        }
        let note = |m: &catalog::Material| MaterialNote {
            id: m.id.clone(),
            name: m.name.clone(),
        };
        let missing = item
            .missing_materials(&materials)
            .into_iter()
            .map(note)
            .collect();
        let received = materials
            .iter()
            .filter_map(|m| item.material(&m.material_id))
            .map(note)
            .collect();
        let promised = item.promised_date(today);
        let application = Application {
            case_number: case_number.to_owned(),
            one_thing_id: item.id.clone(),
            catalog_version: checked.catalog_version.clone(),
            origin_region: self.ctx.region.to_string(),
            target_region: target.to_string(),
            mode: v1::HandlingMode::from(checked.mode) as i32,
            applicant: Some(v1::Applicant {
                id_number: checked.applicant.as_str().to_owned(),
                name: checked.name.clone(),
                phone: checked.phone.clone(),
            }),
            form,
            materials,
            filed_at: Some(filed_at),
            promised_date: promised.to_string(),
            joint_regions: Vec::new(),
            prefilled_fields: prefilled.clone(),
        };
        let receipt = Receipt {
            case_number: case_number.to_owned(),
            one_thing_id: item.id.clone(),
            one_thing_name: item.name.clone(),
            origin_region: self.ctx.region.to_string(),
            handling_region: target.to_string(),
            handling_region_name: self
                .ctx
                .regions
                .get(&target)
                .map(|d| d.name.clone())
                .unwrap_or_default(),
            mode: checked.mode,
            filed_at: now
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            promised_date: promised.to_string(),
            materials_received: received,
            materials_missing: missing,
            forwarded: forward,
            identity: Some(IdentityNote {
                outcome: outcome_name(findings.identity.outcome),
                issuing_region: findings.identity.issuing_region.clone(),
                source: source_name(findings.identity.source),
            }),
            materials_recognized: recognized,
            materials_not_recognized: problems,
            prefilled_fields: prefilled,
            verification: if findings.complete {
                "complete"
            } else {
                "pending"
            }
            .into(),
            // Set by the caller, which knows the case's trace.
            trace_id: String::new(),
        };
        Ok(Composed {
            application,
            receipt,
            forward,
        })
    }

    /// Finishes the pre-review of a case filed while verification could not complete:
    /// the lookups again, then either its hand-over (true) or a refusal the citizen
    /// sees. `Ok(false)` means the federation still cannot answer: try again later.
    pub async fn resume(
        &self,
        outbox_id: i64,
        application: &Application,
        trace: TraceParent,
    ) -> Result<bool, IntakeError> {
        let now = tongban_proto::calendar::business_now();
        let applicant = application.applicant.clone().unwrap_or_default();
        let request = FilingRequest {
            one_thing_id: application.one_thing_id.clone(),
            applicant: ApplicantInput {
                id_number: applicant.id_number,
                name: applicant.name,
                phone: applicant.phone,
            },
            form: application.form.clone(),
            materials: application
                .materials
                .iter()
                .map(|m| MaterialInput {
                    material_id: m.material_id.clone(),
                    source: match MaterialSource::try_from(m.source) {
                        Ok(MaterialSource::License) => MaterialSourceInput::License,
                        Ok(MaterialSource::Paper) => MaterialSourceInput::Paper,
                        _ => MaterialSourceInput::Upload,
                    },
                    reference: m.reference.clone(),
                })
                .collect(),
            mode: catalog::HandlingMode::try_from(application.mode).ok(),
        };
        let refuse = |reason: String| async move {
            self.ctx
                .store
                .refuse_after_verification(outbox_id, application.case_number.clone(), reason)
                .await
                .map(|()| true)
                .map_err(IntakeError::Store)
        };
        let checked = match self.check(&request, now.date()) {
            Ok(checked) => checked,
            Err(e) => return refuse(e.to_string()).await,
        };
        let findings = self
            .recognize(&checked, &application.case_number, trace)
            .await;
        if findings.identity_refused() {
            return refuse(findings.identity.detail.clone()).await;
        }
        if !findings.complete {
            return Ok(false);
        }
        let filed_at = application
            .filed_at
            .unwrap_or_else(|| timestamp_ms(now_ms()));
        let mut composed =
            match self.compose(&checked, &findings, &application.case_number, filed_at, now) {
                Ok(composed) => composed,
                Err(e) => return refuse(e.to_string()).await,
            };
        composed.receipt.trace_id = trace.trace_id_hex();
        let receipt = serde_json::to_string(&composed.receipt).unwrap_or_default();
        self.ctx
            .store
            .complete_verification(outbox_id, composed.application, receipt, composed.forward)
            .await?;
        tracing::info!(case = %application.case_number, "pre-review completed");
        self.outbox_written.notify_one();
        Ok(true)
    }

    /// Splits the materials given into uploads (and paper) and cited licenses, naming
    /// every bad one by its index.
    fn materials(
        &self,
        item: &CatalogItem,
        input: &[MaterialInput],
        errors: &mut Vec<FieldProblem>,
    ) -> (Vec<MaterialRef>, Vec<CitedLicense>) {
        let mut provided = Vec::with_capacity(input.len());
        let mut cited = Vec::new();
        for (i, m) in input.iter().enumerate() {
            let Some(material) = item.material(&m.material_id) else {
                errors.push(field(
                    format!("materials[{i}].material_id"),
                    format!("{:?} is not a material of {}", m.material_id, item.id),
                ));
                continue;
            };
            let reference = m.reference.trim();
            if reference.is_empty() || reference.len() > 128 {
                errors.push(field(
                    format!("materials[{i}].reference"),
                    "must be 1 to 128 characters",
                ));
                continue;
            }
            match m.source {
                MaterialSourceInput::License => {
                    if material.kind != catalog::MaterialKind::License {
                        errors.push(field(
                            format!("materials[{i}].source"),
                            format!("{} is uploaded, not a license", material.id),
                        ));
                    } else if let Err(e) = tongban_proto::recognition::license_issuer(reference) {
                        errors.push(field(format!("materials[{i}].reference"), e.to_string()));
                    } else {
                        cited.push(CitedLicense {
                            material_id: material.id.clone(),
                            license_id: reference.to_owned(),
                        });
                    }
                }
                source => provided.push(MaterialRef {
                    material_id: m.material_id.clone(),
                    source: match source {
                        MaterialSourceInput::Paper => MaterialSource::Paper,
                        _ => MaterialSource::Upload,
                    } as i32,
                    reference: reference.to_owned(),
                }),
            }
        }
        (provided, cited)
    }
}

/// Whether `field` (a form error's field) is one a recognized license may fill and the
/// applicant left empty.
fn prefillable_and_empty(item: &CatalogItem, form: &BTreeMap<String, String>, field: &str) -> bool {
    item.form_field(field).is_some_and(|f| f.prefill.is_some())
        && form.get(field).is_none_or(|v| v.trim().is_empty())
}

fn store_error(e: StoreError) -> IntakeError {
    match e {
        StoreError::KeyReused(key) => IntakeError::KeyReused(key),
        other => IntakeError::Store(other),
    }
}

/// The receipt as stored (filled in from the application if it cannot be read).
fn receipt_of(stored: &str, application: &Application) -> Receipt {
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
        verification: String::new(),
        trace_id: String::new(),
    })
}

/// The lower-case name of a stage, as the portal shows it (`approved`).
pub fn stage_name(stage: i32) -> String {
    Stage::try_from(stage)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("STAGE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| format!("unknown({stage})"))
}
