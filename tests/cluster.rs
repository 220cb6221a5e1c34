//! Cluster roles as real processes on loopback: `sieve-server --role shard` against a real
//! 3-server NATS JetStream cluster. A shard killed with SIGKILL mid-apply restarts and catches
//! up to hold exactly what its replica holds; a shard asked for a partition it does not hold
//! answers FAILED_PRECONDITION; a shard without its settings refuses to start.

use crate::{common, nats};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sieve_cluster::proto::shard_client::ShardClient;
use sieve_cluster::proto::{self, PartitionStatus};
use sieve_cluster::{JetStreamLog, Log, LogOp, Partitioner, StreamSettings};
use sieve_storage::{CollectionConfig, DenseConfig, Distance, Document, HnswParams};

use common::TestServer;
use nats::NatsCluster;
use sieve_client::Client;
use sieve_proto::v1 as api;

const PARTITIONS: u32 = 2;

fn shard_flags<'a>(name: &'a str, partitions: &'a str, nats: &'a str) -> Vec<&'a str> {
    vec![
        "--role",
        "shard",
        "--shard-name",
        name,
        "--shard-partitions",
        partitions,
        "--nats",
        nats,
        "--partitions",
        "2",
    ]
}

/// A router's flags over the NATS servers `nats` (4 partitions; it finds the shards in the
/// cluster's shard status bucket), then `extra`.
fn router_flags<'a>(nats: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let flags = ["--role", "router", "--nats", nats, "--partitions", "4"];
    [&flags[..], extra].concat()
}

fn config() -> CollectionConfig {
    CollectionConfig {
        dense: Some(DenseConfig {
            dimension: 8,
            distance: Distance::Cosine,
            embedder: None,
            hnsw: HnswParams::default(),
        }),
        ..CollectionConfig::default()
    }
}

async fn connect(nats: &NatsCluster) -> JetStreamLog {
    let settings =
        StreamSettings { partitions: PARTITIONS, replicas: 3, ..StreamSettings::default() };
    JetStreamLog::connect_waiting(&nats.urls(), &settings, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("the JetStream cluster never became ready: {e}"))
}

async fn status(shard: &TestServer, detail: bool) -> BTreeMap<u32, PartitionStatus> {
    let mut client = ShardClient::connect(shard.url.clone()).await.unwrap();
    let reply = client.status(proto::StatusRequest { detail }).await.unwrap().into_inner();
    reply.partitions.into_iter().map(|p| (p.partition, p)).collect()
}

/// The shard's readiness as its status says it ("" when caught up) and as `grpc.health.v1`
/// answers it for the readiness service.
async fn readiness(shard: &TestServer) -> (String, i32) {
    let mut client = ShardClient::connect(shard.url.clone()).await.unwrap();
    let reply = client.status(proto::StatusRequest { detail: false }).await.unwrap().into_inner();
    (reply.not_ready, shard.health_of("sieve.cluster.v1.Shard").await)
}

/// Waits (bounded) until `shard` reports itself caught up, its readiness SERVING.
async fn ready(shard: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (not_ready, health) = readiness(shard).await;
        if not_ready.is_empty() && health == common::SERVING {
            return;
        }
        assert!(Instant::now() < deadline, "never ready: {not_ready:?} {health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded) until `shard` has applied every message of every partition.
async fn caught_up(log: &JetStreamLog, shard: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for p in 0..PARTITIONS {
        let last = log.bounds(p).await.unwrap().last;
        while status(shard, false).await[&p].applied < last {
            assert!(Instant::now() < deadline, "partition {p} never caught up to {last}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_killed_mid_apply_catches_up_to_hold_what_its_replica_holds() {
    let nats = NatsCluster::start(3);
    let urls = nats.urls().join(",");
    let log = connect(&nats).await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let steady = TestServer::start(dirs[0].path(), &shard_flags("steady", "", &urls));
    let mut victim = TestServer::start(dirs[1].path(), &shard_flags("victim", "0,1", &urls));

    let create = LogOp::Create { collection: "notes".into(), config: config() };
    for p in 0..PARTITIONS {
        log.append(p, &format!("create/{p}"), create.encode()).await.unwrap();
    }
    let partitioner = Partitioner::new(PARTITIONS).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let batches = 60;
    for b in 0..batches {
        let mut slices: BTreeMap<u32, Vec<Document>> = BTreeMap::new();
        for i in 0..40 {
            // Later batches replace earlier documents: the replicas must agree on the last version.
            let id = format!("doc-{}", (b * 40 + i) % 1500);
            let doc = Document {
                id: id.clone(),
                text: format!("batch {b} note {i} about shard recovery"),
                vector: Some((0..8).map(|_| rng.random_range(-1.0f32..1.0)).collect()),
                ..Document::default()
            };
            slices.entry(partitioner.partition_of(&id)).or_default().push(doc);
        }
        for (p, upserts) in slices {
            let deletes = if b % 10 == 9 { vec![format!("doc-{}", b)] } else { vec![] };
            let op = LogOp::Write { collection: "notes".into(), upserts, deletes };
            log.append(p, &format!("w/{b}/{p}"), op.encode()).await.unwrap();
        }
        if b == batches / 2 {
            // Mid-apply: the victim is applying what was just appended.
            victim.kill();
        }
    }
    let mut victim = TestServer::start(dirs[1].path(), &shard_flags("victim", "0,1", &urls));
    caught_up(&log, &steady).await;
    caught_up(&log, &victim).await;
    let (steady_status, victim_status) = (status(&steady, true).await, status(&victim, true).await);
    for p in 0..PARTITIONS {
        let (a, b) = (&steady_status[&p], &victim_status[&p]);
        assert!(a.error.is_empty() && b.error.is_empty(), "{a:?} {b:?}");
        let (a, b) = (a.contents.unwrap(), b.contents.unwrap());
        assert_eq!(a, b, "partition {p}: the restarted replica holds what the steady one holds");
        assert!(a.sled > 500, "partition {p} holds {} documents", a.sled);
        assert_eq!(
            (a.bm25, a.graph_live),
            (a.sled, a.sled),
            "partition {p}: every index agrees with sled"
        );
    }

    // A shard asked for a partition it does not hold says so precisely, and keeps serving.
    let one_dir = tempfile::tempdir().unwrap();
    let one = TestServer::start(one_dir.path(), &shard_flags("one", "1", &urls));
    let mut client = ShardClient::connect(one.url.clone()).await.unwrap();
    let refused = client
        .retrieve(proto::RetrieveRequest {
            collection: "notes".into(),
            partitions: vec![0],
            query: "recovery".into(),
            bm25_k: 10,
            stats: Some(proto::Bm25Stats { documents: 1, tokens: 1, doc_freqs: vec![1] }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_eq!(refused.message(), "shard 'one' does not hold partition 0 (it holds [1])");
    assert_eq!(status(&one, false).await.keys().copied().collect::<Vec<_>>(), [1]);
    victim.terminate();
}

/// Appends batches `range` of the shard tests' corpus: 40 documents each, later batches
/// replacing earlier documents, every tenth deleting one.
async fn append_batches(log: &JetStreamLog, range: std::ops::Range<usize>, rng: &mut StdRng) {
    let partitioner = Partitioner::new(PARTITIONS).unwrap();
    for b in range {
        let mut slices: BTreeMap<u32, Vec<Document>> = BTreeMap::new();
        for i in 0..40 {
            let id = format!("doc-{}", (b * 40 + i) % 1500);
            let doc = Document {
                id: id.clone(),
                text: format!("batch {b} note {i} about snapshots"),
                vector: Some((0..8).map(|_| rng.random_range(-1.0f32..1.0)).collect()),
                ..Document::default()
            };
            slices.entry(partitioner.partition_of(&id)).or_default().push(doc);
        }
        for (p, upserts) in slices {
            let deletes = if b % 10 == 9 { vec![format!("doc-{}", b)] } else { vec![] };
            let op = LogOp::Write { collection: "notes".into(), upserts, deletes };
            log.append(p, &format!("w/{b}/{p}"), op.encode()).await.unwrap();
        }
    }
}

/// Waits (bounded) until `shard` serves every partition again.
async fn serving(shard: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !status(shard, false).await.values().all(|p| p.serving) {
        assert!(Instant::now() < deadline, "never served again: {:?}", status(shard, false).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SCALE.md test 3: a replica left behind a purged stream refuses to serve and says why; a
/// snapshot on a caught-up replica (purging what it covers) bootstraps it, and a shard added
/// empty, to hold exactly what the steady replica holds; the stream goes on from there and a
/// restarted bootstrapped shard keeps its restored store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_bootstraps_a_replica_behind_a_purged_stream_and_a_new_shard() {
    let nats = NatsCluster::start(3);
    let urls = nats.urls().join(",");
    let log = connect(&nats).await;
    let dirs = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let steady = TestServer::start(dirs[0].path(), &shard_flags("steady", "", &urls));
    let mut late = TestServer::start(dirs[1].path(), &shard_flags("late", "", &urls));
    let create = LogOp::Create { collection: "notes".into(), config: config() };
    for p in 0..PARTITIONS {
        log.append(p, &format!("create/{p}"), create.encode()).await.unwrap();
    }
    let mut rng = StdRng::seed_from_u64(5);
    append_batches(&log, 0..20, &mut rng).await;
    caught_up(&log, &late).await;
    late.terminate();
    append_batches(&log, 20..45, &mut rng).await;
    caught_up(&log, &steady).await;
    // The streams are purged with no snapshot to cover what the stopped replica missed.
    let mut last = BTreeMap::new();
    for p in 0..PARTITIONS {
        last.insert(p, log.bounds(p).await.unwrap().last);
        log.purge_before(p, last[&p] + 1).await.unwrap();
    }
    let mut late_flags = shard_flags("late", "", &urls);
    late_flags.extend(["--metrics-listen", "127.0.0.1:0"]);
    let late = TestServer::start(dirs[1].path(), &late_flags);
    let deadline = Instant::now() + Duration::from_secs(30);
    let behind = loop {
        let states = status(&late, false).await;
        if states
            .values()
            .all(|p| p.error.contains("has no snapshot yet") && p.stream_last.is_some())
        {
            break states;
        }
        assert!(Instant::now() < deadline, "never reported being behind: {states:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (p, state) in &behind {
        assert!(!state.serving, "{state:?}");
        let expected = format!(
            "partition {p}: applied up to message {} but the stream now starts at {}",
            state.applied,
            last[p] + 1
        );
        assert!(state.error.starts_with(&expected), "{}", state.error);
    }
    let mut client = ShardClient::connect(late.url.clone()).await.unwrap();
    let refused = client
        .fetch(proto::FetchRequest {
            collection: "notes".into(),
            ids: vec!["doc-1".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().starts_with("shard 'late' partition "), "{}", refused.message());
    // Not ready (readiness NOT_SERVING, its liveness SERVING), and its metrics say why.
    let (not_ready, health) = readiness(&late).await;
    assert!(not_ready.starts_with("partition 0 is not serving: partition 0: applied up to"));
    assert_eq!((health, late.health().await), (common::NOT_SERVING, common::SERVING));
    let sample = |name: &str, p: Option<u32>| {
        let labels = p.map(|p| vec![("partition".to_string(), p.to_string())]).unwrap_or_default();
        late.scrape().get(&(name.to_string(), labels)).copied()
    };
    assert_eq!(sample("sieve_shard_ready", None), Some(0.0));
    for p in 0..PARTITIONS {
        assert_eq!(sample("sieve_shard_serving", Some(p)), Some(0.0));
        assert_eq!(sample("sieve_shard_stream_last_position", Some(p)), Some(last[&p] as f64));
        assert_eq!(
            sample("sieve_shard_apply_lag_messages", Some(p)),
            Some((last[&p] - behind[&p].applied) as f64)
        );
    }

    // A snapshot on the caught-up replica, purging what it covers.
    let held = status(&steady, true).await;
    let mut steady_client = ShardClient::connect(steady.url.clone()).await.unwrap();
    let reply = steady_client
        .snapshot(proto::SnapshotRequest { partitions: vec![], purge: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.snapshots.len(), PARTITIONS as usize);
    for snapshot in &reply.snapshots {
        let p = snapshot.partition;
        assert_eq!(
            (snapshot.stream_seq, snapshot.collections, snapshot.documents, snapshot.purged),
            (last[&p], 1, held[&p].contents.unwrap().sled, true),
            "{snapshot:?}"
        );
        assert!(snapshot.bytes > 0);
        let bounds = log.bounds(p).await.unwrap();
        assert_eq!((bounds.first, bounds.last), (last[&p] + 1, last[&p]));
    }

    // The late replica bootstraps from it; a shard added empty does too.
    let fresh = TestServer::start(dirs[2].path(), &shard_flags("fresh", "", &urls));
    for shard in [&late, &fresh] {
        serving(shard).await;
        caught_up(&log, shard).await;
        ready(shard).await;
        let states = status(shard, true).await;
        for p in 0..PARTITIONS {
            assert!(states[&p].error.is_empty(), "{:?}", states[&p]);
            assert_eq!(states[&p].contents, held[&p].contents, "partition {p}");
            assert_eq!(states[&p].stream_last, Some(last[&p]), "partition {p}");
        }
    }
    assert_eq!(sample("sieve_shard_ready", None), Some(1.0));
    for p in 0..PARTITIONS {
        assert_eq!(sample("sieve_shard_serving", Some(p)), Some(1.0));
        assert_eq!(sample("sieve_shard_applied_position", Some(p)), Some(last[&p] as f64));
        assert_eq!(sample("sieve_shard_apply_lag_messages", Some(p)), Some(0.0));
    }
    // The stream goes on after the snapshot, on every replica alike; a restarted bootstrapped
    // shard opens its restored store.
    append_batches(&log, 45..60, &mut rng).await;
    let mut fresh = fresh;
    fresh.terminate();
    let fresh = TestServer::start(dirs[2].path(), &shard_flags("fresh", "", &urls));
    for shard in [&steady, &late, &fresh] {
        caught_up(&log, shard).await;
    }
    let (a, b, c) =
        (status(&steady, true).await, status(&late, true).await, status(&fresh, true).await);
    for p in 0..PARTITIONS {
        let contents = a[&p].contents.unwrap();
        assert_eq!(b[&p].contents, Some(contents), "partition {p}: late");
        assert_eq!(c[&p].contents, Some(contents), "partition {p}: fresh");
        assert_eq!((contents.bm25, contents.graph_live), (contents.sled, contents.sled));
        assert!(contents.sled > 500, "{contents:?}");
        assert!(a[&p].serving && b[&p].serving && c[&p].serving);
    }
    let stores: Vec<String> = std::fs::read_dir(dirs[2].path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('p'))
        .collect();
    assert_eq!(stores.len(), 2 * PARTITIONS as usize, "one store and its pointer each: {stores:?}");
    // Idle, every replica merges its partitions' BM25 segments (a commit per applied message
    // left several) into one.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let segments: Vec<usize> = dirs.iter().flat_map(|d| bm25_segments(d.path())).collect();
        assert_eq!(segments.len(), 3 * PARTITIONS as usize, "{segments:?}");
        if segments.iter().all(|&n| n == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "idle partitions kept their segments: {segments:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (p, contents) in status(&steady, true).await {
        assert_eq!(contents.contents, a[&p].contents, "partition {p}: unchanged by the merge");
    }
}

/// The snapshot policy keeps the streams bounded: the partitions' first replica in name order
/// snapshots each once its stream holds `--snapshot-every-messages` applied messages and
/// purges what the snapshot covers; a shard added afterwards bootstraps from it and holds
/// what the first holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_policy_bounds_the_streams_and_new_replicas_bootstrap_from_it() {
    let nats = NatsCluster::start(3);
    let urls = nats.urls().join(",");
    let log = connect(&nats).await;
    let dirs = [(); 2].map(|()| tempfile::tempdir().unwrap());
    let mut flags = shard_flags("keeper", "", &urls);
    flags.extend(["--snapshot-every-messages", "10"]);
    let keeper = TestServer::start(dirs[0].path(), &flags);
    let create = LogOp::Create { collection: "notes".into(), config: config() };
    for p in 0..PARTITIONS {
        log.append(p, &format!("create/{p}"), create.encode()).await.unwrap();
    }
    let mut rng = StdRng::seed_from_u64(9);
    append_batches(&log, 0..30, &mut rng).await;
    // The creation and 30 writes per partition: past 10, so each stream is snapshotted and
    // purged, once (nothing is appended after).
    let deadline = Instant::now() + Duration::from_secs(60);
    for p in 0..PARTITIONS {
        loop {
            let bounds = log.bounds(p).await.unwrap();
            if (bounds.first, bounds.last) == (32, 31) {
                break;
            }
            assert!(Instant::now() < deadline, "partition {p}'s stream kept {bounds:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let held = status(&keeper, true).await;
    let mut late = shard_flags("late", "", &urls);
    late.extend(["--snapshot-every-messages", "0"]);
    let late = TestServer::start(dirs[1].path(), &late);
    serving(&late).await;
    ready(&late).await;
    let states = status(&late, true).await;
    for p in 0..PARTITIONS {
        assert_eq!((states[&p].applied, held[&p].applied), (31, 31), "partition {p}");
        assert_eq!(states[&p].contents, held[&p].contents, "partition {p}");
        assert!(held[&p].contents.unwrap().sled > 100, "{:?}", held[&p].contents);
    }
}

/// Segments of every BM25 index under `dir` (each index's `meta.json`).
fn bm25_segments(dir: &std::path::Path) -> Vec<usize> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(bm25_segments(&path));
        } else if path.ends_with("bm25/meta.json") {
            let meta: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            found.push(meta["segments"].as_array().unwrap().len());
        }
    }
    found
}

#[test]
fn a_shard_without_its_settings_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sieve-server"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    assert!(
        run(&["--role", "shard", "--shard-name", "s"])
            .contains("nats: a shard needs the NATS servers' URLs")
    );
    assert!(
        run(&["--role", "shard", "--nats", "nats://127.0.0.1:1"])
            .contains("shard_name: a shard needs a name")
    );
    assert!(
        run(&[
            "--role",
            "shard",
            "--shard-name",
            "s",
            "--nats",
            "nats://127.0.0.1:1",
            "--shard-partitions",
            "16"
        ])
        .contains("shard_partitions: partition 16 does not exist (partitions = 16)")
    );
    assert!(
        run(&["--role", "leader"])
            .contains("'leader' is not a role (standalone, shard, router, model)")
    );
    assert!(
        run(&["--role", "model"])
            .contains("models: a model tier needs models to serve (--models org/name,...)")
    );
    assert!(
        run(&["--models-url", "http://127.0.0.1:1", "--role", "model", "--models", "a/b"])
            .contains("models_url: a model tier loads its own models")
    );
    assert!(run(&["--role", "router"]).contains("nats: a router needs the NATS servers' URLs"));
    let shard = ["--role", "shard", "--shard-name", "s", "--nats", "nats://127.0.0.1:1"];
    for (advertise, why) in [
        ("ftp://h:1", "'ftp://h:1' is not an http://host:port address"),
        ("http://h", "'http://h' is not an http://host:port address"),
        ("http://h:1/x", "'http://h:1/x' is not an http://host:port address"),
        ("http://h h:1", "'http://h h:1' is not a URL"),
    ] {
        let stderr = run(&[&shard[..], &["--advertise", advertise]].concat());
        assert!(stderr.contains(&format!("advertise: {why}")), "{stderr}");
    }
}

/// A cluster as users run it: 3 NATS servers, 3 shards holding 4 partitions twice over, a
/// router in front; and a standalone server given the same writes, as the reference.
struct Routed {
    nats: NatsCluster,
    shards: Vec<TestServer>,
    router: TestServer,
    standalone: TestServer,
    _dirs: Vec<tempfile::TempDir>,
}

fn start_routed() -> Routed {
    let nats = NatsCluster::start(3);
    let urls = nats.urls().join(",");
    let dirs: Vec<tempfile::TempDir> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let shards: Vec<TestServer> = [("a", "0,1"), ("b", "2,3"), ("c", "0,1,2,3")]
        .iter()
        .zip(&dirs)
        .map(|(&(name, held), dir)| {
            let mut flags = shard_flags(name, held, &urls);
            *flags.last_mut().unwrap() = "4";
            TestServer::start(dir.path(), &flags)
        })
        .collect();
    let router =
        TestServer::start(dirs[3].path(), &router_flags(&urls, &["--append-timeout-ms", "3000"]));
    let standalone = TestServer::start(dirs[4].path(), &[]);
    Routed { nats, shards, router, standalone, _dirs: dirs }
}

/// SciFact's first documents with seeded 8-d vectors.
fn scifact_docs(count: usize) -> Vec<api::Document> {
    let corpus = common::gz_lines(&common::shared().join("data/beir/scifact/corpus.jsonl.gz"));
    let mut rng = StdRng::seed_from_u64(11);
    corpus
        .iter()
        .take(count)
        .map(|line| {
            let mut doc = sieve_client::jsonl::parse_document(line).unwrap();
            doc.vector = (0..8).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            doc
        })
        .collect()
}

fn batch(
    collection: &str,
    documents: Vec<api::Document>,
    ack: api::AckLevel,
) -> api::IngestRequest {
    api::IngestRequest {
        collection: collection.into(),
        documents,
        ack: ack as i32,
        ..Default::default()
    }
}

async fn ingest(client: &Client, requests: Vec<api::IngestRequest>) -> Vec<api::IngestAck> {
    let mut stream = client.ingest(futures::stream::iter(requests)).await.unwrap();
    let mut acks = Vec::new();
    while let Some(ack) = stream.message().await.unwrap() {
        acks.push(ack);
    }
    acks
}

/// (id, score) of each hit of the answer.
async fn ranked(client: &Client, request: api::SearchRequest) -> Vec<(String, f32)> {
    let response = client.search(request).await.unwrap();
    response.hits().iter().map(|h| (h.id.clone(), h.score)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_serves_the_public_api_over_the_cluster_as_a_standalone_server_does() {
    let mut cluster = start_routed();
    let nats_urls = cluster.nats.urls().join(",");
    let router = cluster.router.client().await;
    let standalone = cluster.standalone.client().await;
    let config = common::dense_config(8, api::Distance::Cosine);
    for client in [&router, &standalone] {
        client.create_collection("papers", config.clone()).await.unwrap();
    }
    assert_eq!(
        common::status_of(router.create_collection("papers", config.clone()).await).code(),
        tonic::Code::AlreadyExists
    );

    // The same batches through both, one document of the last with a wrong dimension and one
    // repeating an id: both reject them with the same reasons.
    let docs = scifact_docs(400);
    let mut batches: Vec<Vec<api::Document>> = docs.chunks(100).map(<[_]>::to_vec).collect();
    let mut short = batches[3][7].clone();
    short.vector.truncate(5);
    batches[3][7] = short;
    let repeated = batches[3][0].clone();
    batches[3].push(repeated);
    let requests = |ack| batches.iter().map(|b| batch("papers", b.clone(), ack)).collect();
    let routed = ingest(&router, requests(api::AckLevel::Unspecified)).await;
    let reference = ingest(&standalone, requests(api::AckLevel::Unspecified)).await;
    assert_eq!(routed.len(), 4);
    for (r, s) in routed.iter().zip(&reference) {
        assert_eq!((&r.accepted, &r.errors), (&s.accepted, &s.errors));
        assert!(r.visible && s.visible, "VISIBLE acks: searches see the batch");
        assert!(r.consistency_token.starts_with("1/4/"), "{}", r.consistency_token);
        assert!(s.consistency_token.is_empty());
    }
    let errors: Vec<(u32, String)> =
        routed[3].errors.iter().map(|e| (e.index, e.error.clone().unwrap().message)).collect();
    assert_eq!(
        errors,
        [
            (7, "vector: has 5 dimensions, the collection has 8".to_string()),
            (100, format!("id: '{}' already appears at position 0 of this batch", docs[300].id)),
        ]
    );
    let counts = router.collection("papers").await.unwrap().stats.unwrap();
    assert_eq!(counts.documents, 399);
    assert_eq!(
        counts.documents,
        standalone.collection("papers").await.unwrap().stats.unwrap().documents
    );

    // Cluster == standalone: identical ids, bit-identical scores.
    let queries = [
        "cholesterol and heart disease",
        "DNA repair in cancer cells",
        "vitamin D deficiency",
        "the immune response to infection",
    ];
    for (i, query) in queries.iter().enumerate() {
        let vector = docs[i * 50].vector.clone();
        for (mode, top_k) in
            [(api::Mode::Bm25, 10), (api::Mode::Dense, 100), (api::Mode::Hybrid, 10)]
        {
            let request = api::SearchRequest::new("papers", *query)
                .with_vector(vector.clone())
                .with_mode(mode)
                .with_top_k(top_k);
            let (r, s) =
                (ranked(&router, request.clone()).await, ranked(&standalone, request).await);
            assert_eq!(r.len(), top_k.min(399) as usize, "{query} {mode:?}");
            assert_eq!(r, s, "{query} {mode:?}: the router's answer is the standalone's");
        }
    }
    let ids: Vec<String> = vec![docs[5].id.clone(), "nope".into(), docs[250].id.clone()];
    let (r, s) = (
        router.get("papers", ids.clone(), true).await.unwrap(),
        standalone.get("papers", ids, true).await.unwrap(),
    );
    assert_eq!(r, s);
    assert_eq!(r.missing, ["nope"]);

    // Read-your-writes: a DURABLE ack's token finds the document every time.
    for (round, seed) in docs.iter().take(15).enumerate() {
        let id = format!("ryw-{round}");
        let doc = api::Document {
            id: id.clone(),
            text: format!("quokka{round} observed in the field"),
            vector: seed.vector.clone(),
            ..Default::default()
        };
        let ack = ingest(&router, vec![batch("papers", vec![doc], api::AckLevel::Durable)]).await;
        let token = ack[0].consistency_token.clone();
        let found = ranked(
            &router,
            api::SearchRequest::new("papers", format!("quokka{round}")).after(&token),
        )
        .await;
        assert_eq!(found.first().map(|h| h.0.as_str()), Some(id.as_str()), "round {round}");
        let got = router
            .get_with(api::GetRequest {
                collection: "papers".into(),
                ids: vec![id.clone()],
                consistency: api::Consistency::After as i32,
                consistency_token: token,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(got.documents.len(), 1, "round {round}: Get AFTER finds it");
    }
    let strong = ranked(&router, api::SearchRequest::new("papers", "quokka14").strong()).await;
    assert_eq!(strong[0].0, "ryw-14");

    // Bad consistency input: precise statuses, nothing lost.
    let refused = |client: &Client, request: api::SearchRequest| {
        let client = client.clone();
        async move { common::status_of(client.search(request).await) }
    };
    let bad = refused(&router, api::SearchRequest::new("papers", "x").after("1/16/0:3")).await;
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        bad.message(),
        "consistency_token: the token is from a cluster of 16 partitions; this one has 4"
    );
    let bad = refused(&router, api::SearchRequest::new("papers", "x").after("garbage")).await;
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().starts_with("consistency_token: 'garbage' is not a consistency token"));
    let mut no_token = api::SearchRequest::new("papers", "x");
    no_token.consistency = api::Consistency::After as i32;
    let bad = refused(&router, no_token).await;
    assert_eq!(
        bad.message(),
        "consistency_token: required with CONSISTENCY_AFTER (an IngestAck.consistency_token)"
    );
    let on_standalone = refused(
        &standalone,
        api::SearchRequest::new("papers", "x").after(&routed[0].consistency_token),
    )
    .await;
    assert_eq!(on_standalone.code(), tonic::Code::FailedPrecondition);
    assert!(
        on_standalone
            .message()
            .starts_with("consistency: CONSISTENCY_AFTER takes a cluster router's token")
    );
    assert_eq!(
        ranked(&standalone, api::SearchRequest::new("papers", "quokka").strong()).await.len(),
        0
    );
    let snapshot = common::status_of(router.create_snapshot("papers").await);
    assert_eq!(snapshot.code(), tonic::Code::Unimplemented);

    // Deletes go through the log too.
    let deleted = router.delete("papers", vec!["ryw-3".into(), "nope".into()]).await.unwrap();
    assert_eq!(
        (deleted.deleted, deleted.missing),
        (vec!["ryw-3".to_string()], vec!["nope".to_string()])
    );
    let gone = ranked(
        &router,
        api::SearchRequest::new("papers", "quokka3").after(&deleted.consistency_token),
    )
    .await;
    assert!(gone.iter().all(|h| h.0 != "ryw-3"), "{gone:?}");

    // The cluster's shape.
    let info = router.info().await.unwrap();
    assert_eq!(info.role, "router");
    let shape = info.cluster.unwrap();
    assert_eq!(shape.partitions, 4);
    // The router found the shards where they recorded themselves: no --shards given.
    let mut held: Vec<(String, Vec<u32>, String)> =
        shape.shards.into_iter().map(|s| (s.name, s.partitions, s.address)).collect();
    held.sort();
    let url = |i: usize| cluster.shards[i].url.clone();
    assert_eq!(
        held,
        [
            ("a".into(), vec![0, 1], url(0)),
            ("b".into(), vec![2, 3], url(1)),
            ("c".into(), vec![0, 1, 2, 3], url(2))
        ]
    );
    assert!(shape.unserved.is_empty());
    // A shard started later joins the routing without touching the router; stopped, it
    // withdraws and leaves it.
    let names = |shape: api::ClusterInfo| -> Vec<String> {
        let mut names: Vec<String> = shape.shards.into_iter().map(|s| s.name).collect();
        names.sort();
        names
    };
    let shape_when = |wanted: &'static [&'static str], what: &'static str| {
        let router = router.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let shape = router.info().await.unwrap().cluster.unwrap();
                if names(shape.clone()) == wanted {
                    return shape;
                }
                assert!(Instant::now() < deadline, "{what}: {shape:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let late_dir = tempfile::tempdir().unwrap();
    let mut late_flags = shard_flags("d", "3", &nats_urls);
    *late_flags.last_mut().unwrap() = "4";
    let mut late = TestServer::start(late_dir.path(), &late_flags);
    let joined = shape_when(&["a", "b", "c", "d"], "the new shard never joined").await;
    let d = joined.shards.iter().find(|s| s.name == "d").unwrap();
    assert_eq!((d.partitions.clone(), d.address.clone()), (vec![3], late.url.clone()));
    // Killed, it cannot withdraw: the router lists it as silent until it comes back.
    late.kill();
    let shape = shape_when(&["a", "b", "c"], "the killed shard was still routed to").await;
    let silent: Vec<(String, Vec<u32>, String)> = shape
        .silent
        .iter()
        .map(|s| (s.name.clone(), s.partitions.clone(), s.address.clone()))
        .collect();
    assert_eq!(silent, [("d".to_string(), vec![3], late.url.clone())]);
    assert!(shape.silent[0].not_ready.starts_with("does not answer: "), "{shape:?}");
    let mut late = TestServer::start(late_dir.path(), &late_flags);
    let back = shape_when(&["a", "b", "c", "d"], "the restarted shard never came back").await;
    assert!(back.silent.is_empty(), "its old address is forgotten: {back:?}");
    assert!(late.terminate().success());
    let left = shape_when(&["a", "b", "c"], "the stopped shard never left").await;
    assert!(left.silent.is_empty(), "{left:?}");
    assert_eq!(standalone.info().await.unwrap().role, "standalone");
    // Every shard caught up once the writes stopped, as the router's next refresh sees it.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let shards = router.info().await.unwrap().cluster.unwrap().shards;
        if shards.iter().all(|s| s.behind == 0 && s.not_ready.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "shards never caught up: {shards:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Partition snapshots through the router, each on a serving replica, purging what each
    // covers: every live document is in one, and searches answer as before.
    let before = ranked(&router, api::SearchRequest::new("papers", "cholesterol")).await;
    let snapshots = router.snapshot_partitions(vec![], true).await.unwrap();
    assert_eq!(snapshots.iter().map(|s| s.partition).collect::<Vec<_>>(), [0, 1, 2, 3]);
    let live = router.collection("papers").await.unwrap().stats.unwrap().documents;
    assert_eq!(snapshots.iter().map(|s| s.documents).sum::<u64>(), live);
    let log = JetStreamLog::connect(
        &cluster.nats.urls(),
        &StreamSettings { partitions: 4, replicas: 3, ..StreamSettings::default() },
    )
    .await
    .unwrap();
    for s in &snapshots {
        assert!(s.purged && s.collections == 1 && s.size_bytes > 0, "{s:?}");
        assert!(["a", "b", "c"].contains(&s.shard.as_str()), "{s:?}");
        let bounds = log.bounds(s.partition).await.unwrap();
        assert_eq!(bounds.first, s.stream_seq + 1, "partition {}: purged", s.partition);
    }
    assert_eq!(ranked(&router, api::SearchRequest::new("papers", "cholesterol")).await, before);
    let refused = common::status_of(router.snapshot_partitions(vec![1, 9], false).await);
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(refused.message(), "partitions: 9 does not exist (the cluster has 4: 0 to 3)");
    let refused = common::status_of(standalone.snapshot_partitions(vec![], false).await);
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().starts_with("SnapshotPartitions is for a cluster router"));

    // No quorum (2 of 3 NATS servers down): writes are refused with UNAVAILABLE, never acked,
    // while searches keep answering from the shards.
    let before = ranked(&router, api::SearchRequest::new("papers", "cholesterol")).await;
    cluster.nats.kill(1);
    cluster.nats.kill(2);
    let late: Vec<api::Document> = (0..20)
        .map(|i| api::Document {
            id: format!("late-{i}"),
            text: format!("late write {i}"),
            vector: docs[i].vector.clone(),
            ..Default::default()
        })
        .collect();
    let mut stream = router
        .ingest(futures::stream::iter([batch("papers", late.clone(), api::AckLevel::Durable)]))
        .await
        .unwrap();
    let refused = stream.message().await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(ranked(&router, api::SearchRequest::new("papers", "cholesterol")).await, before);
    // One server back: the client's retry lands, each document exactly once.
    cluster.nats.restart(1);
    let deadline = Instant::now() + Duration::from_secs(90);
    let acked = loop {
        let mut stream = router
            .ingest(futures::stream::iter([batch("papers", late.clone(), api::AckLevel::Visible)]))
            .await
            .unwrap();
        match stream.message().await {
            Ok(Some(ack)) => break ack,
            Ok(None) => panic!("ingest stream closed without an ack"),
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                assert!(Instant::now() < deadline, "the cluster never took writes again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    assert_eq!(acked.accepted.len(), 20);
    // Visible within the ack's 5 s, or soon after as the shards resume following the log.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = ranked(
            &router,
            api::SearchRequest::new("papers", "late")
                .with_mode(api::Mode::Bm25)
                .with_top_k(50)
                .after(&acked.consistency_token),
        )
        .await;
        let found = found.iter().filter(|h| h.0.starts_with("late-")).count();
        if found == 20 || acked.visible {
            assert_eq!(found, 20, "a visible ack's documents are found");
            break;
        }
        assert!(Instant::now() < deadline, "the acked batch never became visible: {found} of 20");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let counts = router.collection("papers").await.unwrap().stats.unwrap();
    assert_eq!(counts.documents, 399 + 15 - 1 + 20, "every document exactly once");

    router.delete_collection("papers").await.unwrap();
    assert_eq!(common::status_of(router.collection("papers").await).code(), tonic::Code::NotFound);
}

/// A free loopback address for a server that must keep it across a restart.
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// SCALE.md test 4: a bounded search loop through the router while a stream leader is killed
/// with SIGKILL mid-ingest (tests 1) and a shard is killed mid-apply and restarted (test 2):
/// no search fails, every acknowledged document is there once, and the restarted shard holds
/// what its replica holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_search_fails_while_a_stream_leader_and_a_shard_are_killed() {
    let mut nats = NatsCluster::start(3);
    let urls = nats.urls().join(",");
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let held = [("a", "0,1"), ("b", "2,3"), ("c", "0,1,2,3")];
    let addresses: Vec<String> = held.iter().map(|_| free_address()).collect();
    let start_shard = |i: usize| {
        let mut flags = shard_flags(held[i].0, held[i].1, &urls);
        *flags.last_mut().unwrap() = "4";
        TestServer::start_at(dirs[i].path(), &addresses[i], &flags)
    };
    let mut shards: Vec<TestServer> = (0..3).map(start_shard).collect();
    let shard_urls = addresses.iter().map(|a| format!("http://{a}")).collect::<Vec<_>>().join(",");
    let router = TestServer::start(
        dirs[3].path(),
        &router_flags(
            &urls,
            &[
                "--shards",
                &shard_urls,
                "--append-timeout-ms",
                "3000",
                "--metrics-listen",
                "127.0.0.1:0",
            ],
        ),
    );
    let client = router.client().await;
    client
        .create_collection("papers", common::dense_config(8, api::Distance::Cosine))
        .await
        .unwrap();
    let docs = scifact_docs(600);
    let first: Vec<api::IngestRequest> = docs[..200]
        .chunks(100)
        .map(|c| batch("papers", c.to_vec(), api::AckLevel::Visible))
        .collect();
    ingest(&client, first).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let searcher = {
        let (client, stop) = (client.clone(), std::sync::Arc::clone(&stop));
        let vectors: Vec<Vec<f32>> =
            docs[..200].iter().step_by(20).map(|d| d.vector.clone()).collect();
        tokio::spawn(async move {
            let queries = ["cholesterol", "stem cells", "tumour suppressor", "vitamin D"];
            let started = Instant::now();
            let (mut answered, mut failed) = (0usize, Vec::new());
            let mut round = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && round < 20_000
                && started.elapsed() < Duration::from_secs(240)
            {
                let request = api::SearchRequest::new("papers", queries[round % queries.len()])
                    .with_vector(vectors[round % vectors.len()].clone())
                    .with_mode(api::Mode::Hybrid)
                    .with_top_k(10);
                match client.search(request).await {
                    Ok(response) if response.hits().len() == 10 => answered += 1,
                    Ok(response) => failed.push(format!("{} hits", response.hits().len())),
                    Err(e) => failed.push(e.to_string()),
                }
                round += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (answered, failed)
        })
    };

    // Ingest the rest in DURABLE batches, each retried until acknowledged (bounded), while the
    // leader of partition 0's stream is killed and later shard a is killed and restarted.
    let js = async_nats::jetstream::new(async_nats::connect(nats.urls()).await.unwrap());
    let mut killed_nats = None;
    for (b, chunk) in docs[200..].chunks(20).enumerate() {
        if b == 3 {
            let info = js.get_stream("SIEVE_P0").await.unwrap().get_info().await.unwrap();
            let leader = info.cluster.and_then(|c| c.leader).expect("the stream has a leader");
            let index = nats.index_of(&leader);
            nats.kill(index);
            killed_nats = Some(index);
        }
        if b == 8 {
            shards[0].kill();
        }
        if b == 11 {
            shards[0] = start_shard(0);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let request = batch("papers", chunk.to_vec(), api::AckLevel::Durable);
            let mut stream = client.ingest(futures::stream::iter([request])).await.unwrap();
            match stream.message().await {
                Ok(Some(ack)) => {
                    assert_eq!(ack.accepted.len(), chunk.len(), "batch {b}");
                    break;
                }
                Ok(None) => panic!("batch {b}: the ingest stream closed without an ack"),
                Err(status) => {
                    assert_eq!(status.code(), tonic::Code::Unavailable, "batch {b}: {status:?}");
                    assert!(Instant::now() < deadline, "batch {b} never acknowledged");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    nats.restart(killed_nats.unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let counted = client.collection("papers").await.map(|c| c.stats.unwrap().documents);
        if matches!(counted, Ok(600)) {
            break;
        }
        assert!(Instant::now() < deadline, "never held all 600 documents: {counted:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (answered, failed) = searcher.await.unwrap();
    eprintln!("{answered} searches answered through the faults");
    assert!(
        failed.is_empty(),
        "{} of {} searches failed: {:?}",
        failed.len(),
        answered + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(answered >= 100, "only {answered} searches ran");
    // The router's fan-out metrics saw shard a fail and its partitions go to c.
    let samples = router.scrape();
    let calls = |shard: &str, outcome: &str| -> f64 {
        samples
            .iter()
            .filter(|((name, labels), _)| {
                name == "sieve_router_shard_calls_total"
                    && labels.contains(&("shard".into(), shard.into()))
                    && labels.contains(&("outcome".into(), outcome.into()))
            })
            .map(|(_, v)| v)
            .sum()
    };
    assert!(calls("a", "failed") >= 1.0, "{samples:?}");
    for shard in ["a", "b", "c"] {
        assert!(calls(shard, "ok") >= 100.0, "shard {shard}: {samples:?}");
    }
    let rerouted: f64 = samples
        .iter()
        .filter(|((name, _), _)| name == "sieve_router_rerouted_partitions_total")
        .map(|(_, v)| v)
        .sum();
    assert!(rerouted >= 1.0, "{samples:?}");

    // The restarted shard ends holding what its replica holds.
    let log = JetStreamLog::connect(
        &nats.urls(),
        &StreamSettings { partitions: 4, replicas: 3, ..StreamSettings::default() },
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    for p in [0, 1] {
        let last = log.bounds(p).await.unwrap().last;
        while status(&shards[0], false).await[&p].applied < last {
            assert!(Instant::now() < deadline, "shard a never caught up on partition {p}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        while status(&shards[2], false).await[&p].applied < last {
            assert!(Instant::now() < deadline, "shard c never caught up on partition {p}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (a, c) = (status(&shards[0], true).await, status(&shards[2], true).await);
    for p in [0, 1] {
        assert_eq!(a[&p].contents, c[&p].contents, "partition {p}");
    }
    for shard in &shards {
        ready(shard).await;
    }
}

/// The README's local cluster: `deploy/cluster/local.sh up` starts 3 NATS servers, 3 shards, a
/// model tier (asked for with SIEVE_MODEL_TIER) and a router that serves the API and reranks
/// through the tier; `down` stops every process it started, by PID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_cluster_script_starts_a_working_cluster_and_stops_it() {
    let state = tempfile::tempdir().unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/cluster/local.sh");
    let router_port =
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // NATS takes three consecutive client ports and the three 2000 above them.
    let nats_port = 21000 + (std::process::id() % 2000) as u16 * 3 % 6000;
    let tiny = common::shared().join("fixtures/tiny-bert-ce");
    let tier = format!("--models tiny-bert-ce={}", tiny.display());
    /// Stops by PID whatever the script started when the test ends, failed or not.
    struct Down<'a>(&'a std::path::Path, &'a std::path::Path);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("bash")
                .arg(self.0)
                .arg("down")
                .env("SIEVE_CLUSTER_DIR", self.1)
                .output();
        }
    }
    let _down = Down(&script, state.path());
    let run = |command: &[&str]| {
        let output = std::process::Command::new("bash")
            .arg(&script)
            .args(command)
            .env("SIEVE_CLUSTER_DIR", state.path())
            .env("SIEVE_SERVER_BIN", env!("CARGO_BIN_EXE_sieve-server"))
            .env("SIEVE_ROUTER_LISTEN", format!("127.0.0.1:{router_port}"))
            .env("SIEVE_NATS_PORT", nats_port.to_string())
            .env("SIEVE_PARTITIONS", "4")
            .env("SIEVE_MODEL_TIER", &tier)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(output.status.success(), "local.sh {command:?}: {stderr}");
        (String::from_utf8(output.stdout).unwrap(), stderr)
    };
    let (url, log) = run(&["up"]);
    assert_eq!(url.trim(), format!("http://127.0.0.1:{router_port}"), "{log}");
    assert!(log.contains("shard-3 on 127.0.0.1:") && log.contains("model tier on"), "{log}");
    let mut pids: Vec<String> = (1..=3)
        .flat_map(|i| [format!("nats-{i}"), format!("shard-{i}")])
        .chain(["model".to_string(), "router".to_string()])
        .map(|name| std::fs::read_to_string(state.path().join("pids").join(name)).unwrap())
        .collect();

    let client = Client::connect(url.trim()).await.unwrap();
    client
        .create_collection("notes", common::dense_config(3, api::Distance::Cosine))
        .await
        .unwrap();
    let doc = api::Document {
        id: "n1".into(),
        text: "a wombat crossed the road".into(),
        vector: vec![1.0, 0.0, 0.0],
        ..Default::default()
    };
    let ack = client.upsert("notes", vec![doc]).await.unwrap();
    assert!(ack.visible);
    let found = ranked(&client, api::SearchRequest::new("notes", "wombat")).await;
    assert_eq!(found.iter().map(|h| h.0.as_str()).collect::<Vec<_>>(), ["n1"]);
    // The router finds the shards as they record themselves (each refresh, every 2 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    let info = loop {
        let info = client.info().await.unwrap();
        if info.cluster.as_ref().is_some_and(|c| c.shards.len() == 3) {
            break info;
        }
        assert!(Instant::now() < deadline, "the router never found 3 shards: {info:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let shape = info.cluster.unwrap();
    assert_eq!((shape.partitions, shape.shards.len()), (4, 3));
    assert_eq!(info.models.len(), 1);
    assert!(info.models[0].served_by.starts_with("http://127.0.0.1:"), "{:?}", info.models);
    let reranked = client
        .rerank(api::RerankRequest {
            query: "wombat".into(),
            texts: vec!["a wombat crossed the road".into(), "tax law".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((reranked.model.as_str(), reranked.results.len()), ("tiny-bert-ce", 2));

    // A shard added later: the router finds it without a restart; `down` stops it too.
    let (_, log) = run(&["add-shard", "shard-4", "3"]);
    assert!(
        log.contains("shard-4 on 127.0.0.1:") && log.contains("joins with partitions 3 ("),
        "{log}"
    );
    pids.push(std::fs::read_to_string(state.path().join("pids/shard-4")).unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let shards = client.info().await.unwrap().cluster.unwrap().shards;
        if shards.iter().any(|s| s.name == "shard-4" && s.partitions == [3]) {
            break;
        }
        assert!(Instant::now() < deadline, "the added shard never joined: {shards:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused = std::process::Command::new("bash")
        .arg(&script)
        .args(["add-shard", "bad name", "1"])
        .env("SIEVE_CLUSTER_DIR", state.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("usage:"));

    let (_, log) = run(&["down"]);
    assert!(log.contains("stopped router") && log.contains("stopped model"), "{log}");
    assert!(log.contains("stopped nats-3") && log.contains("stopped shard-4"), "{log}");
    let (status, _) = run(&["status"]);
    assert_eq!(status.matches(" stopped").count(), 8, "{status}");
    for pid in pids {
        // Gone, or a zombie waiting for whichever process adopted it to reap it.
        let state =
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        let running = state.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'));
        assert!(!running, "process {} still runs after down: {state}", pid.trim());
    }
}

/// The model tier: a `--role model` server loads the embedder and a cross-encoder; a router
/// that names it (`--models-url`) and loads no model embeds documents and queries and runs
/// rerank stages through it, answering as a standalone server with the same models does. The
/// tier holds no collections, and with it gone, searches that need a model are UNAVAILABLE
/// while keyword searches still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_embeds_and_reranks_through_the_model_tier() {
    const EMBEDDER: &str = "sentence-transformers/all-MiniLM-L6-v2";
    let models_dir = common::shared().join("models");
    let tiny = common::shared().join("fixtures/tiny-bert-ce");
    let models = format!("{EMBEDDER},tiny-bert-ce={}", tiny.display());
    let model_flags = ["--models-dir", models_dir.to_str().unwrap(), "--models", &models];
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut tier =
        TestServer::start(dirs[0].path(), &[&["--role", "model"][..], &model_flags].concat());
    let standalone = TestServer::start(
        dirs[1].path(),
        &[&model_flags[..], &["--default-embedder", EMBEDDER]].concat(),
    );
    let nats = NatsCluster::start(3);
    let urls = nats.urls().join(",");
    let mut flags = shard_flags("s", "", &urls);
    *flags.last_mut().unwrap() = "4";
    let _shard = TestServer::start(dirs[2].path(), &flags);
    let router = TestServer::start(
        dirs[3].path(),
        &router_flags(&urls, &["--models-url", &tier.url, "--default-embedder", EMBEDDER]),
    );
    let (routed, reference) = (router.client().await, standalone.client().await);

    // The router loaded nothing: its models are the tier's.
    let info = routed.info().await.unwrap();
    let mut served: Vec<(String, String)> =
        info.models.iter().map(|m| (m.name.clone(), m.served_by.clone())).collect();
    served.sort();
    assert_eq!(
        served,
        [(EMBEDDER.to_string(), tier.url.clone()), ("tiny-bert-ce".into(), tier.url.clone())]
    );
    let embedder = info.models.iter().find(|m| m.name == EMBEDDER).unwrap();
    assert_eq!((embedder.dimension, embedder.architecture.as_str()), (384, "BertModel"));
    let tier_client = tier.client().await;
    assert_eq!(tier_client.info().await.unwrap().role, "model");

    // The same documents, embedded by the tier for the router and in-process for the
    // standalone server.
    let docs: Vec<api::Document> =
        scifact_docs(40).into_iter().map(|d| api::Document { vector: Vec::new(), ..d }).collect();
    for client in [&routed, &reference] {
        client.create_collection("papers", api::CollectionConfig::default()).await.unwrap();
        let ack = client.upsert("papers", docs.clone()).await.unwrap();
        assert_eq!(ack.accepted.len(), 40);
    }
    let close = |a: &[(String, f32)], b: &[(String, f32)], what: &str| {
        let ids = |l: &[(String, f32)]| l.iter().map(|h| h.0.clone()).collect::<Vec<_>>();
        assert_eq!(ids(a), ids(b), "{what}");
        for (x, y) in a.iter().zip(b) {
            assert!((x.1 - y.1).abs() <= 1e-5, "{what}: {x:?} vs {y:?}");
        }
    };
    for query in ["cholesterol and heart disease", "DNA repair in cancer cells"] {
        for mode in [api::Mode::Dense, api::Mode::Hybrid] {
            let request = api::SearchRequest::new("papers", query).with_mode(mode).with_top_k(10);
            let (r, s) =
                (ranked(&routed, request.clone()).await, ranked(&reference, request).await);
            assert_eq!(r.len(), 10);
            close(&r, &s, &format!("{query} {mode:?}"));
        }
        let request = api::SearchRequest::new("papers", query)
            .with_mode(api::Mode::Hybrid)
            .with_rerank([("tiny-bert-ce", 5)])
            .with_top_k(5);
        let (r, s) = (ranked(&routed, request.clone()).await, ranked(&reference, request).await);
        assert_eq!(r.len(), 5);
        close(&r, &s, &format!("{query} reranked"));
    }
    // Rerank through the router, and at the tier itself.
    let texts: Vec<String> = docs[..6].iter().map(|d| d.text.clone()).collect();
    let rerank = api::RerankRequest {
        query: "cholesterol".into(),
        texts,
        model: "tiny-bert-ce".into(),
        ..Default::default()
    };
    let (r, t) = (
        routed.rerank(rerank.clone()).await.unwrap(),
        tier_client.rerank(rerank.clone()).await.unwrap(),
    );
    assert_eq!(r.results, t.results);
    assert_eq!(r.results.len(), 6);

    // The tier holds no collections.
    let refused = common::status_of(
        tier_client.create_collection("papers", api::CollectionConfig::default()).await,
    );
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().starts_with("this server is a model tier"), "{refused:?}");
    assert!(tier_client.list_collections().await.unwrap().is_empty());

    // Without the tier: searches that need a model are UNAVAILABLE and say why; keyword
    // searches answer.
    tier.kill();
    let request = api::SearchRequest::new("papers", "cholesterol").with_mode(api::Mode::Hybrid);
    let failed = common::status_of(routed.search(request).await);
    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
    assert!(failed.message().contains("at the model tier http://"), "{failed:?}");
    let keyword = api::SearchRequest::new("papers", "cholesterol").with_mode(api::Mode::Bm25);
    assert_eq!(ranked(&routed, keyword.clone()).await, ranked(&reference, keyword).await);
}

/// SCALE.md, "Moving a partition": through the router's `AssignPartition`, the new owner
/// replays the partition's stream and serves it once caught up, then the old owner lets go
/// of it and deletes its store; a search loop meanwhile gets the standalone server's answer
/// every time. A restarted shard holds what the assignment says, not its settings, and bad
/// changes get precise statuses with the assignment left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_moves_between_shards_without_a_failed_or_different_search() {
    let mut cluster = start_routed();
    let router = cluster.router.client().await;
    let standalone = cluster.standalone.client().await;
    let config = common::dense_config(8, api::Distance::Cosine);
    for client in [&router, &standalone] {
        client.create_collection("papers", config.clone()).await.unwrap();
    }
    let docs = scifact_docs(300);
    let requests =
        || docs.chunks(100).map(|b| batch("papers", b.to_vec(), api::AckLevel::Visible)).collect();
    for acks in [ingest(&router, requests()).await, ingest(&standalone, requests()).await] {
        assert_eq!(acks.iter().map(|a| a.accepted.len()).collect::<Vec<_>>(), [100, 100, 100]);
    }
    let assigned = |info: &api::ClusterInfo| -> BTreeMap<String, (Vec<u32>, Vec<u32>)> {
        info.shards
            .iter()
            .map(|s| (s.name.clone(), (s.assigned.clone(), s.partitions.clone())))
            .collect()
    };
    let shape = router.info().await.unwrap().cluster.unwrap();
    assert_eq!(
        assigned(&shape),
        BTreeMap::from([
            ("a".to_string(), (vec![0, 1], vec![0, 1])),
            ("b".to_string(), (vec![2, 3], vec![2, 3])),
            ("c".to_string(), (vec![0, 1, 2, 3], vec![0, 1, 2, 3])),
        ]),
        "each shard joined the assignment with its settings"
    );
    let joined = shape.assignment_epoch;
    assert_eq!(joined, 3, "one write per shard joining");

    // Bad changes: precise statuses, the assignment untouched.
    for (partition, add, remove, wait_ms, code, message) in [
        (
            4,
            "b",
            "",
            0,
            tonic::Code::InvalidArgument,
            "partition: 4 does not exist (the cluster has 4 partitions)",
        ),
        (
            0,
            "",
            "",
            0,
            tonic::Code::InvalidArgument,
            "add, remove: name the shard to take the partition on, the one to give it up, or both",
        ),
        (0, "a", "a", 0, tonic::Code::InvalidArgument, "add, remove: both name shard 'a'"),
        (
            0,
            "b",
            "a",
            600_001,
            tonic::Code::InvalidArgument,
            "wait_ms: 600001 is above the limit of 600000",
        ),
        (
            0,
            "nobody",
            "a",
            0,
            tonic::Code::NotFound,
            "shard 'nobody' has never joined the cluster (a shard joins when it first starts: sieve-server --role shard --shard-name nobody)",
        ),
        (2, "", "b", 0, tonic::Code::FailedPrecondition, ""),
    ] {
        if code == tonic::Code::FailedPrecondition {
            // Partition 2 is held by b and c: first take it from c, then b may not let go.
            let left = router.assign_partition(2, "", "c", 0).await.unwrap();
            assert_eq!(left.shards, ["b"]);
        }
        let refused =
            common::status_of(router.assign_partition(partition, add, remove, wait_ms).await);
        let message = if message.is_empty() {
            "partition 2 would have no replica: assign it to another shard first (add)"
        } else {
            message
        };
        assert_eq!((refused.code(), refused.message()), (code, message));
    }
    let back = router.assign_partition(2, "c", "", 0).await.unwrap();
    assert_eq!((back.shards, back.epoch), (vec!["b".to_string(), "c".into()], joined + 2));

    // The answers every search must give, from the standalone server.
    let queries = ["cholesterol", "stem cells", "tumour suppressor", "vitamin D"];
    let mut expected = Vec::new();
    for (i, query) in queries.iter().enumerate() {
        for mode in [api::Mode::Bm25, api::Mode::Hybrid] {
            let request = api::SearchRequest::new("papers", *query)
                .with_vector(docs[i * 30].vector.clone())
                .with_mode(mode)
                .with_top_k(10);
            expected.push((request.clone(), ranked(&standalone, request).await));
        }
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let searcher = {
        let (router, stop, expected) =
            (router.clone(), std::sync::Arc::clone(&stop), expected.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let (mut answered, mut wrong) = (0usize, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && answered + wrong.len() < 20_000
                && started.elapsed() < Duration::from_secs(120)
            {
                let (request, answer) = &expected[(answered + wrong.len()) % expected.len()];
                match router.search(request.clone()).await {
                    Ok(response) => {
                        let got: Vec<(String, f32)> =
                            response.hits().iter().map(|h| (h.id.clone(), h.score)).collect();
                        if &got == answer {
                            answered += 1;
                        } else {
                            wrong.push(format!("{:?}: {got:?}", request.query));
                        }
                    }
                    Err(e) => wrong.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (answered, wrong)
        })
    };

    // Move partition 0 from a to b: b replays the stream and serves it, then a lets go.
    let moved = router.assign_partition(0, "b", "a", 60_000).await.unwrap();
    assert_eq!((moved.shards, moved.epoch), (vec!["b".to_string(), "c".into()], joined + 4));
    let a_dir = cluster._dirs[0].path().to_path_buf();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held: Vec<u32> = status(&cluster.shards[0], false).await.into_keys().collect();
        if held == [1] && !a_dir.join("p0").exists() {
            break;
        }
        assert!(Instant::now() < deadline, "a still holds {held:?} or its store of partition 0");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (b, c) = (status(&cluster.shards[1], true).await, status(&cluster.shards[2], true).await);
    assert!(b[&0].serving && b[&0].error.is_empty(), "{:?}", b[&0]);
    assert_eq!(b[&0].contents, c[&0].contents, "the new replica holds what the other holds");
    assert!(b[&0].contents.unwrap().sled > 50, "{:?}", b[&0].contents);
    // a refuses partition 0 with the precise status routers act on.
    let mut a_client = ShardClient::connect(cluster.shards[0].url.clone()).await.unwrap();
    let refused = a_client
        .fetch(proto::FetchRequest {
            collection: "papers".into(),
            ids: vec![
                docs.iter()
                    .find(|d| Partitioner::new(4).unwrap().partition_of(&d.id) == 0)
                    .unwrap()
                    .id
                    .clone(),
            ],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    assert_eq!(refused.message(), "shard 'a' does not hold partition 0 (it holds [1])");

    // A restarted shard holds what the assignment gives it, not its settings ("0,1").
    cluster.shards[0].terminate();
    let urls = cluster.nats.urls().join(",");
    let mut flags = shard_flags("a", "0,1", &urls);
    *flags.last_mut().unwrap() = "4";
    cluster.shards[0] = TestServer::start(&a_dir, &flags);
    ready(&cluster.shards[0]).await;
    let held: Vec<u32> = status(&cluster.shards[0], false).await.into_keys().collect();
    assert_eq!(held, [1]);
    assert!(!a_dir.join("p0").exists());

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (answered, wrong) = searcher.await.unwrap();
    assert!(
        wrong.is_empty(),
        "{} of {} searches failed or differed: {:?}",
        wrong.len(),
        answered + wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(answered >= 50, "only {answered} searches ran through the move");
    cluster.router.terminate();
    cluster.router = TestServer::start(cluster._dirs[3].path(), &router_flags(&urls, &[]));
    let router = cluster.router.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shape = router.info().await.unwrap().cluster.unwrap();
        let now = assigned(&shape);
        if now.len() == 3 && now.values().all(|(assigned, held)| assigned == held) {
            assert_eq!(
                now,
                BTreeMap::from([
                    ("a".to_string(), (vec![1], vec![1])),
                    ("b".to_string(), (vec![0, 2, 3], vec![0, 2, 3])),
                    ("c".to_string(), (vec![0, 1, 2, 3], vec![0, 1, 2, 3])),
                ])
            );
            assert_eq!(shape.assignment_epoch, joined + 4, "a's restart changed nothing");
            break;
        }
        assert!(Instant::now() < deadline, "the router never saw the moved shape: {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (request, answer) in &expected {
        assert_eq!(&ranked(&router, request.clone()).await, answer, "{:?}", request.query);
    }

    // The CLI: the cluster's shape, and a partition given to a shard that serves it once it
    // has replayed the partition's stream.
    let sieve = |addr: &str, args: &[&str]| {
        let argv: Vec<String> =
            ["sieve", "--addr", addr].iter().chain(args).map(|a| a.to_string()).collect();
        sieve_client::cli::run(<sieve_client::cli::Cli as clap::Parser>::parse_from(argv))
    };
    let routed = cluster.router.url.clone();
    assert_eq!(
        sieve(&routed, &["cluster", "shards"]).await.unwrap(),
        std::process::ExitCode::SUCCESS
    );
    let standalone_url = cluster.standalone.url.clone();
    let refused = sieve(&standalone_url, &["cluster", "shards"]).await.unwrap_err();
    assert_eq!(refused.to_string(), "the server is a standalone server, not a cluster router");
    let code = sieve(&routed, &["cluster", "assign", "3", "--add", "a"]).await.unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let states = status(&cluster.shards[0], true).await;
        if states.get(&3).is_some_and(|p| p.serving) {
            let c = status(&cluster.shards[2], true).await;
            assert_eq!(states[&3].contents, c[&3].contents, "replayed from the stream");
            break;
        }
        assert!(Instant::now() < deadline, "a never served partition 3: {states:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
