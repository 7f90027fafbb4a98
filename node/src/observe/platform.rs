//! A call the node makes on its province's platform over HTTP
//! (`crate::platform::http`): one client span per call, whose context travels as the
//! call's `traceparent` (the same on every retry); the call counted by operation and
//! outcome with its latency; retries, the circuit opening and closing and the platform
//! going down or coming back logged. Nothing here names a person: operations, HTTP
//! statuses, case numbers and the explained failure only.
//!
//! The platform traits take no trace context, so the code that serves a case runs its
//! platform calls [`under`] the case's trace (a task-local); a call made outside one
//! (the feeds, the probe) about a case falls back to the trace derived from the case
//! number, and otherwise starts a trace of its own.

use std::{future::Future, time::Instant};

use opentelemetry::{KeyValue, trace::SpanKind};
use ring::rand::{SecureRandom, SystemRandom};
use tongban_runtime::observability::{
    trace_context::TraceParent,
    traces::{Span, Traces},
};

use crate::metrics::NodeMetrics;

tokio::task_local! {
    static CASE_TRACE: TraceParent;
}

/// Runs `work` with `trace` as the parent of the platform calls it makes.
pub async fn under<F: Future>(trace: Option<TraceParent>, work: F) -> F::Output {
    match trace {
        Some(trace) => CASE_TRACE.scope(trace, work).await,
        None => work.await,
    }
}

fn current() -> Option<TraceParent> {
    CASE_TRACE.try_with(|trace| *trace).ok()
}

/// A context for a call made outside any trace: a new trace, not sampled.
fn fresh() -> TraceParent {
    let mut bytes = [0u8; 24];
    let random = SystemRandom::new().fill(&mut bytes).is_ok() && bytes != [0; 24];
    if !random {
        // Unreachable on supported platforms; the instant still makes a usable id.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos());
        bytes[..16].copy_from_slice(&now.to_be_bytes());
        bytes[16..].copy_from_slice(&[1; 8]);
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    trace_id.copy_from_slice(&bytes[..16]);
    span_id.copy_from_slice(&bytes[16..]);
    TraceParent {
        trace_id,
        span_id,
        sampled: false,
    }
}

/// How a call to the platform ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The platform answered as the contract says it may.
    Ok,
    /// It did not: unreachable, no answer in time, busy after every retry, or an answer
    /// the operation does not expect (a `400`, `401`, `500` …).
    Failed,
    /// Refused without calling: the circuit is open.
    CircuitOpen,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::CircuitOpen => "circuit_open",
        }
    }
}

/// One call to the platform, from its start to its outcome.
pub struct PlatformCall<'a> {
    operation: &'static str,
    span: Span,
    started: Instant,
    metrics: Option<&'a NodeMetrics>,
    traceparent: String,
}

impl<'a> PlatformCall<'a> {
    /// Starts the call `operation` (`route`: its method and path template, the span's
    /// name), about `case_number` if it concerns a case.
    pub fn start(
        traces: &Traces,
        metrics: Option<&'a NodeMetrics>,
        operation: &'static str,
        route: &'static str,
        case_number: Option<&str>,
    ) -> Self {
        let parent = current().or_else(|| case_number.map(TraceParent::for_case));
        let span = if traces.enabled() {
            let mut attributes = vec![
                KeyValue::new("tongban.platform.operation", operation),
                KeyValue::new("http.route", route),
            ];
            if let Some(case) = case_number {
                attributes.push(KeyValue::new("tongban.case_number", case.to_owned()));
            }
            traces.span(route, SpanKind::Client, parent.as_ref(), attributes)
        } else {
            Span::passthrough(parent.as_ref())
        };
        let traceparent = span.context().unwrap_or_else(fresh).to_string();
        Self {
            operation,
            span,
            started: Instant::now(),
            metrics,
            traceparent,
        }
    }

    /// The `traceparent` every attempt of the call carries.
    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// An attempt failed for `why` and is made again after `wait`.
    pub fn retrying(&self, why: &str, wait: std::time::Duration) {
        if let Some(metrics) = self.metrics {
            metrics.platform_call(self.operation, "retried", None);
        }
        tracing::debug!(
            operation = self.operation,
            %why,
            retry_in_ms = wait.as_millis() as u64,
            "platform call failed; retrying"
        );
    }

    /// The call ended with `outcome`; `status` is the HTTP status it was answered with,
    /// `why` the failure.
    pub fn finished(mut self, outcome: Outcome, status: Option<u16>, why: Option<&str>) {
        if let Some(status) = status {
            self.span
                .set("http.response.status_code", i64::from(status));
        }
        if outcome != Outcome::Ok {
            self.span.fail(outcome.as_str());
        }
        let elapsed = self.started.elapsed();
        if let Some(metrics) = self.metrics {
            let timed = (outcome != Outcome::CircuitOpen).then_some(elapsed);
            metrics.platform_call(self.operation, outcome.as_str(), timed);
        }
        if outcome == Outcome::Failed {
            tracing::warn!(
                operation = self.operation,
                status,
                why = why.unwrap_or_default(),
                elapsed_ms = elapsed.as_millis() as u64,
                "platform call failed"
            );
        }
    }
}

/// The circuit in front of the platform at `url` opened after `why`.
pub fn circuit_opened(metrics: Option<&NodeMetrics>, url: &str, why: &str) {
    if let Some(metrics) = metrics {
        metrics.platform_circuit_opened();
    }
    tracing::error!(
        platform = url,
        %why,
        "platform circuit open: calls fail fast until a probe call succeeds"
    );
}

/// A probe call succeeded: the circuit closed.
pub fn circuit_closed(metrics: Option<&NodeMetrics>, url: &str) {
    if let Some(metrics) = metrics {
        metrics.platform_circuit_closed();
    }
    tracing::info!(platform = url, "platform circuit closed: calls flow again");
}

/// The platform at `url` went down (`Some(why)`) or came back (`None`).
pub fn health_changed(url: &str, down: Option<&str>) {
    match down {
        Some(why) => tracing::error!(platform = url, %why, "platform unreachable"),
        None => tracing::info!(platform = url, "platform reachable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_carry_the_case_trace_they_run_under() {
        let traces = Traces::off();
        let trace = TraceParent::for_case("440000-20261203-00000001");
        let inside = under(Some(trace), async {
            PlatformCall::start(&traces, None, "license", "GET /v1/licenses/{id}", None)
                .traceparent()
                .to_owned()
        })
        .await;
        assert_eq!(inside, trace.to_string());
        // Outside a trace, a case's calls share the case's derived trace id …
        let case = "310000-20261203-00000002";
        let derived = PlatformCall::start(&traces, None, "read_case", "GET", Some(case));
        let parsed = TraceParent::parse(derived.traceparent()).unwrap();
        assert_eq!(parsed.trace_id, TraceParent::for_case(case).trace_id);
        // … and other calls start their own.
        let a = PlatformCall::start(&traces, None, "case_events", "GET", None);
        let b = PlatformCall::start(&traces, None, "case_events", "GET", None);
        assert!(TraceParent::parse(a.traceparent()).is_some());
        assert_ne!(a.traceparent(), b.traceparent());
    }
}
