//! The clerk's API, on a listener of its own (plain HTTP on loopback by default, an
//! optional bearer token): the cases awaiting action, a case, a decision on it, and the
//! revocation of a license issued here. A decision goes through the state machine and
//! lands in the case-event feed the node follows; a revocation goes through
//! `LicenseRegistry::revoke` and lands in the revocation feed.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{
        Path, Query, Request, State,
        rejection::{BytesRejection, PathRejection, QueryRejection},
    },
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};

use super::{
    auth::SecretCheck,
    problem::{self, ApiProblem, MAX_BODY},
    state::PlatformState,
    view,
};
use crate::{
    platform::{
        contract::wire::problem as kinds,
        embedded::{ClerkAction, ClerkCase, DecisionError, MAX_REASON_CHARS, rfc3339_ms},
        register::LicenseRegistry,
    },
    sqlite::now_ms,
};

type Shared = State<Arc<PlatformState>>;

/// A case as the clerk's API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClerkCaseView {
    pub case_number: String,
    pub reference: String,
    pub one_thing_id: String,
    pub origin_region: String,
    /// The platform's status code.
    pub status: String,
    /// Its canonical state.
    pub canonical: String,
    pub detail: String,
    pub sequence: u64,
    pub received_at: String,
    pub updated_at: String,
}

/// `GET /clerk/v1/cases`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClerkCaseList {
    pub cases: Vec<ClerkCaseView>,
}

/// `POST /clerk/v1/cases/{case_number}/decision`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Decision {
    /// accept, request_materials, materials_received, approve, reject, terminate,
    /// withdraw.
    pub action: String,
    /// Shown to the citizen; required to reject or terminate.
    #[serde(default)]
    pub reason: String,
}

/// `POST /clerk/v1/licenses/{license_id}/revoke`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RevokeRequest {
    pub reason: String,
}

/// The answer to a revocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    pub license_id: String,
    pub revoked_at: String,
}

/// The clerk's routes, behind the bearer token when one is configured.
pub fn router(state: Arc<PlatformState>, token: Option<SecretCheck>) -> Router {
    let router = Router::new()
        .route("/clerk/v1/cases", get(list))
        .route("/clerk/v1/cases/{case_number}", get(one))
        .route("/clerk/v1/cases/{case_number}/decision", post(decide))
        .route("/clerk/v1/licenses/{license_id}/revoke", post(revoke))
        .route("/clerk/v1/health", get(health))
        .fallback(|| async { ApiProblem::not_found("no such operation in the clerk's API") })
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY));
    match token {
        None => router,
        Some(check) => router.layer(middleware::from_fn_with_state(Arc::new(check), bearer)),
    }
}

async fn bearer(State(check): State<Arc<SecretCheck>>, request: Request, next: Next) -> Response {
    if check.bearer_matches(request.headers()) {
        next.run(request).await
    } else {
        ApiProblem::unauthenticated().into_response()
    }
}

fn clerk_view(state: &PlatformState, c: &ClerkCase) -> Result<ClerkCaseView, ApiProblem> {
    let (status, canonical) = view::status_of(&state.codes, c.case.status.stage)?;
    let updated_ms = c
        .case
        .status
        .updated_at
        .as_ref()
        .map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000));
    Ok(ClerkCaseView {
        case_number: c.case.case_number.clone(),
        reference: c.case.reference.clone(),
        one_thing_id: c.case.one_thing_id.clone(),
        origin_region: c.case.origin_region.clone(),
        status,
        canonical: canonical.as_str().to_owned(),
        detail: c.case.status.detail.clone(),
        sequence: c.case.status.sequence,
        received_at: rfc3339_ms(c.received_ms),
        updated_at: rfc3339_ms(updated_ms),
    })
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /clerk/v1/cases?limit=`: awaiting action, oldest first.
async fn list(
    State(state): Shared,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ClerkCaseList>, ApiProblem> {
    let Query(query) =
        query.map_err(|_| ApiProblem::bad_request("limit: must be a number from 1 to 1000"))?;
    let cases = state
        .platform
        .awaiting_clerk(query.limit.unwrap_or(100))
        .await
        .map_err(ApiProblem::unavailable)?;
    let cases = cases
        .iter()
        .map(|c| clerk_view(&state, c))
        .collect::<Result<_, _>>()?;
    Ok(Json(ClerkCaseList { cases }))
}

fn path_text(path: Result<Path<String>, PathRejection>, what: &str) -> Result<String, ApiProblem> {
    path.map(|Path(p)| p)
        .map_err(|_| ApiProblem::bad_request(format!("{what} (path): cannot be read")))
}

/// `GET /clerk/v1/cases/{case_number}`.
async fn one(
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ClerkCaseView>, ApiProblem> {
    let number = path_text(path, "case_number")?;
    let case = state
        .platform
        .clerk_case(&number)
        .await
        .map_err(ApiProblem::unavailable)?
        .ok_or_else(|| ApiProblem::not_found(format!("no case {number}")))?;
    Ok(Json(clerk_view(&state, &case)?))
}

/// `POST /clerk/v1/cases/{case_number}/decision`: `200` with the case, `409` for a
/// transition the machine forbids (naming both states), `404` for no such case.
async fn decide(
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
    body: Result<bytes::Bytes, BytesRejection>,
) -> Result<Json<ClerkCaseView>, ApiProblem> {
    let number = path_text(path, "case_number")?;
    let decision: Decision = problem::json_body(body)?;
    let action = ClerkAction::parse(&decision.action).ok_or_else(|| {
        let names: Vec<&str> = ClerkAction::ALL.iter().map(|a| a.as_str()).collect();
        ApiProblem::bad_request(format!("action: must be one of {}", names.join(", ")))
    })?;
    let case = state
        .platform
        .decide(&number, action, &decision.reason)
        .await
        .map_err(|e| match e {
            DecisionError::UnknownCase(_) => ApiProblem::not_found(e.to_string()),
            DecisionError::InvalidTransition { .. } => ApiProblem::new(
                StatusCode::CONFLICT,
                kinds::INVALID_TRANSITION,
                "Invalid transition",
                e.to_string(),
            ),
            DecisionError::ReasonRequired(_) | DecisionError::BadReason(_) => {
                ApiProblem::bad_request(e.to_string())
            }
            DecisionError::Storage(error) => ApiProblem::unavailable(error),
        })?;
    tracing::info!(case_number = %number, action = action.as_str(), "clerk decision");
    Ok(Json(clerk_view(&state, &case)?))
}

/// `POST /clerk/v1/licenses/{license_id}/revoke`: revoked once; revoking again keeps
/// the first time.
async fn revoke(
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
    body: Result<bytes::Bytes, BytesRejection>,
) -> Result<Json<Revoked>, ApiProblem> {
    let license_id = path_text(path, "license_id")?;
    let request: RevokeRequest = problem::json_body(body)?;
    let reason = request.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiProblem::bad_request(
            "reason: required, at most 500 characters",
        ));
    }
    if let Some(why) = tongban_proto::rules::text::problem(reason) {
        return Err(ApiProblem::bad_request(format!("reason: {why}")));
    }
    let record = state
        .platform
        .revoke(&license_id, reason, now_ms())
        .await
        .map_err(ApiProblem::unavailable)?
        .ok_or_else(|| ApiProblem::not_found(format!("no license {license_id} issued here")))?;
    tracing::info!(license_id = %license_id, "license revoked by a clerk");
    Ok(Json(Revoked {
        license_id: record.license_id,
        revoked_at: rfc3339_ms(record.revoked_ms.unwrap_or_default()),
    }))
}

/// `GET /clerk/v1/health`.
async fn health(State(state): Shared) -> Response {
    match state.platform.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(error) => ApiProblem::unavailable(error).into_response(),
    }
}
