//! The application and its receipt, from a checked request and what the federation
//! said, in steps: the form filled in from recognized licenses (无感申报) and judged
//! again; the handling region; the materials (given, recognized, refused, missing);
//! then the application the handling region gets and the receipt the citizen gets.

use std::collections::BTreeMap;

use prost_types::Timestamp;
use time::{Date, OffsetDateTime};
use tongban_proto::{
    rules::catalog::{CatalogItem, Material},
    rules::region::RegionCode,
    rules::standard,
    v1::{self, Application, MaterialRef, MaterialSource},
};
use tongban_runtime::observability::trace_context::TraceParent;

use super::{
    check::{Checked, prefillable_and_empty},
    joint_plan,
    receipt::{
        IdentityNote, MaterialNote, MaterialProblem, Receipt, RecognizedMaterial, outcome_name,
        reason_name, source_name,
    },
    recognize::Findings,
    request::{FieldProblem, IntakeError, field},
};
use crate::{context::NodeContext, joint::JointCase};

/// An application and its receipt, ready to file.
pub struct Composed {
    pub application: Application,
    pub receipt: Receipt,
    pub forward: bool,
    /// 多地联办: the parts, each handed over to its own region.
    pub joint: Option<JointCase>,
}

/// The case an application is composed for.
#[derive(Clone, Copy)]
pub struct Case<'a> {
    pub number: &'a str,
    pub filed_at: Timestamp,
    pub now: OffsetDateTime,
    /// The case's trace, named on the receipt.
    pub trace: TraceParent,
}

/// Refuses a filing whose applicant their home region does not confirm.
pub fn confirmed(findings: &Findings) -> Result<(), IntakeError> {
    if findings.identity_refused() {
        return Err(IntakeError::IdentityRefused(field(
            "applicant",
            findings.identity.detail.clone(),
        )));
    }
    Ok(())
}

/// The application and receipt from a checked request and what the federation said.
pub fn compose(
    ctx: &NodeContext,
    checked: &Checked,
    findings: &Findings,
    case: Case<'_>,
) -> Result<Composed, IntakeError> {
    let item = &checked.item;
    let today = case.now.date();
    let (form, prefilled) = prefill(item, &checked.form, findings);
    judge_filled_form(ctx, item, &form, findings.complete, today)?;
    let (target, forward) = handling_region(ctx, checked, &form)?;
    // A part's region a license has still to fill is known once pre-review completes
    // (the parts are planned then, `super::resume`).
    let joint = match joint_plan::plan(ctx, checked, &form, today) {
        Err(_) if !findings.complete => None,
        planned => planned?,
    };
    let promised = match &joint {
        Some(joint) => joint_plan::promised(joint),
        // Empty (logged and counted) where the calendar does not reach the promise.
        None => ctx
            .calendar
            .promised_date(item, &target, today)
            .map(|date| date.to_string())
            .unwrap_or_default(),
    };
    let handling = Handling {
        target,
        forward,
        promised,
        prefilled,
    };
    let materials = Materials::of(checked, findings);
    let mut receipt = receipt(ctx, checked, findings, case, &materials, &handling);
    let mut application = application(ctx, checked, case, form, materials.given, handling);
    if let Some(joint) = &joint {
        receipt.parts = joint.views();
        application.joint_regions = joint.parts.iter().map(|p| p.region.clone()).collect();
    }
    Ok(Composed {
        application,
        receipt,
        forward,
        joint,
    })
}

/// Where and by when a case is handled, and what was filled in for the applicant.
struct Handling {
    target: RegionCode,
    forward: bool,
    /// YYYY-MM-DD; empty where the official calendar has no schedule for a year the
    /// time limit reaches.
    promised: String,
    prefilled: Vec<String>,
}

/// 无感申报: the fields a recognized license states, filled in where left empty; and
/// the names of the fields filled in.
fn prefill(
    item: &CatalogItem,
    form: &BTreeMap<String, String>,
    findings: &Findings,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut form = form.clone();
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
    (form, prefilled)
}

/// The filled-in form must pass as any other; while verification is pending, a field
/// a license may still fill stays open.
fn judge_filled_form(
    ctx: &NodeContext,
    item: &CatalogItem,
    form: &BTreeMap<String, String>,
    verified: bool,
    today: Date,
) -> Result<(), IntakeError> {
    let Err(form_errors) = standard::form(item, form, ctx.regions, today) else {
        return Ok(());
    };
    let errors: Vec<FieldProblem> = form_errors
        .into_iter()
        .filter(|e| verified || !prefillable_and_empty(item, form, &e.field))
        .map(FieldProblem::from)
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(IntakeError::Invalid(errors))
    }
}

/// The competent region, as the registry knows it, and whether it is another region
/// than this node's (the case is forwarded).
fn handling_region(
    ctx: &NodeContext,
    checked: &Checked,
    form: &BTreeMap<String, String>,
) -> Result<(RegionCode, bool), IntakeError> {
    let target = checked
        .item
        .competent_region(&checked.applicant.home_region(), form, &ctx.region)
        .map_err(|e| IntakeError::Invalid(vec![e.into()]))?;
    let target = ctx.regions.routed(target);
    standard::offered(&checked.item, &target, "handled by")
        .map_err(|problem| IntakeError::Invalid(vec![field("one_thing_id", problem)]))?;
    Ok((target, !ctx.prefix.contains(&target)))
}

/// The materials of a case: what was given plus every material a recognized license
/// satisfies, and the cited licenses that were not accepted.
struct Materials {
    given: Vec<MaterialRef>,
    recognized: Vec<RecognizedMaterial>,
    not_recognized: Vec<MaterialProblem>,
}

impl Materials {
    fn of(checked: &Checked, findings: &Findings) -> Materials {
        let item = &checked.item;
        let mut materials = Materials {
            given: checked.provided.clone(),
            recognized: Vec::new(),
            not_recognized: Vec::new(),
        };
        for l in &findings.licenses {
            if !l.recognized() {
                materials.not_recognized.push(MaterialProblem {
                    id: l.material_id.clone(),
                    license_id: l.verdict.license_id.clone(),
                    outcome: outcome_name(l.verdict.outcome),
                    reason: reason_name(l.verdict.reason),
                    detail: l.verdict.detail.clone(),
                });
                continue;
            }
            if materials
                .given
                .iter()
                .any(|m| m.material_id == l.material_id)
            {
                continue;
            }
            materials.given.push(MaterialRef {
                material_id: l.material_id.clone(),
                source: MaterialSource::License as i32,
                reference: l.verdict.license_id.clone(),
            });
            materials.recognized.push(RecognizedMaterial {
                id: l.material_id.clone(),
                name: item
                    .material(&l.material_id)
                    .map(|m| m.name.clone())
                    .unwrap_or_default(),
                license_id: l.verdict.license_id.clone(),
                license_type: l.verdict.license_type.clone(),
                issuing_region: l.verdict.issuing_region.clone(),
                source: source_name(l.verdict.source),
            });
        }
        materials
    }
}

/// The application as the handling region gets it.
fn application(
    ctx: &NodeContext,
    checked: &Checked,
    case: Case<'_>,
    form: BTreeMap<String, String>,
    materials: Vec<MaterialRef>,
    handling: Handling,
) -> Application {
    Application {
        case_number: case.number.to_owned(),
        one_thing_id: checked.item.id.clone(),
        catalog_version: checked.catalog_version.clone(),
        origin_region: ctx.region.to_string(),
        target_region: handling.target.to_string(),
        mode: v1::HandlingMode::from(checked.mode) as i32,
        applicant: Some(v1::Applicant {
            id_number: checked.applicant.as_str().to_owned(),
            name: checked.name.clone(),
            phone: checked.phone.clone(),
        }),
        form,
        materials,
        filed_at: Some(case.filed_at),
        promised_date: handling.promised,
        joint_regions: Vec::new(),
        prefilled_fields: handling.prefilled,
        part_id: String::new(),
    }
}

/// The receipt: what was accepted, recognized, refused and is still missing, and where
/// and by when the case is handled.
fn receipt(
    ctx: &NodeContext,
    checked: &Checked,
    findings: &Findings,
    case: Case<'_>,
    materials: &Materials,
    handling: &Handling,
) -> Receipt {
    let item = &checked.item;
    let note = |m: &Material| MaterialNote {
        id: m.id.clone(),
        name: m.name.clone(),
    };
    Receipt {
        case_number: case.number.to_owned(),
        one_thing_id: item.id.clone(),
        one_thing_name: item.name.clone(),
        origin_region: ctx.region.to_string(),
        handling_region: handling.target.to_string(),
        handling_region_name: ctx
            .regions
            .get(&handling.target)
            .map(|d| d.name.clone())
            .unwrap_or_default(),
        mode: checked.mode,
        filed_at: case
            .now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        promised_date: handling.promised.clone(),
        materials_received: materials
            .given
            .iter()
            .filter_map(|m| item.material(&m.material_id))
            .map(note)
            .collect(),
        materials_missing: item
            .missing_materials(&materials.given)
            .into_iter()
            .map(note)
            .collect(),
        forwarded: handling.forward,
        identity: Some(IdentityNote {
            outcome: outcome_name(findings.identity.outcome),
            issuing_region: findings.identity.issuing_region.clone(),
            source: source_name(findings.identity.source),
        }),
        materials_recognized: materials.recognized.clone(),
        materials_not_recognized: materials.not_recognized.clone(),
        prefilled_fields: handling.prefilled.clone(),
        parts: Vec::new(),
        verification: if findings.complete {
            "complete"
        } else {
            "pending"
        }
        .into(),
        trace_id: case.trace.trace_id_hex(),
    }
}
