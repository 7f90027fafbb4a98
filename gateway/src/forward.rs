//! Phase 4: relay the call to the target node. The message travels as the bytes it came
//! as — never decoded or re-encoded — with only the path, the verified origin (and its
//! carve-outs) and the deadline changed.
//!
//! The relayed methods are unary, so each body is gathered before it is passed on: the
//! request then leaves as one write to the node (headers and data together) and the
//! answer as one write to the caller (headers, data and trailers together), instead of a
//! write per frame; that is most of the difference at one call in flight. The gathered
//! trailers also give the audit trail the call's real `grpc-status`.

use http::{HeaderMap, HeaderName, HeaderValue};
use tongban_proto::{contract::metadata, rules::region::RegionPrefix};

use crate::{
    admission::Permit,
    answer::Answer,
    call::Call,
    deadline::CallDeadline,
    ejection::{CallOutcome, Deadline},
    error::GatewayError,
    message::{Message, ReadError},
    registry::Route,
};

/// Who the node is told is calling: the certificate's region, and the registered
/// prefixes inside it that are other members' (`None`: there are none).
pub struct Origin<'a> {
    pub caller: &'a RegionPrefix,
    pub carve_outs: Option<&'a HeaderValue>,
}

/// Sends `call` (its `message` already read) to `route` under `node_path` and returns the
/// node's answer unchanged.
pub async fn forward(
    call: Call,
    message: Message,
    node_path: &'static str,
    route: &Route,
    origin: &Origin<'_>,
    deadline: &CallDeadline,
    permit: &mut Permit,
) -> Result<Answer, GatewayError> {
    // From the call's arrival: the caller's clock started even earlier.
    let expires = Deadline {
        from: call.received,
        within: deadline.wait,
    };
    let headers = node_metadata(call.headers, origin, deadline)?;
    let unavailable = |reason: String| GatewayError::Unavailable {
        region: route.prefix.to_string(),
        reason,
    };
    // Outlier ejection (`upstream`, `ejection`): the report is settled by how the answer
    // ends; dropped with this future (the caller reset its call), it counts against the
    // endpoint only if the deadline had run out.
    let (response, report) = route
        .pool
        .call(headers, node_path, message, expires)
        .await
        .map_err(|e| unavailable(source_chain(&e)))?;
    let (head, mut body) = response.into_parts();
    let data = match Message::read(&mut body, permit).await {
        Ok(data) => data,
        Err(e) => {
            report.ended(CallOutcome::of_read(&e));
            return Err(match e {
                ReadError::Refused(refusal) => refusal,
                e => unavailable(format!("answer interrupted: {e}")),
            });
        }
    };
    let trailers = match body.trailers().await {
        Ok(trailers) => trailers,
        Err(e) => {
            report.ended(CallOutcome::of_error(&e));
            return Err(unavailable(format!("answer interrupted: {e}")));
        }
    };
    report.answered();
    Ok(Answer {
        head,
        data,
        trailers,
    })
}

/// Metadata whose value differs on every call: a trace context, an idempotency key, a
/// caller's remaining deadline.
const PER_CALL: [HeaderName; 4] = [
    metadata::names::TRACEPARENT,
    metadata::names::TRACESTATE,
    metadata::names::IDEMPOTENCY_KEY,
    metadata::names::GRPC_TIMEOUT,
];

/// The metadata the node gets: the caller's, with the verified origin and its
/// carve-outs stated by the gateway (whatever the caller sent under those keys is
/// dropped) and the deadline.
///
/// Per-call values are sent as never-indexed HPACK literals: indexed, each would be
/// added to the connection's table that no later call reuses, evicting entries that
/// are, and making h2 compare it against every value kept under its name; that churn
/// was the largest part of re-encoding a call's headers.
fn node_metadata(
    mut headers: HeaderMap,
    origin: &Origin<'_>,
    deadline: &CallDeadline,
) -> Result<HeaderMap, GatewayError> {
    for name in PER_CALL {
        if let Some(value) = headers.get_mut(&name) {
            value.set_sensitive(true);
        }
    }
    headers.remove(metadata::names::VERIFIED_ORIGIN);
    headers.remove(metadata::names::VERIFIED_CARVE_OUTS);
    let caller = HeaderValue::from_str(origin.caller.as_str())
        .map_err(|_| GatewayError::Internal("caller region is not a valid header value".into()))?;
    headers.insert(metadata::names::VERIFIED_ORIGIN, caller);
    if let Some(carve_outs) = origin.carve_outs {
        headers.insert(metadata::names::VERIFIED_CARVE_OUTS, carve_outs.clone());
    }
    deadline.apply(&mut headers);
    Ok(headers)
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
    fn the_node_gets_the_verified_origin_and_the_deadline() {
        let mut headers = HeaderMap::new();
        headers.insert(metadata::VERIFIED_ORIGIN, HeaderValue::from_static("44"));
        headers.insert(metadata::TARGET_REGION, HeaderValue::from_static("440000"));
        headers.insert(
            metadata::TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        headers.append(metadata::VERIFIED_ORIGIN, HeaderValue::from_static("11"));
        let deadline = CallDeadline {
            wait: std::time::Duration::from_secs(1),
            replace: Some(HeaderValue::from_static("1000m")),
        };
        headers.append(
            metadata::VERIFIED_CARVE_OUTS,
            HeaderValue::from_static("3101"),
        );
        let caller = RegionPrefix::parse("31").unwrap();
        let origin = Origin {
            caller: &caller,
            carve_outs: None,
        };
        let sent = node_metadata(headers.clone(), &origin, &deadline).unwrap();
        let origins: Vec<_> = sent.get_all(metadata::VERIFIED_ORIGIN).iter().collect();
        assert_eq!(origins, ["31"]);
        // The caller's own carve-outs are dropped; the gateway's alone are sent.
        assert!(sent.get(metadata::VERIFIED_CARVE_OUTS).is_none());
        let ours = HeaderValue::from_static("3102");
        let origin = Origin {
            caller: &caller,
            carve_outs: Some(&ours),
        };
        let sent = node_metadata(headers, &origin, &deadline).unwrap();
        let carve_outs: Vec<_> = sent.get_all(metadata::VERIFIED_CARVE_OUTS).iter().collect();
        assert_eq!(carve_outs, ["3102"]);
        assert_eq!(sent.get("grpc-timeout").unwrap(), "1000m");
        assert_eq!(sent.get(metadata::TARGET_REGION).unwrap(), "440000");
        // The trace context is a per-call value, kept out of HPACK's table; the
        // gateway's own deadline (one per method) and the routing keys are indexed.
        assert!(sent.get(metadata::TRACEPARENT).unwrap().is_sensitive());
        assert!(!sent.get("grpc-timeout").unwrap().is_sensitive());
        assert!(!sent.get(metadata::TARGET_REGION).unwrap().is_sensitive());
    }
}
