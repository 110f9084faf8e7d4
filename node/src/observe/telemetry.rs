//! Logs and traces.
//!
//! Logs are `tracing` events (pretty or JSON). Traces are OpenTelemetry spans, exported over
//! OTLP/gRPC when `--otlp-endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) is set; without an
//! endpoint the global tracer is a no-op and costs next to nothing.
//!
//! One pipeline is one trace across nodes: the API request's span context (continuing the
//! caller's `traceparent` header if any) travels in the proposal (`Proposal::trace_parent`),
//! a submitted pipeline keeps it in the replicated state, and every later span about that
//! pipeline, on any node (commit on the leader, apply on each node, placement, worker create,
//! job run), takes it as parent.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

const TRACER: &str = "flotilla";

/// How the process logs and traces.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    pub json_logs: bool,
    /// OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
}

/// Keeps the exporter alive; dropping it flushes the spans still buffered.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("flushing traces failed: {e}");
        }
    }
}

/// Installs the global subscriber (logs, and spans when exporting) and tracer provider. Call
/// once, inside the Tokio runtime (the gRPC exporter needs it).
pub fn init(config: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"));
    let fmt = if config.json_logs {
        tracing_subscriber::fmt::layer().json().boxed()
    } else {
        tracing_subscriber::fmt::layer().boxed()
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    let Some(endpoint) = &config.otlp_endpoint else {
        registry.init();
        return Ok(TelemetryGuard { provider: None });
    };
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    install(provider.clone());
    registry
        .with(
            tracing_opentelemetry::layer().with_tracer(opentelemetry::trace::TracerProvider::tracer(&provider, TRACER)),
        )
        .init();
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

/// Makes `provider` the global one, with W3C trace-context propagation (tests install an
/// in-memory exporter this way).
pub fn install(provider: SdkTracerProvider) {
    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(provider);
}

struct HeaderExtractor<'a>(&'a axum::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The caller's trace context from a request's `traceparent` header (empty if none).
pub fn from_headers(headers: &axum::http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// The context named by a stored `traceparent` (empty if none or malformed).
pub fn from_trace_parent(trace_parent: Option<&str>) -> Context {
    let Some(value) = trace_parent else {
        return Context::new();
    };
    let carrier: HashMap<String, String> = [("traceparent".to_string(), value.to_string())].into();
    TraceContextPropagator::new().extract(&carrier)
}

/// The `traceparent` of `cx`, if it holds a valid span.
pub fn trace_parent_of(cx: &Context) -> Option<String> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    struct Carrier(Option<String>);
    impl Injector for Carrier {
        fn set(&mut self, key: &str, value: String) {
            if key == "traceparent" {
                self.0 = Some(value);
            }
        }
    }
    let mut carrier = Carrier(None);
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    carrier.0
}

/// The `traceparent` of the current `tracing` span (as exported), if it is traced.
pub fn current_trace_parent() -> Option<String> {
    trace_parent_of(&tracing::Span::current().context())
}

/// Records a finished span under the trace of `trace_parent` (nothing without one: spans of
/// untraced pipelines would each be a new one-span trace).
pub fn record(
    name: &'static str,
    trace_parent: Option<&str>,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<KeyValue>,
) {
    let parent = from_trace_parent(trace_parent);
    if !parent.span().span_context().is_valid() {
        return;
    }
    let tracer = global::tracer(TRACER);
    let mut span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Internal)
        .with_start_time(start)
        .with_attributes(attributes)
        .start_with_context(&tracer, &parent);
    span.end_with_timestamp(end);
}

/// A wall-clock reading in milliseconds as a `SystemTime`.
pub fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_parents_round_trip_and_garbage_is_ignored() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_parent_of(&from_trace_parent(Some(tp))).as_deref(), Some(tp));
        assert_eq!(trace_parent_of(&from_trace_parent(Some("nonsense"))), None);
        assert_eq!(trace_parent_of(&from_trace_parent(None)), None);
    }
}
