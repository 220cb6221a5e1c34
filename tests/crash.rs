//! Crash safety: stream upserts, updates and deletes with vectors into the real server, `kill -9`
//! it at a random moment, restart it on the same data, and check that nothing acknowledged was
//! lost and that sled, BM25 and HNSW agree on every document.
//!
//! Each kill round, for every document ever sent:
//! - its state (missing, or which version) is the acknowledged one, or, if a batch touching it
//!   was in flight at the kill, one that batch would have produced;
//! - a live document is found by `Get` with that version's text, by BM25 on the version's unique
//!   token and by dense search on the version's vector (rank 1, through the HNSW graph: the
//!   exact-search threshold is 0), and its previous version's token no longer finds it;
//! - a deleted document is found by none of the three;
//! - the collection's document and vector counts equal the number of live documents.
//!
//! `SIEVE_CRASH_KILLS` sets the number of kills (default 3, as in CI);
//! `bench/reliability/crash.sh` runs 20.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestServer, dense_config};
use futures::StreamExt as _;
use rand::rngs::StdRng;
use rand::seq::IteratorRandom as _;
use rand::{Rng, SeedableRng};
use sieve_client::{Client, proto};

const DIM: usize = 16;
const COLLECTION: &str = "crash";

/// A document's state: `Some(version)` live, `None` deleted or never written.
type State = Option<u32>;

fn token(id: u64, version: u32) -> String {
    format!("tok{id}v{version}")
}

/// The vector of a version: deterministic, so the checker can recompute it.
fn vector(id: u64, version: u32) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(id << 20 | version as u64);
    (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn document(id: u64, version: u32) -> proto::Document {
    proto::Document {
        id: id.to_string(),
        title: format!("document {id}"),
        text: format!("crash safety check {}", token(id, version)),
        vector: vector(id, version),
        ..Default::default()
    }
}

/// What one batch does: upserts (id, version) then deletes.
#[derive(Clone, Default)]
struct Batch {
    upserts: Vec<(u64, u32)>,
    deletes: Vec<u64>,
}

/// The writer's record: the acknowledged state of every document, and the batches sent but
/// not acknowledged.
#[derive(Default)]
struct Ledger {
    acked: BTreeMap<u64, State>,
    in_flight: BTreeMap<u64, Batch>,
    acked_batches: u64,
}

impl Ledger {
    fn ack(&mut self, batch: u64, ack: &proto::IngestAck) {
        let sent = self.in_flight.remove(&batch).expect("an ack for a batch that was sent");
        assert!(ack.errors.is_empty(), "batch {batch} had errors: {:?}", ack.errors);
        assert_eq!(
            ack.accepted.len(),
            sent.upserts.len(),
            "every upsert of batch {batch} accepted"
        );
        for (id, version) in sent.upserts {
            self.acked.insert(id, Some(version));
        }
        for id in sent.deletes {
            self.acked.insert(id, None);
        }
        self.acked_batches += 1;
    }

    /// The states a document may be in after a crash.
    fn allowed(&self, id: u64) -> BTreeSet<State> {
        let mut allowed = BTreeSet::from([self.acked.get(&id).copied().flatten()]);
        for batch in self.in_flight.values() {
            for &(uid, version) in &batch.upserts {
                if uid == id {
                    allowed.insert(Some(version));
                }
            }
            if batch.deletes.contains(&id) {
                allowed.insert(None);
            }
        }
        allowed
    }
}

/// Streams batches until the server goes away; every ack is recorded in the ledger.
async fn write_until_killed(
    client: Client,
    ledger: Arc<Mutex<Ledger>>,
    next_id: Arc<Mutex<u64>>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (tx, rx) = tokio::sync::mpsc::channel::<proto::IngestRequest>(4);
    let Ok(mut acks) = client.ingest(tokio_stream::wrappers::ReceiverStream::new(rx)).await else {
        return;
    };
    let mut batch_no = 0u64;
    // Two batches in flight: the kill usually lands with one unacknowledged.
    let window = 2;
    loop {
        while ledger.lock().unwrap().in_flight.len() < window {
            let batch = {
                let ledger = ledger.lock().unwrap();
                let live: Vec<u64> =
                    ledger.acked.iter().filter(|(_, s)| s.is_some()).map(|(&id, _)| id).collect();
                let mut batch = Batch::default();
                let mut next = next_id.lock().unwrap();
                for _ in 0..20 {
                    batch.upserts.push((*next, 0));
                    *next += 1;
                }
                let touched: Vec<u64> = live.iter().copied().choose_multiple(&mut rng, 6);
                for (i, id) in touched.into_iter().enumerate() {
                    if i % 2 == 0 {
                        let version = ledger.acked[&id].unwrap() + 1 + rng.random_range(0..3);
                        batch.upserts.push((id, version));
                    } else {
                        batch.deletes.push(id);
                    }
                }
                batch
            };
            let request = proto::IngestRequest {
                collection: COLLECTION.into(),
                documents: batch.upserts.iter().map(|&(id, v)| document(id, v)).collect(),
                delete_ids: batch.deletes.iter().map(u64::to_string).collect(),
                ack: 0,
            };
            ledger.lock().unwrap().in_flight.insert(batch_no, batch);
            batch_no += 1;
            if tx.send(request).await.is_err() {
                return;
            }
        }
        match acks.next().await {
            Some(Ok(ack)) => ledger.lock().unwrap().ack(ack.batch, &ack),
            // The server was killed: the stream breaks.
            Some(Err(_)) | None => return,
        }
    }
}

/// Checks every document against the ledger after a restart; settles in-doubt ones to what the
/// server holds. Returns (documents checked, live documents).
async fn verify(client: &Client, ledger: &mut Ledger, round: usize) -> (usize, usize) {
    let ids: Vec<u64> = {
        let mut ids: BTreeSet<u64> = ledger.acked.keys().copied().collect();
        for batch in ledger.in_flight.values() {
            ids.extend(batch.upserts.iter().map(|&(id, _)| id));
        }
        ids.into_iter().collect()
    };
    let mut observed: BTreeMap<u64, State> = BTreeMap::new();
    for chunk in ids.chunks(1000) {
        let response = client
            .get(COLLECTION, chunk.iter().map(u64::to_string).collect(), false)
            .await
            .unwrap();
        for doc in response.documents {
            let version = doc
                .text
                .rsplit_once('v')
                .and_then(|(_, v)| v.parse::<u32>().ok())
                .expect("text ends with the version token");
            observed.insert(doc.id.parse().unwrap(), Some(version));
        }
        for id in response.missing {
            observed.insert(id.parse().unwrap(), None);
        }
    }
    let mut live = 0;
    for &id in &ids {
        let state = observed[&id];
        let allowed = ledger.allowed(id);
        assert!(
            allowed.contains(&state),
            "round {round}: document {id} is {state:?}, allowed {allowed:?} (acked {:?})",
            ledger.acked.get(&id)
        );
        let bm25 = |version: u32| {
            proto::SearchRequest::new(COLLECTION, token(id, version))
                .with_mode(proto::Mode::Bm25)
                .with_top_k(3)
        };
        let dense = |version: u32| {
            proto::SearchRequest::new(COLLECTION, "")
                .with_vector(vector(id, version))
                .with_mode(proto::Mode::Dense)
                .with_top_k(1)
        };
        let key = id.to_string();
        let ids_of = |r: &proto::SearchResponse| -> Vec<String> {
            r.hits().iter().map(|h| h.id.clone()).collect()
        };
        match state {
            Some(version) => {
                live += 1;
                let found = client.search(bm25(version)).await.unwrap();
                assert_eq!(
                    ids_of(&found),
                    std::slice::from_ref(&key),
                    "round {round}: BM25 finds {id} v{version}"
                );
                let found = client.search(dense(version)).await.unwrap();
                assert_eq!(
                    ids_of(&found),
                    std::slice::from_ref(&key),
                    "round {round}: dense finds {id} v{version}"
                );
                for old in allowed.iter().flatten().filter(|&&v| v != version) {
                    let stale = client.search(bm25(*old)).await.unwrap();
                    assert!(
                        !ids_of(&stale).contains(&key),
                        "round {round}: {id} v{old} was replaced"
                    );
                }
            }
            None => {
                for version in allowed.iter().flatten() {
                    let gone = client.search(bm25(*version)).await.unwrap();
                    assert!(
                        !ids_of(&gone).contains(&key),
                        "round {round}: deleted {id} found by BM25"
                    );
                    let gone = client.search(dense(*version)).await.unwrap();
                    assert!(
                        !ids_of(&gone).contains(&key),
                        "round {round}: deleted {id} found by dense"
                    );
                }
            }
        }
    }
    let stats = client.collection(COLLECTION).await.unwrap().stats.unwrap();
    assert_eq!(stats.documents as usize, live, "round {round}: sled's document count");
    assert_eq!(stats.vectors as usize, live, "round {round}: the vector count");
    // What the server holds is now the truth for the next round.
    ledger.acked = observed;
    ledger.in_flight.clear();
    (ids.len(), live)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_across_kills() {
    let kills: usize =
        std::env::var("SIEVE_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let seed: u64 =
        std::env::var("SIEVE_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    let dir = tempfile::tempdir().unwrap();
    // The graph is searched (no exact fallback) and dumped often, so kills land mid-dump too.
    let args = ["--exact-search-threshold", "0", "--graph-dump-every", "300"];
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ledger = Ledger::default();
    let next_id = Arc::new(Mutex::new(0u64));
    let mut server = TestServer::start(dir.path(), &args);
    server
        .client()
        .await
        .create_collection(COLLECTION, dense_config(DIM as u32, proto::Distance::Cosine))
        .await
        .unwrap();
    let started = Instant::now();
    let mut in_doubt = 0;
    for round in 1..=kills {
        let shared = Arc::new(Mutex::new(std::mem::take(&mut ledger)));
        let writer = tokio::spawn(write_until_killed(
            server.client().await,
            Arc::clone(&shared),
            Arc::clone(&next_id),
            seed + round as u64,
        ));
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        server.kill();
        writer.await.unwrap();
        ledger = Arc::try_unwrap(shared).ok().unwrap().into_inner().unwrap();
        let unacked = ledger.in_flight.len();
        in_doubt += unacked;
        server = TestServer::start(dir.path(), &args);
        let client = server.client().await;
        let (checked, live) = verify(&client, &mut ledger, round).await;
        println!(
            "kill {round}/{kills}: {checked} documents checked, {live} live, {unacked} batches in flight at the kill, all acked writes present"
        );
    }
    println!(
        "{kills} kills, 0 acknowledged writes lost, {in_doubt} in-flight batches settled, {} batches acked, {:.1} s",
        ledger.acked_batches,
        started.elapsed().as_secs_f64()
    );
}

/// Truncated or garbage index files are rebuilt from sled at start; a corrupt sled stops the
/// server with a message naming it, and the data directory is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_indexes_are_rebuilt_and_a_corrupt_sled_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--exact-search-threshold", "0"];
    let mut server = TestServer::start(&data, &args);
    let client = server.client().await;
    client
        .create_collection(COLLECTION, dense_config(DIM as u32, proto::Distance::Cosine))
        .await
        .unwrap();
    let docs: Vec<proto::Document> = (0..200).map(|id| document(id, 0)).collect();
    assert_eq!(client.upsert(COLLECTION, docs).await.unwrap().accepted.len(), 200);
    assert!(server.terminate().success());

    let collection_dir = data.join("collections/1");
    let mut damaged = 0;
    for entry in std::fs::read_dir(collection_dir.join("bm25")).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "term" || e == "idx") {
            let len = std::fs::metadata(&path).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
            damaged += 1;
        }
    }
    assert_eq!(damaged, 2, "one segment's term dictionary and postings truncated");
    std::fs::write(collection_dir.join("hnsw/graph.hnsw.data"), b"not a graph").unwrap();

    let mut server = TestServer::start(&data, &args);
    let client = server.client().await;
    for id in [0u64, 77, 199] {
        let bm25 = proto::SearchRequest::new(COLLECTION, token(id, 0)).with_mode(proto::Mode::Bm25);
        assert_eq!(client.search(bm25).await.unwrap().hits()[0].id, id.to_string());
        let dense = proto::SearchRequest::new(COLLECTION, "")
            .with_vector(vector(id, 0))
            .with_mode(proto::Mode::Dense)
            .with_top_k(1);
        assert_eq!(client.search(dense).await.unwrap().hits()[0].id, id.to_string());
    }
    assert!(server.terminate().success());

    // Garbage over the start of sled's file: sled opens empty, which must not pass for a new store.
    let db = data.join("sled/db");
    let mut bytes = std::fs::read(&db).unwrap();
    let garbage = bytes.len().min(8192);
    for (i, byte) in bytes[..garbage].iter_mut().enumerate() {
        *byte = (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0];
    }
    std::fs::write(&db, bytes).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sieve-server"))
        .args(["--listen", "127.0.0.1:0", "--log-level", "error", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the server must not start on a corrupt sled");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("the sled database at {}", data.join("sled").display())),
        "{stderr}"
    );
    assert!(stderr.contains("Refusing to start rather than serve part of the data"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
    assert!(collection_dir.join("bm25").is_dir(), "nothing was deleted");
}

/// A data directory that runs out of space: the batch that does not fit fails with
/// RESOURCE_EXHAUSTED naming the cause, later writes are refused the same way (sled may hold
/// part of the failed batch, and sled itself stops at its first failed write, so reads that need
/// the disk fail with the same status), and after a restart every acknowledged document is
/// there, searchable by BM25 and through the HNSW graph, and writes are taken again. The server
/// runs under `ulimit -f`: a file that would grow past the limit fails with EFBIG, as a full
/// disk does with ENOSPC (a real full or read-only filesystem needs privileges CI lacks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_keeps_every_acknowledged_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--exact-search-threshold", "0"];
    let log = dir.path().join("server.log");
    let mut server = TestServer::start_with_file_limit(&data, &args, 4 << 20, &log);
    let client = server.client().await;
    client
        .create_collection(COLLECTION, dense_config(DIM as u32, proto::Distance::Cosine))
        .await
        .unwrap();
    let filler = " filler".repeat(150);
    let batch = |n: u64| -> Vec<proto::Document> {
        (n * 100..(n + 1) * 100)
            .map(|id| proto::Document { text: document(id, 0).text + &filler, ..document(id, 0) })
            .collect()
    };
    let out_of_space = |status: &tonic::Status| {
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert!(
            status.message().starts_with("the data directory is out of space (")
                && status.message().contains("File too large")
                && status.message().ends_with(
                    "writes are refused until the server restarts with free space, and nothing \
                     acknowledged is lost (a batch that failed was not acknowledged)"
                ),
            "{}",
            status.message()
        );
    };
    let mut acked = 0u64;
    let failure = loop {
        assert!(acked < 400, "4 MiB per file never filled up after {acked} batches");
        match client.upsert(COLLECTION, batch(acked)).await {
            Ok(ack) => {
                assert_eq!(ack.accepted.len(), 100);
                acked += 1;
            }
            Err(error) => break common::status_of::<()>(Err(error)),
        }
    };
    assert!(acked >= 5, "only {acked} batches fitted in 4 MiB");
    out_of_space(&failure);
    let again = common::status_of(client.upsert(COLLECTION, batch(acked)).await);
    out_of_space(&again);
    assert!(
        again.message().contains("takes no writes since a storage failure"),
        "{}",
        again.message()
    );
    let ids: Vec<String> = (0..acked * 100).map(|id| id.to_string()).collect();
    match client.get(COLLECTION, ids.clone(), false).await {
        Ok(found) => assert_eq!(found.documents.len(), ids.len(), "{:?}", found.missing),
        Err(error) => out_of_space(&common::status_of::<()>(Err(error))),
    }
    assert_eq!(server.health().await, common::SERVING);
    server.kill();

    let server = TestServer::start(&data, &args);
    let client = server.client().await;
    let found = client.get(COLLECTION, ids.clone(), false).await.unwrap();
    assert_eq!(
        found.documents.len(),
        ids.len(),
        "acknowledged documents lost: {:?}",
        found.missing
    );
    for id in [0, acked * 50, acked * 100 - 1] {
        let bm25 = proto::SearchRequest::new(COLLECTION, token(id, 0))
            .with_mode(proto::Mode::Bm25)
            .with_top_k(3);
        let hits = client.search(bm25).await.unwrap();
        assert_eq!(hits.hits()[0].id, id.to_string(), "BM25 finds {id}");
        let dense = proto::SearchRequest::new(COLLECTION, "")
            .with_vector(vector(id, 0))
            .with_mode(proto::Mode::Dense)
            .with_top_k(1);
        let hits = client.search(dense).await.unwrap();
        assert_eq!(hits.hits()[0].id, id.to_string(), "dense finds {id}");
    }
    // The refused batch was never acknowledged: it is either wholly there or wholly absent.
    let stats = client.collection(COLLECTION).await.unwrap().stats.unwrap();
    assert!(
        [acked * 100, (acked + 1) * 100].contains(&stats.documents)
            && stats.vectors == stats.documents,
        "{stats:?} after {acked} acknowledged batches"
    );
    let ack = client.upsert(COLLECTION, batch(acked + 1)).await.unwrap();
    assert_eq!(ack.accepted.len(), 100, "writes are taken again");
    println!(
        "{acked} batches of 100 fitted in 4 MiB files, the next was refused: {}",
        failure.message()
    );
}
