//! The catalog routes on the node's operator listener: the three lists as this node
//! sees them, and this region's changes to them through the gateway (一地创新、全国复用).
//!
//! - `GET /catalog`: the node's copy — its version and every one-thing with its list,
//!   who offers it, and whether this region does (`offered_here`).
//! - `POST /catalog/refresh`: fetch the gateway's catalog now rather than at the next
//!   turn; `200 {"version", "changed"}`.
//! - `POST /catalog/featured` with a catalog item in the catalog's JSON form
//!   (`catalog/national.json`): publish it as this region's featured one-thing, or a
//!   new version of it; `200 {"version", "changed"}`, `422` naming the item's field.
//! - `POST /catalog/featured/{item}/adopt`: adopt another region's featured one-thing;
//!   this region's nodes accept and handle it from the version answered.
//!
//! A change is made by the gateway in this region's name (its certificate's), checked
//! there against the whole catalog; the node then fetches the version that carries it.
//! The gateway's refusals keep their meaning: `422` invalid, `403` another region's
//! item, `404` unknown, `409` a gateway without a catalog ledger, `503` unreachable.

use std::sync::Arc;

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
    rules::catalog::{AnnualListing, CatalogItem, CatalogList},
    v1::CatalogChangeResponse,
};

use crate::{gateway_client::CallFailed, operator::OperatorState};

/// One one-thing as `GET /catalog` shows it.
#[derive(Serialize)]
struct Listed<'a> {
    id: &'a str,
    name: &'a str,
    list: CatalogList,
    #[serde(skip_serializing_if = "Option::is_none")]
    annual: Option<&'a AnnualListing>,
    /// A featured item's publisher, then its adopters.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    offered_by: Vec<&'a str>,
    offered_here: bool,
}

async fn lists(State(state): State<Arc<OperatorState>>) -> Response {
    let catalog = state.ctx.catalog.get();
    let region = &state.ctx.region;
    let items: Vec<Listed<'_>> = catalog
        .items
        .iter()
        .map(|item| Listed {
            id: &item.id,
            name: &item.name,
            list: item.list,
            annual: item.annual.as_ref(),
            offered_by: item.offering_regions().map(|r| r.as_str()).collect(),
            offered_here: item.offered_in(region),
        })
        .collect();
    Json(json!({ "version": catalog.version, "region": region.as_str(), "items": items }))
        .into_response()
}

async fn refresh(State(state): State<Arc<OperatorState>>) -> Response {
    match state
        .ctx
        .catalog
        .refresh(&state.client, &state.ctx.store)
        .await
    {
        Ok(changed) => Json(json!({
            "version": state.ctx.catalog.get().version,
            "changed": changed,
        }))
        .into_response(),
        Err(error) => problem(StatusCode::SERVICE_UNAVAILABLE, &error, None),
    }
}

async fn publish(
    State(state): State<Arc<OperatorState>>,
    item: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    let item = match item {
        Ok(Json(value)) => value,
        Err(e) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                &e.body_text(),
                Some("body"),
            );
        }
    };
    // Read as one item of a catalog file, so the errors name the item and the field
    // as the catalog's own checks do.
    let item: CatalogItem = match serde_json::from_value(item) {
        Ok(item) => item,
        Err(e) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                &e.to_string(),
                Some("body"),
            );
        }
    };
    let answer = state.client.publish_featured_item(item.to_proto()).await;
    changed(&state, answer).await
}

async fn adopt(State(state): State<Arc<OperatorState>>, Path(item): Path<String>) -> Response {
    let answer = state.client.adopt_featured_item(item).await;
    changed(&state, answer).await
}

/// The gateway's answer to a change; on success this node fetches the new version.
async fn changed(
    state: &OperatorState,
    answer: Result<CatalogChangeResponse, CallFailed>,
) -> Response {
    match answer {
        Ok(change) => {
            if let Err(error) = state
                .ctx
                .catalog
                .refresh(&state.client, &state.ctx.store)
                .await
            {
                tracing::warn!(%error, "catalog changed at the gateway; this copy refreshes later");
                state.ctx.catalog.want_refresh();
            }
            let here = state.ctx.catalog.get();
            Json(json!({
                "version": change.version,
                "changed": change.changed,
                "node_version": here.version,
            }))
            .into_response()
        }
        Err(failed) => {
            use tonic::Code;
            let status = match failed.status.code() {
                Code::InvalidArgument => StatusCode::UNPROCESSABLE_ENTITY,
                Code::PermissionDenied => StatusCode::FORBIDDEN,
                Code::NotFound => StatusCode::NOT_FOUND,
                Code::FailedPrecondition => StatusCode::CONFLICT,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            problem(status, failed.status.message(), None)
        }
    }
}

fn problem(status: StatusCode, message: &str, field: Option<&str>) -> Response {
    (
        status,
        Json(json!({ "error": { "message": message, "field": field } })),
    )
        .into_response()
}

pub fn routes(state: Arc<OperatorState>) -> Router {
    Router::new()
        .route("/catalog", get(lists))
        .route("/catalog/refresh", post(refresh))
        .route("/catalog/featured", post(publish))
        .route("/catalog/featured/{item}/adopt", post(adopt))
        .with_state(state)
}
