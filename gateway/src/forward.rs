//! Phase 4: relay the call to the target node. The message travels as the bytes it came
//! as — never decoded or re-encoded — with only the path and the verified origin changed.
//!
//! The relayed methods are unary, so each body is gathered before it is passed on: the
//! request then leaves as one write to the node (headers and data together) and the
//! answer as one write to the caller (headers, data and trailers together), instead of a
//! write per frame; that is most of the difference at one call in flight. The gathered
//! trailers also give the audit trail the call's real `grpc-status`.

use std::time::Duration;

use h2::RecvStream;
use http::{HeaderMap, HeaderValue, request::Parts};
use tongban_proto::{metadata, region::RegionPrefix};

use crate::{
    error::GatewayError,
    message::{MAX_MESSAGE, Message, ReadError},
    registry::Route,
};

/// An answer to the caller, whole: response head, message bytes and trailers.
pub struct Answer {
    pub head: http::response::Parts,
    pub data: Message,
    pub trailers: Option<HeaderMap>,
}

impl Answer {
    /// The call's outcome as stated (trailers, or headers if trailers-only).
    pub fn grpc_status(&self) -> Option<&HeaderValue> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| self.head.headers.get("grpc-status"))
    }

    /// A trailers-only answer carrying `status`.
    pub fn from_status(status: tonic::Status) -> Self {
        let (head, ()) = status.into_http::<()>().into_parts();
        Self {
            head,
            data: Message::default(),
            trailers: None,
        }
    }
}

/// Sends the call to `route` under `node_path` and returns the node's answer unchanged.
pub async fn forward(
    route: &Route,
    mut parts: Parts,
    body: &mut RecvStream,
    node_path: &'static str,
    caller: &RegionPrefix,
) -> Result<Answer, GatewayError> {
    // A body that never ends would hold the stream forever. The whole message has
    // almost always arrived with the headers, and then no timer is ever registered.
    let request_body = tokio::time::timeout(route.request_timeout, Message::read(body))
        .await
        .map_err(|_| GatewayError::Stalled(route.request_timeout))?
        .map_err(|e| match e {
            ReadError::TooLarge => GatewayError::TooLarge(MAX_MESSAGE),
            ReadError::Broken(e) => GatewayError::ClientGone(e.to_string()),
        })?;
    // Only the gateway may state the verified origin; drop whatever the caller sent.
    parts.headers.remove(metadata::VERIFIED_ORIGIN);
    let origin = HeaderValue::from_str(caller.as_str()).map_err(|_| {
        GatewayError::PermissionDenied("caller region is not a valid header value".into())
    })?;
    parts.headers.insert(metadata::VERIFIED_ORIGIN, origin);
    // Every relayed call is bounded: by the caller's deadline if it is shorter than the
    // route's, else by the route's; the node enforces it (a timer here would cost an
    // event-loop wake-up per call), and a caller that gives up resets the call.
    let callers = parts
        .headers
        .get("grpc-timeout")
        .and_then(parse_grpc_timeout);
    if callers.is_none_or(|d| d > route.request_timeout) {
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
    let (head, mut body) = response.into_parts();
    let data = Message::read(&mut body)
        .await
        .map_err(|e| unavailable(format!("answer interrupted: {e}")))?;
    let trailers = body
        .trailers()
        .await
        .map_err(|e| unavailable(format!("answer interrupted: {e}")))?;
    Ok(Answer {
        head,
        data,
        trailers,
    })
}

/// A `grpc-timeout` value: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    let (digits, unit) = text.split_at_checked(text.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_by_the_protocol() {
        let parse = |s: &'static str| parse_grpc_timeout(&HeaderValue::from_static(s));
        assert_eq!(parse("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        assert_eq!(parse("5u"), Some(Duration::from_micros(5)));
        for bad in ["", "m", "100", "123456789m", "1.5S", "-1S", "10x", "S1"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
