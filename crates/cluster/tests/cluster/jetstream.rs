//! The log and the shard applier against a real 3-server NATS JetStream cluster on loopback:
//! appends deduplicated by id, reads in order, exactly-once apply with duplicate and gap
//! detection, purged streams refused, and no acknowledged append lost or doubled when the
//! stream leader is killed.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use sieve_cluster::{
    Appended, Applied, Applier, ApplyError, Bounds, JetStreamLog, Log, LogOp, Partitioner,
    StreamSettings, append_retrying,
};
use sieve_storage::{CollectionConfig, Document, Store, StoreOptions};

use common::NatsCluster;

/// Connects once the cluster has elected its JetStream meta leader (bounded).
async fn connect(cluster: &NatsCluster, partitions: u32) -> JetStreamLog {
    let settings = StreamSettings { partitions, replicas: 3, ..StreamSettings::default() };
    JetStreamLog::connect_waiting(&cluster.urls(), &settings, Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("the JetStream cluster never became ready: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_are_ordered_durable_and_stored_once_per_id() {
    let cluster = NatsCluster::start(3);
    let log = connect(&cluster, 2).await;
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        let appended = log.append(0, id, Bytes::from(format!("payload {id}"))).await.unwrap();
        assert_eq!(appended, Appended { seq: i as u64 + 1, duplicate: false });
    }
    // A retried append (same id) stores nothing and names the first one's sequence.
    let again = log.append(0, "b", Bytes::from("payload b")).await.unwrap();
    assert_eq!(again, Appended { seq: 2, duplicate: true });
    assert_eq!(log.bounds(0).await.unwrap(), Bounds { first: 1, last: 3 });
    assert_eq!(log.bounds(1).await.unwrap(), Bounds { first: 1, last: 0 });

    let mut entries = log.read(0, 2).await.unwrap();
    for (seq, text) in [(2, "payload b"), (3, "payload c")] {
        let entry = entries.next().await.unwrap().unwrap();
        assert_eq!((entry.partition, entry.seq, &entry.payload[..]), (0, seq, text.as_bytes()));
    }
    // The reader waits at the end of the stream for what comes next.
    assert!(tokio::time::timeout(Duration::from_millis(500), entries.next()).await.is_err());
    log.append(0, "d", Bytes::from("payload d")).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), entries.next()).await.unwrap();
    assert_eq!(next.unwrap().unwrap().seq, 4);

    log.purge_before(0, 3).await.unwrap();
    assert_eq!(log.bounds(0).await.unwrap(), Bounds { first: 3, last: 4 });
}

fn doc(id: &str) -> Document {
    Document { id: id.into(), text: format!("the text of {id}"), ..Document::default() }
}

async fn write(log: &JetStreamLog, partition: u32, msg_id: &str, op: &LogOp) -> u64 {
    log.append(partition, msg_id, op.encode()).await.unwrap().seq
}

/// Waits (bounded) until the store has applied every message its partitions' streams hold.
async fn caught_up(log: &JetStreamLog, store: &Store, partitions: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for p in 0..partitions {
        let last = log.bounds(p).await.unwrap().last;
        while store.log_position(p).unwrap() < last {
            assert!(Instant::now() < deadline, "partition {p} never caught up to {last}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applier_applies_each_message_once_and_never_skips_a_missing_one() {
    let cluster = NatsCluster::start(3);
    let log = Arc::new(connect(&cluster, 2).await);
    let partitioner = Partitioner::new(2).unwrap();
    let create = LogOp::Create { collection: "papers".into(), config: CollectionConfig::default() };
    for p in 0..2 {
        write(&log, p, &format!("create/{p}"), &create).await;
    }
    for i in 0..20 {
        let id = format!("d{i}");
        let op =
            LogOp::Write { collection: "papers".into(), upserts: vec![doc(&id)], deletes: vec![] };
        write(&log, partitioner.partition_of(&id), &format!("w/{i}"), &op).await;
    }
    // A write to a collection this shard does not have moves the position and nothing else.
    let ghost =
        LogOp::Write { collection: "ghost".into(), upserts: vec![doc("g")], deletes: vec![] };
    write(&log, 0, "ghost", &ghost).await;

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
    let applier = Arc::new(Applier::new(Arc::clone(&log), Arc::clone(&store)));
    let follow = |p| tokio::spawn(Arc::clone(&applier).follow(p));
    let followers = [follow(0), follow(1)];
    caught_up(&log, &store, 2).await;
    let papers = store.collection("papers").unwrap();
    assert_eq!(papers.stats().documents, 20);
    assert_eq!(&*papers.search_bm25("d7", 10, None).unwrap()[0].id, "d7");
    assert!(store.collection("ghost").is_err());
    let sequence = papers.stats().sequence;

    // A redelivered message is recognised and skipped.
    let first = log.read(0, 1).await.unwrap().next().await.unwrap().unwrap();
    assert_eq!(applier.apply(&first).unwrap(), Applied::Duplicate);
    // Restarted followers resume after the position and apply nothing twice.
    for f in followers {
        f.abort();
    }
    let positions = store.log_positions().unwrap();
    let followers = [follow(0), follow(1)];
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.log_positions().unwrap(), positions);
    assert_eq!(papers.stats().sequence, sequence);
    for f in followers {
        f.abort();
    }

    // A message missing from the middle of the stream stops the replica instead of being
    // skipped: two more writes, the first removed from the stream before it is read.
    let w = |id: &str| LogOp::Write {
        collection: "papers".into(),
        upserts: vec![doc(id)],
        deletes: vec![],
    };
    let lost = write(&log, 0, "lost", &w("lost")).await;
    let after = write(&log, 0, "after", &w("after")).await;
    let client = async_nats::connect(cluster.urls()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    assert!(js.get_stream("SIEVE_P0").await.unwrap().delete_message(lost).await.unwrap());
    match Arc::clone(&applier).follow(0).await {
        Err(ApplyError::Lost { partition: 0, applied, missing, delivered }) => {
            assert_eq!((applied, missing, delivered), (lost - 1, lost, after));
        }
        other => panic!("expected the lost message to stop the applier, got {other:?}"),
    }
    assert!(papers.get("after").unwrap().is_none());

    // A replica whose position is behind a purged stream refuses to read and says why.
    let last = log.bounds(1).await.unwrap().last;
    log.purge_before(1, last).await.unwrap();
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = Arc::new(Store::open(fresh_dir.path(), StoreOptions::default()).unwrap());
    let fresh_applier = Arc::new(Applier::new(Arc::clone(&log), Arc::clone(&fresh)));
    match fresh_applier.follow(1).await {
        Err(e @ ApplyError::Trimmed { partition: 1, applied: 0, first }) => {
            assert_eq!(first, last);
            assert!(e.to_string().contains("bootstrapped from a partition snapshot"), "{e}");
        }
        other => panic!("expected a purged stream to be refused, got {other:?}"),
    }
    store.close().unwrap();
    fresh.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_stream_leader_loses_no_acked_append_and_stores_none_twice() {
    let mut cluster = NatsCluster::start(3);
    let log = Arc::new(connect(&cluster, 1).await);
    const APPENDS: usize = 200;
    let appender = {
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut longest_gap = Duration::ZERO;
            let mut last_ack = Instant::now();
            for i in 0..APPENDS {
                let id = format!("m{i}");
                // Bounded: an append that cannot be acknowledged in 30 s is a failure.
                let appended = append_retrying(
                    &*log,
                    0,
                    &id,
                    Bytes::from(id.clone()),
                    Duration::from_secs(30),
                )
                .await
                .unwrap_or_else(|e| panic!("append {id} never acknowledged: {e}"));
                longest_gap = longest_gap.max(last_ack.elapsed());
                last_ack = Instant::now();
                acked.push((id, appended.seq));
            }
            (acked, longest_gap)
        })
    };
    // Kill the stream leader with SIGKILL once appends are flowing.
    let client = async_nats::connect(cluster.urls()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.bounds(0).await.map(|b| b.last).unwrap_or(0) < 40 {
        assert!(Instant::now() < deadline, "appends never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let info = js.get_stream("SIEVE_P0").await.unwrap().get_info().await.unwrap();
    let leader = info.cluster.and_then(|c| c.leader).expect("the stream has a leader");
    let killed = cluster.index_of(&leader);
    cluster.kill(killed);
    let (acked, longest_gap) = appender.await.unwrap();
    eprintln!("killed leader {leader}; longest gap between acks {longest_gap:?}");
    cluster.restart(killed);

    // Every acknowledged id is in the stream exactly once, at the sequence its ack named.
    // (The stream may still be electing a leader for a moment after the restart.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let last = loop {
        match log.bounds(0).await {
            Ok(bounds) => break bounds.last,
            Err(e) => assert!(Instant::now() < deadline, "the stream never answered: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Reading needs a consumer, which the restarted cluster may not create for a moment yet.
    let mut entries = loop {
        match log.read(0, 1).await {
            Ok(entries) => break entries,
            Err(e) => assert!(Instant::now() < deadline, "the stream was never readable: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stored = Vec::new();
    while stored.len() < last as usize {
        let entry = tokio::time::timeout(Duration::from_secs(20), entries.next())
            .await
            .expect("the stream can be read to its end")
            .unwrap()
            .unwrap();
        stored.push((String::from_utf8(entry.payload.to_vec()).unwrap(), entry.seq));
    }
    assert_eq!(acked.len(), APPENDS);
    assert_eq!(
        stored, acked,
        "stream content equals the acknowledged appends, in order, once each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_creates_each_name_once_and_gives_every_incarnation_its_own_uid() {
    use sieve_cluster::{Catalog, CatalogError};
    let cluster = NatsCluster::start(3);
    let log = connect(&cluster, 1).await;
    let catalog = Catalog::open(&log, 3).await.unwrap();
    let config = CollectionConfig::default();
    let papers = catalog.create("papers", config.clone(), 1_700).await.unwrap();
    let notes = catalog.create("notes", config.clone(), 1_800).await.unwrap();
    assert!(notes.uid > papers.uid);
    // Two routers racing on a name: exactly one wins.
    let (a, b) = tokio::join!(
        catalog.create("race", config.clone(), 1),
        catalog.create("race", config.clone(), 2)
    );
    assert_eq!(
        [&a, &b]
            .iter()
            .filter(|r| matches!(r, Err(CatalogError::Exists(name)) if name == "race"))
            .count(),
        1,
        "{a:?} {b:?}"
    );
    let got = catalog.get("papers").await.unwrap().unwrap();
    assert_eq!((got.uid, got.created_ms, got.config), (papers.uid, 1_700, config));
    assert_eq!(catalog.get("missing").await.unwrap(), None);
    assert_eq!(catalog.names().await.unwrap(), ["notes", "papers", "race"]);
    // A second handle (another router) sees the same catalog.
    let other = Catalog::open(&log, 3).await.unwrap();
    assert_eq!(other.get("notes").await.unwrap().unwrap().uid, notes.uid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shard_status_bucket_lists_each_shard_once_with_its_last_record() {
    use sieve_cluster::{Roster, ShardRecord};
    let cluster = NatsCluster::start(3);
    let log = connect(&cluster, 1).await;
    let roster = Roster::open(&log, 3).await.unwrap();
    let record = |address: &str, partitions: Vec<u32>, behind: u64| ShardRecord {
        address: address.to_string(),
        partitions,
        behind,
        not_ready: if behind > 64 { "behind".to_string() } else { String::new() },
    };
    roster.announce("a", &record("http://h1:7801", vec![0, 1], 500)).await.unwrap();
    roster.announce("b", &record("http://h2:7801", vec![1], 0)).await.unwrap();
    // A renewal replaces the record (a restarted shard on a new address, caught up).
    roster.announce("a", &record("http://h3:7801", vec![0, 1], 0)).await.unwrap();
    // A second handle (a router) reads what the shards recorded.
    let router = Roster::open(&log, 3).await.unwrap();
    let records = router.records().await.unwrap();
    assert_eq!(
        records.into_iter().collect::<Vec<_>>(),
        [
            ("a".to_string(), record("http://h3:7801", vec![0, 1], 0)),
            ("b".to_string(), record("http://h2:7801", vec![1], 0))
        ]
    );
    // A shard that stops withdraws; the others stay.
    roster.withdraw("a").await.unwrap();
    assert_eq!(router.records().await.unwrap().into_keys().collect::<Vec<_>>(), ["b"]);
}
