//! Phase 4: relay the call to the target node. The message travels as the bytes it came
//! as — never decoded or re-encoded — with only the path and the verified origin changed.
//!
//! The relayed methods are unary, so each body is gathered before it is passed on: the
//! request then leaves as one write to the node (headers and data together) and the
//! answer as one write to the caller (headers, data and trailers together), instead of a
//! write per frame; that is most of the difference at one call in flight. The gathered
//! trailers also give the audit trail the call's real `grpc-status`.

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, request::Parts};
use http_body_util::{BodyExt, Full, Limited};
use tongban_proto::{metadata, region::RegionPrefix};
use tonic::body::Body;

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
        .pool
        .call(parts, node_path, request_body)
        .await
        .map_err(|e| unavailable(source_chain(&e)))?;
    let (parts, mut body) = response.into_parts();
    let data = read_answer(&mut body)
        .await
        .map_err(|e| unavailable(format!("answer interrupted: {e}")))?;
    let trailers = body
        .trailers()
        .await
        .map_err(|e| unavailable(format!("answer interrupted: {e}")))?;
    let grpc_status = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| parts.headers.get("grpc-status"))
        .cloned();
    let body = Full::new(data).with_trailers(async move { trailers.map(Ok) });
    Ok(Relayed {
        response: http::Response::from_parts(parts, Body::new(body)),
        grpc_status,
    })
}

/// The answer's body, whole (almost always one DATA frame, kept without a copy).
async fn read_answer(body: &mut h2::RecvStream) -> Result<Bytes, String> {
    let mut first: Option<Bytes> = None;
    let mut more = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        // Hand the window back so the connection keeps flowing for other calls.
        let _ = body.flow_control().release_capacity(chunk.len());
        let total = first.as_ref().map_or(0, Bytes::len) + more.len() + chunk.len();
        if total > MAX_MESSAGE {
            return Err(format!("answer larger than {MAX_MESSAGE} bytes"));
        }
        match &first {
            None => first = Some(chunk),
            Some(_) => more.extend_from_slice(&chunk),
        }
    }
    Ok(match first {
        None => Bytes::new(),
        Some(first) if more.is_empty() => first,
        Some(first) => {
            let mut all = BytesMut::with_capacity(first.len() + more.len());
            all.extend_from_slice(&first);
            all.extend_from_slice(&more);
            all.freeze()
        }
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
