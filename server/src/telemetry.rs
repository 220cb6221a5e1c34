//! OpenTelemetry traces over OTLP/gRPC, behind `otlp_endpoint`.
//!
//! The server's `tracing` spans become OpenTelemetry spans: one `search` span per search (with
//! the collection, mode and candidate counts), and under it `embed`, `first_stage` (with `bm25`,
//! `dense`, `fusion`, `fetch`), `rerank` and one `rerank_stage` per cascade stage (model,
//! candidates, keep). A client's W3C `traceparent` header makes the search span a child of the
//! caller's trace. Only Sieve's own spans are exported, batched on a background thread.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::filter::{LevelFilter, Targets};

/// What `init` hands back: the layer to add to the subscriber, and the provider to shut down
/// (flushing queued spans) when the server stops.
pub struct Telemetry<L> {
    pub layer: L,
    pub provider: SdkTracerProvider,
}

/// Builds the OTLP exporter for `endpoint` (e.g. `http://collector:4317`). Must run inside the
/// tokio runtime whose reactor will carry the exports.
pub fn init<S>(
    endpoint: &str,
    runtime: tokio::runtime::Handle,
) -> anyhow::Result<Telemetry<impl tracing_subscriber::Layer<S> + Send + Sync + 'static>>
where
    S: tracing::Subscriber
        + for<'span> tracing_subscriber::registry::LookupSpan<'span>
        + Send
        + Sync,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .with_context(|| format!("otlp_endpoint '{endpoint}'"))?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name("sieve-server").build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(InRuntime { inner: exporter, runtime })
        .with_resource(resource)
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let tracer = provider.tracer("sieve-server");
    let own_spans = Targets::new()
        .with_target("sieve_server", LevelFilter::INFO)
        .with_target("sieve_planner", LevelFilter::INFO)
        .with_target("sieve_rerank", LevelFilter::INFO)
        .with_target("sieve_storage", LevelFilter::INFO)
        .with_target("sieve_models", LevelFilter::INFO);
    let layer = tracing_subscriber::Layer::with_filter(
        tracing_opentelemetry::layer().with_tracer(tracer),
        own_spans,
    );
    Ok(Telemetry { layer, provider })
}

/// Makes `span` a child of the trace named by the request's `traceparent` header, if any.
pub fn link_to_caller(span: &tracing::Span, metadata: &tonic::metadata::MetadataMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    struct Headers<'a>(&'a tonic::metadata::MetadataMap);
    impl opentelemetry::propagation::Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|value| value.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            Vec::new()
        }
    }
    if metadata.get("traceparent").is_none() {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&Headers(metadata))
    });
    let _ = span.set_parent(parent);
}

/// The OTLP exporter's gRPC client needs a tokio reactor, and the SDK's batch processor calls it
/// from its own thread: each poll of an export enters the server's runtime.
#[derive(Debug)]
struct InRuntime {
    inner: opentelemetry_otlp::SpanExporter,
    runtime: tokio::runtime::Handle,
}

impl SpanExporter for InRuntime {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        Entered { runtime: self.runtime.clone(), future: Box::pin(self.inner.export(batch)) }
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        let _entered = self.runtime.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

struct Entered<F> {
    runtime: tokio::runtime::Handle,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for Entered<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let _entered = this.runtime.enter();
        this.future.as_mut().poll(cx)
    }
}
