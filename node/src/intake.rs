//! Filing an application at this node: pre-review (智能预审) against the catalog, the
//! decision of the handling region, the durable write of application, receipt and
//! outbox entry, and the receipt the citizen gets.

use std::{collections::BTreeMap, sync::Arc};

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
}

impl Intake {
    /// Pre-reviews and files; the receipt is returned only once everything is durable.
    pub async fn file(
        &self,
        request: FilingRequest,
        client_key: Option<String>,
    ) -> Result<(Receipt, bool), IntakeError> {
        // Digest of the request as parsed (sorted form map, fixed field order), so a
        // retry with the same key must carry the same filing.
        let client_key = client_key.map(|key| {
            let canonical = serde_json::to_vec(&request).unwrap_or_default();
            (key, tongban_proto::digest::sha256_hex(&canonical))
        });
        let now = tongban_proto::calendar::business_now();
        let today = now.date();
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
        }
        let Some(item) = item else {
            return Err(IntakeError::Invalid(errors));
        };
        if let Err(form_errors) = item.validate_form(&request.form, self.ctx.regions, today) {
            errors.extend(form_errors.0.into_iter().map(FieldProblem::from));
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
        let materials = self.materials(item, &request.materials, &mut errors);
        let Some(applicant) = applicant else {
            return Err(IntakeError::Invalid(errors));
        };
        if !errors.is_empty() {
            return Err(IntakeError::Invalid(errors));
        }
        let target = item
            .competent_region(&applicant.home_region(), &request.form, &self.ctx.region)
            .map_err(|e| IntakeError::Invalid(vec![e.into()]))?;
        // Route to the province of a historical or county code: provinces (or their
        // delegated nodes) are what the registry knows.
        let target = if self.ctx.regions.is_known(&target) {
            target
        } else {
            target.province()
        };
        let forward = !self.ctx.prefix.contains(&target);

        let promised = item.promised_date(today);
        let missing: Vec<MaterialNote> = item
            .missing_materials(&materials)
            .into_iter()
            .map(|m| MaterialNote {
                id: m.id.clone(),
                name: m.name.clone(),
            })
            .collect();
        let received: Vec<MaterialNote> = materials
            .iter()
            .filter_map(|m| item.materials.iter().find(|c| c.id == m.material_id))
            .map(|m| MaterialNote {
                id: m.id.clone(),
                name: m.name.clone(),
            })
            .collect();
        let application = Application {
            case_number: String::new(),
            one_thing_id: item.id.clone(),
            catalog_version: catalog.version.clone(),
            origin_region: self.ctx.region.to_string(),
            target_region: target.to_string(),
            mode: v1::HandlingMode::from(mode) as i32,
            applicant: Some(v1::Applicant {
                id_number: applicant.as_str().to_owned(),
                name: request.applicant.name.trim().to_owned(),
                phone: request.applicant.phone.trim().to_owned(),
            }),
            form: request.form.clone(),
            materials,
            filed_at: Some(timestamp_ms(now_ms())),
            promised_date: promised.to_string(),
            joint_regions: Vec::new(),
        };
        let receipt_base = Receipt {
            case_number: String::new(),
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
            mode,
            filed_at: now
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            promised_date: promised.to_string(),
            materials_received: received,
            materials_missing: missing,
            forwarded: forward,
        };
        let receipt_for_store = receipt_base.clone();
        let applicant_hash = applicant.keyed_hash(&self.ctx.id_hash_key);
        let filing = self
            .ctx
            .store
            .file(NewFiling {
                client_key,
                application,
                applicant_hash: applicant_hash.clone(),
                applicant_masked: applicant.masked(),
                forward,
                receipt: Box::new(move |app| {
                    let mut r = receipt_for_store;
                    r.case_number = app.case_number.clone();
                    serde_json::to_string(&r).unwrap_or_default()
                }),
            })
            .await
            .map_err(|e| match e {
                StoreError::KeyReused(key) => IntakeError::KeyReused(key),
                other => IntakeError::Store(other),
            })?;
        let filed = filing.application;
        let receipt: Receipt = serde_json::from_str(&filing.receipt).unwrap_or_else(|_| {
            let mut r = receipt_base;
            r.case_number = filed.case_number.clone();
            r
        });
        tracing::info!(
            case = %filed.case_number,
            one_thing = %filed.one_thing_id,
            applicant = &applicant_hash[..12],
            handling_region = %filed.target_region,
            forward,
            replayed = filing.replayed,
            "application filed"
        );
        // The forwarder hands the case over: to the gateway, or to our own platform.
        self.outbox_written.notify_one();
        Ok((receipt, filing.replayed))
    }

    fn materials(
        &self,
        item: &CatalogItem,
        input: &[MaterialInput],
        errors: &mut Vec<FieldProblem>,
    ) -> Vec<MaterialRef> {
        let mut out = Vec::with_capacity(input.len());
        for (i, m) in input.iter().enumerate() {
            if !item.materials.iter().any(|c| c.id == m.material_id) {
                errors.push(field(
                    format!("materials[{i}].material_id"),
                    format!("{:?} is not a material of {}", m.material_id, item.id),
                ));
                continue;
            }
            if m.reference.trim().is_empty() || m.reference.len() > 128 {
                errors.push(field(
                    format!("materials[{i}].reference"),
                    "must be 1 to 128 characters",
                ));
                continue;
            }
            out.push(MaterialRef {
                material_id: m.material_id.clone(),
                source: match m.source {
                    MaterialSourceInput::License => MaterialSource::License,
                    MaterialSourceInput::Upload => MaterialSource::Upload,
                    MaterialSourceInput::Paper => MaterialSource::Paper,
                } as i32,
                reference: m.reference.trim().to_owned(),
            });
        }
        out
    }
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
