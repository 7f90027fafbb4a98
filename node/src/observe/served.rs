//! A call the gateway made on this node: its span (a child of the gateway's), then its
//! outcome on the span, in the server-call metrics and in the audit trail, once
//! however it ends.

use std::time::Instant;

use opentelemetry::{KeyValue, trace::SpanKind};
use tongban_proto::{contract::metadata, rules::region::RegionPrefix};
use tongban_runtime::observability::{trace_context::TraceParent, traces::Span};
use tonic::{Request, Response, Status};

use crate::{context::NodeContext, error::NodeError};

/// An incoming call in progress: its span, and what its metrics and audit need.
pub struct Served {
    span: Span,
    method: &'static str,
    origin: String,
    trace_id: String,
    started: Instant,
}

impl Served {
    /// Starts serving an incoming call of `method`.
    pub fn start<T>(ctx: &NodeContext, method: &'static str, request: &Request<T>) -> Served {
        let started = Instant::now();
        let parent = request
            .metadata()
            .get(metadata::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse);
        // The verified origin (set by the gateway), bounded to a region prefix's length.
        let origin: String = request
            .metadata()
            .get(metadata::VERIFIED_ORIGIN)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| RegionPrefix::parse(v).ok())
            .map(|p| p.to_string())
            .unwrap_or_default();
        let traces = &ctx.traces;
        let span = if traces.enabled() {
            traces.span(
                format!("tongban.federation.v1.Node/{method}"),
                SpanKind::Server,
                parent.as_ref(),
                vec![
                    KeyValue::new("rpc.system", "grpc"),
                    KeyValue::new("rpc.method", method),
                    KeyValue::new("tongban.origin", origin.clone()),
                    KeyValue::new("tongban.target", ctx.region.to_string()),
                ],
            )
        } else {
            Span::passthrough(parent.as_ref())
        };
        Served {
            span,
            method,
            origin,
            trace_id: parent.map(|p| p.trace_id_hex()).unwrap_or_default(),
            started,
        }
    }

    /// The trace the call's own work (a delivery's records) is done under.
    pub fn trace(&self) -> Option<TraceParent> {
        self.span.context()
    }

    /// Ends the call: its outcome on its span, in the metrics and in the audit trail;
    /// the answer for the caller.
    pub fn answered<R>(
        mut self,
        ctx: &NodeContext,
        result: Result<R, NodeError>,
    ) -> Result<Response<R>, Status> {
        let result = result.map_err(Status::from);
        let code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        self.span.grpc_outcome(code);
        ctx.audit
            .served(self.method, &self.origin, code, &self.trace_id);
        if let Some(metrics) = &ctx.metrics {
            metrics.server_call(self.method, &self.origin, code, self.started.elapsed());
        }
        result.map(Response::new)
    }
}

/// A delivery the platform took (or already had: `created` false).
pub fn delivery_accepted(case_number: &str, origin: &str, created: bool, trace_id: &str) {
    tracing::info!(
        case = %case_number,
        origin = %origin,
        created,
        %trace_id,
        "delivery accepted"
    );
}
