//! The `router` role (SCALE.md): the public `sieve.v1` API over a cluster. Ingest publishes
//! to the partitions' streams on NATS JetStream, searches scatter to the shards and gather,
//! collections live in the cluster's catalog. Models (embedding, reranking) run here, or in
//! the cluster's model tier (`--role model`) when `models_url` names it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use sieve_cluster::{Cluster, RouterSettings};

use crate::config::Config;

/// Connects to the cluster's log and catalog and reaches its shards: those the shard status
/// bucket records and those `shards` names (shards started later are picked up by the
/// router's periodic refresh).
pub async fn connect(config: &Config) -> anyhow::Result<Arc<Cluster>> {
    if config.nats.0.is_empty() {
        anyhow::bail!("nats: a router needs the NATS servers' URLs");
    }
    let log = Arc::new(crate::shard::connect_log(config).await?);
    let settings = RouterSettings {
        name: instance_name(&config.router_name),
        shards: config.shards.0.clone(),
        visible_within: Duration::from_millis(config.visible_timeout_ms),
        append_within: Duration::from_millis(config.append_timeout_ms),
        ..RouterSettings::default()
    };
    tracing::info!(router = settings.name, shards = ?settings.shards, "joining the cluster");
    Cluster::connect(log, config.partitions, config.stream_replicas, settings)
        .await
        .context("opening the cluster's catalog")
}

/// The name in this router's log message ids: the configured name (or host name and process
/// id) and the start time, so that a restarted router (same name, same pid in a container)
/// never reuses an id still inside the log's duplicate window, which would drop its write.
fn instance_name(configured: &str) -> String {
    let base = if configured.is_empty() {
        format!("{}-{}", host_name().unwrap_or_else(|| "router".to_string()), std::process::id())
    } else {
        configured.to_string()
    };
    let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
    format!("{base}@{started}")
}

/// This host's name (`HOSTNAME`, else /etc/hostname), if it has one.
pub fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}
