//! Phase 4: relay the call to the target node. The message travels as the bytes it came
//! as — never decoded or re-encoded — with only the path and the verified origin changed.
//!
//! The relayed methods are unary, so each body is gathered before it is passed on: the
//! request then leaves as one write to the node (headers and data together) and the
//! answer as one write to the caller (headers, data and trailers together), instead of a
//! write per frame; that is most of the difference at one call in flight. The gathered
//! trailers also give the audit trail the call's real `grpc-status`.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Uri, request::Parts};
use http_body_util::{BodyExt, Full, Limited};
use tongban_proto::{metadata, region::RegionPrefix};
use tonic::body::Body;
use tower::ServiceExt;

use crate::{error::GatewayError, registry::Route};

/// Largest message relayed: gRPC's default 4 MiB limit (which nodes enforce too) plus
/// the 5-byte frame header.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024 + 5;

/// The node's answer, whole.
pub struct Relayed {
    pub response: http::Response<Body>,
    /// The call's outcome as the node stated it (trailers, or headers if trailers-only).
    pub grpc_status: Option<HeaderValue>,
}

/// Sends the call to `route` under `node_path` and returns the node's answer unchanged.
pub async fn forward(
    route: &Route,
    mut parts: Parts,
    body: Body,
    node_path: &'static str,
    caller: &RegionPrefix,
) -> Result<Relayed, GatewayError> {
    let request_body = Limited::new(body, MAX_MESSAGE)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                GatewayError::TooLarge(MAX_MESSAGE)
            } else {
                GatewayError::ClientGone(e.to_string())
            }
        })?
        .to_bytes();
    // The channel fills in scheme and authority of the node it picks.
    parts.uri = Uri::from_static(node_path);
    // Only the gateway may state the verified origin; drop whatever the caller sent.
    parts.headers.remove(metadata::VERIFIED_ORIGIN);
    let origin = HeaderValue::from_str(caller.as_str()).map_err(|_| {
        GatewayError::PermissionDenied("caller region is not a valid header value".into())
    })?;
    parts.headers.insert(metadata::VERIFIED_ORIGIN, origin);
    // Every relayed call is bounded: by the caller's deadline, or by ours, which the
    // node enforces (a timer here would cost an event-loop wake-up per call).
    if !parts.headers.contains_key("grpc-timeout") {
        parts
            .headers
            .insert("grpc-timeout", route.default_deadline.clone());
    }
    // Connection-level facts (peer identity, addresses) must not leak into the client.
    parts.extensions = http::Extensions::new();
    let unavailable = |reason: String| GatewayError::Unavailable {
        region: route.prefix.to_string(),
        reason,
    };
    let response = route
        .channel
        .clone()
        .oneshot(http::Request::from_parts(
            parts,
            Body::new(Full::new(request_body)),
        ))
        .await
        .map_err(|e| unavailable(source_chain(&e)))?;
    let (parts, body) = response.into_parts();
    let collected = Limited::new(body, MAX_MESSAGE)
        .collect()
        .await
        .map_err(|e| unavailable(format!("answer interrupted: {e}")))?;
    let trailers: Option<HeaderMap> = collected.trailers().cloned();
    let grpc_status = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| parts.headers.get("grpc-status"))
        .cloned();
    let data: Bytes = collected.to_bytes();
    let body = Full::new(data).with_trailers(async move { trailers.map(Ok) });
    Ok(Relayed {
        response: http::Response::from_parts(parts, Body::new(body)),
        grpc_status,
    })
}

fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(": ");
        text.push_str(&s.to_string());
        cur = s.source();
    }
    text
}
