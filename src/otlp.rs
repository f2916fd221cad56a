//! Optional export of the spans over OTLP/HTTP (docs/operations.md, "Tracing"), and the one
//! place a span meets a W3C trace context.
//!
//! Export is off unless `telemetry.otlp_endpoint` (or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) names a collector.
//! When it is on, the `tracing` spans go to the collector through a batch span processor
//! running on the tokio runtime, flushed by [`Exporter::shutdown`] when the process stops;
//! a request's or record's `traceparent` becomes its span's remote parent, and what it causes
//! carries the span's own id on. When it is off, no span has an id of its own, so a
//! `traceparent` is carried on unchanged: the trace stays whole across questline, with
//! questline's part in it invisible ([`continue_trace`]).

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider,
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::settings::{OtlpProtocol, TelemetrySettings};
use crate::trace_context::{TraceContext, TraceParent};

/// Whether spans are exported: set once the exporting subscriber is installed.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports its spans (and so gives its spans W3C ids).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The standard variables that turn export on by themselves (the exporter reads them).
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// Whether `settings`, with the environment `env`, ask for export.
pub fn enabled(settings: &TelemetrySettings, env: impl Fn(&str) -> Option<String>) -> bool {
    !settings.otlp_endpoint.trim().is_empty()
        || ENDPOINT_VARS
            .iter()
            .any(|var| env(var).is_some_and(|v| !v.trim().is_empty()))
}

/// The traces URL of a collector's base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` is read.
pub fn traces_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim().trim_end_matches('/'))
}

/// The installed exporter; [`Exporter::shutdown`] sends what is buffered.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Builds the exporter `settings` ask for, or `None` when export is off. Must run inside
    /// the tokio runtime, where its batch processor runs.
    pub fn new(settings: &TelemetrySettings) -> Result<Option<Self>, String> {
        if !enabled(settings, |var| std::env::var(var).ok()) {
            return Ok(None);
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("span export needs the tokio runtime".into());
        }
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(match settings.otlp_protocol {
                OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
                OtlpProtocol::HttpJson => Protocol::HttpJson,
            });
        let base = settings.otlp_endpoint.trim();
        if !base.is_empty() {
            builder = builder.with_endpoint(traces_url(base));
        }
        let exporter = builder
            .build()
            .map_err(|e| format!("telemetry.otlp_endpoint = '{base}': {e}"))?;
        let processor =
            BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource(settings))
            .build();
        Ok(Some(Exporter { provider }))
    }

    /// The `tracing` layer that hands spans to this exporter.
    pub fn layer<S>(
        &self,
    ) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("questline"))
    }

    /// Marks spans as exported from now on (the layer is installed).
    pub fn activate(&self) {
        EXPORTING.store(true, Ordering::Relaxed);
    }

    /// Sends the spans still buffered and stops. It blocks until the batch processor, a task
    /// of the runtime, has exported them (bounded by the exporter's timeout): call it from
    /// outside the runtime's workers (after `block_on`, or in `spawn_blocking`).
    pub fn shutdown(self) {
        EXPORTING.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "exporting the last spans failed");
        }
    }
}

/// The spans' resource: `service.name` from `OTEL_SERVICE_NAME` when set, else the setting;
/// `OTEL_RESOURCE_ATTRIBUTES` as the SDK reads it.
fn resource(settings: &TelemetrySettings) -> Resource {
    let builder = Resource::builder();
    match std::env::var("OTEL_SERVICE_NAME") {
        Ok(name) if !name.trim().is_empty() => builder.build(),
        _ => builder
            .with_service_name(settings.service_name.trim().to_string())
            .build(),
    }
}

/// The trace context to put on what `span`'s work causes, given the `incoming` one of its
/// request or record.
///
/// Exporting, `span` becomes the child of `incoming` (or, without one, the root of a new
/// trace) and the answer names `span`'s own id, with `incoming`'s trace state. Not
/// exporting (or with `span` filtered out), `incoming` is passed on unchanged.
pub fn continue_trace(
    span: &tracing::Span,
    incoming: Option<&TraceContext>,
) -> Option<TraceContext> {
    if !exporting() {
        return incoming.cloned();
    }
    if let Some(parent) = incoming {
        // Fails only if the span is disabled or already started: then it has no parent here.
        let _ = span.set_parent(remote(parent));
    }
    let cx = span.context();
    let own = cx.span().span_context().clone();
    if !own.is_valid() {
        return incoming.cloned();
    }
    Some(TraceContext {
        parent: TraceParent {
            trace_id: own.trace_id().to_bytes(),
            parent_id: own.span_id().to_bytes(),
            flags: own.trace_flags().to_u8(),
        },
        state: incoming.and_then(|t| t.state.clone()),
    })
}

/// `incoming` as a remote parent.
fn remote(incoming: &TraceContext) -> opentelemetry::Context {
    let p = &incoming.parent;
    let state = incoming
        .state
        .as_deref()
        .and_then(|s| TraceState::from_str(s).ok())
        .unwrap_or_default();
    let parent = SpanContext::new(
        TraceId::from_bytes(p.trace_id),
        SpanId::from_bytes(p.parent_id),
        TraceFlags::new(p.flags),
        true,
        state,
    );
    opentelemetry::Context::new().with_remote_span_context(parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_is_on_with_the_setting_or_a_standard_variable() {
        let off = TelemetrySettings::default();
        assert!(!enabled(&off, |_| None));
        assert!(!enabled(&off, |_| Some(" ".into())));
        let on = TelemetrySettings {
            otlp_endpoint: "http://collector:4318".into(),
            ..TelemetrySettings::default()
        };
        assert!(enabled(&on, |_| None));
        assert!(enabled(&off, |var| (var == "OTEL_EXPORTER_OTLP_ENDPOINT")
            .then(|| "http://c:4318".into())));
        assert!(enabled(&off, |var| (var
            == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .then(|| "http://c:4318/v1/traces".into())));
    }

    #[test]
    fn the_traces_path_is_joined_to_the_base_url() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("https://c/otlp/"), "https://c/otlp/v1/traces");
    }

    #[test]
    fn without_export_the_incoming_context_is_passed_on_unchanged() {
        let incoming = TraceContext {
            parent: TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
                .unwrap(),
            state: Some("a=1".into()),
        };
        let span = tracing::info_span!("record");
        assert_eq!(continue_trace(&span, Some(&incoming)), Some(incoming));
        assert_eq!(continue_trace(&span, None), None);
    }
}
