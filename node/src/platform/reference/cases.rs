//! The contract's case operations: take over a case (idempotent by case number), read
//! one, and the ordered feed of status changes.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{
        Path, Query, State,
        rejection::{BytesRejection, PathRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode},
    routing::get,
};

use super::{
    problem::{self, ApiProblem, PageQuery},
    state::PlatformState,
    takeover, view,
};
use crate::platform::{
    adapter::{Platform, PlatformError},
    contract::wire::{CaseEventPage, CaseTakeover, CaseView},
};

type Shared = State<Arc<PlatformState>>;

/// `/v1/cases/{case_number}` and `/v1/case-events`.
pub fn routes() -> Router<Arc<PlatformState>> {
    Router::new()
        .route("/v1/cases/{case_number}", get(read_case).put(take_over))
        .route("/v1/case-events", get(case_events))
}

/// The case number in the path, and the `Tongban-Case-Number` header agreeing with it.
fn path_case(
    path: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
) -> Result<String, ApiProblem> {
    let Path(number) =
        path.map_err(|_| ApiProblem::bad_request("case_number (path): cannot be read"))?;
    if let Some(header) = problem::case_number_header(headers)?
        && header != number
    {
        return Err(ApiProblem::bad_request(
            "header tongban-case-number: differs from the case number in the path",
        ));
    }
    Ok(number)
}

fn platform_failure(error: PlatformError) -> ApiProblem {
    match error {
        PlatformError::Conflict(detail) => ApiProblem::conflict(detail),
        other => ApiProblem::unavailable(other),
    }
}

/// `PUT /v1/cases/{case_number}`: `201` taken over now, `200` taken over before (the
/// case as it stands), `409` another payload under the number.
async fn take_over(
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<bytes::Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CaseView>), ApiProblem> {
    problem::idempotency_key(&headers)?;
    let number = path_case(path, &headers)?;
    let body: CaseTakeover = problem::json_body(body)?;
    let checked = takeover::check(&number, body, state.table)?;
    let hash = checked.applicant.keyed_hash(&state.id_hash_key);
    let submitted = state
        .platform
        .submit(&checked.application, &hash, &checked.payload)
        .await
        .map_err(platform_failure)?;
    tracing::info!(
        case_number = %number,
        created = submitted.created,
        "case taken over"
    );
    let status = if submitted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(view::case_view(&state.codes, &submitted.case)?),
    ))
}

/// `GET /v1/cases/{case_number}`.
async fn read_case(
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Json<CaseView>, ApiProblem> {
    problem::idempotency_key(&headers)?;
    let number = path_case(path, &headers)?;
    let case = state
        .platform
        .case(&number)
        .await
        .map_err(platform_failure)?
        .ok_or_else(|| ApiProblem::not_found(format!("no case {number}")))?;
    Ok(Json(view::case_view(&state.codes, &case)?))
}

/// `GET /v1/case-events?after=&limit=`: changes after the cursor, oldest first.
async fn case_events(
    State(state): Shared,
    query: Result<Query<PageQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<CaseEventPage>, ApiProblem> {
    problem::idempotency_key(&headers)?;
    let (after, limit) = problem::page(query)?;
    problem::known_cursor(state.platform.knows_event_cursor(&after).await)?;
    let page = state
        .platform
        .case_events_after(&after, limit)
        .await
        .map_err(platform_failure)?;
    let events = page
        .events
        .iter()
        .map(|e| view::case_event(&state.codes, e))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(CaseEventPage {
        events,
        next_cursor: page.next_cursor,
        more: page.more,
    }))
}
