//! The dispute routes on the node's operator listener (see [`crate::disputes`]):
//!
//! - `POST /cases/{case}/disputes` with `{"subject": "license", "license_id": "...",
//!   "reason": "..."}` (or `"subject": "identity"`): a window flags data recognized for
//!   a case filed here; `201` with the dispute, `404` for a case not filed here, `422`
//!   naming the field (a license not recognized for the case, a reason too long...).
//! - `GET /disputes?role=received` (the issuer's queue, open first) or `?role=raised`.
//! - `POST /disputes/{flagging region}/{dispute id}/settle` with `{"outcome":
//!   "corrected", "note": "...", "corrected_license_id": "..."}` or `"confirmed"`:
//!   `200` with the dispute, `404` unknown, `409` settled already, `422` naming the field.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, Query, State, rejection::JsonRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    disputes::{self, Decision, Flag, Refused},
    operator::OperatorState,
    store::disputes::{RAISED, RECEIVED},
};

#[derive(Deserialize)]
struct Role {
    #[serde(default)]
    role: Option<String>,
}

fn refused(refusal: Refused) -> Response {
    let (status, field) = match &refusal {
        Refused::UnknownCase(_) | Refused::UnknownDispute => (StatusCode::NOT_FOUND, None),
        Refused::Invalid { field, .. } => (StatusCode::UNPROCESSABLE_ENTITY, Some(*field)),
        Refused::AlreadySettled(_) => (StatusCode::CONFLICT, None),
        Refused::Store(_) | Refused::Register(_) => {
            tracing::error!(error = %refusal, "dispute not recorded");
            (StatusCode::SERVICE_UNAVAILABLE, None)
        }
    };
    let message = match status {
        StatusCode::SERVICE_UNAVAILABLE => "the store or the register is unavailable; retry".into(),
        _ => refusal.to_string(),
    };
    (
        status,
        Json(json!({ "error": { "message": message, "field": field } })),
    )
        .into_response()
}

/// The JSON body, or what is wrong with it (answered 422).
fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, Refused> {
    body.map(|Json(b)| b).map_err(|e| Refused::Invalid {
        field: "body",
        problem: e.body_text(),
    })
}

async fn flag(
    State(state): State<Arc<OperatorState>>,
    Path(case): Path<String>,
    flag: Result<Json<Flag>, JsonRejection>,
) -> Response {
    let flag = match body(flag) {
        Ok(flag) => flag,
        Err(refusal) => return refused(refusal),
    };
    match disputes::flag(&state.ctx, &case, flag).await {
        Ok(dispute) => {
            state.outbox_written.notify_one();
            (StatusCode::CREATED, Json(json!({ "dispute": dispute }))).into_response()
        }
        Err(refusal) => refused(refusal),
    }
}

async fn list(State(state): State<Arc<OperatorState>>, Query(role): Query<Role>) -> Response {
    let role = match role.role.as_deref() {
        None | Some("received") => RECEIVED,
        Some("raised") => RAISED,
        Some(_) => {
            return refused(Refused::Invalid {
                field: "role",
                problem: "must be received or raised".into(),
            });
        }
    };
    match state.ctx.store.disputes(role, None).await {
        Ok(disputes) => Json(json!({ "role": role, "disputes": disputes })).into_response(),
        Err(error) => refused(error.into()),
    }
}

async fn settle(
    State(state): State<Arc<OperatorState>>,
    Path((flagging, id)): Path<(String, String)>,
    decision: Result<Json<Decision>, JsonRejection>,
) -> Response {
    let decision = match body(decision) {
        Ok(decision) => decision,
        Err(refusal) => return refused(refusal),
    };
    let ids = (flagging, id);
    match disputes::settle(
        &state.ctx,
        &state.client,
        &state.outbox_written,
        ids,
        decision,
    )
    .await
    {
        Ok(dispute) => Json(json!({ "dispute": dispute })).into_response(),
        Err(refusal) => refused(refusal),
    }
}

/// The dispute routes.
pub fn routes(state: Arc<OperatorState>) -> Router {
    Router::new()
        .route("/cases/{case}/disputes", post(flag))
        .route("/disputes", get(list))
        .route("/disputes/{flagging}/{id}/settle", post(settle))
        .with_state(state)
}
