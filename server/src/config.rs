//! Server configuration: defaults, then a TOML file, then `SIEVE_*` environment variables, then
//! command-line flags, each overriding the one before. Every key is one flat name:
//! `max_top_k` in the file is `SIEVE_MAX_TOP_K` in the environment and `--max-top-k` on the
//! command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context as _;
use clap::Parser;
use serde::{Deserialize, Serialize};

pub use crate::auth::KeyList;

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("'{other}' is not a log format (text, json)")),
        }
    }
}

/// Declares every setting once: the effective [`Config`] with its defaults, and the
/// [`Overrides`] flags (each also read from its `SIEVE_*` environment variable).
macro_rules! settings {
    ($($(#[doc = $doc:literal])* $name:ident: $ty:ty = $default:expr, $env:literal;)*) => {
        /// The effective configuration.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            $($(#[doc = $doc])* pub $name: $ty,)*
        }

        impl Default for Config {
            fn default() -> Self {
                Self { $($name: $default,)* }
            }
        }

        /// Settings given as flags or environment variables.
        #[derive(Clone, Debug, Default, Parser, Serialize)]
        pub struct Overrides {
            $(
                $(#[doc = $doc])*
                #[arg(long, env = $env)]
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $name: Option<$ty>,
            )*
        }
    };
}

/// What this process is in a deployment (SCALE.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// One process with its own storage and models; no broker (the default).
    Standalone,
    /// A cluster shard: applies its partitions' streams, serves routers internally.
    Shard,
    /// A cluster router: the public API over the cluster's log, catalog and shards.
    Router,
    /// A cluster's model tier: models and no collections; routers embed and rerank through
    /// it (`models_url`), and it serves `Rerank` and `Info` to clients too.
    Model,
}

impl Role {
    /// The name used in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Shard => "shard",
            Role::Router => "router",
            Role::Model => "model",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "standalone" => Ok(Role::Standalone),
            "shard" => Ok(Role::Shard),
            "router" => Ok(Role::Router),
            "model" => Ok(Role::Model),
            other => Err(format!("'{other}' is not a role (standalone, shard, router, model)")),
        }
    }
}

/// A comma-separated list of URLs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UrlList(pub Vec<String>);

impl FromStr for UrlList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(UrlList(
            s.split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect(),
        ))
    }
}

/// The partitions a shard holds: a comma-separated list, or empty for all of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartitionList(pub Vec<u32>);

impl FromStr for PartitionList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().map_err(|_| format!("'{p}' is not a partition number")))
            .collect::<Result<_, _>>()
            .map(PartitionList)
    }
}

impl PartitionList {
    /// The listed partitions (all of `0..count` when none is listed), each checked against
    /// `count` and listed once.
    pub fn resolve(&self, count: u32) -> Result<Vec<u32>, String> {
        if self.0.is_empty() {
            return Ok((0..count).collect());
        }
        let mut seen = std::collections::BTreeSet::new();
        for &p in &self.0 {
            if p >= count {
                return Err(format!(
                    "shard_partitions: partition {p} does not exist (partitions = {count})"
                ));
            }
            if !seen.insert(p) {
                return Err(format!("shard_partitions: partition {p} is listed twice"));
            }
        }
        Ok(self.0.clone())
    }
}

settings! {
    /// What this process is: standalone (the default: storage and models in one process,
    /// no broker), shard, router or model (cluster mode, SCALE.md).
    role: Role = Role::Standalone, "SIEVE_ROLE";
    /// Cluster mode: NATS server URLs, comma-separated (any one is enough to join).
    nats: UrlList = UrlList::default(), "SIEVE_NATS";
    /// Cluster mode: partitions of the log, fixed when the cluster is created.
    partitions: u32 = 16, "SIEVE_PARTITIONS";
    /// Cluster mode: copies of each partition's stream on distinct NATS servers.
    stream_replicas: usize = 3, "SIEVE_STREAM_REPLICAS";
    /// Shard role: this shard's name, unique in its cluster.
    shard_name: String = String::new(), "SIEVE_SHARD_NAME";
    /// Shard role: the partitions it holds, comma-separated ("" = all).
    shard_partitions: PartitionList = PartitionList::default(), "SIEVE_SHARD_PARTITIONS";
    /// Shard role: snapshot a partition into the cluster's snapshot store and purge the
    /// stream messages the snapshot covers once its stream holds this many applied messages
    /// (0 = never; then only `sieve snapshots partitions` does). Of a partition's replicas,
    /// the first in name order that the assignment gives it takes the snapshots.
    snapshot_every_messages: u64 = 20000, "SIEVE_SNAPSHOT_EVERY_MESSAGES";
    /// Shard role: the address routers reach it at (http://host:port), recorded in the
    /// cluster's shard status bucket ("" = the listen address with the port bound, this
    /// host's name in place of an unspecified IP).
    advertise: String = String::new(), "SIEVE_ADVERTISE";
    /// Router role: shards' internal gRPC addresses (http://host:port, comma-separated) to
    /// reach besides those the cluster's shard status bucket records ("" = only those).
    shards: UrlList = UrlList::default(), "SIEVE_SHARDS";
    /// Router role: this router's name, unique in its cluster while it runs ("" = host name
    /// and process id); part of every log message id, so retried appends land once.
    router_name: String = String::new(), "SIEVE_ROUTER_NAME";
    /// A model tier's address (http://host:port, e.g. a Kubernetes Service): this server
    /// embeds and reranks with the tier's models, as if loaded here ("" = none; a model of
    /// `models` with the same name runs here instead).
    models_url: String = String::new(), "SIEVE_MODELS_URL";
    /// Router role: how long a VISIBLE ingest ack waits for the shards to apply its batch
    /// (past it the ack comes marked not yet visible).
    visible_timeout_ms: u64 = 5000, "SIEVE_VISIBLE_TIMEOUT_MS";
    /// Router role: how long one write retries while the log has no quorum before the client
    /// gets UNAVAILABLE (nothing acknowledged).
    append_timeout_ms: u64 = 10000, "SIEVE_APPEND_TIMEOUT_MS";
    /// Address the gRPC server listens on (port 0 picks a free port).
    listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 7700)), "SIEVE_LISTEN";
    /// Address of the Prometheus `/metrics` endpoint, a separate HTTP port ("" = off; port 0
    /// picks a free one).
    metrics_listen: String = String::new(), "SIEVE_METRICS_LISTEN";
    /// OpenTelemetry: send traces over OTLP/gRPC to this collector, e.g. http://otel:4317
    /// ("" = off).
    otlp_endpoint: String = String::new(), "SIEVE_OTLP_ENDPOINT";
    /// Directory holding all data (created if missing).
    data_dir: PathBuf = PathBuf::from("sieve-data"), "SIEVE_DATA_DIR";
    /// Log filter, in `tracing` EnvFilter syntax (e.g. "info", "info,sieve_storage=debug").
    log_level: String = "info,hnsw_rs=warn,tantivy=warn".to_string(), "SIEVE_LOG_LEVEL";
    /// Log format: text or json.
    log_format: LogFormat = LogFormat::Text, "SIEVE_LOG_FORMAT";
    /// sled page cache, MiB.
    cache_mb: u64 = 256, "SIEVE_CACHE_MB";
    /// Dense search is exact (brute force) over at most this many vectors.
    exact_search_threshold: usize = 10_000, "SIEVE_EXACT_SEARCH_THRESHOLD";
    /// Write the HNSW graph to disk after this many ops (crash recovery replays the rest).
    graph_dump_every: u64 = 50_000, "SIEVE_GRAPH_DUMP_EVERY";
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    shutdown_grace_secs: u64 = 30, "SIEVE_SHUTDOWN_GRACE_SECS";
    /// Largest gRPC message accepted or sent, bytes.
    max_message_bytes: usize = 64 << 20, "SIEVE_MAX_MESSAGE_BYTES";
    /// Most documents in one ingest batch.
    max_batch_documents: usize = 1000, "SIEVE_MAX_BATCH_DOCUMENTS";
    /// Most bytes of title + text + metadata strings in one document.
    max_text_bytes: usize = 1 << 20, "SIEVE_MAX_TEXT_BYTES";
    /// Longest document id, bytes.
    max_id_bytes: usize = 512, "SIEVE_MAX_ID_BYTES";
    /// Most metadata entries on one document.
    max_metadata_entries: usize = 64, "SIEVE_MAX_METADATA_ENTRIES";
    /// Largest vector dimension a collection may have.
    max_dimension: usize = 4096, "SIEVE_MAX_DIMENSION";
    /// Largest top_k of a search.
    max_top_k: usize = 1000, "SIEVE_MAX_TOP_K";
    /// Largest bm25_k / dense_k of a search.
    max_candidates: usize = 10_000, "SIEVE_MAX_CANDIDATES";
    /// Deepest filter nesting.
    max_filter_depth: usize = 8, "SIEVE_MAX_FILTER_DEPTH";
    /// Longest query text, bytes.
    max_query_bytes: usize = 16 << 10, "SIEVE_MAX_QUERY_BYTES";
    /// Most ids in one Get or Delete, or deletes in one ingest batch.
    max_ids_per_request: usize = 10_000, "SIEVE_MAX_IDS_PER_REQUEST";
    /// Most fused candidates a search may send into its rerank cascade.
    max_rerank_candidates: usize = 1000, "SIEVE_MAX_RERANK_CANDIDATES";
    /// Cross-encoder scores kept so the same (model, query, passage) is not scored twice, in
    /// MiB (0 = off; about 16,000 pairs a MiB).
    score_cache_mb: u64 = 64, "SIEVE_SCORE_CACHE_MB";
    /// Searches (and SearchStream calls) running at once; more are refused with RESOURCE_EXHAUSTED.
    max_concurrent_searches: usize = 64, "SIEVE_MAX_CONCURRENT_SEARCHES";
    /// Ingest streams open at once; more are refused with RESOURCE_EXHAUSTED.
    max_ingest_streams: usize = 16, "SIEVE_MAX_INGEST_STREAMS";
    /// Backpressure: acks suggest a batch size that takes about this long to write and embed.
    ingest_target_batch_ms: u64 = 1000, "SIEVE_INGEST_TARGET_BATCH_MS";
    /// An ingest stream that sends no batch for this many seconds is closed (DEADLINE_EXCEEDED).
    ingest_idle_timeout_secs: u64 = 120, "SIEVE_INGEST_IDLE_TIMEOUT_SECS";
    /// Longest a search or unary call may run, seconds; a client's shorter grpc-timeout wins
    /// (0 = only the client's).
    request_timeout_secs: u64 = 300, "SIEVE_REQUEST_TIMEOUT_SECS";
    /// Most texts in one Rerank request.
    max_rerank_texts: usize = 1000, "SIEVE_MAX_RERANK_TEXTS";
    /// Where models named `org/name` are found, as `<models_dir>/org--name/`.
    models_dir: PathBuf = PathBuf::from("models"), "SIEVE_MODELS_DIR";
    /// Models to load at start. In the file, `[[models]]` tables (`name`, and optionally `path`,
    /// `max_length`, `dtype`, `kernels`, `max_batch_tokens`, `max_batch_requests`, `queue_capacity`); as
    /// a flag, `name` or `name=path`, comma-separated.
    models: ModelList = ModelList::default(), "SIEVE_MODELS";
    /// Rerank stages of searches that name none. In the file, `[[cascade]]` tables (`model`,
    /// `keep`); as a flag, `model:keep`, comma-separated.
    cascade: CascadeList = CascadeList::default(), "SIEVE_CASCADE";
    /// Embedder given to collections created without dense settings ("" = none).
    default_embedder: String = String::new(), "SIEVE_DEFAULT_EMBEDDER";
    /// API keys that may do everything. With no admin or read key the server is open.
    admin_keys: KeyList = KeyList::default(), "SIEVE_ADMIN_KEYS";
    /// API keys that may only read: Search, Get, Rerank, Info, GetCollection, ListCollections.
    read_keys: KeyList = KeyList::default(), "SIEVE_READ_KEYS";
    /// PEM certificate chain to serve TLS with ("" = plaintext); needs `tls_key`.
    tls_cert: PathBuf = PathBuf::new(), "SIEVE_TLS_CERT";
    /// PEM private key of `tls_cert`.
    tls_key: PathBuf = PathBuf::new(), "SIEVE_TLS_KEY";
    /// PEM CA certificate(s): when set, clients must present a certificate it signed.
    tls_client_ca: PathBuf = PathBuf::new(), "SIEVE_TLS_CLIENT_CA";
}

/// One model to load, as configured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Hugging Face id, `org/name`.
    pub name: String,
    /// Checkpoint folder (default `<models_dir>/org--name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Window in tokens (default from the checkpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// Compute precision: auto (default: `SIEVE_PRECISION`, else the fastest that passes the
    /// accuracy gates on the kernels: on avx512 int8 for embedders and bf16 for cross-encoders,
    /// f32 elsewhere), f32, f16, bf16 or int8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// Kernels: auto (default: `SIEVE_KERNELS`, else the fastest this CPU runs), reference
    /// (candle), portable, avx2 or avx512 (AVX512-BF16 products for bf16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<String>,
    /// Padded tokens per forward pass (default 8192).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_tokens: Option<usize>,
    /// Inputs per forward pass (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_requests: Option<usize>,
    /// Inputs waiting before requests are refused (default 8192).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_capacity: Option<usize>,
}

impl ModelEntry {
    /// A model with default settings.
    pub fn named(name: &str) -> Self {
        ModelEntry {
            name: name.to_string(),
            path: None,
            max_length: None,
            dtype: None,
            kernels: None,
            max_batch_tokens: None,
            max_batch_requests: None,
            queue_capacity: None,
        }
    }
}

/// The models to load.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ModelList(pub Vec<ModelEntry>);

impl FromStr for ModelList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let entries = s
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| match item.split_once('=') {
                Some((name, path)) => ModelEntry {
                    path: Some(PathBuf::from(path.trim())),
                    ..ModelEntry::named(name.trim())
                },
                None => ModelEntry::named(item),
            })
            .collect();
        Ok(ModelList(entries))
    }
}

/// One default rerank stage, as configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CascadeEntry {
    /// A model from `models` (a cross-encoder).
    pub model: String,
    /// How many of its best it keeps.
    pub keep: usize,
}

/// The default cascade.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CascadeList(pub Vec<CascadeEntry>);

impl FromStr for CascadeList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let stages = s
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                let (model, keep) =
                    item.rsplit_once(':').ok_or_else(|| format!("'{item}' is not model:keep"))?;
                let keep =
                    keep.trim().parse().map_err(|_| format!("'{item}': keep must be a number"))?;
                Ok(CascadeEntry { model: model.trim().to_string(), keep })
            })
            .collect::<Result<_, String>>()?;
        Ok(CascadeList(stages))
    }
}

/// `sieve-server` command line.
#[derive(Debug, Parser)]
#[command(
    name = "sieve-server",
    version,
    about = "Sieve retrieval server: BM25 + HNSW + RRF over gRPC"
)]
pub struct Cli {
    /// TOML configuration file; keys as in `--print-config`.
    #[arg(long, env = "SIEVE_CONFIG")]
    pub config: Option<PathBuf>,
    /// After starting, create a `demo` collection, ingest the bundled sample corpus and run a
    /// few searches through the gRPC API, then keep serving.
    #[arg(long)]
    pub demo: bool,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    #[command(flatten)]
    pub overrides: Overrides,
}

impl Config {
    /// Defaults, overlaid by the file (if any), overlaid by flags and environment.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
        let mut merged = serde_json::Map::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            let table: toml::Table = toml::from_str(&text)
                .with_context(|| format!("parsing config file {}", path.display()))?;
            let serde_json::Value::Object(from_file) = serde_json::to_value(table)? else {
                unreachable!("a table")
            };
            merged.extend(from_file);
        }
        let serde_json::Value::Object(given) = serde_json::to_value(overrides)? else {
            unreachable!("a struct")
        };
        merged.extend(given);
        let config: Config = serde_json::from_value(serde_json::Value::Object(merged))
            .with_context(|| match file {
                Some(path) => format!("invalid configuration (file {})", path.display()),
                None => "invalid configuration".to_string(),
            })?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sieve.toml");
        std::fs::write(
            &file,
            "max_top_k = 50\ndata_dir = \"/var/lib/sieve\"\nlog_format = \"json\"\n",
        )
        .unwrap();
        let overrides = Overrides { max_top_k: Some(70), ..Overrides::default() };
        let config = Config::load(Some(&file), &overrides).unwrap();
        assert_eq!(config.max_top_k, 70);
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/sieve"));
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.max_batch_documents, 1000);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sieve.toml");
        std::fs::write(&file, "max_topk = 50\n").unwrap();
        let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("unknown field `max_topk`"), "{err:#}");
    }

    #[test]
    fn models_and_cascade_come_from_tables_or_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sieve.toml");
        std::fs::write(
            &file,
            "[[models]]\nname = \"org/ce\"\nmax_batch_tokens = 4096\n\n[[cascade]]\nmodel = \"org/ce\"\nkeep = 20\n",
        )
        .unwrap();
        let config = Config::load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(
            config.models.0,
            vec![ModelEntry { max_batch_tokens: Some(4096), ..ModelEntry::named("org/ce") }]
        );
        assert_eq!(config.cascade.0, vec![CascadeEntry { model: "org/ce".into(), keep: 20 }]);
        let overrides = Overrides {
            models: Some("a/b, c/d=/models/cd".parse().unwrap()),
            cascade: Some("a/b:20,c/d:5".parse().unwrap()),
            ..Overrides::default()
        };
        let config = Config::load(Some(&file), &overrides).unwrap();
        assert_eq!(
            config.models.0,
            vec![
                ModelEntry::named("a/b"),
                ModelEntry { path: Some("/models/cd".into()), ..ModelEntry::named("c/d") }
            ]
        );
        assert_eq!(config.cascade.0[1], CascadeEntry { model: "c/d".into(), keep: 5 });
        assert_eq!("a/b".parse::<CascadeList>().unwrap_err(), "'a/b' is not model:keep");
    }

    #[test]
    fn the_example_production_config_loads() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/sieve.toml");
        let config = Config::load(Some(&example), &Overrides::default()).unwrap();
        assert_eq!(config.models.0.len(), 3);
        let cascade: Vec<(&str, usize)> =
            config.cascade.0.iter().map(|s| (s.model.as_str(), s.keep)).collect();
        assert_eq!(
            cascade,
            [("cross-encoder/ms-marco-MiniLM-L-6-v2", 20), ("BAAI/bge-reranker-large", 10)]
        );
        assert_eq!(config.default_embedder, "sentence-transformers/all-MiniLM-L6-v2");
    }

    #[test]
    fn cluster_settings_parse_and_shard_partitions_are_checked() {
        let overrides = Overrides {
            role: Some("shard".parse().unwrap()),
            nats: Some("nats://a:4222, nats://b:4222".parse().unwrap()),
            shard_partitions: Some("4,5,0".parse().unwrap()),
            ..Overrides::default()
        };
        let config = Config::load(None, &overrides).unwrap();
        assert_eq!(config.role, Role::Shard);
        assert_eq!(config.nats.0, ["nats://a:4222", "nats://b:4222"]);
        assert_eq!(config.shard_partitions.resolve(6), Ok(vec![4, 5, 0]));
        assert_eq!(PartitionList::default().resolve(3), Ok(vec![0, 1, 2]));
        assert_eq!(
            config.shard_partitions.resolve(5),
            Err("shard_partitions: partition 5 does not exist (partitions = 5)".into())
        );
        assert_eq!(
            PartitionList(vec![1, 1]).resolve(4),
            Err("shard_partitions: partition 1 is listed twice".into())
        );
        assert_eq!(
            "leader".parse::<Role>().unwrap_err(),
            "'leader' is not a role (standalone, shard, router, model)"
        );
        assert_eq!("model".parse::<Role>(), Ok(Role::Model));
        assert_eq!("1,x".parse::<PartitionList>().unwrap_err(), "'x' is not a partition number");
    }

    #[test]
    fn printed_config_loads_back() {
        let text = toml::to_string(&Config::default()).unwrap();
        let parsed: Config = toml::from_str(&text).unwrap();
        assert_eq!(parsed, Config::default());
    }
}
