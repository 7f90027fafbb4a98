//! Distributed traces: spans exported over OTLP/gRPC when configured, W3C trace context
//! carried on every cross-region call either way.
//!
//! A [`Traces`] is passed to what makes spans (not a global), so the members of an
//! in-process test federation each report as themselves. Off (the default) it makes no
//! span and costs nothing; a process that does not trace still carries the caller's
//! `traceparent` on, unchanged, so a trace survives a hop that does not record.
//!
//! Sampling is parent-based: a call whose caller sampled is recorded, one whose caller
//! did not is not (and costs a flag test), and a trace started here is sampled at the
//! configured ratio of trace ids.
//!
//! Spans carry regions, one-things, methods, codes, cache outcomes and attempts; never
//! personal data (ID numbers, names, form contents).

use std::{borrow::Cow, time::Duration};

use opentelemetry::{
    Context, KeyValue,
    trace::{
        Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
        TraceState, Tracer as _, TracerProvider as _,
    },
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider},
};
use serde::{Deserialize, Serialize};

use crate::observability::trace_context::TraceParent;

/// The `[telemetry]` section of a process's config. Every field may be left out; the
/// standard `OTEL_*` variables fill in what the file does not say.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/gRPC endpoint of the collector, e.g. `http://127.0.0.1:4317`. Traces are off
    /// unless this or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// is set (`OTEL_SDK_DISABLED=true` turns them off again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// Share of the traces started here that are recorded, 0.0 to 1.0 (calls from a
    /// caller that sampled are always recorded). Else `OTEL_TRACES_SAMPLER_ARG`, else 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_ratio: Option<f64>,
    /// Else `OTEL_SERVICE_NAME`, else the binary's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// How often finished spans are sent (default 5 s, or `OTEL_BSP_SCHEDULE_DELAY`).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub export_every: Option<Duration>,
    /// Whether the per-call metrics are kept (default true). Process-level gauges are
    /// always served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<bool>,
}

/// Where spans go, as decided from the config and the environment.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceExport {
    pub endpoint: String,
    pub sample_ratio: f64,
    pub service_name: String,
    pub export_every: Option<Duration>,
}

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    #[error("telemetry.sample_ratio must be between 0 and 1, got {0}")]
    Ratio(f64),
    #[error("telemetry.otlp_endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
}

impl TelemetryConfig {
    /// Whether nothing is configured (then a written config leaves the section out).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Whether the per-call metrics are kept.
    pub fn metrics_enabled(&self) -> bool {
        self.metrics.unwrap_or(true)
    }

    /// The export this config asks for, reading the standard variables through `env`;
    /// `None` when traces are off.
    pub fn trace_export(
        &self,
        default_service: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<TraceExport>, TracesError> {
        let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none")
        {
            return Ok(None);
        }
        let Some(endpoint) = self
            .otlp_endpoint
            .clone()
            .or_else(|| set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
            .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        else {
            return Ok(None);
        };
        let endpoint = endpoint.trim().to_owned();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(TracesError::Endpoint {
                endpoint,
                reason: "must start with http:// or https://".into(),
            });
        }
        let sample_ratio = match self.sample_ratio {
            Some(r) => r,
            None => match set("OTEL_TRACES_SAMPLER").as_deref().map(str::trim) {
                Some("always_off" | "parentbased_always_off") => 0.0,
                Some("traceidratio" | "parentbased_traceidratio") => set("OTEL_TRACES_SAMPLER_ARG")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(1.0),
                _ => 1.0,
            },
        };
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(TracesError::Ratio(sample_ratio));
        }
        let service_name = self
            .service_name
            .clone()
            .or_else(|| set("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| default_service.to_owned());
        Ok(Some(TraceExport {
            endpoint,
            sample_ratio,
            service_name,
            export_every: self.export_every,
        }))
    }
}

/// Makes the spans of one process (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct Traces {
    tracer: Option<SdkTracer>,
}

/// Sends what is buffered and stops the exporter; see [`TracesGuard::shutdown`].
#[must_use = "dropping the guard without shutdown loses the last spans"]
pub struct TracesGuard {
    provider: Option<SdkTracerProvider>,
}

impl TracesGuard {
    /// Flushes and stops the exporter. The export runs on the process's Tokio runtime,
    /// so this waits on a blocking thread, never on the runtime's own.
    pub async fn shutdown(mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = tokio::task::spawn_blocking(move || {
                provider.shutdown_with_timeout(Duration::from_secs(5))
            })
            .await;
        }
    }
}

impl Traces {
    /// No spans: `traceparent` passes through unchanged.
    pub fn off() -> Self {
        Self { tracer: None }
    }

    /// Traces as `config` and the environment ask. Must run inside a Tokio runtime (the
    /// exporter's channel is made here; it connects lazily, so a collector that is down
    /// costs dropped spans, never a failed start).
    pub fn start(
        config: &TelemetryConfig,
        default_service: &str,
        attributes: Vec<KeyValue>,
    ) -> Result<(Self, TracesGuard), TracesError> {
        let export = config.trace_export(default_service, |name| std::env::var(name).ok())?;
        let Some(export) = export else {
            return Ok((Self::off(), TracesGuard { provider: None }));
        };
        let (traces, provider) = Self::with_export(&export, attributes)?;
        tracing::info!(
            endpoint = %export.endpoint,
            ratio = export.sample_ratio,
            service = %export.service_name,
            "exporting traces over OTLP"
        );
        Ok((
            traces,
            TracesGuard {
                provider: Some(provider),
            },
        ))
    }

    fn with_export(
        export: &TraceExport,
        attributes: Vec<KeyValue>,
    ) -> Result<(Self, SdkTracerProvider), TracesError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(export.endpoint.clone())
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| TracesError::Endpoint {
                endpoint: export.endpoint.clone(),
                reason: e.to_string(),
            })?;
        let mut batch = BatchConfigBuilder::default();
        if let Some(every) = export.export_every {
            batch = batch.with_scheduled_delay(every);
        }
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch.build())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                export.sample_ratio,
            ))))
            .with_resource(
                Resource::builder_empty()
                    .with_service_name(export.service_name.clone())
                    .with_attributes(attributes)
                    .build(),
            )
            .build();
        let tracer = provider.tracer("tongban");
        Ok((
            Self {
                tracer: Some(tracer),
            },
            provider,
        ))
    }

    /// Whether spans are made at all.
    pub fn enabled(&self) -> bool {
        self.tracer.is_some()
    }

    /// Starts a span named `name`, child of `parent` (a remote caller's context, or a
    /// context stored with a case) or the root of a new trace.
    ///
    /// When the parent did not sample, nothing is made: the span carries the parent on.
    pub fn span(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: Option<&TraceParent>,
        attributes: Vec<KeyValue>,
    ) -> Span {
        let Some(tracer) = &self.tracer else {
            return Span::passthrough(parent);
        };
        if parent.is_some_and(|p| !p.sampled) {
            return Span::passthrough(parent);
        }
        let cx = match parent {
            Some(p) => Context::new().with_remote_span_context(remote_context(p)),
            None => Context::new(),
        };
        let span = tracer.build_with_context(
            tracer
                .span_builder(name)
                .with_kind(kind)
                .with_attributes(attributes),
            &cx,
        );
        let sc = span.span_context();
        let context = sc.is_valid().then(|| TraceParent {
            trace_id: sc.trace_id().to_bytes(),
            span_id: sc.span_id().to_bytes(),
            sampled: sc.is_sampled(),
        });
        Span {
            inner: span.is_recording().then_some(span),
            context,
        }
    }
}

fn remote_context(p: &TraceParent) -> SpanContext {
    SpanContext::new(
        TraceId::from_bytes(p.trace_id),
        SpanId::from_bytes(p.span_id),
        if p.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        },
        true,
        TraceState::default(),
    )
}

/// A span in progress; it ends when dropped.
pub struct Span {
    inner: Option<opentelemetry_sdk::trace::Span>,
    /// What calls made under this span carry as their `traceparent`.
    context: Option<TraceParent>,
}

impl Span {
    /// A span that records nothing and hands its parent on.
    pub fn passthrough(parent: Option<&TraceParent>) -> Self {
        Self {
            inner: None,
            context: parent.copied(),
        }
    }

    /// The context for calls made under this span (this span's, when it records; the
    /// parent's otherwise; `None` when there is neither).
    pub fn context(&self) -> Option<TraceParent> {
        self.context
    }

    /// Whether anything is recorded (attributes are only worth building then).
    pub fn is_recording(&self) -> bool {
        self.inner.is_some()
    }

    /// Adds an attribute.
    pub fn set(&mut self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        if let Some(span) = &mut self.inner {
            span.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed, with a reason that holds no personal data.
    pub fn fail(&mut self, reason: impl Into<Cow<'static, str>>) {
        if let Some(span) = &mut self.inner {
            span.set_status(Status::error(reason));
        }
    }

    /// Records a gRPC outcome: the status code attribute, and failure for any code but
    /// OK. Only the code: status messages may quote what a caller sent.
    pub fn grpc_outcome(&mut self, code: tonic::Code) {
        if let Some(span) = &mut self.inner {
            span.set_attribute(KeyValue::new("rpc.grpc.status_code", code as i64));
            if code != tonic::Code::Ok {
                span.set_status(Status::error(format!("{code:?}")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn off_unless_an_endpoint_is_named() {
        let config = TelemetryConfig::default();
        assert_eq!(config.trace_export("svc", env(&[])).unwrap(), None);
        let on = config
            .trace_export(
                "svc",
                env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                    ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
                    ("OTEL_SERVICE_NAME", "gw-east"),
                ]),
            )
            .unwrap()
            .unwrap();
        assert_eq!(on.endpoint, "http://127.0.0.1:4317");
        assert_eq!(on.sample_ratio, 0.01);
        assert_eq!(on.service_name, "gw-east");
        let disabled = config
            .trace_export(
                "svc",
                env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                    ("OTEL_SDK_DISABLED", "true"),
                ]),
            )
            .unwrap();
        assert_eq!(disabled, None);
    }

    #[test]
    fn the_file_wins_over_the_environment_and_bad_values_are_refused() {
        let config = TelemetryConfig {
            otlp_endpoint: Some("http://collector:4317".into()),
            sample_ratio: Some(0.5),
            service_name: Some("node-44".into()),
            ..Default::default()
        };
        let export = config
            .trace_export(
                "svc",
                env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4317"),
                    ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
                ]),
            )
            .unwrap()
            .unwrap();
        assert_eq!(export.endpoint, "http://collector:4317");
        assert_eq!(export.sample_ratio, 0.5);
        assert_eq!(export.service_name, "node-44");
        let bad_ratio = TelemetryConfig {
            sample_ratio: Some(1.5),
            ..config.clone()
        };
        assert!(matches!(
            bad_ratio.trace_export("svc", env(&[])),
            Err(TracesError::Ratio(_))
        ));
        let bad_endpoint = TelemetryConfig {
            otlp_endpoint: Some("collector:4317".into()),
            ..config
        };
        assert!(matches!(
            bad_endpoint.trace_export("svc", env(&[])),
            Err(TracesError::Endpoint { .. })
        ));
    }

    #[test]
    fn off_passes_the_parent_on_unchanged() {
        let parent =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let span = Traces::off().span("x", SpanKind::Server, Some(&parent), vec![]);
        assert_eq!(span.context(), Some(parent));
        assert!(!span.is_recording());
        assert_eq!(
            Traces::off()
                .span("x", SpanKind::Server, None, vec![])
                .context(),
            None
        );
    }

    #[tokio::test]
    async fn a_child_keeps_the_trace_and_an_unsampled_parent_is_not_recorded() {
        let export = TraceExport {
            endpoint: "http://127.0.0.1:9".into(),
            sample_ratio: 1.0,
            service_name: "t".into(),
            export_every: None,
        };
        let (traces, provider) = Traces::with_export(&export, vec![]).unwrap();
        let parent =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let child = traces.span("x", SpanKind::Server, Some(&parent), vec![]);
        let cx = child.context().unwrap();
        assert!(child.is_recording());
        assert_eq!(cx.trace_id, parent.trace_id);
        assert_ne!(cx.span_id, parent.span_id);
        assert!(cx.sampled);

        let unsampled =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        let skipped = traces.span("x", SpanKind::Server, Some(&unsampled), vec![]);
        assert!(!skipped.is_recording());
        assert_eq!(skipped.context(), Some(unsampled));

        let root = traces.span("x", SpanKind::Server, None, vec![]);
        assert!(root.is_recording());
        assert_ne!(root.context().unwrap().trace_id, parent.trace_id);
        drop((child, skipped, root));
        let _ = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(Duration::ZERO))
            .await;
    }
}
