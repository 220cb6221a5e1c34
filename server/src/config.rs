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

settings! {
    /// Address the gRPC server listens on (port 0 picks a free port).
    listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 7700)), "SIEVE_LISTEN";
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
    fn printed_config_loads_back() {
        let text = toml::to_string(&Config::default()).unwrap();
        let parsed: Config = toml::from_str(&text).unwrap();
        assert_eq!(parsed, Config::default());
    }
}
