//! The gateway's span of each call: a child of the caller's trace context, the parent of
//! the node's, so a case crossing regions is one trace (origin node → gateway → target
//! node, and back for status pushes).
//!
//! With traces off this does nothing and the caller's `traceparent` reaches the node
//! unchanged. With traces on, a call whose caller did not sample costs a header parse;
//! a sampled one gets a span, and the node sees the gateway's span as its parent.

use std::borrow::Cow;

use http::HeaderValue;
use opentelemetry::{KeyValue, trace::SpanKind};
use tongban_proto::contract::metadata;
use tongban_runtime::{
    observability::trace_context::TraceParent,
    observability::traces::{Span, Traces},
};

use crate::{answer::Answer, audit::CallAudit, call::Call, error::GatewayError};

/// Starts the span of `call` and points the call's `traceparent` at it, so whatever the
/// gateway sends on (the relayed call, an issuer lookup) is its child.
pub fn start(traces: &Traces, call: &mut Call) -> Span {
    if !traces.enabled() {
        return Span::passthrough(None);
    }
    let parent = call
        .headers
        .get(metadata::names::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let name: Cow<'static, str> = call.method_name();
    let span = traces.span(
        name,
        SpanKind::Server,
        parent.as_ref(),
        vec![KeyValue::new("rpc.system", "grpc")],
    );
    // A recording span, or a trace started here (sampled or not), is what the node must
    // see as its parent; otherwise the caller's header goes on as it came.
    if (span.is_recording() || parent.is_none())
        && let Some(context) = span.context()
        && let Ok(value) = HeaderValue::from_str(&context.to_string())
    {
        call.headers.insert(metadata::names::TRACEPARENT, value);
    }
    span
}

/// Records how the call ended on its span.
pub fn finish(span: &mut Span, audit: &CallAudit, result: &Result<Answer, GatewayError>) {
    if !span.is_recording() {
        return;
    }
    if let Some(caller) = &audit.caller {
        span.set("tongban.origin", caller.as_str().to_owned());
    }
    if let Some(target) = &audit.target {
        span.set("tongban.target", target.as_str().to_owned());
    }
    if let Some(cache) = audit.cache {
        span.set("tongban.cache", cache);
    }
    match result {
        Ok(answer) => {
            let code = answer
                .grpc_status()
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.parse::<i32>().ok())
                .map(tonic::Code::from_i32)
                .unwrap_or(tonic::Code::Unknown);
            span.grpc_outcome(code);
        }
        Err(error) => span.grpc_outcome(error.code()),
    }
}
