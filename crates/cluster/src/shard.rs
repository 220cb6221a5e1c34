//! A shard: one store per owned partition (its own sled, BM25 index and graph, so statistics,
//! snapshots and moves are per partition), each fed by its stream's applier, answering the
//! router's stats, retrieval and fetch calls over any subset of its partitions.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use sieve_planner::Ranked;
use sieve_storage::{Bm25Stats, Collection, Document, Filter, Store, StoreOptions};
use tokio::sync::watch;

use xxhash_rust::xxh3::Xxh3;

use crate::apply::{Applier, ApplyError};
use crate::log::Log;
use crate::message::encode_value;
use crate::partition::{Partition, Partitioner};

/// Why a shard call failed.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The caller asked for a partition this shard does not hold.
    #[error("shard '{shard}' does not hold partition {partition} (it holds {held:?})")]
    NotOwned {
        /// This shard.
        shard: String,
        /// The partition asked for.
        partition: Partition,
        /// The partitions it holds.
        held: Vec<Partition>,
    },
    /// The request is malformed; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// A partition has not applied what a read asked for within its wait.
    #[error(
        "shard '{shard}' partition {partition} has applied up to {applied}, not yet {required} \
         (waited {waited_ms} ms)"
    )]
    Behind {
        /// This shard.
        shard: String,
        /// The partition.
        partition: Partition,
        /// Its position.
        applied: u64,
        /// The position asked for.
        required: u64,
        /// How long it waited.
        waited_ms: u64,
    },
    /// A partition's store failed.
    #[error(transparent)]
    Storage(#[from] sieve_storage::Error),
}

/// Pauses between attempts to follow a stream whose log is unreachable.
const FOLLOW_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(100);
const FOLLOW_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// One owned partition.
struct Replica {
    store: Arc<Store>,
    /// Why its applier stopped, once it has.
    stopped: Arc<Mutex<Option<String>>>,
    /// Its applied position as it moves.
    progress: watch::Receiver<u64>,
    follower: tokio::task::JoinHandle<()>,
}

/// A partition's state as the shard reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionState {
    /// The partition.
    pub partition: Partition,
    /// The last stream message it applied.
    pub applied: u64,
    /// Why its applier stopped (it serves what it has, but falls behind); `None` while it
    /// follows its stream.
    pub stopped: Option<String>,
    /// What it holds, when asked for.
    pub contents: Option<Contents>,
}

/// What a partition holds, summed over its collections: replicas that applied the same
/// messages hold the same.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Contents {
    /// Live documents in sled.
    pub sled: u64,
    /// Documents visible in the BM25 indexes.
    pub bm25: u64,
    /// Live points in the graphs.
    pub graph_live: u64,
    /// XXH3-64 over each collection's name and its documents in id order.
    pub digest: u64,
}

fn contents(store: &Store) -> Result<Contents, ShardError> {
    let mut hash = Xxh3::new();
    let mut total = Contents::default();
    let mut collections = store.collections();
    collections.sort_by(|a, b| a.name().cmp(b.name()));
    for collection in collections {
        hash.update(collection.name().as_bytes());
        collection.read_consistent(|_, _, documents| {
            for document in documents {
                hash.update(&encode_value(&document?));
            }
            Ok(())
        })?;
        let counts = collection.index_counts();
        total.sled += counts.sled;
        total.bm25 += counts.bm25;
        total.graph_live += counts.graph_live;
    }
    total.digest = hash.digest();
    Ok(total)
}

/// What one retrieval call asks for.
#[derive(Clone, Debug, Default)]
pub struct Retrieval {
    /// Collection name.
    pub collection: String,
    /// The partitions to search (each must be held here).
    pub partitions: Vec<Partition>,
    /// Query text for BM25.
    pub text: String,
    /// Query vector for dense retrieval.
    pub vector: Option<Vec<f32>>,
    /// BM25 list length (0: none).
    pub bm25_k: usize,
    /// Dense list length (0: none).
    pub dense_k: usize,
    /// Metadata filter.
    pub filter: Option<Filter>,
    /// Cluster-wide BM25 statistics (required when `bm25_k > 0`).
    pub stats: Option<Bm25Stats>,
}

/// A cluster shard.
pub struct Shard {
    id: String,
    partitioner: Partitioner,
    replicas: BTreeMap<Partition, Replica>,
}

impl Shard {
    /// Opens (or creates) the store of each owned partition under `dir/p{partition}` and starts
    /// following each partition's stream from its store's position. Call inside a tokio runtime.
    pub fn open<L: Log>(
        id: &str,
        dir: &Path,
        partitioner: Partitioner,
        owned: &[Partition],
        log: Arc<L>,
        options: StoreOptions,
    ) -> Result<Shard, ShardError> {
        let mut replicas = BTreeMap::new();
        for &partition in owned {
            if partition >= partitioner.count() {
                return Err(ShardError::InvalidArgument(format!(
                    "partition {partition}: the cluster has {} partitions",
                    partitioner.count()
                )));
            }
            let store = Arc::new(Store::open(&dir.join(format!("p{partition}")), options.clone())?);
            let stopped = Arc::new(Mutex::new(None));
            let applier = Arc::new(Applier::new(Arc::clone(&log), Arc::clone(&store)));
            let progress = applier.progress();
            let follower = {
                let stopped = Arc::clone(&stopped);
                let shard = id.to_string();
                tokio::spawn(async move {
                    let mut pause = FOLLOW_RETRY_FIRST;
                    loop {
                        match Arc::clone(&applier).follow(partition).await {
                            // The log is unreachable (no quorum, a server restarting): read
                            // again from the position once it is back.
                            Err(ApplyError::Log(e)) => {
                                tracing::warn!(shard, partition, error = %e, "log unreachable; following again shortly");
                                tokio::time::sleep(pause).await;
                                pause = (pause * 2).min(FOLLOW_RETRY_MAX);
                            }
                            Err(e) => {
                                tracing::error!(shard, partition, error = %e, "partition stopped applying");
                                *stopped.lock() = Some(e.to_string());
                                return;
                            }
                            Ok(()) => return,
                        }
                    }
                })
            };
            replicas.insert(partition, Replica { store, stopped, progress, follower });
        }
        Ok(Shard { id: id.to_string(), partitioner, replicas })
    }

    /// This shard's name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The cluster's partitioner.
    pub fn partitioner(&self) -> Partitioner {
        self.partitioner
    }

    /// Every held partition's state; with `detail`, what each holds (reads every document).
    pub fn status(&self, detail: bool) -> Result<Vec<PartitionState>, ShardError> {
        self.replicas
            .iter()
            .map(|(&partition, replica)| {
                Ok(PartitionState {
                    partition,
                    applied: replica.store.log_position(partition)?,
                    stopped: replica.stopped.lock().clone(),
                    contents: if detail { Some(contents(&replica.store)?) } else { None },
                })
            })
            .collect()
    }

    /// Waits until each `(partition, seq)` is applied here, at most `within` in all; `Behind`
    /// names the first partition that did not get there.
    pub async fn wait_applied(
        &self,
        positions: &[(Partition, u64)],
        within: std::time::Duration,
    ) -> Result<(), ShardError> {
        let started = tokio::time::Instant::now();
        for &(partition, required) in positions {
            let replica = self.replicas.get(&partition).ok_or_else(|| self.not_owned(partition))?;
            // The applier's published position, not the store's: sled records a position
            // before the indexes have taken the write in, and a read must find it there.
            let mut progress = replica.progress.clone();
            let reached =
                tokio::time::timeout_at(started + within, progress.wait_for(|&at| at >= required))
                    .await;
            if !matches!(reached, Ok(Ok(_))) {
                return Err(ShardError::Behind {
                    shard: self.id.clone(),
                    partition,
                    applied: *replica.progress.borrow(),
                    required,
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
        }
        Ok(())
    }

    /// A collection's live documents, vectors and graph tombstones over the requested
    /// partitions together.
    pub fn counts(
        &self,
        collection: &str,
        partitions: &[Partition],
    ) -> Result<(u64, u64, u64), ShardError> {
        let mut total = (0, 0, 0);
        for part in self.parts(collection, partitions)? {
            let stats = part.stats();
            total.0 += stats.documents;
            total.1 += stats.vectors;
            total.2 += stats.tombstones;
        }
        Ok(total)
    }

    fn not_owned(&self, partition: Partition) -> ShardError {
        ShardError::NotOwned {
            shard: self.id.clone(),
            partition,
            held: self.replicas.keys().copied().collect(),
        }
    }

    /// The store of a held partition.
    pub fn store(&self, partition: Partition) -> Result<&Arc<Store>, ShardError> {
        self.replicas.get(&partition).map(|r| &r.store).ok_or_else(|| self.not_owned(partition))
    }

    /// The collection in each requested partition; a partition that has not applied the
    /// collection's creation holds none of its documents and is left out.
    fn parts(
        &self,
        collection: &str,
        partitions: &[Partition],
    ) -> Result<Vec<Arc<Collection>>, ShardError> {
        let mut parts = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            match self.store(partition)?.collection(collection) {
                Ok(part) => parts.push(part),
                Err(sieve_storage::Error::CollectionNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(parts)
    }

    /// BM25 statistics of `query` over the requested partitions together.
    pub fn stats(
        &self,
        collection: &str,
        partitions: &[Partition],
        query: &str,
    ) -> Result<Bm25Stats, ShardError> {
        let mut total: Option<Bm25Stats> = None;
        for part in self.parts(collection, partitions)? {
            let stats = part.bm25_stats(query)?;
            match &mut total {
                None => total = Some(stats),
                Some(total) => total.add(&stats).map_err(ShardError::InvalidArgument)?,
            }
        }
        match total {
            Some(total) => Ok(total),
            // No part holds the collection yet: zero counts for each of the query's terms.
            None => Ok(Bm25Stats::default()),
        }
    }

    /// The BM25 and dense lists over the requested partitions together: each partition's top
    /// `k`, merged by (score, id).
    pub fn retrieve(&self, request: &Retrieval) -> Result<(Ranked, Ranked), ShardError> {
        let parts = self.parts(&request.collection, &request.partitions)?;
        let filter = request.filter.as_ref();
        let mut bm25 = Vec::new();
        if request.bm25_k > 0 {
            let stats = request.stats.as_ref().ok_or_else(|| {
                ShardError::InvalidArgument("stats: required for a BM25 list".to_string())
            })?;
            for part in &parts {
                let found =
                    part.search_bm25_with_stats(&request.text, request.bm25_k, filter, stats)?;
                bm25.extend(found.into_iter().map(|c| (c.id, c.score)));
            }
        }
        let mut dense = Vec::new();
        if request.dense_k > 0 {
            let vector = request.vector.as_deref().ok_or_else(|| {
                ShardError::InvalidArgument("vector: required for a dense list".to_string())
            })?;
            for part in &parts {
                let found = part.search_dense(vector, request.dense_k, filter)?;
                dense.extend(found.into_iter().map(|c| (c.id, c.score)));
            }
        }
        Ok((merge(vec![bm25], request.bm25_k), merge(vec![dense], request.dense_k)))
    }

    /// The documents with these ids, each read from its own partition (which must be held).
    pub fn fetch(
        &self,
        collection: &str,
        ids: &[String],
    ) -> Result<Vec<Option<Document>>, ShardError> {
        ids.iter()
            .map(|id| {
                let store = self.store(self.partitioner.partition_of(id))?;
                match store.collection(collection) {
                    Ok(part) => Ok(part.get(id)?),
                    Err(sieve_storage::Error::CollectionNotFound(_)) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            })
            .collect()
    }

    /// Stops the appliers and closes every partition's store.
    pub fn close(&self) -> Result<(), ShardError> {
        for replica in self.replicas.values() {
            replica.follower.abort();
        }
        for replica in self.replicas.values() {
            replica.store.close()?;
        }
        Ok(())
    }
}

/// Merges ranked lists into one: by score, best first, then by id, cut to `k`.
pub fn merge(lists: Vec<Ranked>, k: usize) -> Ranked {
    let mut all: Ranked = lists.into_iter().flatten().collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(k);
    all
}
