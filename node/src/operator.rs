//! The node's operator endpoints on its admin listener (plaintext, private to the
//! province): what the region's own staff do to the federation's view of it.
//!
//! - `POST /licenses/{license_id}/revoke` with `{"reason": "..."}`: `200` with
//!   `"state": "published"` once a gateway acknowledged it (with its `log_sequence` in
//!   the gateways' shared revocation log, which every replica follows), `202` with
//!   `"state": "queued"` and where to watch it when no gateway answered within 5 s (the
//!   outbox keeps publishing it), `404` for a license not issued here, `409` where the
//!   province's own platform makes revocations (the node publishes those from the
//!   platform's feed, `crate::revocations`).
//! - `GET /outbox`: the backlog per target region (pending, failing so far, blocked by
//!   configuration, dead letters, oldest pending) and the dead letters themselves.
//! - `POST /outbox/{id}/replay`: a dead letter is sent again (after its cause was
//!   fixed), with its idempotency key unchanged.
//! - `POST /outbox/{id}/close` with `{"reason": "..."}`: a dead letter is given up; a
//!   delivery's case is rejected with the reason, which the citizen reads.
//!
//! Both actions answer `404` for an unknown id and `409` for an entry that is not a
//! dead letter.
//! - disputes of wrong data are flagged, listed and settled by the routes of
//!   `crate::operator_disputes`, served beside these; the three lists and this
//!   region's publications and adoptions are in `crate::operator_catalog`.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Notify;
use tongban_proto::rules::credentials;

use axum::extract::rejection::JsonRejection;

use crate::{
    context::NodeContext, gateway_client::GatewayClient, platform::adapter::PlatformError,
    sqlite::now_ms, store::DeadLetterAction,
};

/// What the operator endpoints need.
pub struct OperatorState {
    pub ctx: Arc<NodeContext>,
    pub client: GatewayClient,
    pub outbox_written: Arc<Notify>,
}

/// A revocation's or a closure's body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: String,
}

/// The reason of `body`, trimmed: 1 to 200 characters without control characters (the
/// citizen may read it).
fn reason(body: Result<Json<Reason>, JsonRejection>) -> Result<String, (StatusCode, &'static str)> {
    let Ok(Json(Reason { reason })) = body else {
        return Err((StatusCode::BAD_REQUEST, "expected {\"reason\": \"...\"}"));
    };
    let reason = reason.trim();
    if reason.is_empty()
        || reason.chars().count() > 200
        || tongban_proto::rules::text::problem(reason).is_some()
    {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "reason must be 1 to 200 characters, without control or bidirectional formatting \
             characters",
        ));
    }
    Ok(reason.to_owned())
}

/// Dead letters listed at most per `GET /outbox`.
const DEAD_LETTERS_LISTED: u32 = 500;

async fn outbox(State(state): State<Arc<OperatorState>>) -> Response {
    let store = &state.ctx.store;
    let read = async {
        Ok::<_, crate::store::StoreError>((
            store.outbox_backlog().await?,
            store.dead_letters(DEAD_LETTERS_LISTED).await?,
        ))
    };
    match read.await {
        Ok((backlog, dead)) => {
            let now = now_ms();
            let targets: Vec<_> = backlog
                .iter()
                .map(|row| {
                    let oldest = if row.pending > 0 {
                        now.saturating_sub(row.oldest_pending_ms).max(0) / 1000
                    } else {
                        0
                    };
                    json!({
                        "target_region": row.target_region,
                        "pending": row.pending,
                        "failing": row.failing,
                        "blocked": row.blocked,
                        "dead": row.dead,
                        "oldest_pending_seconds": oldest,
                    })
                })
                .collect();
            Json(json!({ "targets": targets, "dead_letters": dead })).into_response()
        }
        Err(error) => {
            tracing::error!(%error, "outbox unreadable");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store is unavailable; retry",
            )
        }
    }
}

async fn replay(State(state): State<Arc<OperatorState>>, Path(id): Path<i64>) -> Response {
    let result = state.ctx.store.replay_dead_letter(id).await;
    if matches!(result, Ok(DeadLetterAction::Done)) {
        state.outbox_written.notify_one();
        tracing::warn!(outbox_id = id, "operator replayed a dead letter");
    }
    dead_letter_answer(id, "replayed", result)
}

async fn close(
    State(state): State<Arc<OperatorState>>,
    Path(id): Path<i64>,
    body: Result<Json<Reason>, JsonRejection>,
) -> Response {
    let reason = match reason(body) {
        Ok(reason) => reason,
        Err((status, message)) => return problem(status, message),
    };
    let result = state.ctx.store.close_dead_letter(id, reason.clone()).await;
    if matches!(result, Ok(DeadLetterAction::Done)) {
        tracing::warn!(outbox_id = id, %reason, "operator closed a dead letter");
    }
    dead_letter_answer(id, "closed", result)
}

fn dead_letter_answer(
    id: i64,
    done: &'static str,
    result: Result<DeadLetterAction, crate::store::StoreError>,
) -> Response {
    match result {
        Ok(DeadLetterAction::Done) => Json(json!({ "id": id, "state": done })).into_response(),
        Ok(DeadLetterAction::Unknown) => {
            problem(StatusCode::NOT_FOUND, format!("no outbox entry {id}"))
        }
        Ok(DeadLetterAction::NotDead) => problem(
            StatusCode::CONFLICT,
            format!("outbox entry {id} is not a dead letter"),
        ),
        Err(error) => {
            tracing::error!(%error, "dead letter action failed");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store is unavailable; retry",
            )
        }
    }
}

/// `GET /follow-ups`: the follow-ups poor evaluations opened here, soonest due first,
/// each with whether it is past its due date.
async fn follow_ups(State(state): State<Arc<OperatorState>>) -> Response {
    match state.ctx.store.follow_ups().await {
        Ok(open) => {
            let today = tongban_proto::rules::calendar::business_now()
                .date()
                .to_string();
            let rows: Vec<_> = open
                .iter()
                .map(|f| {
                    let level =
                        tongban_proto::v1::EvaluationLevel::try_from(f.level).unwrap_or_default();
                    let due = f.follow_up_due.clone().unwrap_or_default();
                    json!({
                        "case_number": f.case_number,
                        "origin_region": f.origin_region,
                        "one_thing_id": f.one_thing_id,
                        "level": crate::evaluation::level_name(level),
                        "comment": f.comment,
                        "due": due,
                        // Dates in YYYY-MM-DD order as text.
                        "overdue": !due.is_empty() && due < today,
                    })
                })
                .collect();
            Json(json!({ "follow_ups": rows })).into_response()
        }
        Err(error) => {
            tracing::error!(%error, "follow-ups unreadable");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store is unavailable; retry",
            )
        }
    }
}

/// The operator routes.
pub fn router(state: Arc<OperatorState>) -> Router {
    Router::new()
        .route("/licenses/{license_id}/revoke", post(revoke))
        .route("/outbox", get(outbox))
        .route("/follow-ups", get(follow_ups))
        .route("/outbox/{id}/replay", post(replay))
        .route("/outbox/{id}/close", post(close))
        .with_state(state)
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": { "message": message.into() } })),
    )
        .into_response()
}

async fn revoke(
    State(state): State<Arc<OperatorState>>,
    Path(license_id): Path<String>,
    body: Result<Json<Reason>, JsonRejection>,
) -> Response {
    let reason = match reason(body) {
        Ok(reason) => reason,
        Err((status, message)) => return problem(status, message),
    };
    let reason = reason.as_str();
    let issued_here = credentials::license_issuer(&license_id)
        .is_ok_and(|issuer| state.ctx.prefix.contains(&issuer));
    if !issued_here {
        return problem(
            StatusCode::NOT_FOUND,
            "no license with this id was issued here",
        );
    }
    let record = match state
        .ctx
        .registry
        .revoke(&license_id, reason, now_ms())
        .await
    {
        Ok(Some(record)) => record,
        Ok(None) => {
            return problem(
                StatusCode::NOT_FOUND,
                "no license with this id was issued here",
            );
        }
        // A province's platform revokes itself; the node publishes what its feed lists.
        Err(PlatformError::Unsupported(where_instead)) => {
            return problem(StatusCode::CONFLICT, where_instead);
        }
        Err(error) => {
            tracing::error!(%error, "revocation failed");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the register is unavailable; retry",
            );
        }
    };
    let revoked_ms = record.revoked_ms.unwrap_or_else(now_ms);
    // A crash here leaves the revocation in the register only: the register's own feed
    // (`crate::revocations::RevocationFeed`) queues it when the node is back.
    crate::crash_point::crash_point(crate::crash_point::AFTER_REGISTER_REVOKE);
    let published = crate::revocations::publish(
        &state.ctx.store,
        &state.client,
        &state.outbox_written,
        &license_id,
        reason,
        revoked_ms,
    )
    .await;
    let replicas = match published {
        Ok(replicas) => replicas,
        Err(error) => {
            tracing::error!(%error, "revocation not queued");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the revocation could not be queued; retry",
            );
        }
    };
    let acknowledged = crate::revocations::publish_now(
        &state.client,
        &license_id,
        reason,
        revoked_ms,
        crate::revocations::ACKNOWLEDGEMENT_WAIT,
    )
    .await;
    answer_revoked(&state, license_id, revoked_ms, replicas, acknowledged).await
}

/// The revoke route's answer once the revocation is queued: published (in the shared
/// log, the outbox's repeats closed) or queued.
async fn answer_revoked(
    state: &OperatorState,
    license_id: String,
    revoked_ms: i64,
    replicas: Vec<String>,
    acknowledged: Option<crate::revocations::Acknowledged>,
) -> Response {
    // In the shared log, every gateway replica learns it: the outbox need not tell each
    // configured endpoint again (without a log, it must).
    if let Some(crate::revocations::Acknowledged {
        log_sequence: Some(_),
        ..
    }) = &acknowledged
        && let Err(error) = state
            .ctx
            .store
            .revocation_published(license_id.clone())
            .await
    {
        tracing::warn!(%error, "published revocation left queued; the outbox repeats it");
    }
    tracing::info!(license = %license_id, ?acknowledged, "license revoked");
    match acknowledged {
        Some(ack) => (
            StatusCode::OK,
            Json(json!({
                "license_id": license_id,
                "revoked_ms": revoked_ms,
                "state": "published",
                "acknowledged_by": ack.endpoint,
                "log_sequence": ack.log_sequence,
                "gateway_endpoints": replicas,
            })),
        ),
        // Queued durably; the outbox publishes it when a gateway answers again.
        None => (
            StatusCode::ACCEPTED,
            Json(json!({
                "license_id": license_id,
                "revoked_ms": revoked_ms,
                "state": "queued",
                "watch": "GET /outbox on this admin listener: revoke entries per gateway endpoint, pending until acknowledged",
                "gateway_endpoints": replicas,
            })),
        ),
    }
        .into_response()
}
