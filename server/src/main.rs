//! `sieve-server`: Sieve's retrieval engine over gRPC, on embedded storage.
//!
//! Configuration comes from defaults, a TOML file (`--config`), `SIEVE_*` environment variables
//! and flags, in rising order of precedence. On SIGINT or SIGTERM the server stops accepting
//! connections, lets in-flight requests finish (ingest streams end after their current batch),
//! writes its derived indexes to disk and flushes sled.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use sieve_models::{BatchPolicy, Kernels, ModelSpec, Precision, Registry};
use sieve_planner::{Planner, StageSpec};
use sieve_proto::v1::admin_server::AdminServer;
use sieve_proto::v1::collections_server::CollectionsServer;
use sieve_proto::v1::documents_server::DocumentsServer;
use sieve_proto::v1::info_server::InfoServer;
use sieve_proto::v1::rerank_server::RerankServer;
use sieve_proto::v1::search_server::SearchServer;
use sieve_storage::{Store, StoreOptions};
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;

use sieve_server::auth::{AuthLayer, Keys};
use sieve_server::config::{Cli, Config, LogFormat, Role};
use sieve_server::metrics::MetricsLayer;
use sieve_server::service::{
    AdminService, Backend, CollectionsService, DocumentsService, InfoService, RerankService,
    SearchService, State,
};
use sieve_server::{demo, limits};

/// How long a server given `models_url` waits for the model tier to answer at start.
const MODEL_TIER_WAIT: Duration = Duration::from_secs(120);

/// mimalloc: candle allocates large fresh buffers on every forward pass, and glibc's malloc
/// turns them into page faults (measured: 100 MiniLM pairs 13.5 s with glibc, 10.3 s with
/// mimalloc; see CRATES.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref(), &cli.overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sieve-server: {e:#}");
            return ExitCode::from(2);
        }
    };
    if cli.print_config {
        let shown = Config {
            admin_keys: config.admin_keys.redacted(),
            read_keys: config.read_keys.redacted(),
            ..config
        };
        print!("{}", toml::to_string(&shown).expect("the configuration serialises"));
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sieve-server: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let traces = match init_tracing(&config, runtime.handle()) {
        Ok(traces) => traces,
        Err(e) => {
            eprintln!("sieve-server: {e:#}");
            return ExitCode::from(2);
        }
    };
    let demo = cli.demo.then(|| demo::prepare(&mut config));
    let outcome = runtime.block_on(serve(config, demo));
    if let Some(provider) = traces
        && let Err(e) = provider.shutdown()
    {
        eprintln!("sieve-server: flushing traces: {e}");
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("sieve-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, and traces to an OTLP collector when `otlp_endpoint` is set (the returned
/// provider flushes them at exit).
fn init_tracing(
    config: &Config,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("log_level '{}' is not a valid filter", config.log_level))?;
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let logs = match config.log_format {
        LogFormat::Text => logs.with_filter(filter).boxed(),
        LogFormat::Json => logs.json().with_filter(filter).boxed(),
    };
    if config.otlp_endpoint.is_empty() {
        tracing_subscriber::registry().with(logs).init();
        return Ok(None);
    }
    let _entered = runtime.enter();
    let telemetry = sieve_server::telemetry::init(&config.otlp_endpoint, runtime.clone())?;
    tracing_subscriber::registry().with(logs).with(telemetry.layer).init();
    Ok(Some(telemetry.provider))
}

/// Serves until SIGINT/SIGTERM. `demo`: run the demo, reranking with this model if any.
async fn serve(config: Config, demo: Option<Option<String>>) -> anyhow::Result<()> {
    let options = StoreOptions {
        cache_bytes: config.cache_mb << 20,
        exact_search_threshold: config.exact_search_threshold,
        graph_dump_every: config.graph_dump_every,
        max_dimension: config.max_dimension,
        ..StoreOptions::default()
    };
    if config.role == Role::Shard {
        return sieve_server::shard::serve(config, options, shutdown_signal()).await;
    }
    let (backend, store) = if config.role == Role::Router {
        (Backend::Cluster(sieve_server::router::connect(&config).await?), None)
    } else if config.role == Role::Model {
        if config.models.0.is_empty() {
            anyhow::bail!("models: a model tier needs models to serve (--models org/name,...)");
        }
        if !config.models_url.is_empty() {
            anyhow::bail!("models_url: a model tier loads its own models, it calls no other tier");
        }
        (Backend::Models, None)
    } else {
        let data_dir = config.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&data_dir, options))
            .await?
            .with_context(|| format!("opening the data directory {}", config.data_dir.display()))?;
        let store = Arc::new(store);
        (Backend::Local(Arc::clone(&store)), Some(store))
    };
    let mut registry = {
        let specs = model_specs(&config)?;
        let models_dir = config.models_dir.clone();
        tokio::task::spawn_blocking(move || Registry::load(&specs, &models_dir))
            .await?
            .context("loading models")?
    };
    if !config.models_url.is_empty() {
        let tier = sieve_cluster::model_tier(&config.models_url, MODEL_TIER_WAIT)
            .await
            .map_err(anyhow::Error::msg)?;
        for model in tier {
            tracing::info!(
                model = model.description().name,
                url = config.models_url,
                "a model of the model tier"
            );
            registry.insert_remote(model);
        }
    }
    let registry = Arc::new(registry);
    let default_cascade: Vec<StageSpec> = config
        .cascade
        .0
        .iter()
        .map(|stage| StageSpec { model: stage.model.clone(), keep: stage.keep, min_score: None })
        .collect();
    let score_cache =
        Arc::new(sieve_rerank::ScoreCache::new((config.score_cache_mb as usize) << 20));
    let planner = Arc::new(
        Planner::new(Arc::clone(&registry), default_cascade).with_score_cache(score_cache),
    );
    check_model_roles(&config, &planner)?;

    let incoming = TcpIncoming::bind(config.listen)
        .with_context(|| format!("listening on {}", config.listen))?
        .with_nodelay(Some(true));
    let addr = incoming.local_addr()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let state = Arc::new(State {
        backend,
        config: config.clone(),
        planner,
        admission: limits::Admission::new(&config),
        shutdown: shutdown_rx.clone(),
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(sieve_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let limit = config.max_message_bytes;
    // Every sieve.v1 service takes the configured message size limit both ways.
    macro_rules! limited {
        ($server:ident, $service:expr) => {
            $server::new($service).max_decoding_message_size(limit).max_encoding_message_size(limit)
        };
    }
    let keys = Arc::new(Keys::new(&config.admin_keys, &config.read_keys));
    if keys.is_open() {
        tracing::warn!(
            "no API key configured: any client may read, write and delete (set admin_keys and read_keys)"
        );
    }
    if !config.metrics_listen.is_empty() {
        // Installed before the first request so every call is counted.
        sieve_server::metrics::recorder();
    }
    let mut builder = Server::builder();
    if config.request_timeout_secs > 0 {
        // Unary calls; streamed searches take their deadline in the service (limits.rs).
        builder = builder.timeout(Duration::from_secs(config.request_timeout_secs));
    }
    if let Some(tls) = tls_config(&config)? {
        builder = builder.tls_config(tls).context("TLS settings")?;
    }
    let router = builder
        .layer(MetricsLayer)
        .layer(AuthLayer(keys))
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(limited!(CollectionsServer, CollectionsService(Arc::clone(&state))))
        .add_service(limited!(DocumentsServer, DocumentsService(Arc::clone(&state))))
        .add_service(limited!(SearchServer, SearchService(Arc::clone(&state))))
        .add_service(limited!(RerankServer, RerankService(Arc::clone(&state))))
        .add_service(limited!(InfoServer, InfoService(Arc::clone(&state))))
        .add_service(limited!(AdminServer, AdminService(Arc::clone(&state))))
        .add_optional_service(
            (config.role == Role::Model).then(|| sieve_cluster::ModelsService::server(registry)),
        );
    let services = service_names();
    for name in services {
        health.set_service_status(name, ServingStatus::Serving).await;
    }

    let mut stop = shutdown_rx.clone();
    let mut server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    }));
    let metrics_server = {
        let state = Arc::clone(&state);
        sieve_server::metrics::start(
            &config.metrics_listen,
            move || sieve_server::metrics::refresh(&state),
            shutdown_rx.clone(),
        )
        .await?
    };
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("sieve-server listening on {addr}");
    let _ = std::io::stdout().flush();
    let tls = !config.tls_cert.as_os_str().is_empty();
    match &store {
        Some(store) => {
            tracing::info!(%addr, tls, data_dir = %config.data_dir.display(), collections = store.collections().len(), "serving")
        }
        None => tracing::info!(%addr, tls, role = config.role.name(), "serving"),
    }
    if let Some(reranker) = demo {
        tokio::spawn(demo::run(addr, reranker));
    }

    tokio::select! {
        signal = shutdown_signal() => tracing::info!(signal, "shutting down: no new connections, finishing in-flight requests"),
        result = &mut server => {
            result.context("server task")?.context("gRPC server")?;
            anyhow::bail!("gRPC server stopped unexpectedly");
        }
    }
    for name in services {
        health.set_service_status(name, ServingStatus::NotServing).await;
    }
    let _ = shutdown_tx.send(true);
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    match tokio::time::timeout(grace, &mut server).await {
        Ok(result) => result.context("server task")?.context("gRPC server")?,
        Err(_) => {
            tracing::warn!(
                grace_secs = config.shutdown_grace_secs,
                "requests still running after the grace period; closing anyway"
            );
            server.abort();
        }
    }
    if let Some(task) = metrics_server {
        task.abort();
    }
    if let Some(store) = store {
        tokio::task::spawn_blocking(move || store.close()).await?.context("closing the store")?;
        tracing::info!("stopped cleanly: indexes written, sled flushed");
    }
    Ok(())
}

/// TLS from `tls_cert` + `tls_key`, requiring client certificates signed by `tls_client_ca`
/// when that is set. `None`: plaintext.
fn tls_config(config: &Config) -> anyhow::Result<Option<ServerTlsConfig>> {
    let set = |path: &std::path::Path| !path.as_os_str().is_empty();
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("{what}: reading {}", path.display()))
    };
    match (set(&config.tls_cert), set(&config.tls_key)) {
        (false, false) if set(&config.tls_client_ca) => {
            anyhow::bail!("tls_client_ca is set but tls_cert and tls_key are not")
        }
        (false, false) => Ok(None),
        (true, false) => anyhow::bail!("tls_cert is set but tls_key is not"),
        (false, true) => anyhow::bail!("tls_key is set but tls_cert is not"),
        (true, true) => {
            let identity = Identity::from_pem(
                read("tls_cert", &config.tls_cert)?,
                read("tls_key", &config.tls_key)?,
            );
            let mut tls = ServerTlsConfig::new().identity(identity);
            if set(&config.tls_client_ca) {
                let ca = read("tls_client_ca", &config.tls_client_ca)?;
                tls = tls.client_ca_root(Certificate::from_pem(ca));
            }
            Ok(Some(tls))
        }
    }
}

/// What to load for each configured model.
fn model_specs(config: &Config) -> anyhow::Result<Vec<ModelSpec>> {
    let defaults = BatchPolicy::default();
    config
        .models
        .0
        .iter()
        .map(|entry| {
            let kernels = match entry.kernels.as_deref() {
                None | Some("auto") => Kernels::from_env().map_err(anyhow::Error::msg)?,
                Some(name) => Kernels::from_name(name).with_context(|| {
                    format!("models: '{}' has kernels '{name}' ({})", entry.name, Kernels::CHOICES)
                })?,
            };
            // Unset or auto: SIEVE_PRECISION, else the fastest that passes the gates here.
            let from_env = std::env::var("SIEVE_PRECISION").ok().filter(|v| !v.is_empty());
            let precision = match entry.dtype.as_deref().or(from_env.as_deref()) {
                None => Precision::Auto,
                Some(name) => Precision::from_name(name).with_context(|| {
                    format!(
                        "models: '{}' has dtype '{name}' (use auto, f32, f16, bf16 or int8; \
                         SIEVE_PRECISION sets the default)",
                        entry.name
                    )
                })?,
            };
            Ok(ModelSpec {
                name: entry.name.clone(),
                path: entry.path.clone(),
                max_length: entry.max_length,
                precision,
                kernels,
                batch: BatchPolicy {
                    max_batch_tokens: entry.max_batch_tokens.unwrap_or(defaults.max_batch_tokens),
                    max_batch_requests: entry
                        .max_batch_requests
                        .unwrap_or(defaults.max_batch_requests),
                    queue_capacity: entry.queue_capacity.unwrap_or(defaults.queue_capacity),
                },
            })
        })
        .collect()
}

/// The default embedder must be a loaded bi-encoder, the default cascade loaded cross-encoders.
fn check_model_roles(config: &Config, planner: &Planner) -> anyhow::Result<()> {
    if !config.default_embedder.is_empty() {
        planner.models().embedder(&config.default_embedder).context("default_embedder")?;
    }
    let candidates = sieve_planner::DEFAULT_RERANK_CANDIDATES
        .max(planner.default_cascade().first().map_or(0, |s| s.keep));
    planner.cascade(planner.default_cascade(), candidates).context("cascade")?;
    Ok(())
}

/// Names reported by `grpc.health.v1`; "" is the whole server.
fn service_names() -> [&'static str; 7] {
    use tonic::server::NamedService;
    [
        "",
        <CollectionsServer<CollectionsService> as NamedService>::NAME,
        <DocumentsServer<DocumentsService> as NamedService>::NAME,
        <SearchServer<SearchService> as NamedService>::NAME,
        <RerankServer<RerankService> as NamedService>::NAME,
        <InfoServer<InfoService> as NamedService>::NAME,
        <AdminServer<AdminService> as NamedService>::NAME,
    ]
}

async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
        "SIGTERM"
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<&'static str>();
    tokio::select! {
        name = ctrl_c => name,
        name = terminate => name,
    }
}
