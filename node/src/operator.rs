//! The node's operator endpoints on its admin listener (plaintext, private to the
//! province): what the region's own staff do to the federation's view of it. Today:
//! revoking a license this region issued, which every gateway replica then learns
//! through the outbox (so the revocation survives a crash or an unreachable replica).
//!
//! - `POST /licenses/{license_id}/revoke` with `{"reason": "..."}`: `200` with the
//!   revocation, `404` for a license not issued here.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Notify;
use tongban_proto::{recognition, v1::PublishRevocationRequest};

use crate::{context::NodeContext, gateway_client::GatewayClient, sqlite::now_ms};

/// What the operator endpoints need.
pub struct OperatorState {
    pub ctx: Arc<NodeContext>,
    pub client: GatewayClient,
    pub outbox_written: Arc<Notify>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Revocation {
    reason: String,
}

/// The operator routes.
pub fn router(state: Arc<OperatorState>) -> Router {
    Router::new()
        .route("/licenses/{license_id}/revoke", post(revoke))
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
    body: Result<Json<Revocation>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(revocation)) = body else {
        return problem(StatusCode::BAD_REQUEST, "expected {\"reason\": \"...\"}");
    };
    let reason = revocation.reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reason must be 1 to 200 characters",
        );
    }
    let issued_here = recognition::license_issuer(&license_id)
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
        Err(error) => {
            tracing::error!(%error, "revocation failed");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the register is unavailable; retry",
            );
        }
    };
    let revoked_ms = record.revoked_ms.unwrap_or_else(now_ms);
    let request = PublishRevocationRequest {
        license_id: license_id.clone(),
        reason: reason.to_owned(),
        revoked_at: Some(crate::sqlite::timestamp_ms(revoked_ms)),
    };
    let replicas = state.client.replica_endpoints();
    if let Err(error) = state
        .ctx
        .store
        .enqueue_revocation(request, replicas.clone())
        .await
    {
        tracing::error!(%error, "revocation not queued");
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the revocation could not be queued; retry",
        );
    }
    state.outbox_written.notify_one();
    tracing::info!(license = %license_id, replicas = replicas.len(), "license revoked; publishing");
    (
        StatusCode::OK,
        Json(
            json!({ "license_id": license_id, "revoked_ms": revoked_ms, "published_to": replicas }),
        ),
    )
        .into_response()
}
