//! The contract's register operations (a person by ID number, a license by id, the
//! licenses of a holder), the revocation feed, and health. Every register call states
//! its purpose of use, which is recorded with the masked subject before the answer.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{
        Path, Query, State,
        rejection::{BytesRejection, PathRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tongban_proto::rules::{credentials::license_issuer, resident_id::ResidentId};

use super::{
    problem::{self, ApiProblem, PageQuery},
    state::PlatformState,
    view,
};
use crate::platform::{
    contract::{
        headers::Purpose,
        wire::{Health, HolderLookup, License, LicenseList, Person, PersonLookup, RevocationPage},
    },
    embedded::id_problem,
};

type Shared = State<Arc<PlatformState>>;

/// `/v1/persons/lookup`, `/v1/licenses/…`, `/v1/revocations`, `/v1/health`.
pub fn routes() -> Router<Arc<PlatformState>> {
    Router::new()
        .route("/v1/persons/lookup", post(lookup_person))
        .route("/v1/licenses/by-holder", post(licenses_of_holder))
        .route("/v1/licenses/{license_id}", get(read_license))
        .route("/v1/revocations", get(revocations))
        .route("/v1/health", get(health))
}

/// What every register call carries: its idempotency key and purpose of use.
fn register_call(headers: &HeaderMap) -> Result<Purpose, ApiProblem> {
    problem::idempotency_key(headers)?;
    problem::purpose(headers)
}

fn resident(state: &PlatformState, field: &str, value: &str) -> Result<ResidentId, ApiProblem> {
    let today = tongban_proto::rules::calendar::business_now().date();
    ResidentId::parse(value.trim(), state.table, today)
        .map_err(|e| ApiProblem::bad_request(format!("{field}: {}", id_problem(&e))))
}

async fn record(
    state: &PlatformState,
    operation: &'static str,
    purpose: &Purpose,
    subject: &str,
) -> Result<(), ApiProblem> {
    state
        .platform
        .record_purpose(operation, purpose, subject)
        .await
        .map_err(ApiProblem::unavailable)
}

/// `POST /v1/persons/lookup`.
async fn lookup_person(
    State(state): Shared,
    headers: HeaderMap,
    body: Result<bytes::Bytes, BytesRejection>,
) -> Result<Json<Person>, ApiProblem> {
    let purpose = register_call(&headers)?;
    let body: PersonLookup = problem::json_body(body)?;
    let id = resident(&state, "id_number", &body.id_number)?;
    record(&state, "person", &purpose, &id.masked()).await?;
    let person = state
        .platform
        .person_by_id_number(id.as_str())
        .await
        .map_err(ApiProblem::unavailable)?
        .ok_or_else(|| ApiProblem::not_found("no such person in the register"))?;
    Ok(Json(person))
}

/// `GET /v1/licenses/{license_id}`.
async fn read_license(
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Json<License>, ApiProblem> {
    let purpose = register_call(&headers)?;
    let Path(license_id) =
        path.map_err(|_| ApiProblem::bad_request("license_id (path): cannot be read"))?;
    license_issuer(&license_id)
        .map_err(|e| ApiProblem::bad_request(format!("license_id (path): {e}")))?;
    record(&state, "license", &purpose, &license_id).await?;
    let license = state
        .platform
        .license_with_holder(&license_id)
        .await
        .map_err(ApiProblem::unavailable)?
        .ok_or_else(|| ApiProblem::not_found(format!("no license {license_id} issued here")))?;
    Ok(Json(license))
}

/// `POST /v1/licenses/by-holder`.
async fn licenses_of_holder(
    State(state): Shared,
    headers: HeaderMap,
    body: Result<bytes::Bytes, BytesRejection>,
) -> Result<Json<LicenseList>, ApiProblem> {
    let purpose = register_call(&headers)?;
    let body: HolderLookup = problem::json_body(body)?;
    let id = resident(&state, "holder_id_number", &body.holder_id_number)?;
    record(&state, "licenses_of_holder", &purpose, &id.masked()).await?;
    let licenses = state
        .platform
        .licenses_by_holder_id(id.as_str())
        .await
        .map_err(ApiProblem::unavailable)?;
    Ok(Json(LicenseList { licenses }))
}

/// `GET /v1/revocations?after=&limit=`.
async fn revocations(
    State(state): Shared,
    query: Result<Query<PageQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<RevocationPage>, ApiProblem> {
    problem::idempotency_key(&headers)?;
    let (after, limit) = problem::page(query)?;
    problem::known_cursor(state.platform.knows_revocation_cursor(&after).await)?;
    let page = state
        .platform
        .revocation_log_after(&after, limit)
        .await
        .map_err(ApiProblem::unavailable)?;
    Ok(Json(RevocationPage {
        revocations: page.revocations.iter().map(view::revocation).collect(),
        next_cursor: page.next_cursor,
        more: page.more,
    }))
}

/// `GET /v1/health`: `200` while the database answers, `503` saying why not.
async fn health(State(state): Shared) -> Response {
    match state.platform.ping().await {
        Ok(()) => Json(Health {
            status: "ok".into(),
            detail: String::new(),
        })
        .into_response(),
        Err(error) => {
            tracing::warn!(%error, "reference platform health");
            let body = Health {
                status: "unavailable".into(),
                detail: format!("database: {error}"),
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}
