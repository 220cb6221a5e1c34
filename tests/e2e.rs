//! End to end through the real `sieve-server` binary: stream 2,000 documents with vectors,
//! search them every way, restart, and stop it mid-ingest.

use crate::common;

use std::time::Duration;

use common::{SERVING, TestServer, dense_config};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sieve_client::{Client, proto};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const DIM: usize = 32;
const DOCS: usize = 2000;
const BATCH: usize = 250;

fn id(i: usize) -> String {
    format!("doc-{i:05}")
}

/// Document `i` holds the unique word `zq{i}w`, shared filler words, a bucket (i % 100) and a
/// random vector.
fn corpus(n: usize, seed: u64) -> Vec<proto::Document> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| proto::Document {
            id: id(i),
            title: format!("Document {i}"),
            text: format!("common filler about retrieval systems zq{i}w"),
            metadata: [
                ("bucket".to_string(), proto::Value::from((i % 100) as i64)),
                ("even".to_string(), proto::Value::from(i.is_multiple_of(2))),
            ]
            .into(),
            vector: (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect(),
        })
        .collect()
}

fn bucket(hit: &proto::Hit) -> i64 {
    match hit.metadata["bucket"].kind {
        Some(proto::value::Kind::IntValue(n)) => n,
        ref other => panic!("bucket is {other:?}"),
    }
}

async fn ingest_all(client: &Client, collection: &str, docs: &[proto::Document]) {
    let batches: Vec<proto::IngestRequest> = docs
        .chunks(BATCH)
        .map(|chunk| proto::IngestRequest {
            collection: collection.to_string(),
            documents: chunk.to_vec(),
            delete_ids: vec![],
            ack: 0,
        })
        .collect();
    let expected: Vec<Vec<String>> =
        docs.chunks(BATCH).map(|c| c.iter().map(|d| d.id.clone()).collect()).collect();
    let mut acks = client.ingest(futures::stream::iter(batches)).await.unwrap();
    let mut batch = 0;
    while let Some(ack) = acks.message().await.unwrap() {
        assert_eq!(ack.batch, batch as u64);
        assert_eq!(ack.accepted, expected[batch], "batch {batch} accepted every id, in order");
        assert!(ack.errors.is_empty(), "{:?}", ack.errors);
        assert_eq!(
            ack.sequence,
            ((batch + 1) * BATCH) as u64,
            "durable sequence after batch {batch}"
        );
        batch += 1;
    }
    assert_eq!(batch, DOCS / BATCH, "one ack per batch");
}

fn dense_search(collection: &str, vector: &[f32], top_k: u32) -> proto::SearchRequest {
    proto::SearchRequest::new(collection, "")
        .with_vector(vector.to_vec())
        .with_top_k(top_k)
        .with_mode(proto::Mode::Dense)
}

/// Answers to a fixed set of queries: ids with scores and per-retriever ranks.
async fn answers(
    client: &Client,
    docs: &[proto::Document],
) -> Vec<Vec<(String, f32, Option<u32>, Option<u32>)>> {
    let mut requests = vec![
        proto::SearchRequest::new("cos", "zq17w retrieval").with_top_k(20),
        proto::SearchRequest::new("euclid", "zq1999w")
            .with_vector(docs[3].vector.clone())
            .with_top_k(20),
    ];
    for i in [0, 640, 1333] {
        requests.push(dense_search("cos", &docs[i].vector, 10));
        requests.push(dense_search("euclid", &docs[i].vector, 10));
    }
    ranked(client, requests).await
}

/// Each request's hits as (id, score, BM25 rank, dense rank).
async fn ranked(
    client: &Client,
    requests: Vec<proto::SearchRequest>,
) -> Vec<Vec<(String, f32, Option<u32>, Option<u32>)>> {
    let mut out = Vec::new();
    for request in requests {
        let response = client.search(request).await.unwrap();
        out.push(
            response
                .hits()
                .iter()
                .map(|h| (h.id.clone(), h.score, h.bm25.map(|b| b.rank), h.dense.map(|d| d.rank)))
                .collect(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_search_every_way_then_restart() {
    let dir = tempfile::tempdir().unwrap();
    // A low exact-search threshold sends 2,000 vectors through the HNSW graph.
    let args = ["--exact-search-threshold", "256"];
    let mut server = TestServer::start(dir.path(), &args);
    let client = server.client().await;
    client
        .create_collection("cos", dense_config(DIM as u32, proto::Distance::Cosine))
        .await
        .unwrap();
    client
        .create_collection("euclid", dense_config(DIM as u32, proto::Distance::L2))
        .await
        .unwrap();
    let docs = corpus(DOCS, 42);
    ingest_all(&client, "cos", &docs).await;
    ingest_all(&client, "euclid", &docs).await;
    let stats = client.collection("cos").await.unwrap().stats.unwrap();
    assert_eq!(
        (stats.documents, stats.vectors, stats.tombstones, stats.sequence),
        (2000, 2000, 0, 2000)
    );

    // BM25: the unique word finds its document first.
    for i in (0..DOCS).step_by(97) {
        let response = client
            .search(proto::SearchRequest::new("cos", format!("zq{i}w")).with_top_k(3))
            .await
            .unwrap();
        let top = &response.hits()[0];
        assert_eq!(top.id, id(i));
        assert_eq!(top.bm25.unwrap().rank, 1);
        assert_eq!(top.dense, None);
        assert_eq!(top.text, docs[i].text);
        assert_eq!(response.done.as_ref().unwrap().mode, proto::Mode::Bm25 as i32);
    }

    // Dense: a document's own vector finds it first, for cosine and L2.
    for (collection, own_score) in [("cos", 1.0), ("euclid", 0.0)] {
        for i in (0..DOCS).step_by(41) {
            let response =
                client.search(dense_search(collection, &docs[i].vector, 5)).await.unwrap();
            let top = &response.hits()[0];
            assert_eq!(top.id, id(i), "{collection}: own vector of {}", id(i));
            let dense = top.dense.unwrap();
            assert_eq!(dense.rank, 1);
            assert!((dense.score - own_score).abs() < 1e-4, "{collection}: score {}", dense.score);
            assert_eq!(response.hits().len(), 5);
        }
    }

    // Hybrid: one document found by its word, another by its vector, both with their ranks.
    let request = proto::SearchRequest::new("cos", "zq7w")
        .with_vector(docs[1500].vector.clone())
        .with_top_k(10);
    let response = client.search(request).await.unwrap();
    let done = response.done.clone().unwrap();
    assert_eq!(done.mode, proto::Mode::Hybrid as i32);
    assert_eq!((done.bm25_candidates, done.dense_candidates, done.returned), (1, 100, 10));
    let phases: Vec<&str> = done.timings.iter().map(|t| t.phase.as_str()).collect();
    assert_eq!(phases, ["embed", "bm25", "dense", "fusion", "fetch", "rerank", "total"]);
    let by_word = response.hits().iter().find(|h| h.id == id(7)).expect("BM25 hit is fused in");
    assert_eq!(by_word.bm25.unwrap().rank, 1);
    let by_vector =
        response.hits().iter().find(|h| h.id == id(1500)).expect("dense hit is fused in");
    assert_eq!(by_vector.dense.unwrap().rank, 1);
    assert_eq!(by_vector.bm25, None);
    assert!(
        (by_vector.score - 1.0 / 61.0).abs() < 1e-6,
        "RRF score of a dense-only rank 1: {}",
        by_vector.score
    );

    // Filters hold in both retrievers and still fill top_k (bucket 37 is 1 % of the corpus).
    let filter = proto::Filter::equals("bucket", 37_i64);
    let bm25 = client
        .search(
            proto::SearchRequest::new("cos", "retrieval")
                .with_filter(filter.clone())
                .with_top_k(10),
        )
        .await
        .unwrap();
    assert_eq!(bm25.hits().len(), 10);
    assert!(bm25.hits().iter().all(|h| bucket(h) == 37));
    let dense = client
        .search(dense_search("euclid", &docs[5].vector, 10).with_filter(filter))
        .await
        .unwrap();
    assert_eq!(dense.hits().len(), 10);
    assert!(dense.hits().iter().all(|h| bucket(h) == 37 && h.dense.is_some()));

    // Get and Delete by id.
    let got = client.get("cos", vec![id(12), "missing".into()], true).await.unwrap();
    assert_eq!(got.documents.len(), 1);
    assert_eq!(got.documents[0], docs[12]);
    assert_eq!(got.missing, ["missing"]);
    let deleted = client.delete("euclid", vec![id(1999), "missing".into()]).await.unwrap();
    assert_eq!(
        (deleted.deleted.clone(), deleted.missing.clone(), deleted.sequence),
        (vec![id(1999)], vec!["missing".to_string()], 2001)
    );
    let gone = client.search(dense_search("euclid", &docs[1999].vector, 1)).await.unwrap();
    assert_ne!(gone.hits()[0].id, id(1999));

    let before = answers(&client, &docs).await;
    assert!(server.terminate().success(), "SIGTERM exits cleanly");

    let server = TestServer::start(dir.path(), &args);
    let client = server.client().await;
    assert_eq!(answers(&client, &docs).await, before, "a restarted server answers identically");
    assert_eq!(client.collection("euclid").await.unwrap().stats.unwrap().documents, 1999);
    assert_eq!(server.health().await, SERVING);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_ingest_loses_no_acknowledged_document() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    client.create_collection("c", dense_config(DIM as u32, proto::Distance::Cosine)).await.unwrap();

    // An endless producer: the server, not the client, ends this stream.
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(7);
        for batch in 0.. {
            let documents = (0..50)
                .map(|j| proto::Document {
                    id: format!("b{batch}-{j}"),
                    text: format!("batch{batch} item{j}"),
                    vector: (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect(),
                    ..Default::default()
                })
                .collect();
            let request = proto::IngestRequest {
                collection: "c".into(),
                documents,
                delete_ids: vec![],
                ack: 0,
            };
            if tx.send(request).await.is_err() {
                return;
            }
        }
    });
    let mut acks = client.ingest(ReceiverStream::new(rx)).await.unwrap();
    let mut acked = Vec::new();
    let mut ended_by = None;
    while let Some(ack) = acks.next().await {
        match ack {
            Ok(ack) => {
                assert!(ack.errors.is_empty());
                acked.extend(ack.accepted);
                if acked.len() == 250 {
                    let pid = server.pid().to_string();
                    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
                }
            }
            Err(status) => {
                ended_by = Some(status);
                break;
            }
        }
    }
    let status = ended_by.expect("the server ends the stream");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("shutting down"), "{}", status.message());
    assert!(server.wait(Duration::from_secs(60)).success(), "clean exit after SIGTERM");
    assert!(acked.len() >= 250);

    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let got = client.get("c", acked.clone(), false).await.unwrap();
    assert!(got.missing.is_empty(), "acknowledged but lost: {:?}", got.missing);
    assert_eq!(got.documents.len(), acked.len());
    let stats = client.collection("c").await.unwrap().stats.unwrap();
    assert!(stats.documents >= acked.len() as u64);
    assert_eq!(stats.documents, stats.vectors);
    let last = acked.last().unwrap();
    let (batch, item) = last.trim_start_matches('b').split_once('-').unwrap();
    let response = client
        .search(proto::SearchRequest::new("c", format!("batch{batch} item{item}")))
        .await
        .unwrap();
    assert_eq!(&response.hits()[0].id, last, "the last acknowledged document is searchable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_stream_answers_in_order_and_survives_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    client.create_collection("c", dense_config(DIM as u32, proto::Distance::Dot)).await.unwrap();
    let docs = corpus(300, 3);
    let ack = client.upsert("c", docs.clone()).await.unwrap();
    assert_eq!(ack.accepted.len(), 300);

    let mut requests: Vec<proto::SearchRequest> = (0..12)
        .map(|i| proto::SearchRequest::new("c", format!("zq{}w", i * 20)).with_top_k(1))
        .collect();
    requests[5] = proto::SearchRequest::new("c", "zq5w").with_top_k(5000);
    let results: Vec<proto::SearchResult> = client
        .search_stream(futures::stream::iter(requests))
        .await
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(results.len(), 12);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result.index, i as u64);
        match result.outcome.as_ref().unwrap() {
            proto::search_result::Outcome::Response(response) => {
                assert_ne!(i, 5);
                assert_eq!(response.hits()[0].id, id(i * 20));
            }
            proto::search_result::Outcome::Error(error) => {
                assert_eq!(i, 5);
                assert_eq!(error.code, tonic::Code::InvalidArgument as u32);
                assert_eq!(error.message, "top_k: 5000 exceeds the limit of 1000 (max_top_k)");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_info_answer() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &["--max-top-k", "77"]);
    assert_eq!(server.health().await, SERVING);

    let channel = tonic::transport::Channel::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "sieve.v1.Admin",
            "sieve.v1.Collections",
            "sieve.v1.Documents",
            "sieve.v1.Info",
            "sieve.v1.Rerank",
            "sieve.v1.Search",
        ]
    );

    let info = server.client().await.info().await.unwrap();
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.collections, 0);
    let limits = info.limits.unwrap();
    assert_eq!(limits.max_top_k, 77, "limits come from the configuration");
    assert_eq!(
        (limits.max_concurrent_searches, limits.max_ingest_streams, limits.request_timeout_secs),
        (64, 16, 300)
    );
    assert_eq!((info.api_keys_required, info.tls), (false, false));
}

/// Hybrid answers of a collection as (id, score, BM25 rank, dense rank) per query.
async fn hybrid_answers(
    client: &Client,
    collection: &str,
    docs: &[proto::Document],
) -> Vec<Vec<(String, f32, Option<u32>, Option<u32>)>> {
    // One unique word: BM25 ties (every document shares the filler words) are ordered by the
    // index's segment layout, which a restore rebuilds differently.
    let requests = [0, 7, 333, 1200]
        .map(|i| {
            proto::SearchRequest::new(collection, format!("zq{i}w"))
                .with_vector(docs[i].vector.clone())
                .with_top_k(20)
        })
        .to_vec();
    ranked(client, requests).await
}

/// A snapshot taken while a client streams batches in holds exactly the batches acknowledged
/// up to its sequence; restored into a new collection it answers searches exactly as a
/// collection built from those documents alone; list, delete and bad names behave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_under_concurrent_ingest_restores_that_point_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    let client = server.client().await;
    client
        .create_collection("live", dense_config(DIM as u32, proto::Distance::Cosine))
        .await
        .unwrap();
    let docs = corpus(DOCS, 21);
    let batch = |range: std::ops::Range<usize>| proto::IngestRequest {
        collection: "live".to_string(),
        documents: docs[range].to_vec(),
        delete_ids: vec![],
        ack: 0,
    };
    // One ingest stream stays open throughout: 1,000 documents are acknowledged before the
    // snapshot, 500 more are sent while it is taken, and the last 500 only after it returned,
    // so the snapshot lands between batches 1,000 and 1,500 and the live collection moves on.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut acks = client.ingest(ReceiverStream::new(rx)).await.unwrap();
    let mut acked = Vec::new();
    let (mut pending, mut snapshot) = (None, None);
    for start in (0..DOCS).step_by(100) {
        if start == 1000 {
            let client = client.clone();
            pending = Some(tokio::spawn(async move { client.create_snapshot("live").await }));
        }
        if start == 1500 {
            snapshot = Some(pending.take().unwrap().await.unwrap().unwrap());
        }
        tx.send(batch(start..start + 100)).await.unwrap();
        let ack = acks.message().await.unwrap().unwrap();
        assert!(ack.errors.is_empty(), "{:?}", ack.errors);
        acked.push(ack.sequence);
    }
    drop(tx);
    assert!(acks.message().await.unwrap().is_none());
    assert_eq!(acked, (1..=20).map(|b| b * 100).collect::<Vec<u64>>());
    let snapshot = snapshot.unwrap();
    let sequence = snapshot.sequence as usize;
    assert!(
        (1000..=1500).contains(&sequence) && sequence.is_multiple_of(100),
        "the snapshot is at a batch boundary between the acks before and after it: {sequence}"
    );
    assert_eq!(snapshot.documents as usize, sequence);
    assert_eq!(snapshot.collection, "live");
    assert_eq!(snapshot.name, format!("live-{sequence}-{}.snapshot", snapshot.created_unix_ms));
    assert!(snapshot.size_bytes > 0);
    assert_eq!(snapshot.config.as_ref().unwrap().dense.as_ref().unwrap().dimension, DIM as u32);
    println!("snapshot at sequence {sequence} of {DOCS} while ingesting");

    let restored = client.restore_snapshot(&snapshot.name, "restored").await.unwrap();
    let stats = restored.stats.unwrap();
    assert_eq!((stats.documents, stats.vectors), (sequence as u64, sequence as u64));
    client
        .create_collection("reference", dense_config(DIM as u32, proto::Distance::Cosine))
        .await
        .unwrap();
    ingest_batches(&client, "reference", &docs[..sequence]).await;
    let reference = hybrid_answers(&client, "reference", &docs).await;
    assert_eq!(hybrid_answers(&client, "restored", &docs).await, reference);
    assert_ne!(hybrid_answers(&client, "live", &docs).await, reference, "live moved on");
    let ids: Vec<String> = docs.iter().map(|d| d.id.clone()).collect();
    let got = client.get("restored", ids, true).await.unwrap();
    assert_eq!(got.documents, docs[..sequence].to_vec(), "text, metadata and vectors intact");

    let listed = client.list_snapshots("live").await.unwrap();
    assert_eq!(listed, vec![snapshot.clone()]);
    assert!(client.list_snapshots("reference").await.unwrap().is_empty());
    let exists = common::status_of(client.restore_snapshot(&snapshot.name, "restored").await);
    assert_eq!(exists.code(), tonic::Code::AlreadyExists, "{exists:?}");
    let traversal = common::status_of(client.restore_snapshot("../sled/db", "x").await);
    assert_eq!(traversal.code(), tonic::Code::InvalidArgument, "{traversal:?}");
    assert!(traversal.message().starts_with("snapshot: '../sled/db' is not a snapshot name"));
    client.delete_snapshot(&snapshot.name).await.unwrap();
    let gone = common::status_of(client.restore_snapshot(&snapshot.name, "again").await);
    assert_eq!(gone.code(), tonic::Code::NotFound, "{gone:?}");
    assert_eq!(gone.message(), format!("snapshot '{}' not found", snapshot.name));
    assert!(client.list_snapshots("").await.unwrap().is_empty());
    let missing = common::status_of(client.create_snapshot("nope").await);
    assert_eq!(missing.code(), tonic::Code::NotFound);
}

/// Streams documents in batches of 100 and checks every batch was acknowledged whole.
async fn ingest_batches(client: &Client, collection: &str, docs: &[proto::Document]) {
    let batches: Vec<proto::IngestRequest> = docs
        .chunks(100)
        .map(|chunk| proto::IngestRequest {
            collection: collection.to_string(),
            documents: chunk.to_vec(),
            delete_ids: vec![],
            ack: 0,
        })
        .collect();
    let expected = batches.len();
    let mut acks = client.ingest(futures::stream::iter(batches)).await.unwrap();
    let mut received = 0;
    while let Some(ack) = acks.message().await.unwrap() {
        assert!(ack.errors.is_empty(), "{:?}", ack.errors);
        received += 1;
    }
    assert_eq!(received, expected);
}
