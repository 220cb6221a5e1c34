//! The `shard` role (SCALE.md): no public API; it applies its partitions' streams from NATS
//! JetStream into one store per partition under `data_dir` and serves the router the
//! internal `sieve.cluster.v1.Shard` service (stats, retrieval, fetch, status) on `listen`.

use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sieve_cluster::{
    ANNOUNCE_EVERY, JetStreamLog, Partitioner, Roster, Shard, ShardRecord, ShardService,
    StreamSettings,
};
use sieve_storage::StoreOptions;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::config::Config;

/// The `grpc.health.v1` service name that answers readiness: `SERVING` once every partition
/// is caught up ([`Shard::ready`]), `NOT_SERVING` while any is behind, bootstrapping or
/// stopped. "" (the whole server) answers liveness: `SERVING` while the process serves.
pub const READINESS: &str = "sieve.cluster.v1.Shard";

/// How often readiness is checked.
const READY_EVERY: Duration = Duration::from_secs(1);

/// How long a starting shard waits for the JetStream cluster (its meta leader elected, the
/// partition streams created) before it gives up.
const LOG_WAIT: Duration = Duration::from_secs(60);

/// Connects to the cluster's log, retrying while its servers start.
pub async fn connect_log(config: &Config) -> anyhow::Result<JetStreamLog> {
    if config.nats.0.is_empty() {
        anyhow::bail!("nats: a {} needs the NATS servers' URLs", config.role.name());
    }
    let settings = StreamSettings {
        partitions: config.partitions,
        replicas: config.stream_replicas,
        ..StreamSettings::default()
    };
    JetStreamLog::connect_waiting(&config.nats.0, &settings, LOG_WAIT)
        .await
        .context("connecting to the NATS JetStream log")
}

/// Runs a shard until `shutdown` resolves, then closes every partition's store.
pub async fn serve(
    config: Config,
    options: StoreOptions,
    shutdown: impl Future<Output = &'static str>,
) -> anyhow::Result<()> {
    if config.shard_name.is_empty() {
        anyhow::bail!("shard_name: a shard needs a name unique in its cluster");
    }
    let partitioner = Partitioner::new(config.partitions).map_err(anyhow::Error::msg)?;
    let owned = config.shard_partitions.resolve(config.partitions).map_err(anyhow::Error::msg)?;
    if !config.advertise.is_empty() {
        check_address(&config.advertise).context("advertise")?;
    }
    let log = Arc::new(connect_log(&config).await?);
    let roster = Roster::open(&log, config.stream_replicas)
        .await
        .context("opening the cluster's shard status bucket")?;
    let shard = {
        let (name, dir) = (config.shard_name.clone(), config.data_dir.clone());
        let owned = owned.clone();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let _entered = runtime.enter();
            Shard::open(&name, &dir, partitioner, &owned, log, options)
        })
        .await?
        .with_context(|| {
            format!("opening the shard's stores under {}", config.data_dir.display())
        })?
    };
    let shard = Arc::new(shard);

    let incoming = TcpIncoming::bind(config.listen)
        .with_context(|| format!("listening on {}", config.listen))?
        .with_nodelay(Some(true));
    let addr = incoming.local_addr()?;
    let advertised = advertised(&config.advertise, addr);
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    health.set_service_status(READINESS, ServingStatus::NotServing).await;
    let readiness = tokio::spawn(report_readiness(Arc::clone(&shard), health.clone()));
    let announcing = tokio::spawn(announce(Arc::clone(&shard), roster.clone(), advertised.clone()));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let metrics_server = {
        let shard = Arc::clone(&shard);
        crate::metrics::start(
            &config.metrics_listen,
            move || crate::metrics::refresh_shard(&shard),
            stop_rx.clone(),
        )
        .await?
    };
    let mut server = tokio::spawn(
        Server::builder()
            .add_service(health_service)
            .add_service(ShardService::server(Arc::clone(&shard)))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            }),
    );
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("sieve-server listening on {addr}");
    let _ = std::io::stdout().flush();
    tracing::info!(%addr, advertised, shard = config.shard_name, partitions = ?owned, data_dir = %config.data_dir.display(), "serving as a shard");
    tokio::select! {
        signal = shutdown => tracing::info!(signal, "shutting down the shard"),
        result = &mut server => {
            result.context("server task")?.context("gRPC server")?;
            anyhow::bail!("gRPC server stopped unexpectedly");
        }
    }
    readiness.abort();
    announcing.abort();
    // Routers stop sending reads here at their next refresh, not when the record ages out.
    match tokio::time::timeout(WITHDRAW_WITHIN, roster.withdraw(shard.id())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not withdraw the shard's status record"),
        Err(_) => tracing::warn!("withdrawing the shard's status record timed out"),
    }
    health.set_service_status(READINESS, ServingStatus::NotServing).await;
    health.set_service_status("", ServingStatus::NotServing).await;
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    if tokio::time::timeout(grace, &mut server).await.is_err() {
        server.abort();
    }
    if let Some(task) = metrics_server {
        task.abort();
    }
    tokio::task::spawn_blocking(move || shard.close()).await?.context("closing the shard")?;
    tracing::info!("shard stopped cleanly");
    Ok(())
}

/// Where routers reach this shard: `configured`, else `http://` the bound address, with this
/// host's name for an unspecified IP (listening on every interface).
fn advertised(configured: &str, bound: std::net::SocketAddr) -> String {
    if !configured.is_empty() {
        return configured.to_string();
    }
    if bound.ip().is_unspecified()
        && let Some(host) = crate::router::host_name()
    {
        return format!("http://{host}:{}", bound.port());
    }
    format!("http://{bound}")
}

/// An address routers can reach: `http://` or `https://`, a host and a port.
fn check_address(address: &str) -> anyhow::Result<()> {
    let uri: http::Uri = address.parse().with_context(|| format!("'{address}' is not a URL"))?;
    match (uri.scheme_str(), uri.host(), uri.port_u16()) {
        (Some("http" | "https"), Some(_), Some(_))
            if uri.path() == "/" || uri.path().is_empty() =>
        {
            Ok(())
        }
        _ => anyhow::bail!("'{address}' is not an http://host:port address"),
    }
}

/// How long a stopping shard tries to remove its status record.
const WITHDRAW_WITHIN: Duration = Duration::from_secs(2);

/// Records this shard in the cluster's shard status bucket every [`ANNOUNCE_EVERY`], logging
/// only when recording starts or stops working.
async fn announce(shard: Arc<Shard>, roster: Roster, address: String) {
    let mut failing = false;
    loop {
        let record = ShardRecord::of(&shard, &address);
        match roster.announce(shard.id(), &record).await {
            Ok(()) if failing => {
                tracing::info!("recording the shard's status again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) if !failing => {
                tracing::warn!(error = %e, "cannot record the shard's status; routers that have not met it cannot find it");
                failing = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(ANNOUNCE_EVERY).await;
    }
}

/// Sets the readiness health status as the shard catches up and falls behind, logging each
/// change with its reason.
async fn report_readiness(shard: Arc<Shard>, health: tonic_health::server::HealthReporter) {
    let mut was: Option<Result<(), String>> = None;
    loop {
        let now = shard.ready();
        if was.as_ref().map(Result::is_ok) != Some(now.is_ok()) {
            match &now {
                Ok(()) => {
                    tracing::info!(shard = shard.id(), "caught up: ready");
                    health.set_service_status(READINESS, ServingStatus::Serving).await;
                }
                Err(why) => {
                    tracing::info!(shard = shard.id(), %why, "not ready");
                    health.set_service_status(READINESS, ServingStatus::NotServing).await;
                }
            }
        }
        was = Some(now);
        tokio::time::sleep(READY_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_advertises_the_configured_address_else_the_bound_one() {
        let bound: std::net::SocketAddr = "127.0.0.1:7801".parse().unwrap();
        assert_eq!(advertised("", bound), "http://127.0.0.1:7801");
        assert_eq!(advertised("http://shard-0.sieve:7801", bound), "http://shard-0.sieve:7801");
        let any: std::net::SocketAddr = "0.0.0.0:7801".parse().unwrap();
        let host = crate::router::host_name().expect("this machine has a host name");
        assert_eq!(advertised("", any), format!("http://{host}:7801"));
        assert!(check_address("https://shard-0.sieve:7801").is_ok());
        assert!(check_address("http://[::1]:7801").is_ok());
    }
}
