//! A filing's record: its span from the moment it has a case number (the case's calls,
//! lookups now and deliveries later, are its children), then one record once it is
//! written — counted per home province, audited and logged.

use opentelemetry::{KeyValue, trace::SpanKind};
use tongban_proto::v1::Application;
use tongban_runtime::observability::{trace_context::TraceParent, traces::Span};

use crate::context::NodeContext;

/// A filing being recorded.
pub struct FilingSpan {
    span: Span,
}

/// What is recorded of a written filing.
pub struct FilingRecord<'a> {
    /// The application as stored.
    pub application: &'a Application,
    /// Whether the store found it filed already (a retry racing the first).
    pub replayed: bool,
    /// The applicant's ID number: only its province is counted.
    pub applicant_id: &'a str,
    /// The applicant's keyed hash: only its start is logged.
    pub applicant_hash: &'a str,
    pub forward: bool,
    /// `complete` or `pending`.
    pub verification: &'a str,
    /// Materials satisfied by recognized licenses.
    pub recognized: usize,
    /// Lookups answered from the gateway's cache.
    pub cached: usize,
    pub trace: TraceParent,
}

impl FilingSpan {
    /// The span of a filing of `one_thing`, child of the portal's `parent` if it sent one.
    pub fn start(ctx: &NodeContext, parent: Option<&TraceParent>, one_thing: &str) -> Self {
        let span = ctx.traces.span(
            "file application",
            SpanKind::Server,
            parent,
            vec![
                KeyValue::new("tongban.one_thing", one_thing.to_owned()),
                KeyValue::new("tongban.origin", ctx.region.to_string()),
            ],
        );
        Self { span }
    }

    /// The case's trace: the span's, or one derived from the case number when nothing
    /// records, so the case's calls still share a trace id.
    pub fn trace(&self, case_number: &str) -> TraceParent {
        self.span
            .context()
            .unwrap_or_else(|| TraceParent::for_case(case_number))
    }

    /// The filing was refused after its span began.
    pub fn refused(&mut self, reason: &'static str) {
        self.span.fail(reason);
    }

    /// The filing was composed: where it goes, and how much the gateway's cache saved.
    pub fn composed(&mut self, target: &str, cached: usize) {
        self.span.set("tongban.target", target.to_owned());
        self.span.set("tongban.cached_lookups", cached as i64);
    }

    /// The filing was written: counted and audited unless the store found it filed
    /// already, and logged either way. The span ends here.
    pub fn filed(self, ctx: &NodeContext, record: &FilingRecord<'_>) {
        let filed = record.application;
        let trace_id = record.trace.trace_id_hex();
        if !record.replayed {
            if let Some(metrics) = &ctx.metrics {
                metrics.filed(record.applicant_id, &filed.one_thing_id);
                metrics
                    .time_limits
                    .filed(&filed.target_region, &filed.one_thing_id);
            }
            ctx.audit.filed(
                &filed.case_number,
                &filed.one_thing_id,
                &filed.target_region,
                &trace_id,
            );
        }
        tracing::info!(
            case = %filed.case_number,
            one_thing = %filed.one_thing_id,
            applicant = record.applicant_hash.get(..12).unwrap_or_default(),
            handling_region = %filed.target_region,
            forward = record.forward,
            verification = %record.verification,
            recognized = record.recognized,
            cached = record.cached,
            replayed = record.replayed,
            trace_id = %trace_id,
            "application filed"
        );
    }
}

/// A case that waited in pre-review was verified and queued for its hand-over.
pub fn resumed(case_number: &str) {
    tracing::info!(case = %case_number, "pre-review completed");
}
