//! The `shard` role (SCALE.md): no public API; it applies its partitions' streams from NATS
//! JetStream into one store per partition under `data_dir` and serves the router the
//! internal `sieve.cluster.v1.Shard` service (stats, retrieval, fetch, status) on `listen`.

use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sieve_cluster::{
    ANNOUNCE_EVERY, Assignments, JetStreamLog, Partition, Partitioner, Roster, Shard, ShardRecord,
    ShardService, StreamSettings,
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
    let configured =
        config.shard_partitions.resolve(config.partitions).map_err(anyhow::Error::msg)?;
    if !config.advertise.is_empty() {
        check_address(&config.advertise).context("advertise")?;
    }
    let log = Arc::new(connect_log(&config).await?);
    let roster = Roster::open(&log, config.stream_replicas)
        .await
        .context("opening the cluster's shard status bucket")?;
    let assignments = Assignments::open(&log, config.stream_replicas)
        .await
        .context("opening the cluster's assignment bucket")?;
    let (owned, epoch) =
        join(&assignments, &config.shard_name, &configured).await.with_context(|| {
            format!("joining the cluster's assignment as shard '{}'", config.shard_name)
        })?;
    let owned: Vec<Partition> = owned.into_iter().collect();
    if owned != configured {
        tracing::info!(epoch, assigned = ?owned, configured = ?configured, "the cluster's assignment, not shard_partitions, says what this shard holds");
    }
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
    let following = tokio::spawn(follow_assignment(Arc::clone(&shard), assignments.clone(), epoch));
    let snapshotting = tokio::spawn(snapshot_policy(
        Arc::clone(&shard),
        assignments,
        config.snapshot_every_messages,
    ));
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
    following.abort();
    snapshotting.abort();
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

/// Joins the cluster's assignment (see [`Assignments::join`]), trying again while its bucket
/// cannot be reached yet (a bucket just created elects its leader first), for [`LOG_WAIT`].
async fn join(
    assignments: &Assignments,
    shard: &str,
    configured: &[Partition],
) -> Result<(std::collections::BTreeSet<Partition>, u64), sieve_cluster::AssignError> {
    let deadline = tokio::time::Instant::now() + LOG_WAIT;
    loop {
        match assignments.join(shard, configured).await {
            Err(sieve_cluster::AssignError::Log(sieve_cluster::LogError::Unavailable(why)))
                if tokio::time::Instant::now() < deadline =>
            {
                tracing::debug!(why, "the assignment bucket cannot be reached yet; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            joined => return joined,
        }
    }
}

/// How often a shard reads the cluster's assignment.
const ASSIGNMENT_EVERY: Duration = Duration::from_secs(1);

/// How long a partition taken from this shard keeps answering reads after it stops being
/// reported: past the routers' refresh (2 s), so that no read sent here before they learnt
/// of the move fails.
const RELEASE_GRACE: Duration = Duration::from_secs(6);

/// Follows the cluster's assignment: takes on the partitions it gives this shard, releases
/// those it takes away and drops them after [`RELEASE_GRACE`]. Reads it every
/// [`ASSIGNMENT_EVERY`]; while it cannot be read, the shard holds what it holds.
async fn follow_assignment(shard: Arc<Shard>, assignments: Assignments, mut epoch: u64) {
    // Released partitions, with when they were released.
    let mut released: std::collections::BTreeMap<Partition, tokio::time::Instant> =
        std::collections::BTreeMap::new();
    let mut failing = false;
    loop {
        tokio::time::sleep(ASSIGNMENT_EVERY).await;
        let assignment = match assignments.read().await {
            Ok(assignment) => {
                if failing {
                    tracing::info!("reading the cluster's assignment again");
                    failing = false;
                }
                assignment
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot read the cluster's assignment; holding what this shard holds");
                    failing = true;
                }
                continue;
            }
        };
        let Some(wanted) = assignment.held_by(shard.id()).cloned() else {
            // The assignment was reset: join it again with what this shard holds.
            let held = shard.partitions();
            match assignments.join(shard.id(), &held).await {
                Ok((_, joined)) => {
                    tracing::warn!(epoch = joined, partitions = ?held, "this shard was not in the cluster's assignment; joined it again")
                }
                Err(e) => tracing::warn!(error = %e, "cannot join the cluster's assignment"),
            }
            continue;
        };
        if assignment.epoch != epoch {
            tracing::info!(epoch = assignment.epoch, partitions = ?wanted, "the cluster's assignment changed");
            epoch = assignment.epoch;
        }
        let held = shard.partitions();
        for &partition in wanted.iter().filter(|p| !held.contains(p)) {
            released.remove(&partition);
            let (taking, runtime) = (Arc::clone(&shard), tokio::runtime::Handle::current());
            let took = tokio::task::spawn_blocking(move || {
                // Taking a partition on starts its follower task.
                let _entered = runtime.enter();
                taking.hold(partition)
            });
            match took.await {
                Ok(Ok(_)) => tracing::info!(partition, epoch, "took the partition on"),
                Ok(Err(e)) => {
                    tracing::error!(partition, error = %e, "cannot take the partition on")
                }
                Err(e) => {
                    tracing::error!(partition, error = %e, "taking the partition on panicked")
                }
            }
        }
        for partition in held {
            if !wanted.contains(&partition) && shard.release(partition) {
                tracing::info!(
                    partition,
                    epoch,
                    "released the partition; dropping it after the grace period"
                );
                released.insert(partition, tokio::time::Instant::now());
            }
        }
        let due: Vec<Partition> = released
            .iter()
            .filter(|(_, at)| at.elapsed() >= RELEASE_GRACE)
            .map(|(&partition, _)| partition)
            .collect();
        for partition in due {
            released.remove(&partition);
            let dropping = Arc::clone(&shard);
            match tokio::task::spawn_blocking(move || dropping.drop_released(partition)).await {
                Ok(Ok(true)) => tracing::info!(partition, "dropped the released partition"),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::error!(partition, error = %e, "cannot drop the released partition")
                }
                Err(e) => tracing::error!(partition, error = %e, "dropping the partition panicked"),
            }
        }
    }
}

/// How often a shard looks whether a partition is due for a snapshot.
const SNAPSHOT_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Keeps the partitions' streams bounded: snapshots each partition this shard leads (it is
/// the first in name order of the shards the assignment gives it to) once the stream holds
/// `every` messages applied here, and purges the messages the snapshot covers. A replica
/// behind the stream's new first message bootstraps from the snapshot. `every` 0: never.
async fn snapshot_policy(shard: Arc<Shard>, assignments: Assignments, every: u64) {
    if every == 0 {
        return;
    }
    loop {
        tokio::time::sleep(SNAPSHOT_CHECK_EVERY).await;
        let Ok(assignment) = assignments.read().await else { continue };
        for partition in shard.partitions() {
            if assignment.owners(partition).first() != Some(&shard.id()) {
                continue;
            }
            match shard.unsnapshotted(partition).await {
                Some(held) if held >= every => {}
                _ => continue,
            }
            match shard.snapshot(&[partition], true).await {
                Ok(done) => {
                    let stream_seq = done.first().map_or(0, |d| d.info.stream_seq);
                    tracing::info!(
                        partition,
                        stream_seq,
                        every,
                        "snapshot policy: snapshot taken, stream purged up to it"
                    );
                }
                Err(e) => {
                    tracing::warn!(partition, error = %e, "snapshot policy: snapshot failed; trying again later")
                }
            }
        }
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
