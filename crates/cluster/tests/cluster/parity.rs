//! Cluster == standalone: SciFact with seeded vectors, written through a real JetStream log
//! into 3 shards (6 partitions, each on 2 shards, served over gRPC on loopback) and directly
//! into one standalone collection. Every search mode, with and without a filter, top 10 and
//! 100, and after a rerank stage with a fixture cross-encoder, answers with identical ids and
//! bit-identical scores; with one shard down, searches still answer the same.

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sieve_cluster::{
    ClusterCorpus, JetStreamLog, Log, LogOp, Partition, Partitioner, Shard, ShardService,
    StreamSettings, Token, Topology, shard_clients,
};
use sieve_models::{ModelSpec, Registry};
use sieve_planner::{Corpus, Fusion, Hit, Mode, Plan, Planner, Query, StageSpec};
use sieve_storage::{
    CollectionConfig, DenseConfig, Distance, Document, Filter, HnswParams, Store, StoreOptions,
    Value, WriteBatch,
};
use tokio::task::JoinHandle;

use common::NatsCluster;

const DIM: usize = 384;
const PARTITIONS: u32 = 6;

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

fn read_jsonl(name: &str) -> Vec<serde_json::Value> {
    let path = shared().join("data/beir/scifact").join(name);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| {
        panic!("{} is missing ({e}): the parity test needs SciFact", path.display())
    });
    BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .map(|line| serde_json::from_str(&line.unwrap()).unwrap())
        .collect()
}

fn seeded_vector(seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn config() -> CollectionConfig {
    CollectionConfig {
        dense: Some(DenseConfig {
            dimension: DIM,
            distance: Distance::Cosine,
            embedder: None,
            hnsw: HnswParams::default(),
        }),
        ..CollectionConfig::default()
    }
}

/// Exact dense search everywhere: the graph is approximate and built differently per part.
fn options() -> StoreOptions {
    StoreOptions { exact_search_threshold: usize::MAX, ..StoreOptions::default() }
}

/// A shard and its gRPC server on a loopback port.
struct RunningShard {
    shard: Arc<Shard>,
    address: String,
    server: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start_shard(name: &str, owned: &[Partition], log: Arc<JetStreamLog>) -> RunningShard {
    let dir = tempfile::tempdir().unwrap();
    let partitioner = Partitioner::new(PARTITIONS).unwrap();
    let shard =
        Arc::new(Shard::open(name, dir.path(), partitioner, owned, log, options()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let service = ShardService::server(Arc::clone(&shard));
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    RunningShard { shard, address, server, _dir: dir }
}

/// Waits (bounded) until every partition of every shard has applied its whole stream.
async fn caught_up(log: &JetStreamLog, shards: &[RunningShard]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for running in shards {
        for state in running.shard.status(false).unwrap() {
            let last = log.bounds(state.partition).await.unwrap().last;
            loop {
                let applied = running
                    .shard
                    .store(state.partition)
                    .unwrap()
                    .log_position(state.partition)
                    .unwrap();
                if applied >= last {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} partition {} stuck at {applied} of {last}",
                    running.shard.id(),
                    state.partition
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn answer<C: Corpus + ?Sized>(planner: &Planner, corpus: Arc<C>, query: Query) -> Vec<Hit> {
    let mut last = Vec::new();
    planner.search(corpus, query, |list| last = list.hits).await.unwrap();
    last
}

/// Ids, scores and every placement, compared exactly.
fn shape(hits: &[Hit]) -> Vec<String> {
    hits.iter()
        .map(|h| {
            format!(
                "{} {:e} bm25={:?} dense={:?} fused={:?} stages={:?}",
                h.id, h.score, h.bm25, h.dense, h.fused, h.stages
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_answers_exactly_as_one_standalone_collection() {
    let nats = NatsCluster::start(3);
    let settings =
        StreamSettings { partitions: PARTITIONS, replicas: 3, ..StreamSettings::default() };
    let log = Arc::new(
        JetStreamLog::connect_waiting(&nats.urls(), &settings, Duration::from_secs(90))
            .await
            .unwrap_or_else(|e| panic!("the JetStream cluster never became ready: {e}")),
    );
    // Each partition on two of the three shards.
    let mut shards = Vec::new();
    for s in 0..3u32 {
        let owned: Vec<Partition> = (0..4).map(|i| (2 * s + i) % PARTITIONS).collect();
        shards.push(start_shard(&format!("shard-{s}"), &owned, Arc::clone(&log)).await);
    }

    let standalone_dir = tempfile::tempdir().unwrap();
    let standalone = Store::open(standalone_dir.path(), options()).unwrap();
    let reference = standalone.create_collection("scifact", config()).unwrap();
    let create = LogOp::Create { collection: "scifact".into(), config: config() };
    for p in 0..PARTITIONS {
        log.append(p, &format!("create/{p}"), create.encode()).await.unwrap();
    }
    let docs: Vec<Document> = read_jsonl("corpus.jsonl.gz")
        .iter()
        .enumerate()
        .map(|(i, d)| Document {
            id: d["_id"].as_str().unwrap().to_string(),
            title: d["title"].as_str().unwrap_or_default().to_string(),
            text: d["text"].as_str().unwrap_or_default().to_string(),
            metadata: [("bucket".to_string(), Value::Int((i % 3) as i64))].into(),
            vector: Some(seeded_vector(i as u64)),
        })
        .collect();
    assert_eq!(docs.len(), 5183, "SciFact's corpus");
    let partitioner = Partitioner::new(PARTITIONS).unwrap();
    for (b, batch) in docs.chunks(500).enumerate() {
        reference.write(&WriteBatch { upserts: batch.to_vec(), deletes: vec![] }).unwrap();
        let mut slices: BTreeMap<Partition, Vec<Document>> = BTreeMap::new();
        for doc in batch {
            slices.entry(partitioner.partition_of(&doc.id)).or_default().push(doc.clone());
        }
        for (p, upserts) in slices {
            let op = LogOp::Write { collection: "scifact".into(), upserts, deletes: vec![] };
            log.append(p, &format!("parity/{b}/{p}"), op.encode()).await.unwrap();
        }
    }
    caught_up(&log, &shards).await;

    let addresses: Vec<String> = shards.iter().map(|s| s.address.clone()).collect();
    let clients = shard_clients(&addresses).unwrap();
    let topology = Arc::new(Topology::discover(&clients, partitioner).await);
    for p in 0..PARTITIONS {
        assert_eq!(topology.owners(p).len(), 2, "partition {p} on two shards");
    }
    let cluster = Arc::new(ClusterCorpus::new(
        "scifact",
        config(),
        Arc::clone(&topology),
        Token::new(PARTITIONS),
        Duration::from_secs(2),
        tokio::runtime::Handle::current(),
    ));
    let fixture = ModelSpec {
        path: Some(shared().join("fixtures/tiny-bert-ce")),
        ..ModelSpec::named("tiny-bert-ce")
    };
    let registry = Registry::load(&[fixture], &shared().join("models")).unwrap();
    let planner = Planner::new(Arc::new(registry), Vec::new());

    let queries = read_jsonl("queries.jsonl.gz");
    let bucket = Filter::Equals { key: "bucket".into(), value: Value::Int(1) };
    let mut compared = 0;
    for (q, query) in queries.iter().take(12).enumerate() {
        let text = query["text"].as_str().unwrap().to_string();
        let vector = Some(seeded_vector(1_000_000 + q as u64));
        for (mode, fusion) in [
            (Mode::Bm25, Fusion::Rrf),
            (Mode::Dense, Fusion::Rrf),
            (Mode::Hybrid, Fusion::Rrf),
            (Mode::Hybrid, Fusion::Linear),
        ] {
            for filter in [None, Some(bucket.clone())] {
                for top_k in [10, 100] {
                    let query = Query {
                        text: text.clone(),
                        vector: vector.clone(),
                        top_k: Some(top_k),
                        filter: filter.clone(),
                        plan: Plan { mode: Some(mode), fusion, ..Plan::default() },
                        omit_text: false,
                    };
                    let one = answer(&planner, Arc::clone(&reference), query.clone()).await;
                    let many = answer(&planner, Arc::clone(&cluster), query).await;
                    assert_eq!(one.len(), top_k, "{text}: {mode:?}");
                    assert_eq!(
                        shape(&many),
                        shape(&one),
                        "query {q} {mode:?} {fusion:?} filter {} top {top_k}",
                        filter.is_some()
                    );
                    assert_eq!(many, one);
                    compared += 1;
                }
            }
        }
        // One rerank stage on the merged list, run once by the router's planner.
        let reranked = Query {
            text: text.clone(),
            vector: vector.clone(),
            top_k: Some(10),
            plan: Plan {
                mode: Some(Mode::Hybrid),
                rerank: Some(vec![StageSpec {
                    model: "tiny-bert-ce".into(),
                    keep: 10,
                    min_score: None,
                }]),
                candidates: Some(30),
                ..Plan::default()
            },
            ..Query::default()
        };
        let one = answer(&planner, Arc::clone(&reference), reranked.clone()).await;
        let many = answer(&planner, Arc::clone(&cluster), reranked).await;
        assert_eq!(one[0].stages.len(), 1);
        assert_eq!(shape(&many), shape(&one), "query {q} reranked");
    }
    assert_eq!(compared, 12 * 4 * 2 * 2);

    // One shard down: its partitions are served by their other replicas, answers unchanged.
    shards[1].server.abort();
    let probe = Query {
        text: queries[0]["text"].as_str().unwrap().to_string(),
        vector: Some(seeded_vector(1_000_000)),
        top_k: Some(10),
        plan: Plan { mode: Some(Mode::Hybrid), ..Plan::default() },
        ..Query::default()
    };
    let one = answer(&planner, Arc::clone(&reference), probe.clone()).await;
    for _ in 0..3 {
        let many = answer(&planner, Arc::clone(&cluster), probe.clone()).await;
        assert_eq!(shape(&many), shape(&one), "with shard-1 down");
    }
    for running in &shards {
        running.shard.close().unwrap();
    }
    standalone.close().unwrap();
}
