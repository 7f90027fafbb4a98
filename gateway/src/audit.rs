//! Phase 5: the audit trail of relayed calls. One structured event per call on the
//! `tongban::audit` target, so operators can route it to its own sink with a filter.
//! It names parties and keys, never application content or personal data.

use std::time::Duration;

use http::HeaderMap;
use tongban_proto::metadata;

/// What the audit trail records about one relayed call.
pub struct AuditRecord<'a> {
    pub method: &'a str,
    pub caller: Option<&'a str>,
    pub target: Option<&'a str>,
    pub outcome: Outcome<'a>,
    pub elapsed: Duration,
}

/// How a relayed call ended, as far as the gateway can tell at response headers.
pub enum Outcome<'a> {
    /// The node answered; `grpc_status` is known when the answer was trailers-only.
    Relayed { grpc_status: Option<&'a str> },
    /// The gateway refused or failed the call.
    Refused { code: tonic::Code, message: &'a str },
}

/// Writes one audit event.
pub fn record(headers: &HeaderMap, rec: &AuditRecord<'_>) {
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let elapsed_us = rec.elapsed.as_micros() as u64;
    match rec.outcome {
        Outcome::Relayed { grpc_status } => tracing::info!(
            target: "tongban::audit",
            method = rec.method,
            caller = rec.caller.unwrap_or(""),
            target_region = rec.target.unwrap_or(""),
            one_thing = header(metadata::ONE_THING),
            idempotency_key = header(metadata::IDEMPOTENCY_KEY),
            grpc_status = grpc_status.unwrap_or("in-trailers"),
            elapsed_us,
            "relayed"
        ),
        Outcome::Refused { code, message } => tracing::warn!(
            target: "tongban::audit",
            method = rec.method,
            caller = rec.caller.unwrap_or(""),
            target_region = rec.target.unwrap_or(""),
            one_thing = header(metadata::ONE_THING),
            idempotency_key = header(metadata::IDEMPOTENCY_KEY),
            code = ?code,
            message,
            elapsed_us,
            "refused"
        ),
    }
}
