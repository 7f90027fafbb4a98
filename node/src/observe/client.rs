//! A call this node makes through the gateway: one client span per attempt (its context
//! travels as the call's `traceparent`, so it is made before the call) and, once
//! answered, the outcome on it and in the client-call metrics.

use std::time::Duration;

use opentelemetry::{KeyValue, trace::SpanKind};
use tongban_runtime::observability::{
    trace_context::TraceParent,
    traces::{Span, Traces},
};

use crate::metrics::NodeMetrics;

/// What a client call is, for its span and metrics.
pub struct ClientCall<'a> {
    pub method: &'static str,
    /// The target region, empty for lookups (routed by their content).
    pub target: &'a str,
    pub one_thing: &'a str,
    /// Which attempt this is (1 for the first), for outbox calls; 0 otherwise.
    pub attempt: u32,
}

/// The client span of `call`, child of `parent`.
pub fn span(traces: &Traces, call: &ClientCall<'_>, parent: Option<&TraceParent>) -> Span {
    if !traces.enabled() {
        return Span::passthrough(parent);
    }
    let mut attributes = vec![
        KeyValue::new("rpc.system", "grpc"),
        KeyValue::new("rpc.method", call.method),
        KeyValue::new("tongban.one_thing", call.one_thing.to_owned()),
    ];
    if !call.target.is_empty() {
        attributes.push(KeyValue::new("tongban.target", call.target.to_owned()));
    }
    if call.attempt > 0 {
        attributes.push(KeyValue::new("tongban.attempt", i64::from(call.attempt)));
    }
    traces.span(
        format!("tongban.federation.v1.Gateway/{}", call.method),
        SpanKind::Client,
        parent,
        attributes,
    )
}

/// A client call answered with `code` after `elapsed`.
pub fn answered(
    mut span: Span,
    metrics: Option<&NodeMetrics>,
    method: &'static str,
    target: &str,
    code: tonic::Code,
    elapsed: Duration,
) {
    span.grpc_outcome(code);
    if let Some(metrics) = metrics {
        metrics.client_call(method, target, code, elapsed);
    }
}
