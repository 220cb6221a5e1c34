//! A shard: one store per owned partition (its own sled, BM25 index and graph, so statistics,
//! snapshots and moves are per partition), each fed by its stream's applier, answering the
//! router's stats, retrieval and fetch calls over any subset of its partitions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use sieve_planner::Ranked;
use sieve_storage::snapshot::{
    PartitionSnapshotInfo, read_partition_info, restore_partition, write_partition,
};
use sieve_storage::{Bm25Stats, Collection, Document, Filter, Store, StoreOptions};
use tokio::sync::watch;

use xxhash_rust::xxh3::Xxh3;

use crate::apply::{Applier, ApplyError};
use crate::log::{Log, LogError};
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
    /// A partition does not serve reads (behind its stream's first message, bootstrapping).
    #[error("shard '{shard}' partition {partition} is not serving: {reason}")]
    NotServing {
        /// This shard.
        shard: String,
        /// The partition.
        partition: Partition,
        /// Why, and what it is doing about it.
        reason: String,
    },
    /// The log could not be reached (a snapshot upload, a purge).
    #[error(transparent)]
    Log(#[from] LogError),
    /// A partition's store failed.
    #[error(transparent)]
    Storage(#[from] sieve_storage::Error),
}

/// Pauses between attempts to follow a stream whose log is unreachable.
const FOLLOW_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(100);
const FOLLOW_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a replica behind its stream's first message waits before it looks for a newer
/// snapshot again.
const BOOTSTRAP_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// How often a shard reads its streams' last positions (for readiness and apply lag).
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a partition's applied position stays still before its BM25 segments are merged.
const COMPACT_AFTER_IDLE: std::time::Duration = std::time::Duration::from_secs(2);

/// The most stream messages a partition may have left to apply and still count as caught up
/// (messages arrive while the position is read, so 0 would flicker under steady ingest).
pub const CAUGHT_UP: u64 = 64;

/// Where a replica stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Standing {
    /// Following its stream; serving.
    Following,
    /// Its applier stopped (storage failure, a lost message): it serves what it has but falls
    /// behind.
    Stopped(String),
    /// Behind its stream's first message, or restoring a snapshot: it refuses reads.
    Refusing(String),
}

/// One owned partition: what its follower task and the readers share.
struct Replica {
    /// The partition's store; replaced when the replica bootstraps from a snapshot.
    store: RwLock<Arc<Store>>,
    standing: Mutex<Standing>,
    /// Its applied position as it moves.
    progress: watch::Sender<u64>,
    /// Held while a message is applied and while a snapshot is written.
    gate: Arc<Mutex<()>>,
    /// Its stream's last message when last read (`None` until the log first answered).
    stream_last: Mutex<Option<u64>>,
    /// The task following its stream.
    follower: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Released by the assignment: no longer reported as held (routers stop sending reads at
    /// their next refresh), still answering reads in flight until it is dropped.
    leaving: AtomicBool,
    /// Taken on while the shard runs: the stream position it must reach before it serves
    /// (`Some(0)` until its stream's end is first read; `None` once it got there).
    joining: Mutex<Option<u64>>,
}

impl Replica {
    fn open(store: Store, applied: u64) -> Replica {
        Replica {
            store: RwLock::new(Arc::new(store)),
            standing: Mutex::new(Standing::Following),
            progress: watch::Sender::new(applied),
            gate: Arc::new(Mutex::new(())),
            stream_last: Mutex::new(None),
            follower: Mutex::new(None),
            leaving: AtomicBool::new(false),
            joining: Mutex::new(None),
        }
    }

    /// Why a replica taken on while the shard runs does not serve yet: it has not applied its
    /// stream up to where the stream ended when it was taken on.
    fn joining(&self) -> Option<String> {
        let mut joining = self.joining.lock();
        let target = (*joining)?;
        let applied = *self.progress.borrow();
        match *self.stream_last.lock() {
            Some(last) if target == 0 && applied >= last => *joining = None,
            Some(last) if target == 0 => *joining = Some(last),
            Some(_) if applied >= target => *joining = None,
            _ => {}
        }
        let target = (*joining)?;
        Some(if target == 0 {
            "taking the partition on: its stream's end not read yet".to_string()
        } else {
            format!("taking the partition on: applied {applied} of {target} messages")
        })
    }

    fn leaving(&self) -> bool {
        self.leaving.load(Ordering::Acquire)
    }

    fn store(&self) -> Arc<Store> {
        Arc::clone(&self.store.read())
    }

    fn set(&self, standing: Standing) {
        *self.standing.lock() = standing;
    }
}

/// The log calls a shard makes itself (snapshots, purges, stream positions), object-safe so
/// that the shard needs no type parameter.
trait ShardLog: Send + Sync {
    fn put(&self, partition: Partition, file: PathBuf) -> BoxFuture<'_, Result<(), LogError>>;
    fn purge(&self, partition: Partition, before: u64) -> BoxFuture<'_, Result<(), LogError>>;
    fn last(&self, partition: Partition) -> BoxFuture<'_, Result<u64, LogError>>;
    fn first(&self, partition: Partition) -> BoxFuture<'_, Result<u64, LogError>>;
}

impl<L: Log> ShardLog for L {
    fn first(&self, partition: Partition) -> BoxFuture<'_, Result<u64, LogError>> {
        Box::pin(async move { Ok(self.bounds(partition).await?.first) })
    }
    fn last(&self, partition: Partition) -> BoxFuture<'_, Result<u64, LogError>> {
        Box::pin(async move { Ok(self.bounds(partition).await?.last) })
    }

    fn put(&self, partition: Partition, file: PathBuf) -> BoxFuture<'_, Result<(), LogError>> {
        Box::pin(async move { self.put_snapshot(partition, &file).await })
    }

    fn purge(&self, partition: Partition, before: u64) -> BoxFuture<'_, Result<(), LogError>> {
        Box::pin(self.purge_before(partition, before))
    }
}

/// What a partition snapshot taken by a shard did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshotted {
    /// What the snapshot holds.
    pub info: PartitionSnapshotInfo,
    /// Its size in bytes.
    pub bytes: u64,
    /// The stream's messages up to `info.stream_seq` were purged.
    pub purged: bool,
}

/// The pointer file naming a partition's current store directory (after a bootstrap).
fn pointer(root: &Path, partition: Partition) -> PathBuf {
    root.join(format!("p{partition}.current"))
}

/// The directory of a partition's current store: `p{partition}`, or the bootstrapped one its
/// pointer names.
fn current_dir(root: &Path, partition: Partition) -> Result<PathBuf, ShardError> {
    match std::fs::read_to_string(pointer(root, partition)) {
        Ok(name) => Ok(root.join(name.trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(root.join(format!("p{partition}")))
        }
        Err(e) => Err(ShardError::InvalidArgument(format!(
            "reading {}: {e}",
            pointer(root, partition).display()
        ))),
    }
}

/// Removes a partition's store directories other than `keep` (left by a bootstrap that
/// failed or was interrupted, or replaced by one), best effort.
fn remove_stale(root: &Path, partition: Partition, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    let plain = format!("p{partition}");
    let prefix = format!("p{partition}.");
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let ours =
            name == plain || (name.starts_with(&prefix) && name != format!("{prefix}current"));
        if ours && path != keep {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {
                    tracing::info!(partition, path = %path.display(), "removed a replaced store")
                }
                Err(e) => {
                    tracing::warn!(partition, path = %path.display(), error = %e, "removing a replaced store")
                }
            }
        }
    }
}

/// Removes every store directory of `partition` and its pointer, best effort: the partition
/// was dropped from this shard.
fn remove_partition(root: &Path, partition: Partition) {
    remove_stale(root, partition, Path::new(""));
    match std::fs::remove_file(pointer(root, partition)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(partition, error = %e, "removing a dropped partition's pointer"),
    }
    tracing::info!(partition, "dropped the partition's stores");
}

/// A partition's state as the shard reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionState {
    /// The partition.
    pub partition: Partition,
    /// The last stream message it applied.
    pub applied: u64,
    /// Its stream's last message when the shard last read it (`None` before the log first
    /// answered).
    pub stream_last: Option<u64>,
    /// Whether it answers reads.
    pub serving: bool,
    /// Why its applier stopped (it serves what it has, but falls behind) or why it does not
    /// serve; `None` while it follows its stream.
    pub stopped: Option<String>,
    /// What it holds, when asked for.
    pub contents: Option<Contents>,
}

impl PartitionState {
    /// Stream messages it had still to apply when the shard last read its stream's end.
    pub fn behind(&self) -> u64 {
        self.stream_last.map_or(0, |last| last.saturating_sub(self.applied))
    }
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
    /// Also the BM25 statistics of `text` over the partitions.
    pub with_stats: bool,
    /// Also the documents of each list's first `documents_k` ids.
    pub documents_k: usize,
}

/// What one retrieval call found.
#[derive(Clone, Debug, Default)]
pub struct Retrieved {
    /// The BM25 list.
    pub bm25: Ranked,
    /// The dense list.
    pub dense: Ranked,
    /// The BM25 statistics, when asked for.
    pub stats: Option<Bm25Stats>,
    /// The documents of each list's first ids, when asked for.
    pub documents: Vec<Document>,
}

/// The partitions a shard holds, shared with its background tasks.
type Replicas = Arc<RwLock<BTreeMap<Partition, Arc<Replica>>>>;

/// Starts the task following one partition's stream into its replica (the log's type hidden,
/// so that partitions can be taken on after opening).
type StartFollowing =
    Box<dyn Fn(Partition, Arc<Replica>) -> tokio::task::JoinHandle<()> + Send + Sync>;

/// A cluster shard.
pub struct Shard {
    id: String,
    dir: PathBuf,
    partitioner: Partitioner,
    options: StoreOptions,
    replicas: Replicas,
    start_following: StartFollowing,
    /// The stream watcher and the idle compactor.
    background: Vec<tokio::task::JoinHandle<()>>,
    log: Arc<dyn ShardLog>,
}

/// Follows `partition`'s stream into its replica until aborted: an unreachable log is read
/// again shortly; a stream purged past the replica's position bootstraps it from the newest
/// partition snapshot (refusing reads meanwhile); any other failure stops the applier.
async fn follow<L: Log>(
    shard: String,
    root: PathBuf,
    options: StoreOptions,
    partition: Partition,
    replica: Arc<Replica>,
    log: Arc<L>,
) {
    let mut pause = FOLLOW_RETRY_FIRST;
    loop {
        let applier = Arc::new(Applier::sharing(
            Arc::clone(&log),
            replica.store(),
            replica.progress.clone(),
            Arc::clone(&replica.gate),
        ));
        let started = std::time::Instant::now();
        match applier.follow(partition).await {
            // The log is unreachable (no quorum, a server restarting): read again from the
            // position once it is back, soon after a follow that had been running a while.
            Err(ApplyError::Log(e)) => {
                tracing::warn!(shard, partition, error = %e, "log unreachable; following again shortly");
                if started.elapsed() > FOLLOW_RETRY_MAX {
                    pause = FOLLOW_RETRY_FIRST;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(FOLLOW_RETRY_MAX);
            }
            Err(trimmed @ ApplyError::Trimmed { .. }) => {
                replica.set(Standing::Refusing(format!("{trimmed}; bootstrapping")));
                match bootstrap(&root, &options, partition, &replica, log.as_ref()).await {
                    Ok(info) => {
                        tracing::info!(
                            shard,
                            partition,
                            stream_seq = info.stream_seq,
                            documents = info.documents,
                            "bootstrapped from the partition's snapshot"
                        );
                        replica.set(Standing::Following);
                    }
                    Err(why) => {
                        tracing::warn!(shard, partition, %why, "cannot bootstrap yet");
                        replica.set(Standing::Refusing(format!("{trimmed}; {why}")));
                        tokio::time::sleep(BOOTSTRAP_RETRY).await;
                    }
                }
            }
            Err(e) => {
                tracing::error!(shard, partition, error = %e, "partition stopped applying");
                replica.set(Standing::Stopped(e.to_string()));
                return;
            }
            Ok(()) => return,
        }
    }
}

/// Merges the small BM25 segments of each partition whose applier has been idle for
/// [`COMPACT_AFTER_IDLE`], once per position: applying commits the index once per message,
/// which leaves several small segments per partition, and every search opens each of them
/// (16 partitions of 6 segments where one standalone index has 6; docs/BENCHMARKS.md).
async fn compact_idle(replicas: Replicas) {
    // Per partition: the applied position last seen, and the one last compacted at.
    let mut seen: BTreeMap<Partition, (Option<u64>, Option<u64>)> = BTreeMap::new();
    loop {
        tokio::time::sleep(COMPACT_AFTER_IDLE).await;
        let held = replicas.read().clone();
        seen.retain(|partition, _| held.contains_key(partition));
        for (&partition, replica) in &held {
            let applied = *replica.progress.borrow();
            let (last, compacted) = seen.entry(partition).or_default();
            let idle = *last == Some(applied);
            *last = Some(applied);
            let serving = !matches!(*replica.standing.lock(), Standing::Refusing(_));
            if !idle || !serving || *compacted == Some(applied) {
                continue;
            }
            *compacted = Some(applied);
            let store = replica.store();
            let merged = tokio::task::spawn_blocking(move || {
                let mut merged = 0;
                for collection in store.collections() {
                    match collection.compact_bm25() {
                        Ok(true) => merged += 1,
                        Ok(false) => {}
                        Err(e) => tracing::warn!(partition, collection = collection.name(), error = %e, "merging BM25 segments failed"),
                    }
                }
                merged
            })
            .await
            .unwrap_or(0);
            if merged > 0 {
                tracing::debug!(
                    partition,
                    collections = merged,
                    "merged an idle partition's small BM25 segments"
                );
            }
        }
    }
}

/// Reads each partition's stream's last position every [`WATCH_EVERY`], until aborted.
async fn watch_streams(replicas: Replicas, log: Arc<dyn ShardLog>) {
    loop {
        let held = replicas.read().clone();
        for (&partition, replica) in &held {
            match tokio::time::timeout(WATCH_EVERY, log.last(partition)).await {
                Ok(Ok(last)) => {
                    *replica.stream_last.lock() = Some(last);
                    let _ = replica.joining();
                }
                Ok(Err(e)) => tracing::debug!(partition, error = %e, "stream position unread"),
                Err(_) => tracing::debug!(partition, "stream position timed out"),
            }
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

/// Restores the partition's newest snapshot into a new store directory, points the
/// partition at it and swaps it in; the replaced store's directory is removed.
async fn bootstrap<L: Log>(
    root: &Path,
    options: &StoreOptions,
    partition: Partition,
    replica: &Replica,
    log: &L,
) -> Result<PartitionSnapshotInfo, String> {
    let download = root.join(format!("p{partition}.download"));
    let found = log.get_snapshot(partition, &download).await.map_err(|e| e.to_string())?;
    if !found {
        return Err("the partition has no snapshot yet (take one through a router: \
                    sieve snapshots partitions)"
            .to_string());
    }
    let info = read_partition_info(&download).map_err(|e| e.to_string())?;
    let first = log.bounds(partition).await.map_err(|e| e.to_string())?.first;
    if info.stream_seq + 1 < first {
        let _ = std::fs::remove_file(&download);
        return Err(format!(
            "the newest snapshot ends at message {} but the stream starts at {first}; take a \
             newer one (sieve snapshots partitions)",
            info.stream_seq
        ));
    }
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let name = format!("p{partition}.{started_ms}");
    let dir = root.join(&name);
    let restored = {
        let (dir, download, options) = (dir.clone(), download.clone(), options.clone());
        tokio::task::spawn_blocking(move || {
            let store = Store::open(&dir, options)?;
            let info = restore_partition(&store, &download)?;
            Ok::<_, sieve_storage::Error>((store, info))
        })
        .await
        .map_err(|e| format!("restoring panicked: {e}"))?
    };
    let _ = std::fs::remove_file(&download);
    let (store, info) = match restored {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!("restoring the snapshot: {e}"));
        }
    };
    // The pointer moves atomically: a crash before it keeps the old store, after it the new.
    let tmp = root.join(format!("p{partition}.current.tmp"));
    let pointed = std::fs::write(&tmp, &name)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, pointer(root, partition)))
        .and_then(|()| std::fs::File::open(root)?.sync_all());
    if let Err(e) = pointed {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(format!("pointing partition {partition} at {}: {e}", dir.display()));
    }
    let old = std::mem::replace(&mut *replica.store.write(), Arc::new(store));
    replica.progress.send_replace(info.stream_seq);
    drop(old);
    remove_stale(root, partition, &dir);
    Ok(info)
}

impl Shard {
    /// Opens (or creates) the store of each owned partition under `dir` (`p{partition}`, or
    /// the directory a bootstrap pointed it at) and starts following each partition's stream
    /// from its store's position. Call inside a tokio runtime.
    pub fn open<L: Log>(
        id: &str,
        dir: &Path,
        partitioner: Partitioner,
        owned: &[Partition],
        log: Arc<L>,
        options: StoreOptions,
    ) -> Result<Shard, ShardError> {
        let start_following: StartFollowing = {
            let (id, dir, options, log) =
                (id.to_string(), dir.to_path_buf(), options.clone(), Arc::clone(&log));
            Box::new(move |partition, replica| {
                tokio::spawn(follow(
                    id.clone(),
                    dir.clone(),
                    options.clone(),
                    partition,
                    replica,
                    Arc::clone(&log),
                ))
            })
        };
        let watched: Arc<dyn ShardLog> = log;
        let mut shard = Shard {
            id: id.to_string(),
            dir: dir.to_path_buf(),
            partitioner,
            options,
            replicas: Arc::default(),
            start_following,
            background: Vec::new(),
            log: Arc::clone(&watched),
        };
        for &partition in owned {
            shard.take_on(partition, false)?;
        }
        shard.background.push(tokio::spawn(watch_streams(Arc::clone(&shard.replicas), watched)));
        shard.background.push(tokio::spawn(compact_idle(Arc::clone(&shard.replicas))));
        Ok(shard)
    }

    /// Takes `partition` on: opens (or creates) its store under the shard's directory and
    /// follows its stream from the store's position — from the stream's first message for a
    /// new replica, or from the partition's newest snapshot when the stream was purged past
    /// it. A partition being released is kept instead. Returns whether anything changed.
    /// Blocking (opens a store); call inside a tokio runtime.
    pub fn hold(&self, partition: Partition) -> Result<bool, ShardError> {
        self.take_on(partition, true)
    }

    /// [`Shard::hold`]; a replica `joining` a running shard serves only once it has applied
    /// its stream up to where the stream ended when it was taken on.
    fn take_on(&self, partition: Partition, joining: bool) -> Result<bool, ShardError> {
        if partition >= self.partitioner.count() {
            return Err(ShardError::InvalidArgument(format!(
                "partition {partition}: the cluster has {} partitions",
                self.partitioner.count()
            )));
        }
        if let Some(replica) = self.replicas.read().get(&partition) {
            return Ok(replica.leaving.swap(false, Ordering::AcqRel));
        }
        let current = current_dir(&self.dir, partition)?;
        remove_stale(&self.dir, partition, &current);
        let store = Store::open(&current, self.options.clone())?;
        let applied = store.log_position(partition)?;
        let replica = Arc::new(Replica::open(store, applied));
        if joining {
            *replica.joining.lock() = Some(0);
        }
        *replica.follower.lock() = Some((self.start_following)(partition, Arc::clone(&replica)));
        self.replicas.write().insert(partition, replica);
        Ok(true)
    }

    /// Stops reporting `partition` as held, so that routers send its reads to its other
    /// replicas from their next refresh on, while reads already sent here are still
    /// answered; [`Shard::drop_released`] then removes it. Returns whether it was held.
    pub fn release(&self, partition: Partition) -> bool {
        match self.replicas.read().get(&partition) {
            Some(replica) => {
                replica.leaving.store(true, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// Removes a released partition (one taken on again since is kept): stops its applier,
    /// closes its store and deletes its directories. Returns whether it was removed.
    /// Blocking.
    pub fn drop_released(&self, partition: Partition) -> Result<bool, ShardError> {
        let replica = {
            let mut replicas = self.replicas.write();
            match replicas.get(&partition) {
                Some(replica) if replica.leaving() => replicas.remove(&partition),
                _ => None,
            }
        };
        let Some(replica) = replica else { return Ok(false) };
        if let Some(follower) = replica.follower.lock().take() {
            follower.abort();
        }
        {
            // The gate waits out a message being applied.
            let _held = replica.gate.lock();
            replica.store().close()?;
        }
        drop(replica);
        remove_partition(&self.dir, partition);
        Ok(true)
    }

    /// This shard's name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The cluster's partitioner.
    pub fn partitioner(&self) -> Partitioner {
        self.partitioner
    }

    /// The partitions this shard holds (not those being released).
    pub fn partitions(&self) -> Vec<Partition> {
        self.held().into_iter().map(|(partition, _)| partition).collect()
    }

    /// The held partitions' replicas, those being released left out.
    fn held(&self) -> Vec<(Partition, Arc<Replica>)> {
        self.replicas
            .read()
            .iter()
            .filter(|(_, replica)| !replica.leaving())
            .map(|(&partition, replica)| (partition, Arc::clone(replica)))
            .collect()
    }

    /// The replica of `partition`, one being released included (it answers reads sent
    /// before routers learnt of its release).
    fn replica(&self, partition: Partition) -> Result<Arc<Replica>, ShardError> {
        self.replicas.read().get(&partition).cloned().ok_or_else(|| self.not_owned(partition))
    }

    /// Every held partition's state; with `detail`, what each holds (reads every document).
    pub fn status(&self, detail: bool) -> Result<Vec<PartitionState>, ShardError> {
        self.held()
            .into_iter()
            .map(|(partition, replica)| {
                let store = replica.store();
                let (serving, stopped) = match replica.standing.lock().clone() {
                    Standing::Following => match replica.joining() {
                        None => (true, None),
                        Some(why) => (false, Some(why)),
                    },
                    Standing::Stopped(why) => (true, Some(why)),
                    Standing::Refusing(why) => (false, Some(why)),
                };
                Ok(PartitionState {
                    partition,
                    applied: store.log_position(partition)?,
                    stream_last: *replica.stream_last.lock(),
                    serving,
                    stopped,
                    contents: if detail { Some(contents(&store)?) } else { None },
                })
            })
            .collect()
    }

    /// Whether every held partition is caught up: serving, its applier running, at most
    /// [`CAUGHT_UP`] messages behind its stream's last as last read. With the log unreachable
    /// the last positions read stand (a shard keeps serving what it has through a lost
    /// quorum); before the log first answered, a shard is not ready. `Err` says why not.
    pub fn ready(&self) -> Result<(), String> {
        for (partition, replica) in self.held() {
            match &*replica.standing.lock() {
                Standing::Following => {}
                Standing::Stopped(why) => {
                    return Err(format!("partition {partition} stopped applying: {why}"));
                }
                Standing::Refusing(why) => {
                    return Err(format!("partition {partition} is not serving: {why}"));
                }
            }
            if let Some(why) = replica.joining() {
                return Err(format!("partition {partition} is not serving: {why}"));
            }
            let applied = *replica.progress.borrow();
            match *replica.stream_last.lock() {
                None => return Err(format!("partition {partition}: its stream not read yet")),
                Some(last) if last > applied + CAUGHT_UP => {
                    return Err(format!(
                        "partition {partition} has applied {applied} of {last} messages"
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
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
            let replica = self.replica(partition)?;
            // The applier's published position, not the store's: sled records a position
            // before the indexes have taken the write in, and a read must find it there.
            let mut progress = replica.progress.subscribe();
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
        ShardError::NotOwned { shard: self.id.clone(), partition, held: self.partitions() }
    }

    /// The store of a held partition that serves reads.
    pub fn store(&self, partition: Partition) -> Result<Arc<Store>, ShardError> {
        let replica = self.replica(partition)?;
        let refusing = match &*replica.standing.lock() {
            Standing::Refusing(reason) => Some(reason.clone()),
            _ => None,
        };
        if let Some(reason) = refusing.or_else(|| replica.joining()) {
            return Err(ShardError::NotServing { shard: self.id.clone(), partition, reason });
        }
        Ok(replica.store())
    }

    /// Messages of `partition`'s stream that a snapshot would let go: those applied here
    /// that the stream still holds (`None` when it is not held here, or while the log cannot
    /// be read).
    pub async fn unsnapshotted(&self, partition: Partition) -> Option<u64> {
        let applied = *self.replica(partition).ok()?.progress.borrow();
        let first = self.log.first(partition).await.ok()?;
        Some((applied + 1).saturating_sub(first))
    }

    /// Writes a snapshot of each of `partitions` (held here and serving) at its current
    /// position, with the partition's writes held meanwhile, and stores it in the log as the
    /// partition's newest; with `purge`, removes the stream's messages it covers. A replica
    /// that falls behind the stream's first message afterwards bootstraps from it.
    pub async fn snapshot(
        &self,
        partitions: &[Partition],
        purge: bool,
    ) -> Result<Vec<Snapshotted>, ShardError> {
        let mut done = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            let store = self.store(partition)?;
            let replica = self.replica(partition)?;
            let path = self.dir.join(format!("p{partition}.partition-snapshot"));
            let written = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let _held = replica.gate.lock();
                    write_partition(&store, partition, &path)
                })
                .await
                .map_err(|e| ShardError::InvalidArgument(format!("snapshot panicked: {e}")))?
            };
            let info = written?;
            let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
            let stored = self.log.put(partition, path.clone()).await;
            let _ = std::fs::remove_file(&path);
            stored?;
            if purge {
                self.log.purge(partition, info.stream_seq + 1).await?;
            }
            tracing::info!(
                shard = self.id,
                partition,
                stream_seq = info.stream_seq,
                documents = info.documents,
                bytes,
                purged = purge,
                "partition snapshot stored"
            );
            done.push(Snapshotted { info, bytes, purged: purge });
        }
        Ok(done)
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

    /// The BM25 and dense lists over the requested partitions together (each partition's top
    /// `k`, merged by (score, id)), and what else the request asks for: the statistics, the
    /// documents of each list's first ids.
    pub fn retrieve(&self, request: &Retrieval) -> Result<Retrieved, ShardError> {
        let stats = if request.with_stats {
            Some(self.stats(&request.collection, &request.partitions, &request.text)?)
        } else {
            None
        };
        let (bm25, dense) = self.lists(request)?;
        let mut documents = Vec::new();
        if request.documents_k > 0 {
            let mut ids: Vec<&str> = Vec::new();
            for (id, _) in bm25.iter().take(request.documents_k) {
                ids.push(id);
            }
            for (id, _) in dense.iter().take(request.documents_k) {
                if !ids.contains(&&**id) {
                    ids.push(id);
                }
            }
            let ids: Vec<String> = ids.into_iter().map(String::from).collect();
            documents = self.fetch(&request.collection, &ids)?.into_iter().flatten().collect();
        }
        Ok(Retrieved { bm25, dense, stats, documents })
    }

    fn lists(&self, request: &Retrieval) -> Result<(Ranked, Ranked), ShardError> {
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
        for task in &self.background {
            task.abort();
        }
        let replicas = self.replicas.read().clone();
        for replica in replicas.values() {
            if let Some(follower) = replica.follower.lock().take() {
                follower.abort();
            }
        }
        for replica in replicas.values() {
            // The gate waits out a message being applied.
            let _held = replica.gate.lock();
            replica.store().close()?;
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
