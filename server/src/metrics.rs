//! Prometheus metrics, served at `/metrics` on `metrics_listen` (a separate HTTP port).
//!
//! Recorded as they happen: every RPC's count and latency by method and final gRPC status
//! (a tower layer that reads the status from the response headers or trailers, so a stream
//! counts when it ends), ingested documents and bytes, search phase and per-stage rerank
//! latency, and each model queue's batch size, padded tokens and compute time. Read at scrape
//! time: collection sizes, tombstone ratio, how far each derived index is behind sled's
//! op-log, and each model queue's depth and totals.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::Frame;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use prost::Message as _;
use tower::{Layer, Service};

use crate::service::State;

/// Latency buckets in seconds: 0.5 ms to 2 minutes (cross-encoder stages on CPU are slow).
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];
/// Inputs per model batch.
const INPUTS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// Padded tokens per model batch.
const TOKENS: &[f64] = &[64.0, 256.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0];

/// The process-wide recorder (installed once; later calls share it).
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_inputs".into()), INPUTS))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_tokens".into()), TOKENS))
                .expect("bucket lists are not empty");
            let handle = match builder.install_recorder() {
                Ok(handle) => handle,
                Err(error) => {
                    // Another recorder is installed (a second server in one process): this
                    // handle renders an empty registry rather than failing the server.
                    tracing::warn!(%error, "metrics recorder already installed");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            };
            describe();
            handle
        })
        .clone()
}

/// Serves `/metrics` on `listener` until `shutdown` turns true, calling `refresh` (which sets
/// the gauges that are state, not events) before each scrape.
pub async fn serve(
    listener: tokio::net::TcpListener,
    refresh: impl Fn() + Clone + Send + Sync + 'static,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let handle = recorder();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            let refresh = refresh.clone();
            async move {
                refresh();
                handle.run_upkeep();
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                    handle.render(),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        })
        .await
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("sieve_grpc_requests_total", "RPCs finished, by method and gRPC status");
    describe_histogram!(
        "sieve_grpc_request_duration_seconds",
        Unit::Seconds,
        "RPC latency until its status is sent (a stream: until it ends), by method and status"
    );
    describe_counter!("sieve_ingest_documents_total", "Documents written, by collection");
    describe_counter!(
        "sieve_ingest_rejected_documents_total",
        "Documents refused one by one (bad vector, oversized text, ...), by collection"
    );
    describe_counter!(
        "sieve_ingest_deleted_documents_total",
        "Documents deleted by ingest batches and Delete, by collection"
    );
    describe_counter!(
        "sieve_ingest_bytes_total",
        Unit::Bytes,
        "Encoded size of ingest batches received, by collection"
    );
    describe_histogram!(
        "sieve_search_phase_seconds",
        Unit::Seconds,
        "Time per search phase: embed, bm25, dense, fusion, fetch, rerank, total"
    );
    describe_histogram!(
        "sieve_rerank_stage_seconds",
        Unit::Seconds,
        "Time of one cascade stage (queue wait + compute), by stage and model"
    );
    describe_histogram!("sieve_model_batch_inputs", "Inputs per model forward pass, by model");
    describe_histogram!(
        "sieve_model_batch_tokens",
        "Padded tokens (longest input x inputs) per forward pass, by model"
    );
    describe_histogram!(
        "sieve_model_batch_seconds",
        Unit::Seconds,
        "Compute time of one forward pass, by model"
    );
    describe_gauge!("sieve_model_queue_inputs", "Inputs waiting in a model's queue");
    describe_counter!("sieve_model_inputs_total", "Inputs run by a model");
    describe_counter!(
        "sieve_rerank_score_cache_hits_total",
        "Rerank inputs whose score came from the score cache, by model"
    );
    describe_counter!(
        "sieve_rerank_score_cache_misses_total",
        "Rerank inputs the model scored (the score cache did not hold them), by model"
    );
    describe_counter!("sieve_model_batches_total", "Forward passes run by a model");
    describe_counter!(
        "sieve_model_cancelled_inputs_total",
        "Inputs dropped unrun because their caller went away"
    );
    describe_gauge!("sieve_collection_documents", "Live documents, by collection");
    describe_gauge!("sieve_collection_vectors", "Live documents with a vector, by collection");
    describe_gauge!(
        "sieve_collection_tombstones",
        "Replaced or deleted vectors still in the HNSW graph, by collection"
    );
    describe_gauge!(
        "sieve_collection_tombstone_ratio",
        "Tombstones / all points of the HNSW graph (rebuilt when high), by collection"
    );
    describe_gauge!("sieve_collection_sequence", "Last durable op-log sequence, by collection");
    describe_gauge!(
        "sieve_index_lag_operations",
        "Ops in sled's op-log not yet in a derived index on disk: index=bm25 (the committed \
         tantivy index) or index=hnsw (the last graph dump; replayed at start), by collection"
    );
    describe_gauge!(
        "sieve_shard_ready",
        "1 when every partition of this shard is caught up (serving, applying, at most 64 \
         messages behind its stream), else 0"
    );
    describe_gauge!(
        "sieve_shard_applied_position",
        "The last stream message applied, by partition (shard)"
    );
    describe_gauge!(
        "sieve_shard_stream_last_position",
        "The partition stream's last message as the shard last read it, by partition"
    );
    describe_gauge!(
        "sieve_shard_apply_lag_messages",
        "Stream messages not yet applied, by partition (shard)"
    );
    describe_gauge!(
        "sieve_shard_serving",
        "1 when the partition answers reads and its applier runs, else 0 (shard)"
    );
    describe_histogram!(
        "sieve_router_scatter_seconds",
        Unit::Seconds,
        "One round of calls to the shards, until the slowest answered, by call (router)"
    );
    describe_counter!(
        "sieve_router_shard_calls_total",
        "Calls from the router to a shard, by call, shard and outcome"
    );
    describe_counter!(
        "sieve_router_rerouted_partitions_total",
        "Partitions sent to another replica after a shard call failed, by call (router)"
    );
}

/// Binds `metrics_listen` and serves `/metrics` there until `shutdown` (`None` when it is "").
pub async fn start(
    metrics_listen: &str,
    refresh: impl Fn() + Clone + Send + Sync + 'static,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>> {
    use anyhow::Context as _;
    if metrics_listen.is_empty() {
        return Ok(None);
    }
    let listen: std::net::SocketAddr = metrics_listen.parse().with_context(|| {
        format!("metrics_listen: '{metrics_listen}' is not an address such as 0.0.0.0:7701")
    })?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("metrics: listening on {listen}"))?;
    let metrics_addr = listener.local_addr()?;
    println!("sieve-server metrics on http://{metrics_addr}/metrics");
    Ok(Some(tokio::spawn(serve(listener, refresh, shutdown))))
}

/// The gauges of a shard: per partition its applied position, its stream's last, the lag
/// between them and whether it serves; whether the shard is caught up (`ready`).
pub fn refresh_shard(shard: &sieve_cluster::Shard) {
    gauge!("sieve_shard_ready").set(if shard.ready().is_ok() { 1.0 } else { 0.0 });
    let Ok(states) = shard.status(false) else { return };
    for state in states {
        let partition = state.partition.to_string();
        gauge!("sieve_shard_applied_position", "partition" => partition.clone())
            .set(state.applied as f64);
        gauge!("sieve_shard_serving", "partition" => partition.clone())
            .set(if state.serving && state.stopped.is_none() { 1.0 } else { 0.0 });
        if let Some(last) = state.stream_last {
            gauge!("sieve_shard_stream_last_position", "partition" => partition.clone())
                .set(last as f64);
            gauge!("sieve_shard_apply_lag_messages", "partition" => partition)
                .set(state.behind() as f64);
        }
    }
}

/// Reads the gauges that are state, not events.
pub fn refresh(state: &State) {
    // A router or a model tier holds no collections (a router's shards count theirs).
    let collections = match &state.backend {
        crate::service::Backend::Local(store) => store.collections(),
        _ => Vec::new(),
    };
    for collection in collections {
        let name = collection.name().to_string();
        let stats = collection.stats();
        gauge!("sieve_collection_documents", "collection" => name.clone())
            .set(stats.documents as f64);
        gauge!("sieve_collection_vectors", "collection" => name.clone()).set(stats.vectors as f64);
        gauge!("sieve_collection_tombstones", "collection" => name.clone())
            .set(stats.tombstones as f64);
        let points = stats.vectors + stats.tombstones;
        let ratio = if points == 0 { 0.0 } else { stats.tombstones as f64 / points as f64 };
        gauge!("sieve_collection_tombstone_ratio", "collection" => name.clone()).set(ratio);
        gauge!("sieve_collection_sequence", "collection" => name.clone())
            .set(stats.sequence as f64);
        gauge!("sieve_index_lag_operations", "collection" => name.clone(), "index" => "bm25")
            .set(stats.sequence.saturating_sub(stats.bm25_sequence) as f64);
        if collection.config().dense.is_some() {
            gauge!("sieve_index_lag_operations", "collection" => name, "index" => "hnsw")
                .set(stats.sequence.saturating_sub(stats.graph_dump_sequence) as f64);
        }
    }
    for (name, batched) in state.planner.models().iter() {
        let stats = batched.stats();
        gauge!("sieve_model_queue_inputs", "model" => name.clone())
            .set(stats.queued.load(Ordering::Acquire) as f64);
        counter!("sieve_model_inputs_total", "model" => name.clone())
            .absolute(stats.inputs.load(Ordering::Relaxed));
        counter!("sieve_model_batches_total", "model" => name.clone())
            .absolute(stats.batches.load(Ordering::Relaxed));
        counter!("sieve_model_cancelled_inputs_total", "model" => name.clone())
            .absolute(stats.cancelled.load(Ordering::Relaxed));
    }
}

/// Counts one ingest batch.
pub fn ingested(collection: &str, request_bytes: usize, ack: &sieve_proto::v1::IngestAck) {
    let name = collection.to_string();
    counter!("sieve_ingest_documents_total", "collection" => name.clone())
        .increment(ack.accepted.len() as u64);
    counter!("sieve_ingest_rejected_documents_total", "collection" => name.clone())
        .increment(ack.errors.len() as u64);
    counter!("sieve_ingest_deleted_documents_total", "collection" => name.clone())
        .increment(ack.deleted.len() as u64);
    counter!("sieve_ingest_bytes_total", "collection" => name).increment(request_bytes as u64);
}

/// Counts documents removed by `Delete`.
pub fn deleted(collection: &str, count: usize) {
    counter!("sieve_ingest_deleted_documents_total", "collection" => collection.to_string())
        .increment(count as u64);
}

/// Records a finished search's phase times and cascade stages.
pub fn searched(done: &sieve_proto::v1::Done) {
    for timing in &done.timings {
        if timing.micros > 0 || timing.phase == "total" {
            histogram!("sieve_search_phase_seconds", "phase" => timing.phase.clone())
                .record(Duration::from_micros(timing.micros));
        }
    }
    for step in done.models.iter().filter(|m| m.step.starts_with("rerank:")) {
        histogram!("sieve_rerank_stage_seconds", "stage" => step.step.clone(), "model" => step.model.clone())
            .record(Duration::from_micros(step.queue_micros + step.compute_micros));
        counter!("sieve_rerank_score_cache_hits_total", "model" => step.model.clone())
            .increment(u64::from(step.cached));
        counter!("sieve_rerank_score_cache_misses_total", "model" => step.model.clone())
            .increment(u64::from(step.inputs - step.cached));
    }
}

/// `/package.Service/Method` paths the server serves; anything else is labelled "unknown", so
/// a client cannot grow the label set by calling made-up paths.
fn known_methods() -> &'static HashSet<String> {
    static KNOWN: OnceLock<HashSet<String>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let mut known = HashSet::new();
        let sets = [sieve_proto::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET];
        for bytes in sets {
            let set = prost_types::FileDescriptorSet::decode(bytes).expect("built-in descriptors");
            for file in set.file {
                let package = file.package.unwrap_or_default();
                for service in file.service {
                    for method in service.method {
                        known.insert(format!(
                            "/{package}.{}/{}",
                            service.name.as_deref().unwrap_or_default(),
                            method.name.as_deref().unwrap_or_default()
                        ));
                    }
                }
            }
        }
        for version in ["v1", "v1alpha"] {
            known.insert(format!(
                "/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
            ));
        }
        known
    })
}

fn method_label(path: &str) -> String {
    if known_methods().contains(path) {
        path.trim_start_matches('/').to_string()
    } else {
        "unknown".to_string()
    }
}

/// The canonical name of a gRPC status code.
fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code).ok().and_then(|i| NAMES.get(i)).copied().unwrap_or("UNKNOWN")
}

fn status_of(headers: &http::HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// One RPC being timed; records once, when its status is known or the response is dropped.
struct Call {
    method: String,
    started: Instant,
    done: bool,
}

impl Call {
    fn finish(&mut self, code: &'static str) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let labels = [("method", self.method.clone()), ("code", code.to_string())];
        counter!("sieve_grpc_requests_total", &labels).increment(1);
        histogram!("sieve_grpc_request_duration_seconds", &labels).record(self.started.elapsed());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // The body went away before its trailers: the client cancelled, or the connection broke.
        self.finish("CANCELLED");
    }
}

/// Puts [`Metrics`] in front of a service.
#[derive(Clone, Copy, Default)]
pub struct MetricsLayer;

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;
    fn layer(&self, inner: S) -> Metrics<S> {
        Metrics { inner }
    }
}

/// Counts and times every call (see the module docs).
#[derive(Clone)]
pub struct Metrics<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for Metrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: http_body::Body + Unpin,
{
    type Response = http::Response<TimedBody<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let mut call = Call {
            method: method_label(request.uri().path()),
            started: Instant::now(),
            done: false,
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = match response.await {
                Ok(response) => response,
                Err(error) => {
                    call.finish("UNAVAILABLE");
                    return Err(error);
                }
            };
            // A trailers-only response (an error before any message) carries its status here.
            if let Some(code) = status_of(response.headers()) {
                call.finish(code_name(code));
            }
            Ok(response.map(|body| TimedBody { inner: body, call }))
        })
    }
}

/// A response body that records its call when the trailers (with `grpc-status`) go out.
pub struct TimedBody<B> {
    inner: B,
    call: Call,
}

impl<B: http_body::Body + Unpin> http_body::Body for TimedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_of) {
                    this.call.finish(code_name(code));
                }
            }
            Poll::Ready(Some(Err(_))) => this.call.finish("INTERNAL"),
            Poll::Ready(None) => this.call.finish("OK"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_api_share_one_label() {
        assert_eq!(method_label("/sieve.v1.Search/Search"), "sieve.v1.Search/Search");
        assert_eq!(method_label("/sieve.v1.Documents/Ingest"), "sieve.v1.Documents/Ingest");
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), "grpc.health.v1.Health/Check");
        assert_eq!(method_label("/sieve.v1.Search/Nope"), "unknown");
        assert_eq!(method_label("/random/path/x"), "unknown");
    }

    #[test]
    fn status_codes_have_their_canonical_names() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(3), "INVALID_ARGUMENT");
        assert_eq!(code_name(16), "UNAUTHENTICATED");
        assert_eq!(code_name(99), "UNKNOWN");
        assert_eq!(code_name(-1), "UNKNOWN");
    }
}
