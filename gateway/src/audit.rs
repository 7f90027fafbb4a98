//! Phase 5: the audit trail of relayed calls. One record per call, a JSON object,
//! serialized straight into the hash-chained trail's pending batch
//! (`tongban_runtime::audit::trail`, whatever the log level: no allocation of its own,
//! no wake-up, the hashing and I/O on the trail's thread) and, when the operator asks
//! for it (`[audit] log_events = true`), also as an event on the `tongban::audit` log
//! target, to route to a sink of their own. It names parties and keys, bounded in
//! length, never application content or personal data.

use std::{
    borrow::Cow,
    time::{Duration, Instant},
};

use http::{HeaderMap, HeaderValue};
use tongban_proto::{
    contract::metadata,
    rules::region::{RegionCode, RegionPrefix},
};
use tongban_runtime::{
    observability::logs::AUDIT_TARGET, observability::trace_context::TraceParent,
};

use tongban_runtime::audit::trail::AuditTrail;

use crate::{answer::Answer, call::Call, error::GatewayError};

/// Longest caller-supplied values the trail keeps (longer ones are cut, marked `…`).
const MAX_ONE_THING: usize = 64;
const MAX_KEY: usize = 128;

/// `value` cut to `max` characters.
fn bounded(value: &str, max: usize) -> Cow<'_, str> {
    match value.char_indices().nth(max) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &value[..cut])),
        None => Cow::Borrowed(value),
    }
}

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
            one_thing: headers.get(metadata::names::ONE_THING).cloned(),
            idempotency_key: headers.get(metadata::names::IDEMPOTENCY_KEY).cloned(),
            traceparent: headers.get(metadata::names::TRACEPARENT).cloned(),
        }
    }
}

/// The trace id of a well-formed `traceparent`, else empty.
fn trace_id(v: &Option<HeaderValue>) -> &str {
    TraceParent::trace_id_in(text(v)).unwrap_or("")
}

fn text(v: &Option<HeaderValue>) -> &str {
    v.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// What the audit trail records about one relayed call.
pub struct AuditRecord<'a> {
    pub method: &'a str,
    pub caller: Option<&'a str>,
    pub target: Option<&'a str>,
    /// How a lookup's cache answered, if the call was one.
    pub cache: Option<&'a str>,
    /// A lookup's verdict outcome.
    pub verdict: Option<&'a str>,
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
    /// The call ended before an answer: the caller reset it or its connection closed.
    /// The node may have acted on it (the caller retries with the same key).
    Abandoned,
}

/// The audit of one call in progress. It is written exactly once: when the call ends,
/// or — if the call is dropped first — as abandoned, so no relayed call goes unrecorded.
pub struct CallAudit {
    started: Instant,
    method: Cow<'static, str>,
    keys: AuditKeys,
    /// The caller's region, once authenticated.
    pub caller: Option<RegionPrefix>,
    /// The target region, once routed.
    pub target: Option<RegionCode>,
    /// For a lookup: how the cache answered (`hit`, `miss`, `grace`).
    pub cache: Option<&'static str>,
    /// For an identity or license lookup: the verdict's outcome (`recognized`,
    /// `cannot_verify_now`, ...).
    pub verdict: Option<&'static str>,
    /// For an identity or license lookup: the data it fetched (`identity`, or the
    /// license type of the material), as the responsibility list names it.
    pub data: Option<std::sync::Arc<str>>,
    written: bool,
    trail: Option<AuditTrail>,
    /// Whether the record is also a log event.
    log_events: bool,
}

impl CallAudit {
    /// Starts the record of `call`, timed from its arrival, to be written to `trail`
    /// (and logged, if `log_events`).
    pub fn start(call: &Call, trail: Option<AuditTrail>, log_events: bool) -> Self {
        Self {
            started: call.received,
            method: call.method_name(),
            keys: AuditKeys::from_headers(&call.headers),
            caller: None,
            target: None,
            cache: None,
            verdict: None,
            data: None,
            written: false,
            trail,
            log_events,
        }
    }

    /// The trace id of the call's `traceparent`, else empty.
    pub fn trace_id(&self) -> String {
        trace_id(&self.keys.traceparent).to_owned()
    }

    /// The method as recorded.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Records how the call ended and returns the answer for the caller: the node's, or
    /// the public part of the gateway's refusal (the trail keeps the whole reason).
    pub fn finish(mut self, result: Result<Answer, GatewayError>) -> Answer {
        match result {
            Ok(answer) => {
                let grpc_status = answer.grpc_status().and_then(|v| v.to_str().ok());
                self.write(Outcome::Relayed { grpc_status });
                answer
            }
            Err(error) => {
                let status = error.to_status();
                self.write(Outcome::Refused {
                    code: status.code(),
                    message: &error.to_string(),
                });
                Answer::from_status(status)
            }
        }
    }

    fn write(&mut self, outcome: Outcome<'_>) {
        self.written = true;
        record(
            self.trail.as_ref(),
            self.log_events,
            &self.keys,
            &AuditRecord {
                method: &self.method,
                caller: self.caller.as_ref().map(RegionPrefix::as_str),
                target: self.target.as_ref().map(RegionCode::as_str),
                cache: self.cache,
                verdict: self.verdict,
                outcome,
                elapsed: self.started.elapsed(),
            },
        );
    }
}

impl Drop for CallAudit {
    fn drop(&mut self) {
        if !self.written {
            self.write(Outcome::Abandoned);
        }
    }
}

/// One audit line: a JSON object, so the trail can be ingested as it is and a caller's
/// header value can never pass for a field (serde_json escapes it).
#[derive(serde::Serialize)]
struct Line<'a> {
    audit: &'static str,
    method: &'a str,
    caller: &'a str,
    target_region: &'a str,
    one_thing: &'a str,
    idempotency_key: &'a str,
    trace_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verdict: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    elapsed_us: u64,
}

/// Runs `with` on the audit line of one call (borrowing from `keys` and `rec`).
fn with_line<R>(keys: &AuditKeys, rec: &AuditRecord<'_>, with: impl FnOnce(&Line<'_>) -> R) -> R {
    let (audit, grpc_status, code, message) = match rec.outcome {
        Outcome::Relayed { grpc_status } => (
            "relayed",
            Some(grpc_status.unwrap_or("missing")),
            None,
            None,
        ),
        Outcome::Refused { code, message } => ("refused", None, Some(code as i32), Some(message)),
        Outcome::Abandoned => ("abandoned", None, None, None),
    };
    with(&Line {
        audit,
        method: rec.method,
        caller: rec.caller.unwrap_or(""),
        target_region: rec.target.unwrap_or(""),
        one_thing: &bounded(text(&keys.one_thing), MAX_ONE_THING),
        idempotency_key: &bounded(text(&keys.idempotency_key), MAX_KEY),
        trace_id: trace_id(&keys.traceparent),
        cache: rec.cache,
        verdict: rec.verdict,
        grpc_status,
        code,
        message,
        elapsed_us: rec.elapsed.as_micros().try_into().unwrap_or(u64::MAX),
    })
}

/// The audit line for one call, as a string (the log event's copy).
fn line(keys: &AuditKeys, rec: &AuditRecord<'_>) -> String {
    // Serializing plain strings and integers cannot fail.
    with_line(keys, rec, |line| {
        serde_json::to_string(line).unwrap_or_default()
    })
}

/// Writes one audit record: serialized straight into the trail's pending batch; or, if
/// the operator asked for log events, formatted once as a JSON string that goes to the
/// trail and as the event (the log formatter writes it verbatim: see
/// `tongban_runtime::observability::logs`).
pub fn record(
    trail: Option<&AuditTrail>,
    log_events: bool,
    keys: &AuditKeys,
    rec: &AuditRecord<'_>,
) {
    if log_events {
        // Formatted once, for the event and the trail alike.
        let line = line(keys, rec);
        if let Some(trail) = trail {
            trail.record_with(|lines| lines.extend_from_slice(line.as_bytes()));
        }
        match rec.outcome {
            Outcome::Relayed { .. } => tracing::info!(target: AUDIT_TARGET, audit = line.as_str()),
            Outcome::Refused { .. } | Outcome::Abandoned => {
                tracing::warn!(target: AUDIT_TARGET, audit = line.as_str())
            }
        }
    } else if let Some(trail) = trail {
        with_line(keys, rec, |line| {
            trail.record_with(|lines| {
                let start = lines.len();
                // Writing plain strings and integers into a Vec cannot fail; if it
                // did, the record would still be counted, as unreadable.
                if serde_json::to_writer(&mut *lines, line).is_err() {
                    lines.truncate(start);
                    lines.extend_from_slice(br#"{"audit":"unwritable"}"#);
                }
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A delivery from 31 to 440305 that the node answered OK, `elapsed_us` after it
    /// arrived.
    fn relayed(elapsed_us: u64) -> AuditRecord<'static> {
        AuditRecord {
            method: "DeliverApplication",
            caller: Some("31"),
            target: Some("440305"),
            cache: None,
            verdict: None,
            outcome: Outcome::Relayed {
                grpc_status: Some("0"),
            },
            elapsed: Duration::from_micros(elapsed_us),
        }
    }

    #[test]
    fn lines_are_json_and_escape_caller_values() {
        let mut headers = HeaderMap::new();
        headers.insert(
            metadata::IDEMPOTENCY_KEY,
            HeaderValue::from_static(r#"k" ,"caller":"11"#),
        );
        headers.insert(
            metadata::TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let keys = AuditKeys::from_headers(&headers);
        let text = line(&keys, &relayed(250));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["audit"], "relayed");
        assert_eq!(v["caller"], "31", "{text}");
        assert_eq!(v["idempotency_key"], r#"k" ,"caller":"11"#);
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v["grpc_status"], "0");
        assert_eq!(v["elapsed_us"], 250);
        assert!(v.get("code").is_none());

        let refused = line(
            &AuditKeys::default(),
            &AuditRecord {
                method: "DeliverApplication",
                caller: Some("31"),
                target: None,
                cache: Some("hit"),
                verdict: Some("recognized"),
                outcome: Outcome::Refused {
                    code: tonic::Code::PermissionDenied,
                    message: "origin 44 is outside the caller's region",
                },
                elapsed: Duration::from_micros(20),
            },
        );
        let v: serde_json::Value = serde_json::from_str(&refused).unwrap();
        assert_eq!(v["audit"], "refused");
        assert_eq!(v["code"], tonic::Code::PermissionDenied as i32);
        assert_eq!(v["target_region"], "");
        assert_eq!(v["trace_id"], "");
        assert_eq!(v["verdict"], "recognized");

        // Caller-supplied values are kept bounded.
        let mut headers = HeaderMap::new();
        let long = "k".repeat(300);
        headers.insert(
            metadata::IDEMPOTENCY_KEY,
            HeaderValue::from_str(&long).unwrap(),
        );
        let v: serde_json::Value = serde_json::from_str(&line(
            &AuditKeys::from_headers(&headers),
            &AuditRecord {
                method: "DeliverApplication",
                caller: Some("31"),
                target: None,
                cache: None,
                verdict: None,
                outcome: Outcome::Abandoned,
                elapsed: Duration::ZERO,
            },
        ))
        .unwrap();
        assert_eq!(
            v["idempotency_key"].as_str().unwrap().chars().count(),
            MAX_KEY + 1
        );
    }

    #[test]
    fn the_trail_keeps_the_same_line_whether_or_not_it_is_also_logged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trail.log");
        let trail = AuditTrail::start(&path, &Default::default(), None).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            metadata::IDEMPOTENCY_KEY,
            HeaderValue::from_static(r#"k"\x"#),
        );
        let keys = AuditKeys::from_headers(&headers);
        let rec = relayed(7);
        record(Some(&trail), false, &keys, &rec);
        record(Some(&trail), true, &keys, &rec);
        assert!(trail.stop(Duration::from_secs(5)));
        let text = std::fs::read_to_string(&path).unwrap();
        let jsons: Vec<&str> = text
            .lines()
            .filter_map(|l| l.splitn(3, '\t').nth(2))
            .collect();
        assert_eq!(jsons, [line(&keys, &rec), line(&keys, &rec)]);
    }
}
