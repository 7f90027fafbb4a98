//! Phase 4: relay the call to the target node. The HTTP/2 request is passed on as it
//! came — headers, body frames and trailers untouched apart from the path and the
//! verified origin — so the gateway never decodes or re-encodes an application.

use http::{HeaderValue, Uri, request::Parts};
use tongban_proto::{metadata, region::RegionPrefix};
use tonic::body::Body;
use tower::ServiceExt;

use crate::{error::GatewayError, registry::Route};

/// Sends the call to `route` under `node_path` and returns the node's response as is.
pub async fn forward(
    route: &Route,
    mut parts: Parts,
    body: Body,
    node_path: &'static str,
    caller: &RegionPrefix,
) -> Result<http::Response<Body>, GatewayError> {
    // The channel fills in scheme and authority of the node it picks.
    parts.uri = Uri::from_static(node_path);
    // Only the gateway may state the verified origin; drop whatever the caller sent.
    parts.headers.remove(metadata::VERIFIED_ORIGIN);
    let origin = HeaderValue::from_str(caller.as_str()).map_err(|_| {
        GatewayError::PermissionDenied("caller region is not a valid header value".into())
    })?;
    parts.headers.insert(metadata::VERIFIED_ORIGIN, origin);
    // Connection-level facts (peer identity, addresses) must not leak into the client.
    parts.extensions = http::Extensions::new();
    route
        .channel
        .clone()
        .oneshot(http::Request::from_parts(parts, body))
        .await
        .map_err(|e| GatewayError::Unavailable {
            region: route.prefix.to_string(),
            reason: source_chain(&e),
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
