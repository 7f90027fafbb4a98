//! Phase 5: the audit trail of relayed calls. One structured event per call on the
//! `tongban::audit` target, so operators can route it to its own sink with a filter.
//! It names parties and keys, never application content or personal data.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use tongban_proto::metadata;
use tongban_runtime::trace_context::TraceParent;

/// The request metadata the audit trail keeps, taken before the request is forwarded
/// (cheap reference-counted copies, not the whole header map).
#[derive(Default)]
pub struct AuditKeys {
    one_thing: Option<HeaderValue>,
    idempotency_key: Option<HeaderValue>,
    traceparent: Option<HeaderValue>,
}

impl AuditKeys {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self {
            one_thing: headers.get(metadata::ONE_THING).cloned(),
            idempotency_key: headers.get(metadata::IDEMPOTENCY_KEY).cloned(),
            traceparent: headers.get(metadata::TRACEPARENT).cloned(),
        }
    }
}

/// The trace id of a well-formed `traceparent`, else empty.
fn trace_id(v: &Option<HeaderValue>) -> String {
    TraceParent::parse(text(v))
        .map(|t| t.trace_id_hex())
        .unwrap_or_default()
}

fn text(v: &Option<HeaderValue>) -> &str {
    v.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// What the audit trail records about one relayed call.
pub struct AuditRecord<'a> {
    pub method: &'a str,
    pub caller: Option<&'a str>,
    pub target: Option<&'a str>,
    pub outcome: Outcome<'a>,
    pub elapsed: Duration,
}

/// How a relayed call ended.
pub enum Outcome<'a> {
    /// The node answered with this `grpc-status` (absent only if the node broke the
    /// protocol).
    Relayed { grpc_status: Option<&'a str> },
    /// The gateway refused or failed the call.
    Refused { code: tonic::Code, message: &'a str },
}

/// Writes one audit event.
pub fn record(keys: &AuditKeys, rec: &AuditRecord<'_>) {
    let elapsed_us = rec.elapsed.as_micros() as u64;
    let trace_id = trace_id(&keys.traceparent);
    match rec.outcome {
        Outcome::Relayed { grpc_status } => tracing::info!(
            target: "tongban::audit",
            method = rec.method,
            caller = rec.caller.unwrap_or(""),
            target_region = rec.target.unwrap_or(""),
            one_thing = text(&keys.one_thing),
            idempotency_key = text(&keys.idempotency_key),
            trace_id,
            grpc_status = grpc_status.unwrap_or("missing"),
            elapsed_us,
            "relayed"
        ),
        Outcome::Refused { code, message } => tracing::warn!(
            target: "tongban::audit",
            method = rec.method,
            caller = rec.caller.unwrap_or(""),
            target_region = rec.target.unwrap_or(""),
            one_thing = text(&keys.one_thing),
            idempotency_key = text(&keys.idempotency_key),
            trace_id,
            code = ?code,
            message,
            elapsed_us,
            "refused"
        ),
    }
}
