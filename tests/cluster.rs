//! Cluster roles as real processes on loopback: `sieve-server --role shard` against a real
//! 3-server NATS JetStream cluster. A shard killed with SIGKILL mid-apply restarts and catches
//! up to hold exactly what its replica holds; a shard asked for a partition it does not hold
//! answers FAILED_PRECONDITION; a shard without its settings refuses to start.

mod common;
#[path = "../crates/cluster/tests/common/mod.rs"]
mod nats;

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
    assert!(run(&["--role", "router"]).contains("'router' is not a role (standalone, shard)"));
}
