//! Finishing the pre-review of a case filed while verification could not complete (an
//! issuing region unreachable): the forwarder's `verify` entry runs the same phases
//! again over the stored application, then hands the case over or refuses it.

use tongban_proto::{
    rules::calendar::business_now,
    rules::catalog::HandlingMode,
    v1::{Application, MaterialSource},
};
use tongban_runtime::observability::trace_context::TraceParent;

use super::{
    check,
    compose::{self, Case},
    recognize::Recognizer,
    request::{ApplicantInput, FilingRequest, IntakeError, MaterialInput, MaterialSourceInput},
};
use crate::{
    context::NodeContext,
    store::{now_ms, timestamp_ms},
};

/// How a resumed pre-review ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resumed {
    /// Verified: the case is queued for its hand-over.
    Completed,
    /// Refused for good; the citizen sees why.
    Refused,
    /// The federation still cannot answer: try again later.
    Pending,
}

/// Runs pre-review again for the case waiting under `outbox_id`.
pub async fn resume(
    ctx: &NodeContext,
    recognizer: &Recognizer,
    outbox_id: i64,
    application: &Application,
    trace: TraceParent,
) -> Result<Resumed, IntakeError> {
    let now = business_now();
    let request = request_of(application);
    let case_number = application.case_number.as_str();
    // Judged by the catalog the case was filed under, as when it was filed: a catalog
    // changed while it waited neither fails nor passes it after the fact. A version no
    // longer kept (older than the node remembers) leaves the one in force.
    let catalog = ctx
        .catalog
        .version(&application.catalog_version)
        .unwrap_or_else(|| {
            tracing::warn!(case = case_number, version = %application.catalog_version, "resumed pre-review: the catalog version filed under is no longer kept, judged by the one in force");
            ctx.catalog.get()
        });
    let checked = match check::check(&catalog, ctx.regions, &ctx.region, &request, now.date()) {
        Ok(checked) => checked,
        Err(e) => return refuse(ctx, outbox_id, case_number, e.to_string()).await,
    };
    // The applicant asked when they filed; the lookups resumed carry that request.
    let filed_ms = application
        .filed_at
        .as_ref()
        .map_or_else(now_ms, |t| t.seconds.saturating_mul(1000));
    let findings = recognizer
        .recognize(&checked, (case_number, filed_ms), trace)
        .await;
    if findings.identity_refused() {
        let detail = findings.identity.detail.clone();
        return refuse(ctx, outbox_id, case_number, detail).await;
    }
    if !findings.complete {
        return Ok(Resumed::Pending);
    }
    let case = Case {
        number: case_number,
        filed_at: application
            .filed_at
            .unwrap_or_else(|| timestamp_ms(now_ms())),
        now,
        trace,
    };
    let composed = match compose::compose(ctx, &checked, &findings, case) {
        Ok(composed) => composed,
        Err(e) => return refuse(ctx, outbox_id, case_number, e.to_string()).await,
    };
    let receipt = serde_json::to_string(&composed.receipt).unwrap_or_default();
    ctx.store
        .complete_verification(
            outbox_id,
            composed.application,
            receipt,
            composed.forward,
            composed.joint,
        )
        .await?;
    Ok(Resumed::Completed)
}

/// Ends the case's pre-review with a refusal the citizen sees.
async fn refuse(
    ctx: &NodeContext,
    outbox_id: i64,
    case_number: &str,
    reason: String,
) -> Result<Resumed, IntakeError> {
    ctx.store
        .refuse_after_verification(outbox_id, case_number.to_owned(), reason)
        .await?;
    Ok(Resumed::Refused)
}

/// The filing request a stored application was made from.
fn request_of(application: &Application) -> FilingRequest {
    let applicant = application.applicant.clone().unwrap_or_default();
    FilingRequest {
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
        mode: HandlingMode::try_from(application.mode).ok(),
    }
}
