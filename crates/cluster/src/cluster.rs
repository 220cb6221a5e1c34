//! The router's handle on a cluster (SCALE.md): the catalog, the log it publishes writes to,
//! and the shards it reads from. Writes are split by partition and appended with message ids
//! that make retries land once; reads pick replicas that have applied what the caller's
//! consistency token asks for.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use futures::future::{join_all, try_join_all};
use parking_lot::{Mutex, RwLock};
use sieve_storage::{CollectionConfig, Document};
use tonic::transport::Channel;

use crate::assignment::{AssignError, Assignment, Assignments};
use crate::catalog::{Catalog, CatalogEntry, CatalogError};
use crate::jetstream::JetStreamLog;
use crate::log::{Log, LogError, append_retrying};
use crate::message::LogOp;
use crate::partition::{Partition, Partitioner};
use crate::roster::{Roster, ShardRecord};
use crate::router::{ClusterCorpus, Topology, shard_client, shard_clients};
use crate::service::proto::shard_client::ShardClient;
use crate::service::{positions_to_proto, proto};
use crate::token::Token;

/// How a router reaches and waits on its cluster.
#[derive(Clone, Debug)]
pub struct RouterSettings {
    /// This router's name, unique in the cluster while it runs: part of every message id.
    pub name: String,
    /// Shards' internal gRPC addresses (`http://host:port`) to reach besides those the shard
    /// status bucket records.
    pub shards: Vec<String>,
    /// How long one append retries while the log has no leader.
    pub append_within: Duration,
    /// How long a `VISIBLE` ack waits for the shards to apply its batch.
    pub visible_within: Duration,
    /// How long a replica may wait to reach a read's consistency token before the router
    /// tries another.
    pub read_wait: Duration,
    /// How often the router reads the shard status bucket and asks the shards what they hold.
    pub refresh_every: Duration,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            name: String::new(),
            shards: Vec::new(),
            append_within: Duration::from_secs(10),
            visible_within: Duration::from_secs(5),
            read_wait: Duration::from_secs(2),
            refresh_every: Duration::from_secs(2),
        }
    }
}

/// Why a router call failed; each maps to one gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No collection of that name.
    #[error("collection '{0}' not found")]
    NotFound(String),
    /// A collection of that name exists.
    #[error("collection '{0}' already exists")]
    Exists(String),
    /// The request is malformed; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// The log or every replica of a partition cannot be reached: retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A partition's stream is full: nothing was lost, nothing more is taken.
    #[error("{0}")]
    Full(String),
    /// Something else the request names (a shard) does not exist; the message says what.
    #[error("{0}")]
    Missing(String),
    /// The cluster's state does not allow the request; the message says why.
    #[error("{0}")]
    Precondition(String),
    /// The request did not finish within its wait; the message says what stands.
    #[error("{0}")]
    TimedOut(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl From<AssignError> for ClusterError {
    fn from(e: AssignError) -> Self {
        match e {
            AssignError::Refused(why) => ClusterError::Precondition(why),
            AssignError::Log(e) => e.into(),
        }
    }
}

impl From<CatalogError> for ClusterError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Exists(name) => ClusterError::Exists(name),
            CatalogError::Log(e) => e.into(),
            corrupt @ CatalogError::Corrupt { .. } => ClusterError::Internal(corrupt.to_string()),
        }
    }
}

impl From<LogError> for ClusterError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Unavailable(why) => ClusterError::Unavailable(format!(
                "the cluster's log cannot be reached ({why}); nothing was acknowledged, retry"
            )),
            LogError::Full(why) => ClusterError::Full(format!(
                "a partition's stream is full ({why}); nothing was lost, nothing more is taken"
            )),
            LogError::Other(why) => ClusterError::Internal(why),
        }
    }
}

/// What a read must have seen.
#[derive(Clone, Debug)]
pub enum ReadAt {
    /// Whatever the chosen replicas hold (the default).
    Eventual,
    /// At least the writes behind this token (read-your-writes).
    After(Token),
    /// Every write acknowledged before the read started.
    Strong,
}

/// A collection's counts summed over its partitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Live documents.
    pub documents: u64,
    /// Live documents with a vector.
    pub vectors: u64,
    /// Dead points still in the graphs.
    pub tombstones: u64,
}

/// How long a topology refresh waits for the shard status bucket.
const ROSTER_WITHIN: Duration = Duration::from_secs(1);

/// How often a partition move looks whether its new replica serves yet.
const ASSIGN_POLL: Duration = Duration::from_millis(250);

/// A router's cluster.
pub struct Cluster {
    settings: RouterSettings,
    log: Arc<JetStreamLog>,
    catalog: Catalog,
    partitioner: Partitioner,
    roster: Roster,
    assignments: Assignments,
    /// A client per shard address: those of the settings, then those the shard status bucket
    /// recorded at the last refresh.
    clients: Mutex<BTreeMap<String, ShardClient<Channel>>>,
    /// The shards the shard status bucket recorded when last read, by address.
    recorded: Mutex<BTreeMap<String, (String, ShardRecord)>>,
    topology: RwLock<Arc<Topology>>,
    streams: AtomicU64,
    /// Every collection as the catalog's watch (or the last read) reported it: searches find
    /// their collection here without a catalog round trip, and keep answering while the
    /// catalog has no quorum (writes cannot be acknowledged then anyway).
    known: Mutex<HashMap<String, CatalogEntry>>,
    /// The watch feeding `known` is running.
    watching: AtomicBool,
}

impl Cluster {
    /// Opens the catalog and the shard status bucket on `log` (with `replicas` copies),
    /// reaches the shards and starts refreshing what they hold every `refresh_every`. Shards
    /// that are not up yet are picked up by a later refresh.
    pub async fn connect(
        log: Arc<JetStreamLog>,
        partitions: u32,
        replicas: usize,
        settings: RouterSettings,
    ) -> Result<Arc<Cluster>, ClusterError> {
        if settings.name.is_empty() {
            return Err(ClusterError::InvalidArgument("router name: must not be empty".into()));
        }
        let partitioner = Partitioner::new(partitions).map_err(ClusterError::InvalidArgument)?;
        let catalog = Catalog::open(&log, replicas).await?;
        let roster = Roster::open(&log, replicas).await?;
        let assignments = Assignments::open(&log, replicas).await?;
        let clients = shard_clients(&settings.shards).map_err(ClusterError::InvalidArgument)?;
        let cluster = Arc::new(Cluster {
            settings,
            log,
            catalog,
            partitioner,
            roster,
            assignments,
            clients: Mutex::new(clients.into_iter().collect()),
            recorded: Mutex::new(BTreeMap::new()),
            topology: RwLock::new(Arc::new(Topology::discover(&[], partitioner).await)),
            streams: AtomicU64::new(0),
            known: Mutex::new(HashMap::new()),
            watching: AtomicBool::new(false),
        });
        cluster.refresh().await;
        tokio::spawn(refresh(Arc::downgrade(&cluster)));
        tokio::spawn(watch_catalog(Arc::downgrade(&cluster)));
        Ok(cluster)
    }

    /// The cluster's partitioner.
    pub fn partitioner(&self) -> Partitioner {
        self.partitioner
    }

    /// What the shards held at the last refresh.
    pub fn topology(&self) -> Arc<Topology> {
        Arc::clone(&self.topology.read())
    }

    /// Reads the shard status bucket and asks every shard what it holds now.
    pub async fn refresh(&self) {
        let shards = self.shards().await;
        let topology = Topology::discover(&shards, self.partitioner).await;
        *self.topology.write() = Arc::new(topology);
    }

    /// The shards to ask: those of the settings and those the shard status bucket records
    /// (while it cannot be read, those it recorded last).
    async fn shards(&self) -> Vec<(String, ShardClient<Channel>)> {
        match tokio::time::timeout(ROSTER_WITHIN, self.roster.records()).await {
            Ok(Ok(records)) => {
                *self.recorded.lock() = records
                    .into_iter()
                    .map(|(name, record)| (record.address.clone(), (name, record)))
                    .collect();
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "shard status unreadable; the last stands"),
            Err(_) => tracing::debug!("shard status read timed out; the last stands"),
        }
        let recorded: BTreeSet<String> = self.recorded.lock().keys().cloned().collect();
        let mut clients = self.clients.lock();
        clients.retain(|address, _| {
            recorded.contains(address) || self.settings.shards.contains(address)
        });
        for address in recorded {
            if clients.contains_key(&address) {
                continue;
            }
            match shard_client(&address) {
                Ok(client) => {
                    tracing::info!(shard = address, "a shard recorded its status; reaching it");
                    clients.insert(address, client);
                }
                Err(e) => tracing::warn!(error = e, "a shard recorded an unusable address"),
            }
        }
        clients.iter().map(|(address, client)| (address.clone(), client.clone())).collect()
    }

    /// The shard the shard status bucket recorded at `address` when last read: its name and
    /// record.
    pub fn recorded(&self, address: &str) -> Option<(String, ShardRecord)> {
        self.recorded.lock().get(address).cloned()
    }

    /// The cluster's assignment: which shards are to hold which partitions.
    pub async fn assignment(&self) -> Result<Assignment, ClusterError> {
        Ok(self.assignments.read().await?)
    }

    /// Changes which shards hold `partition` (`AssignPartition` in admin.proto): shard `add`
    /// takes it on; shard `remove` gives it up, only once `add` (in a move), else another
    /// shard it is assigned to, serves it caught up, waiting up to `wait` for that. A change the assignment already
    /// holds is no change, so a move that timed out can be asked for again. Returns the
    /// assignment as it stands after.
    pub async fn assign(
        &self,
        partition: Partition,
        add: &str,
        remove: &str,
        wait: Duration,
    ) -> Result<Assignment, ClusterError> {
        let count = self.partitioner.count();
        if partition >= count {
            return Err(ClusterError::InvalidArgument(format!(
                "partition: {partition} does not exist (the cluster has {count} partitions)"
            )));
        }
        if add.is_empty() && remove.is_empty() {
            return Err(ClusterError::InvalidArgument(
                "add, remove: name the shard to take the partition on, the one to give it up, \
                 or both"
                    .to_string(),
            ));
        }
        if add == remove {
            return Err(ClusterError::InvalidArgument(format!(
                "add, remove: both name shard '{add}'"
            )));
        }
        let mut assignment = self.assignments.read().await?;
        for name in [add, remove] {
            if !name.is_empty() && assignment.held_by(name).is_none() {
                return Err(ClusterError::Missing(format!(
                    "shard '{name}' has never joined the cluster (a shard joins when it first \
                     starts: sieve-server --role shard --shard-name {name})"
                )));
            }
        }
        if !add.is_empty() {
            assignment = self
                .assignments
                .change(|a| {
                    a.shards.entry(add.to_string()).or_default().insert(partition);
                    Ok(())
                })
                .await?;
            tracing::info!(partition, shard = add, epoch = assignment.epoch, "partition assigned");
        }
        if remove.is_empty() || !assignment.owners(partition).contains(&remove) {
            return Ok(assignment);
        }
        let others = |a: &Assignment| -> Vec<String> {
            a.owners(partition).into_iter().filter(|s| *s != remove).map(String::from).collect()
        };
        if others(&assignment).is_empty() {
            return Err(ClusterError::Precondition(format!(
                "partition {partition} would have no replica: assign it to another shard first \
                 (add)"
            )));
        }
        // Before this replica lets go, the one taking it on (in a move), else any other,
        // must serve it caught up.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.refresh().await;
            let topology = self.topology();
            let serving = topology.caught_up_owners(partition);
            let awaited = if add.is_empty() { others(&assignment) } else { vec![add.to_string()] };
            if awaited.iter().any(|s| serving.contains(&s.as_str())) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::TimedOut(format!(
                    "{} did not serve partition {partition} caught up within {} ms; '{remove}' \
                     keeps it: ask again to finish (a new replica replays the partition's \
                     stream, or bootstraps from its newest snapshot when the stream was purged)",
                    if add.is_empty() {
                        format!("no other shard it is assigned to ({awaited:?})")
                    } else {
                        format!("shard '{add}'")
                    },
                    wait.as_millis()
                )));
            }
            tokio::time::sleep(ASSIGN_POLL).await;
            assignment = self.assignments.read().await?;
        }
        let assignment = self
            .assignments
            .change(|a| {
                if others(a).is_empty() {
                    return Err(format!(
                        "partition {partition} would have no replica: assign it to another \
                         shard first (add)"
                    ));
                }
                if let Some(held) = a.shards.get_mut(remove) {
                    held.remove(&partition);
                }
                Ok(())
            })
            .await?;
        tracing::info!(partition, shard = remove, epoch = assignment.epoch, "partition unassigned");
        Ok(assignment)
    }

    /// A number for a new ingest stream, unique in this router: part of its message ids.
    pub fn next_stream(&self) -> u64 {
        self.streams.fetch_add(1, Ordering::Relaxed)
    }

    /// Parses a client's consistency token.
    pub fn token(&self, text: &str) -> Result<Token, ClusterError> {
        Token::parse(text, self.partitioner.count())
            .map_err(|why| ClusterError::InvalidArgument(format!("consistency_token: {why}")))
    }

    /// Creates a collection: an atomic catalog create, then its creation appended to every
    /// partition's stream ahead of any write to it.
    pub async fn create(
        &self,
        name: &str,
        config: CollectionConfig,
        created_ms: u64,
    ) -> Result<CatalogEntry, ClusterError> {
        let entry = self.catalog.create(name, config.clone(), created_ms).await?;
        let op = LogOp::Create { collection: name.to_string(), config };
        let id = format!("{}/create/{}", self.settings.name, entry.uid);
        if let Err(e) = self.append_everywhere(&id, &op).await {
            // Not every partition learnt of it: take the name back so the client's retry
            // creates it again (partitions that did apply it hold it empty, and a create with
            // the same settings is a no-op there).
            if let Err(undo) = self.catalog.delete(name).await {
                tracing::error!(collection = name, error = %undo, "could not undo a half-made collection");
            }
            return Err(e);
        }
        self.known.lock().insert(name.to_string(), entry.clone());
        Ok(entry)
    }

    /// Deletes a collection: gone from the catalog first (no new writes), then dropped by
    /// every partition, after the writes already in its streams.
    pub async fn delete(&self, name: &str) -> Result<(), ClusterError> {
        let entry = self.read(name).await?;
        self.catalog.delete(name).await?;
        self.known.lock().remove(name);
        let op = LogOp::Drop { collection: name.to_string() };
        let id = format!("{}/drop/{}", self.settings.name, entry.uid);
        self.append_everywhere(&id, &op).await
    }

    async fn append_everywhere(&self, id: &str, op: &LogOp) -> Result<(), ClusterError> {
        let payload = op.encode();
        let appends = (0..self.partitioner.count()).map(|p| {
            let id = format!("{id}/{p}");
            let payload = payload.clone();
            async move {
                append_retrying(&*self.log, p, &id, payload, self.settings.append_within).await
            }
        });
        try_join_all(appends).await?;
        Ok(())
    }

    /// The collection of that name: from the catalog's watch when it has it, else read from
    /// the catalog (a collection just created elsewhere); while the catalog cannot be reached,
    /// the last entry seen.
    pub async fn get(&self, name: &str) -> Result<CatalogEntry, ClusterError> {
        if self.watching.load(Ordering::Acquire)
            && let Some(entry) = self.known.lock().get(name)
        {
            return Ok(entry.clone());
        }
        self.read(name).await
    }

    /// The collection of that name, read from the catalog.
    async fn read(&self, name: &str) -> Result<CatalogEntry, ClusterError> {
        match self.catalog.get(name).await {
            Ok(Some(entry)) => {
                self.known.lock().insert(name.to_string(), entry.clone());
                Ok(entry)
            }
            Ok(None) => {
                self.known.lock().remove(name);
                Err(ClusterError::NotFound(name.to_string()))
            }
            Err(CatalogError::Log(e)) => match self.known.lock().get(name) {
                Some(entry) => {
                    tracing::debug!(collection = name, error = %e, "catalog unreachable; using the last entry read");
                    Ok(entry.clone())
                }
                None => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Every collection, by name.
    pub async fn list(&self) -> Result<Vec<(String, CatalogEntry)>, ClusterError> {
        let mut all = Vec::new();
        for name in self.catalog.names().await? {
            // Deleted between the two calls: left out.
            if let Some(entry) = self.catalog.get(&name).await? {
                all.push((name, entry));
            }
        }
        Ok(all)
    }

    /// Snapshots `partitions` (every one when empty), each on one serving replica, into the
    /// log's snapshot store; with `purge`, each stream's messages the snapshot covers are
    /// removed. Returns each snapshot with the shard that wrote it, in partition order.
    pub async fn snapshot(
        &self,
        partitions: &[Partition],
        purge: bool,
    ) -> Result<Vec<(String, proto::PartitionSnapshot)>, ClusterError> {
        let count = self.partitioner.count();
        if let Some(p) = partitions.iter().find(|&&p| p >= count) {
            return Err(ClusterError::InvalidArgument(format!(
                "partitions: {p} does not exist (the cluster has {count}: 0 to {})",
                count - 1
            )));
        }
        let mut wanted: Vec<Partition> =
            if partitions.is_empty() { (0..count).collect() } else { partitions.to_vec() };
        wanted.sort_unstable();
        wanted.dedup();
        let topology = self.topology();
        let replies = topology
            .scatter("snapshot", topology.turn(), &wanted, |mut client, partitions| {
                let request = proto::SnapshotRequest { partitions, purge };
                async move { client.snapshot(request).await.map(|r| r.into_inner()) }
            })
            .await
            .map_err(search_error)?;
        let mut all: Vec<(String, proto::PartitionSnapshot)> = replies
            .into_iter()
            .flat_map(|reply| {
                let shard = reply.shard;
                reply.snapshots.into_iter().map(move |s| (shard.clone(), s))
            })
            .collect();
        all.sort_by_key(|(_, s)| s.partition);
        Ok(all)
    }

    /// A collection's counts over every partition (one replica each).
    pub async fn counts(&self, name: &str) -> Result<Counts, ClusterError> {
        let topology = self.topology();
        let all: Vec<Partition> = (0..self.partitioner.count()).collect();
        let parts = topology
            .scatter("counts", topology.turn(), &all, |mut client, partitions| {
                let request = proto::CountsRequest { collection: name.to_string(), partitions };
                async move { client.counts(request).await.map(|r| r.into_inner()) }
            })
            .await
            .map_err(search_error)?;
        Ok(parts.into_iter().fold(Counts::default(), |total, part| Counts {
            documents: total.documents + part.documents,
            vectors: total.vectors + part.vectors,
            tombstones: total.tombstones + part.tombstones,
        }))
    }

    /// Appends one client batch, split by partition, each slice with the message id
    /// `{router}/{stream}/{batch}/{partition}` (a retried append is stored once). Returns the
    /// token of the stream positions it reached once every slice is durable.
    pub async fn write(
        &self,
        collection: &str,
        upserts: Vec<Document>,
        deletes: Vec<String>,
        stream: u64,
        batch: u64,
    ) -> Result<Token, ClusterError> {
        let mut slices: BTreeMap<Partition, (Vec<Document>, Vec<String>)> = BTreeMap::new();
        for doc in upserts {
            slices.entry(self.partitioner.partition_of(&doc.id)).or_default().0.push(doc);
        }
        for id in deletes {
            slices.entry(self.partitioner.partition_of(&id)).or_default().1.push(id);
        }
        let appends = slices.into_iter().map(|(partition, (upserts, deletes))| {
            let op = LogOp::Write { collection: collection.to_string(), upserts, deletes };
            let id = format!("{}/{stream}/{batch}/{partition}", self.settings.name);
            async move {
                let appended = append_retrying(
                    &*self.log,
                    partition,
                    &id,
                    op.encode(),
                    self.settings.append_within,
                )
                .await?;
                Ok::<_, ClusterError>((partition, appended.seq))
            }
        });
        let mut token = Token::new(self.partitioner.count());
        for (partition, seq) in try_join_all(appends).await? {
            token.advance(partition, seq);
        }
        Ok(token)
    }

    /// Waits (at most `visible_within`) until every serving replica of each partition in
    /// `token` has applied it. False when the time ran out first, or a partition has no
    /// serving replica.
    pub async fn wait_visible(&self, token: &Token) -> bool {
        if token.is_empty() {
            return true;
        }
        let topology = self.topology();
        let timeout_ms = self.settings.visible_within.as_millis() as u32;
        let calls = topology.shards_holding(token).into_iter().map(|(client, partitions)| {
            let mut client = client.clone();
            let positions: Vec<(Partition, u64)> =
                partitions.iter().map(|&p| (p, token.at(p))).collect();
            let request =
                proto::WaitRequest { positions: positions_to_proto(&positions), timeout_ms };
            async move {
                match client.wait_applied(request).await {
                    Ok(reply) => Some((partitions, reply.into_inner().reached)),
                    // A replica that does not answer is not serving.
                    Err(_) => None,
                }
            }
        });
        let mut answered = BTreeSet::new();
        for (partitions, reached) in join_all(calls).await.into_iter().flatten() {
            if !reached {
                return false;
            }
            answered.extend(partitions);
        }
        token.positions().all(|(p, _)| answered.contains(&p))
    }

    /// The collection `name` as a searchable corpus, read at `read`.
    pub async fn corpus(
        &self,
        name: &str,
        read: ReadAt,
    ) -> Result<Arc<ClusterCorpus>, ClusterError> {
        let entry = self.get(name).await?;
        let after = match read {
            ReadAt::Eventual => Token::new(self.partitioner.count()),
            ReadAt::After(token) => token,
            ReadAt::Strong => self.head().await?,
        };
        Ok(Arc::new(ClusterCorpus::new(
            name,
            entry.config,
            self.topology(),
            after,
            self.settings.read_wait,
            tokio::runtime::Handle::current(),
        )))
    }

    /// The last sequence of every partition's stream.
    async fn head(&self) -> Result<Token, ClusterError> {
        let bounds = try_join_all(
            (0..self.partitioner.count())
                .map(|p| async move { Ok::<_, LogError>((p, self.log.bounds(p).await?.last)) }),
        )
        .await?;
        let mut token = Token::new(self.partitioner.count());
        for (p, last) in bounds {
            if last > 0 {
                token.advance(p, last);
            }
        }
        Ok(token)
    }
}

fn search_error(e: sieve_planner::SearchError) -> ClusterError {
    match e {
        sieve_planner::SearchError::Unavailable(why) => ClusterError::Unavailable(why),
        sieve_planner::SearchError::InvalidArgument(why) => ClusterError::InvalidArgument(why),
        other => ClusterError::Internal(other.to_string()),
    }
}

/// Keeps `known` equal to the catalog until the cluster is dropped, watching it again after
/// any interruption.
async fn watch_catalog(cluster: Weak<Cluster>) {
    loop {
        let Some(strong) = cluster.upgrade() else { return };
        let catalog = strong.catalog.clone();
        drop(strong);
        match catalog.watch().await {
            Ok(changes) => {
                futures::pin_mut!(changes);
                if let Some(c) = cluster.upgrade() {
                    c.watching.store(true, Ordering::Release);
                }
                while let Some(change) = changes.next().await {
                    let Some(c) = cluster.upgrade() else { return };
                    match change {
                        Ok((name, Some(entry))) => {
                            c.known.lock().insert(name, entry);
                        }
                        Ok((name, None)) => {
                            c.known.lock().remove(&name);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "catalog watch interrupted");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot watch the catalog yet"),
        }
        match cluster.upgrade() {
            Some(c) => c.watching.store(false, Ordering::Release),
            None => return,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Refreshes the topology until the cluster is dropped.
async fn refresh(cluster: Weak<Cluster>) {
    loop {
        let every = match cluster.upgrade() {
            Some(cluster) => cluster.settings.refresh_every,
            None => return,
        };
        tokio::time::sleep(every).await;
        match cluster.upgrade() {
            Some(cluster) => cluster.refresh().await,
            None => return,
        }
    }
}
