//! Telemetry of a process: logs (human-readable on a terminal, JSON lines
//! otherwise, level from `RUST_LOG`, default `info`, tansu at `warn`) and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, OpenTelemetry traces exported over
//! OTLP/HTTP (protobuf) with `service.name` set to the service.
//!
//! Also the W3C trace-context helpers the Kafka plumbing uses so that one
//! trace runs alert → command → crisis → entitlement → instruction → status:
//! the consumer loop parents its span on the incoming `traceparent`, and
//! whatever a handler creates carries [`continuing`] — the context of the
//! span it was created in. Messaging span names and attributes follow the
//! OpenTelemetry semantic conventions 1.27.0 (see `kafka/spans.rs`).

use std::future::Future;
use std::io::IsTerminal;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// The log filter without `RUST_LOG`: `info`, except the embedded broker
/// (tansu), which logs every metadata read at `info` — tens of thousands of
/// lines in one demo.
const DEFAULT_FILTER: &str = "info,tansu_storage=warn,tansu_broker=warn,tansu_service=warn";

/// The standard variable that turns trace export on (e.g.
/// `http://otel-collector:4318`; `/v1/traces` is appended).
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Set once a trace exporter is installed: span work that only matters for
/// export (links, producer spans) is skipped otherwise.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Keeps telemetry alive; on drop flushes the spans not yet exported and
/// shuts the exporter down, so the last batch of a stopping service is kept.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            EXPORTING.store(false, Ordering::Release);
            if let Err(e) = provider.force_flush() {
                eprintln!("telemetry: could not flush spans: {e}");
            }
            if let Err(e) = provider.shutdown() {
                eprintln!("telemetry: could not shut the span exporter down: {e}");
            }
        }
    }
}

/// Installs the global subscriber. Safe to call more than once (later calls
/// are no-ops returning an empty guard), which keeps tests that start several
/// services simple; only the first guard owns the exporter.
pub fn init(service: &str) -> TelemetryGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let logs = if std::io::stderr().is_terminal() {
        fmt::layer().with_writer(std::io::stderr).boxed()
    } else {
        fmt::layer().json().with_writer(std::io::stderr).boxed()
    };
    let provider = match std::env::var(OTLP_ENDPOINT_VAR) {
        Ok(endpoint) if !endpoint.trim().is_empty() => match provider(service) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("telemetry: traces are off, the OTLP exporter failed to start: {e}");
                None
            }
        },
        _ => None,
    };
    // Spans are exported at `info` whatever `RUST_LOG` says: quiet logs must
    // not cut a trace.
    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("sumud"))
            .with_filter(LevelFilter::INFO)
    });
    let installed = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .try_init()
        .is_ok();
    if !installed {
        if let Some(p) = provider {
            let _ = p.shutdown();
        }
        return TelemetryGuard { provider: None };
    }
    EXPORTING.store(provider.is_some(), Ordering::Release);
    tracing::debug!(
        service,
        traces = provider.is_some(),
        "Telemetry initialised."
    );
    TelemetryGuard { provider }
}

/// Whether spans are exported by this process.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Acquire)
}

fn provider(service: &str) -> Result<SdkTracerProvider, String> {
    let client = ExportClient::start().map_err(|e| e.to_string())?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_http_client(client)
        .build()
        .map_err(|e| e.to_string())?;
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The OTLP/HTTP client: hyper (already in the tree for axum) on a
/// single-threaded runtime of its own. The SDK's batch processor exports
/// from a plain thread, where hyper alone would find no runtime; a runtime
/// of our own also outlives the runtimes tests start and drop.
#[derive(Debug)]
struct ExportClient {
    handle: tokio::runtime::Handle,
    inner: opentelemetry_http::hyper::HyperClient,
    /// Dropped with the client (exporter shutdown): the runtime thread ends.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl ExportClient {
    fn start() -> std::io::Result<ExportClient> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                })
            })?;
        let inner = {
            let _entered = handle.enter();
            opentelemetry_http::hyper::HyperClient::with_default_connector(
                Duration::from_secs(10),
                None,
            )
        };
        Ok(ExportClient {
            handle,
            inner,
            _stop: stop,
        })
    }
}

impl HttpClient for ExportClient {
    // The trait is declared with `async_trait`; this is its expansion.
    fn send_bytes<'a, 'f>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'f>>
    where
        'a: 'f,
        Self: 'f,
    {
        let inner = self.inner.clone();
        let sent = self
            .handle
            .spawn(async move { inner.send_bytes(request).await });
        Box::pin(async move { sent.await? })
    }
}

/// The W3C `traceparent` of a span context (version 00).
pub fn traceparent_of(cx: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        cx.trace_id(),
        cx.span_id(),
        cx.trace_flags().to_u8()
    )
}

/// Parses a W3C `traceparent`; `None` if it is not a valid version-00 one.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let cx = SpanContext::new(
        trace,
        span,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    cx.is_valid().then_some(cx)
}

/// The `traceparent` of a tracing span, if it is exported.
pub fn traceparent_of_span(span: &tracing::Span) -> Option<String> {
    if !exporting() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| traceparent_of(&sc))
}

/// Makes `span` a child of the remote context `traceparent` (call before
/// the span is entered).
pub fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
    if let Some(sc) = parse_traceparent(traceparent) {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(sc));
    }
}

/// The trace context for what a handler creates from an incoming message:
/// the current span's (a child hop of the message's trace) when it belongs
/// to the message's trace, otherwise the message's own — a batch span
/// continues its first message's trace, and the others must not be moved
/// into it. Without export, the incoming context passes through unchanged.
pub fn continuing(incoming: Option<&str>) -> Option<String> {
    let current = traceparent_of_span(&tracing::Span::current());
    match (current, incoming) {
        (Some(current), Some(incoming)) => {
            let same_trace = current.get(3..35) == incoming.get(3..35);
            Some(if same_trace {
                current
            } else {
                incoming.to_owned()
            })
        }
        (Some(current), None) => Some(current),
        (None, incoming) => incoming.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_survives_parsing_and_formatting() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = parse_traceparent(tp).expect("valid");
        assert_eq!(traceparent_of(&cx), tp);
        assert!(cx.is_remote());
    }

    #[test]
    fn malformed_or_all_zero_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-xyz92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn without_export_the_incoming_context_passes_through() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(continuing(Some(tp)).as_deref(), Some(tp));
        assert_eq!(continuing(None), None);
    }
}
