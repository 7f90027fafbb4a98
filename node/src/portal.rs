//! The local portal API (HTTP+JSON) used by the province's portal and counters.
//!
//! - `POST /v1/applications` files an application; `201` with the receipt, `422` with
//!   every problem named by field, `400` for a body that is not the expected JSON. With
//!   an `Idempotency-Key` header a retry returns the first receipt (`200`), and the same
//!   key with a different filing gets `409`.
//! - `GET /v1/applications/{case_number}` reads status with the receipt's
//!   `status_token` in the `tongban-receipt-token` header (case numbers are sequential;
//!   the token is not guessable): asked live from the handling region through the
//!   gateway, falling back to the last status it pushed here. An unknown case and a
//!   wrong token get the same 404.
//! - `GET /v1/catalog` lists the one-things on offer; `GET
//!   /v1/one-things/{id}/requirements` is one notice of everything a one-thing requires
//!   (一次告知), and `POST` to it with `{"applicant": {"id_number", "name"}}` adds what
//!   the federation already holds for that person ([`crate::requirements`]).
//! - `POST /v1/access-log` with `{"id_number", "name"}`: a person's own access log,
//!   every lookup other regions made of their data held here (which region, when, for
//!   which one-thing and case). The ID number travels in the body, never in a URL that
//!   proxies log; the portal in front authenticates the citizen and proves it
//!   ([`crate::access_inquiry`]); a wrong name reads an empty log, as nobody does.
//! - `GET /healthz`, `GET /readyz` for probes.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{Path, State, rejection::JsonRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Serialize;
use serde_json::json;
use tongban_proto::{
    contract::metadata::MAX_IDEMPOTENCY_KEY,
    rules::region::RegionPrefix,
    v1::{CaseStatus, QueryStatusRequest},
};
use tongban_runtime::observability::trace_context::TraceParent;

use crate::{
    access_inquiry::{Inquiries, PROOF_HEADER, Refusal},
    evaluation,
    filing::{FilingRequest, Intake, IntakeError, Receipt, stage_name},
    gateway_client::{CallMeta, GatewayClient},
    portal_errors::{MAX_BODY, body_refused, error, no_such_case},
    receipt_token::{self, ReceiptTokens},
    requirements,
    store::{ApplicationRecord, OPEN_STAGES, Store},
    time_limits::remaining_working_days,
};

/// The purpose of use a register call states when a citizen reads their access log.
const ACCESS_LOG_PURPOSE: &str = "access-log-inquiry";

/// Shared state of the portal handlers.
pub struct PortalState {
    pub intake: Arc<Intake>,
    pub store: Store,
    pub client: GatewayClient,
    pub prefix: RegionPrefix,
    pub ready: tongban_runtime::serving::admin::Readiness,
    pub receipts: ReceiptTokens,
    pub inquiries: Inquiries,
}

/// The portal's routes.
pub fn router(state: Arc<PortalState>) -> Router {
    Router::new()
        .route("/v1/applications", post(file_application))
        .route("/v1/applications/{case_number}", get(application_status))
        .route("/v1/catalog", get(catalog))
        .route("/v1/access-log", post(access_log))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state.clone())
        .merge(evaluation::routes(evaluation::EvaluationState {
            ctx: state.intake.ctx.clone(),
            receipts: state.receipts.clone(),
            config: state.intake.ctx.evaluations.clone(),
        }))
        .merge(requirements::routes(requirements::RequirementsState {
            ctx: state.intake.ctx.clone(),
            client: state.client.clone(),
            timeout: state.intake.recognizer.timeout,
        }))
        .merge(tongban_runtime::serving::admin::probes(state.ready.clone()))
}

async fn file_application(
    State(state): State<Arc<PortalState>>,
    headers: axum::http::HeaderMap,
    body: Result<Json<FilingRequest>, JsonRejection>,
) -> Response {
    // Optional: a counter or portal that may retry sends an Idempotency-Key, and a retry
    // gets the first receipt back (200) instead of filing a second case.
    let client_key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY => Some(k.to_owned()),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!(
                    "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                ),
                json!([{ "field": "Idempotency-Key", "problem": "invalid" }]),
            );
        }
    };
    let Json(request) = match body {
        Ok(b) => b,
        Err(rejection) => return body_refused(&rejection),
    };
    // W3C trace context from the portal in front, if it sends one: the filing joins
    // its trace.
    let parent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    match state.intake.file(request, client_key, parent).await {
        Ok((receipt, false)) => (StatusCode::CREATED, with_token(&state, &receipt)).into_response(),
        Ok((receipt, true)) => (StatusCode::OK, with_token(&state, &receipt)).into_response(),
        Err(IntakeError::KeyReused(key)) => error(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            format!("Idempotency-Key {key:?} was used for a different filing"),
            json!([{ "field": "Idempotency-Key", "problem": "used for a different filing" }]),
        ),
        Err(IntakeError::IdentityRefused(problem)) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "identity_not_confirmed",
            problem.to_string(),
            json!([{ "field": problem.field, "problem": problem.problem }]),
        ),
        Err(IntakeError::Invalid(errors)) => {
            let fields: Vec<_> = errors
                .iter()
                .map(|e| json!({ "field": e.field, "problem": e.problem }))
                .collect();
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_application",
                IntakeError::Invalid(errors).to_string(),
                json!(fields),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "filing failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the application could not be stored; nothing was filed, please retry".into(),
                json!([]),
            )
        }
    }
}

/// The receipt as the citizen gets it: with the token that reads its status.
fn with_token(state: &PortalState, receipt: &Receipt) -> Json<serde_json::Value> {
    let mut body = serde_json::to_value(receipt).unwrap_or_default();
    if let Some(fields) = body.as_object_mut() {
        let token = state.receipts.token(&receipt.case_number);
        fields.insert("status_token".to_owned(), token.into());
    }
    Json(body)
}

/// A case's status as the portal shows it.
#[derive(Serialize)]
struct StatusView {
    case_number: String,
    one_thing_id: String,
    origin_region: String,
    handling_region: String,
    handling_reference: Option<String>,
    stage: String,
    detail: String,
    sequence: u64,
    /// `handling_region` when asked live, `local_copy` when the last pushed status.
    source: &'static str,
    /// The date promised at filing (empty where the calendar could not promise one).
    promised_date: String,
    /// Working days left to the promised date in the handling region's calendar
    /// (negative: overdue), while the case is open.
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining_working_days: Option<i64>,
    /// 多地联办: each part's region and state; the stage above combines them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    parts: Vec<crate::joint::PartView>,
    /// 异议处理: data of this case a window flagged as wrong, and how the issuer settled.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    disputes: Vec<crate::store::disputes::Dispute>,
    receipt: Option<Receipt>,
}

async fn application_status(
    State(state): State<Arc<PortalState>>,
    Path(case_number): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    let not_found = no_such_case;
    let token = headers
        .get(receipt_token::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !state.receipts.verify(&case_number, token) {
        return not_found();
    }
    let record = match state.store.application(case_number.clone()).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(),
        Err(e) => {
            tracing::error!(error = %e, "status read failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "status store unavailable".into(),
                json!([]),
            );
        }
    };
    let mut status = record.status.clone();
    let mut reference = record.handling_reference.clone();
    let mut source = "local_copy";
    // A joint case's parts push their statuses here; there is no one region to ask.
    let remote = record.joint.is_none()
        && tongban_proto::rules::region::RegionCode::parse(&record.target_region)
            .map(|t| !state.prefix.contains(&t))
            .unwrap_or(false);
    if remote && reference.is_some() {
        let meta = CallMeta {
            target_region: &record.target_region,
            one_thing: &record.one_thing_id,
            idempotency_key: None,
            trace: Some(record.trace),
            attempt: 0,
            applicant_home: None,
            stage: None,
        };
        let live = tokio::time::timeout(
            Duration::from_secs(2),
            state.client.query_status(
                QueryStatusRequest {
                    case_number: case_number.clone(),
                },
                &meta,
            ),
        )
        .await;
        match live {
            Ok(Ok(answer)) => {
                if let Some(s) = answer.status {
                    if s.sequence >= status.sequence {
                        let report = crate::store::StatusReport {
                            case_number: case_number.clone(),
                            part: None,
                            reference: None,
                            status: s.clone(),
                        };
                        let metrics = state.intake.ctx.metrics.as_deref();
                        let _ = crate::metrics::apply_status(&state.store, metrics, report).await;
                        status = s;
                    }
                    reference = Some(answer.handling_reference);
                    source = "handling_region";
                }
            }
            Ok(Err(e)) => tracing::debug!(code = ?e.status.code(), "live status unavailable"),
            Err(_) => tracing::debug!("live status timed out"),
        }
    }
    let mut view = status_view(&state, record, status, reference, source);
    let raised = crate::store::disputes::RAISED;
    view.disputes = match state.store.disputes(raised, Some(case_number)).await {
        Ok(disputes) => disputes,
        Err(error) => {
            tracing::warn!(%error, "the case's disputes unreadable");
            Vec::new()
        }
    };
    Json(view).into_response()
}

/// The case as the portal shows it, with its time limit.
fn status_view(
    state: &PortalState,
    record: ApplicationRecord,
    status: CaseStatus,
    reference: Option<String>,
    source: &'static str,
) -> StatusView {
    let receipt: Option<Receipt> = serde_json::from_str(&record.receipt).ok();
    let (promised_date, remaining_working_days) =
        time_limit(state, &record.target_region, receipt.as_ref(), status.stage);
    let parts = record.joint().map(|j| j.views()).unwrap_or_default();
    StatusView {
        case_number: record.case_number,
        one_thing_id: record.one_thing_id,
        origin_region: record.origin_region,
        handling_region: record.target_region,
        handling_reference: reference,
        stage: stage_name(status.stage),
        detail: status.detail,
        sequence: status.sequence,
        source,
        promised_date,
        remaining_working_days,
        parts,
        disputes: Vec::new(),
        receipt,
    }
}

/// The date promised at filing, and while the case is open the working days left to it
/// in the handling region's calendar.
fn time_limit(
    state: &PortalState,
    handling: &str,
    receipt: Option<&Receipt>,
    stage: i32,
) -> (String, Option<i64>) {
    let promised = receipt.map(|r| r.promised_date.clone()).unwrap_or_default();
    let open = (OPEN_STAGES[0]..=OPEN_STAGES[1]).contains(&stage);
    let left = open
        .then(|| {
            remaining_working_days(
                &state.intake.ctx.calendar,
                handling,
                &promised,
                tongban_proto::rules::calendar::business_now().date(),
            )
        })
        .flatten();
    (promised, left)
}

async fn catalog(State(state): State<Arc<PortalState>>) -> Response {
    let catalog = state.intake.ctx.catalog.get();
    let items: Vec<_> = catalog
        .items
        .iter()
        .map(|i| {
            json!({
                "id": i.id,
                "name": i.name,
                "time_limit_working_days": i.time_limit_working_days,
                "form": i.form.iter().map(|f| json!({"name": f.name, "label": f.label, "required": f.required})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "version": catalog.version, "items": items })).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessLogRequest {
    id_number: String,
    name: String,
}

async fn access_log(
    State(state): State<Arc<PortalState>>,
    headers: axum::http::HeaderMap,
    body: Result<Json<AccessLogRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return body_refused(&rejection);
        }
        // Never quote this body: it holds an ID number.
        Err(rejection) => {
            return error(
                rejection.status(),
                "bad_request",
                "expected {\"id_number\": ..., \"name\": ...}".into(),
                json!([]),
            );
        }
    };
    let ctx = &state.intake.ctx;
    let today = tongban_proto::rules::calendar::business_now().date();
    let Ok(id) = tongban_proto::rules::resident_id::ResidentId::parse(
        &request.id_number,
        ctx.regions,
        today,
    ) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "id_number is not a valid resident ID number".into(),
            json!([{ "field": "id_number", "problem": "invalid" }]),
        );
    };
    let hash = id.keyed_hash(&ctx.id_hash_key);
    let proof = headers.get(PROOF_HEADER).and_then(|v| v.to_str().ok());
    if let Err(refusal) = state.inquiries.admit(id.as_str(), hash.as_bytes(), proof) {
        return inquiry_refused(refusal);
    }
    // Only the person registered under the number, with their name, reads the log.
    let subject = crate::platform::Subject {
        id_number: id.as_str(),
        id_hash: &hash,
    };
    // 用证事由: the citizen's own inquiry into who looked them up.
    let purpose = crate::platform::Purpose::new(ACCESS_LOG_PURPOSE, "");
    let known = match ctx.registry.person(subject, &purpose).await {
        Ok(person) => person.is_some_and(|p| p.name == request.name.trim()),
        Err(e) => {
            tracing::error!(error = %e, "access log: register unavailable");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the register is unavailable".into(),
                json!([]),
            );
        }
    };
    // Nobody, and a wrong name, read an empty log: the same answer as a person nobody
    // looked up, so guessing tells nothing.
    if !known {
        return Json(json!({ "holder": id.masked(), "entries": [] })).into_response();
    }
    match state.store.access_log(hash, 500).await {
        Ok(entries) => Json(json!({ "holder": id.masked(), "entries": entries })).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "access log read failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the access log is unavailable".into(),
                json!([]),
            )
        }
    }
}

fn inquiry_refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::NotEnabled => error(
            StatusCode::FORBIDDEN,
            "not_enabled",
            "this node answers no access-log inquiry: [access_log] portal_secret is not set".into(),
            json!([]),
        ),
        Refusal::BadProof(why) => error(
            StatusCode::UNAUTHORIZED,
            "portal_proof",
            format!("{PROOF_HEADER}: {why}"),
            json!([{ "field": PROOF_HEADER, "problem": why }]),
        ),
        Refusal::TooOften(wait) => {
            let seconds = wait.as_secs().max(1);
            let mut answer = error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!("asked about this person too often; retry in {seconds} s"),
                json!([]),
            );
            if let Ok(value) = axum::http::HeaderValue::from_str(&seconds.to_string()) {
                answer
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, value);
            }
            answer
        }
    }
}
