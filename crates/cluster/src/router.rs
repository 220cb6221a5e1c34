//! The router's view of a collection spread over shards: a [`Corpus`] whose retrievers
//! scatter to one serving replica per partition and gather by (score, id). BM25 runs in two
//! phases (statistics summed over every partition, then lists scored with them), so each
//! shard scores as one index holding every document would. Fusion, fetch order and the
//! cascade are the planner's, run once on the merged lists.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use parking_lot::Mutex;
use sieve_planner::{Both, Corpus, Hybrid, Ranked, SearchError};
use sieve_storage::{Bm25Stats, CollectionConfig, Document, Filter};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tracing::Instrument as _;

use crate::partition::{Partition, Partitioner};
use crate::service::proto::shard_client::ShardClient;
use crate::service::{
    decode_document, encode_filter, positions_to_proto, proto, ranked_from_proto, stats_from_proto,
    stats_to_proto,
};
use crate::shard::{CAUGHT_UP, Retrieved, merge};
use crate::token::Token;

/// How long a shard has to say what it holds.
const STATUS_WITHIN: Duration = Duration::from_secs(1);

/// A shard as the router reaches it.
struct ShardHandle {
    name: String,
    address: String,
    client: ShardClient<Channel>,
    /// Stream messages its partitions had still to apply, summed, when it answered.
    behind: u64,
    /// Why it was not caught up when it answered; empty when it was.
    not_ready: String,
    /// When a call to it last failed: for [`RESTING`] after that, its partitions go to their
    /// other replicas first.
    failed_at: Mutex<Option<Instant>>,
}

/// How long a shard whose call failed is passed over while another replica can answer.
const RESTING: Duration = Duration::from_secs(1);

impl ShardHandle {
    fn resting(&self) -> bool {
        self.failed_at.lock().is_some_and(|at| at.elapsed() < RESTING)
    }

    /// Records a call's outcome; logs only when the shard goes down or comes back.
    fn answered(&self, error: Option<&Status>) {
        let mut failed_at = self.failed_at.lock();
        match (error, failed_at.is_some()) {
            (Some(status), false) => {
                tracing::warn!(shard = self.name, error = %status, "shard call failed; its partitions go to other replicas");
            }
            (Some(status), true) => {
                tracing::debug!(shard = self.name, error = %status, "shard call failed again");
            }
            (None, true) => tracing::info!(shard = self.name, "shard answers again"),
            (None, false) => return,
        }
        *failed_at = error.map(|_| Instant::now());
    }
}

/// A lazily connected client per shard address (`http://host:port`), for
/// [`Topology::discover`].
pub fn shard_clients(addresses: &[String]) -> Result<Vec<(String, ShardClient<Channel>)>, String> {
    addresses.iter().map(|address| Ok((address.clone(), shard_client(address)?))).collect()
}

/// A lazily connected client of the shard at `address` (`http://host:port`).
pub fn shard_client(address: &str) -> Result<ShardClient<Channel>, String> {
    let endpoint = Endpoint::from_shared(address.to_string())
        .map_err(|e| format!("shard address '{address}': {e}"))?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true);
    Ok(ShardClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

/// A shard as the router's last refresh saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardView<'a> {
    /// Its name.
    pub name: &'a str,
    /// Where the router reaches it.
    pub address: &'a str,
    /// The partitions it serves.
    pub partitions: Vec<Partition>,
    /// Stream messages its partitions had still to apply, summed.
    pub behind: u64,
    /// Why it was not caught up; empty when it was.
    pub not_ready: &'a str,
}

/// Which shards hold which partitions, as their status reported it.
pub struct Topology {
    partitioner: Partitioner,
    shards: Vec<ShardHandle>,
    /// Per partition: the shards (indexes into `shards`) holding it and still applying,
    /// caught-up ones first.
    owners: Vec<Vec<usize>>,
    /// Per partition: how many of its first owners are caught up.
    caught_up: Vec<usize>,
    /// Turns the shards' order from one search to the next, so that replicas share reads.
    turns: AtomicUsize,
    /// The shards asked that did not answer: (address, why).
    silent: Vec<(String, String)>,
}

impl Topology {
    /// Asks each shard what it holds (each at most a second). A shard that does not answer,
    /// or counts partitions differently, is left out (its partitions are served by their
    /// other replicas); with none answering every partition is unavailable. A shard reached
    /// at two addresses counts once, at the first.
    pub async fn discover(
        shards: &[(String, ShardClient<Channel>)],
        partitioner: Partitioner,
    ) -> Topology {
        let asks = shards.iter().map(|(address, client)| {
            let mut client = client.clone();
            async move {
                let ask = client.status(proto::StatusRequest { detail: false });
                match tokio::time::timeout(STATUS_WITHIN, ask).await {
                    Ok(Ok(reply)) => Ok((address, client, reply.into_inner())),
                    Ok(Err(e)) => {
                        tracing::debug!(shard = address, error = %e, "shard does not answer");
                        Err((address.clone(), format!("{}: {}", e.code(), e.message())))
                    }
                    Err(_) => {
                        tracing::debug!(shard = address, "shard status timed out");
                        Err((address.clone(), format!("no status within {STATUS_WITHIN:?}")))
                    }
                }
            }
        });
        let (answered, silent): (Vec<_>, Vec<_>) =
            join_all(asks).await.into_iter().partition(Result::is_ok);
        let mut topology = Topology::of(answered.into_iter().flatten(), partitioner);
        topology.silent = silent.into_iter().filter_map(Result::err).collect();
        topology
    }

    /// The shards asked that did not answer: (address, why).
    pub fn silent(&self) -> &[(String, String)] {
        &self.silent
    }

    /// The topology the shards' status replies describe (each with its address and client),
    /// in the order given.
    fn of<'a>(
        replies: impl IntoIterator<Item = (&'a String, ShardClient<Channel>, proto::StatusReply)>,
        partitioner: Partitioner,
    ) -> Topology {
        let mut handles = Vec::new();
        // Per partition: (messages behind, shard index) of each replica that applies it.
        let mut owners: Vec<Vec<(u64, usize)>> = vec![Vec::new(); partitioner.count() as usize];
        let mut seen = HashSet::new();
        for (address, client, status) in replies {
            if !seen.insert(status.shard.clone()) {
                continue;
            }
            if status.partitions_total != partitioner.count() {
                tracing::error!(
                    shard = status.shard,
                    partitions = status.partitions_total,
                    expected = partitioner.count(),
                    "shard counts partitions differently; left out"
                );
                continue;
            }
            let index = handles.len();
            let mut behind_total = 0;
            for p in &status.partitions {
                let behind = p.stream_last.map_or(0, |last| last.saturating_sub(p.applied));
                behind_total += behind;
                if let (true, Some(owners)) =
                    (p.error.is_empty(), owners.get_mut(p.partition as usize))
                {
                    // A replica that has not read its stream's end yet (one just taken on)
                    // does not count as caught up.
                    owners.push((if p.stream_last.is_some() { behind } else { u64::MAX }, index));
                }
            }
            handles.push(ShardHandle {
                name: status.shard,
                address: address.clone(),
                client,
                behind: behind_total,
                not_ready: status.not_ready,
                failed_at: Mutex::new(None),
            });
        }
        // Caught-up replicas first (in the order given), then the others least behind first:
        // a replica catching up answers only when no caught-up one can.
        let mut caught_up = Vec::with_capacity(owners.len());
        let owners = owners
            .into_iter()
            .map(|mut replicas| {
                replicas.sort_by_key(|&(behind, index)| {
                    (if behind <= CAUGHT_UP { 0 } else { behind }, index)
                });
                caught_up.push(replicas.iter().filter(|&&(behind, _)| behind <= CAUGHT_UP).count());
                replicas.into_iter().map(|(_, index)| index).collect()
            })
            .collect();
        Topology {
            partitioner,
            shards: handles,
            owners,
            caught_up,
            turns: AtomicUsize::new(0),
            silent: Vec::new(),
        }
    }

    /// The shards that answered, in the order given.
    pub fn shards(&self) -> Vec<ShardView<'_>> {
        self.shards
            .iter()
            .enumerate()
            .map(|(index, shard)| ShardView {
                name: &shard.name,
                address: &shard.address,
                partitions: (0..self.partitioner.count())
                    .filter(|&p| self.owners[p as usize].contains(&index))
                    .collect(),
                behind: shard.behind,
                not_ready: &shard.not_ready,
            })
            .collect()
    }

    /// Partitions that no answering shard serves.
    pub fn unserved(&self) -> Vec<Partition> {
        (0..self.partitioner.count()).filter(|&p| self.owners[p as usize].is_empty()).collect()
    }

    /// Per shard holding any partition of `token`: its client and those partitions.
    pub(crate) fn shards_holding(
        &self,
        token: &Token,
    ) -> Vec<(&ShardClient<Channel>, Vec<Partition>)> {
        let mut by_shard: BTreeMap<usize, Vec<Partition>> = BTreeMap::new();
        for (p, _) in token.positions() {
            for &shard in self.owners.get(p as usize).into_iter().flatten() {
                by_shard.entry(shard).or_default().push(p);
            }
        }
        by_shard.into_iter().map(|(shard, parts)| (&self.shards[shard].client, parts)).collect()
    }

    /// The cluster's partitioner.
    pub fn partitioner(&self) -> Partitioner {
        self.partitioner
    }

    /// Names of the shards holding `partition` caught up.
    pub fn caught_up_owners(&self, partition: Partition) -> Vec<&str> {
        let Some(owners) = self.owners.get(partition as usize) else { return Vec::new() };
        owners[..self.caught_up[partition as usize]]
            .iter()
            .map(|&s| self.shards[s].name.as_str())
            .collect()
    }

    /// Names of the shards holding `partition`.
    pub fn owners(&self, partition: Partition) -> Vec<&str> {
        self.owners[partition as usize].iter().map(|&s| self.shards[s].name.as_str()).collect()
    }

    /// The next read's turn: its shard calls start from a different shard than the last
    /// read's, so that replicas share the reads.
    pub(crate) fn turn(&self) -> usize {
        self.turns.fetch_add(1, Ordering::Relaxed)
    }

    /// One live replica per partition, grouped by shard: a caught-up one that has not just
    /// failed where there is one, the one given the fewest partitions so far (a search's work
    /// spread over the shards, which run side by side), ties taken in the order `turn` starts
    /// (see [`Topology::turn`]) so that replicas share the reads.
    fn plan(
        &self,
        partitions: &[Partition],
        down: &HashSet<usize>,
        turn: usize,
    ) -> Result<BTreeMap<usize, Vec<Partition>>, SearchError> {
        let count = self.shards.len().max(1);
        let turn = turn % count;
        let rank = |shard: usize| (shard + count - turn) % count;
        let mut groups: BTreeMap<usize, Vec<Partition>> = BTreeMap::new();
        for &p in partitions {
            let owners = &self.owners[p as usize];
            let live = || owners.iter().copied().filter(|s| !down.contains(s));
            let first = live().next().ok_or_else(|| {
                SearchError::Unavailable(format!(
                    "partition {p} has no reachable replica (held by {:?})",
                    self.owners(p)
                ))
            })?;
            let preferred = || {
                owners[..self.caught_up[p as usize]]
                    .iter()
                    .copied()
                    .filter(|s| !down.contains(s) && !self.shards[*s].resting())
            };
            let load = |s: usize| groups.get(&s).map_or(0, Vec::len);
            let shard = preferred()
                .min_by_key(|&s| (load(s), rank(s)))
                // None caught up: the least behind that has not just failed, else any.
                .or_else(|| live().find(|&s| !self.shards[s].resting()))
                .unwrap_or(first);
            groups.entry(shard).or_default().push(p);
        }
        Ok(groups)
    }

    /// Runs `call` (named `name` in the metrics) on one replica per partition, chosen for
    /// `turn`, each shard given the partitions it serves; a shard that fails is marked down
    /// and its partitions go to their next replica.
    pub(crate) async fn scatter<T, F, Fut>(
        &self,
        name: &'static str,
        turn: usize,
        partitions: &[Partition],
        call: F,
    ) -> Result<Vec<T>, SearchError>
    where
        F: Fn(ShardClient<Channel>, Vec<Partition>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut down = HashSet::new();
        let mut pending = partitions.to_vec();
        let mut answers = Vec::new();
        while !pending.is_empty() {
            let groups = self.plan(&pending, &down, turn)?;
            let calls = groups.into_iter().map(|(shard, parts)| {
                let reply = call(self.shards[shard].client.clone(), parts.clone());
                async move { (shard, parts, reply.await) }
            });
            pending.clear();
            let started = Instant::now();
            let replies = join_all(calls).await;
            metrics::histogram!("sieve_router_scatter_seconds", "call" => name)
                .record(started.elapsed().as_secs_f64());
            for (shard, parts, reply) in replies {
                let outcome = match &reply {
                    Ok(_) => "ok",
                    Err(status) if status.code() == Code::InvalidArgument => "invalid_argument",
                    Err(_) => "failed",
                };
                metrics::counter!("sieve_router_shard_calls_total", "call" => name, "shard" => self.shards[shard].name.clone(), "outcome" => outcome).increment(1);
                match reply {
                    Ok(answer) => {
                        self.shards[shard].answered(None);
                        answers.push(answer);
                    }
                    Err(status) if status.code() == Code::InvalidArgument => {
                        return Err(SearchError::InvalidArgument(status.message().to_string()));
                    }
                    Err(status) => {
                        self.shards[shard].answered(Some(&status));
                        down.insert(shard);
                        metrics::counter!("sieve_router_rerouted_partitions_total", "call" => name)
                            .increment(parts.len() as u64);
                        pending.extend(parts);
                    }
                }
            }
        }
        Ok(answers)
    }
}

/// A collection of a cluster, searched through its shards.
pub struct ClusterCorpus {
    name: String,
    config: CollectionConfig,
    topology: Arc<Topology>,
    /// Positions every replica read must have applied (empty for an eventual read).
    after: Token,
    /// How long a replica may wait to reach them.
    read_wait: Duration,
    runtime: tokio::runtime::Handle,
    /// Documents per list to bring back with the lists.
    prefetch: AtomicUsize,
    /// Documents that came back with the lists, by id.
    cache: Mutex<HashMap<Arc<str>, Document>>,
    /// Its turn among the reads (see [`Topology::turn`]): every call of one search asks the
    /// same replicas while they answer.
    turn: usize,
}

/// What one retrieval round asks for.
#[derive(Default)]
struct Round<'a> {
    text: &'a str,
    vector: Option<&'a [f32]>,
    k: usize,
    filter: Option<&'a Filter>,
    /// Cluster-wide statistics: a BM25 list is wanted.
    stats: Option<&'a Bm25Stats>,
    with_stats: bool,
    /// The list is one of a hybrid search's.
    fused: bool,
}

impl ClusterCorpus {
    /// The collection `name` with `config`, over `topology`, read by replicas that applied
    /// `after` (waiting at most `read_wait` each); shard calls run on `runtime`.
    pub fn new(
        name: &str,
        config: CollectionConfig,
        topology: Arc<Topology>,
        after: Token,
        read_wait: Duration,
        runtime: tokio::runtime::Handle,
    ) -> ClusterCorpus {
        ClusterCorpus {
            name: name.to_string(),
            config,
            turn: topology.turn(),
            topology,
            after,
            read_wait,
            runtime,
            prefetch: AtomicUsize::new(0),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The token's positions for `partitions`, for a shard request.
    fn after(&self, partitions: &[Partition]) -> Vec<proto::Position> {
        let positions: Vec<(Partition, u64)> =
            partitions.iter().map(|&p| (p, self.after.at(p))).filter(|&(_, seq)| seq > 0).collect();
        positions_to_proto(&positions)
    }

    fn wait_ms(&self) -> u32 {
        self.read_wait.as_millis() as u32
    }

    fn all_partitions(&self) -> Vec<Partition> {
        (0..self.topology.partitioner.count()).collect()
    }

    /// BM25 statistics of `query` summed over every partition.
    pub async fn bm25_stats(&self, query: &str) -> Result<Bm25Stats, SearchError> {
        let parts = self
            .topology
            .scatter("stats", self.turn, &self.all_partitions(), |mut client, partitions| {
                let request = proto::StatsRequest {
                    collection: self.name.clone(),
                    after: self.after(&partitions),
                    wait_ms: self.wait_ms(),
                    partitions,
                    query: query.to_string(),
                };
                async move { client.stats(request).await.map(|r| r.into_inner()) }
            })
            .await?;
        let mut total = Bm25Stats::default();
        for part in parts {
            total.add(&stats_from_proto(part)).map_err(SearchError::Internal)?;
        }
        Ok(total)
    }

    /// One retrieval round over every partition: the BM25 list (with `stats`), the dense list
    /// (with `vector`), each merged to `k`; with `with_stats`, the BM25 statistics of `text`
    /// summed. The documents of each list's first [`prefetch`](Corpus::prefetch) ids come
    /// back with the lists and are kept for [`Corpus::fetch`].
    async fn retrieve(&self, round: Round<'_>) -> Result<Retrieved, SearchError> {
        let filter = encode_filter(round.filter);
        // A fused list's first hits can sit a little deeper in each list than their rank.
        let depth = if round.fused { 2 } else { 1 };
        let documents_k = (self.prefetch.load(Ordering::Relaxed) * depth) as u32;
        let replies = self
            .topology
            .scatter("retrieve", self.turn, &self.all_partitions(), |mut client, partitions| {
                let request = proto::RetrieveRequest {
                    collection: self.name.clone(),
                    after: self.after(&partitions),
                    wait_ms: self.wait_ms(),
                    partitions,
                    query: round.text.to_string(),
                    vector: round.vector.map(<[f32]>::to_vec).unwrap_or_default(),
                    bm25_k: if round.stats.is_some() { round.k as u32 } else { 0 },
                    dense_k: if round.vector.is_some() { round.k as u32 } else { 0 },
                    filter: filter.clone(),
                    stats: round.stats.map(stats_to_proto),
                    with_stats: round.with_stats,
                    documents_k,
                };
                async move { client.retrieve(request).await.map(|r| r.into_inner()) }
            })
            .await?;
        let (mut bm25, mut dense, mut stats) = (Vec::new(), Vec::new(), None::<Bm25Stats>);
        let mut cache = self.cache.lock();
        for reply in replies {
            bm25.push(ranked_from_proto(reply.bm25));
            dense.push(ranked_from_proto(reply.dense));
            if let Some(part) = reply.stats {
                let part = stats_from_proto(part);
                match &mut stats {
                    None => stats = Some(part),
                    Some(total) => total.add(&part).map_err(SearchError::Internal)?,
                }
            }
            for fetched in reply.documents {
                let document = decode_document(&fetched.document)
                    .map_err(|e| SearchError::Internal(format!("document: {e}")))?;
                if let Some(document) = document {
                    cache.insert(Arc::from(fetched.id), document);
                }
            }
        }
        Ok(Retrieved {
            bm25: merge(bm25, round.k),
            dense: merge(dense, round.k),
            stats: round.with_stats.then(|| stats.unwrap_or_default()),
            documents: Vec::new(),
        })
    }

    /// The documents with these ids (`None` where there is none), from one replica of each
    /// partition involved.
    pub async fn fetch_documents(
        &self,
        ids: &[Arc<str>],
    ) -> Result<Vec<Option<Document>>, SearchError> {
        let partitioner = self.topology.partitioner;
        let mut by_partition: BTreeMap<Partition, Vec<String>> = BTreeMap::new();
        for id in ids {
            by_partition.entry(partitioner.partition_of(id)).or_default().push(id.to_string());
        }
        let partitions: Vec<Partition> = by_partition.keys().copied().collect();
        let found = self
            .topology
            .scatter("fetch", self.turn, &partitions, |mut client, parts| {
                let ids: Vec<String> =
                    parts.iter().flat_map(|p| by_partition[p].iter().cloned()).collect();
                let request = proto::FetchRequest {
                    collection: self.name.clone(),
                    ids: ids.clone(),
                    after: self.after(&parts),
                    wait_ms: self.wait_ms(),
                };
                async move {
                    let reply = client.fetch(request).await?.into_inner();
                    let docs = reply
                        .documents
                        .iter()
                        .map(|bytes| {
                            decode_document(bytes)
                                .map_err(|e| Status::internal(format!("document: {e}")))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(ids.into_iter().zip(docs).collect::<Vec<_>>())
                }
            })
            .await?;
        let mut by_id: HashMap<String, Option<Document>> = found.into_iter().flatten().collect();
        Ok(ids.iter().map(|id| by_id.remove(&**id).flatten()).collect())
    }
}

impl Corpus for ClusterCorpus {
    fn name(&self) -> &str {
        &self.name
    }

    fn config(&self) -> &CollectionConfig {
        &self.config
    }

    fn bm25(&self, text: &str, k: usize, filter: Option<&Filter>) -> Result<Ranked, SearchError> {
        self.runtime.block_on(async {
            let stats = self.bm25_stats(text).await?;
            let round = Round { text, k, filter, stats: Some(&stats), ..Round::default() };
            Ok(self.retrieve(round).await?.bm25)
        })
    }

    fn dense(
        &self,
        vector: &[f32],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Ranked, SearchError> {
        let round = Round { vector: Some(vector), k, filter, ..Round::default() };
        Ok(self.runtime.block_on(self.retrieve(round))?.dense)
    }

    /// Two rounds: the dense list with the BM25 statistics, then the BM25 list.
    fn hybrid(&self, lists: Hybrid<'_>) -> Result<Both, SearchError> {
        self.runtime.block_on(async {
            let started = std::time::Instant::now();
            let first = Round {
                text: lists.text,
                vector: Some(lists.vector),
                k: lists.dense_k,
                filter: lists.filter,
                with_stats: true,
                fused: true,
                ..Round::default()
            };
            let first = self.retrieve(first).instrument(tracing::info_span!("dense")).await?;
            let dense_time = started.elapsed();
            let stats = first.stats.unwrap_or_default();
            let second = Round {
                text: lists.text,
                k: lists.bm25_k,
                filter: lists.filter,
                stats: Some(&stats),
                fused: true,
                ..Round::default()
            };
            let bm25 = self.retrieve(second).instrument(tracing::info_span!("bm25")).await?.bm25;
            Ok(Both { bm25: (bm25, started.elapsed()), dense: (first.dense, dense_time) })
        })
    }

    fn prefetch(&self, n: usize) {
        self.prefetch.store(n, Ordering::Relaxed);
    }

    fn fetch(&self, ids: &[Arc<str>]) -> Result<Vec<Option<Document>>, SearchError> {
        // Documents that came with the lists; one round for the others.
        let kept: Vec<Option<Document>> = {
            let cache = self.cache.lock();
            ids.iter().map(|id| cache.get(id).cloned()).collect()
        };
        let missing: Vec<Arc<str>> = ids
            .iter()
            .zip(&kept)
            .filter(|(_, doc)| doc.is_none())
            .map(|(id, _)| Arc::clone(id))
            .collect();
        if missing.is_empty() {
            return Ok(kept);
        }
        let mut fetched = self.runtime.block_on(self.fetch_documents(&missing))?.into_iter();
        Ok(kept.into_iter().map(|doc| doc.or_else(|| fetched.next().flatten())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status reply: `held` partitions, each `behind` messages behind.
    fn reply(shard: &str, held: &[Partition], behind: u64) -> proto::StatusReply {
        proto::StatusReply {
            shard: shard.to_string(),
            partitions_total: 4,
            partitions: held
                .iter()
                .map(|&partition| proto::PartitionStatus {
                    partition,
                    applied: 1000,
                    serving: true,
                    stream_last: Some(1000 + behind),
                    ..Default::default()
                })
                .collect(),
            not_ready: String::new(),
        }
    }

    fn topology(replies: &[proto::StatusReply]) -> Topology {
        let addresses: Vec<String> = (0..replies.len()).map(|i| format!("http://h{i}:1")).collect();
        let client = shard_client("http://127.0.0.1:1").unwrap();
        Topology::of(
            addresses.iter().zip(replies).map(|(a, r)| (a, client.clone(), r.clone())),
            Partitioner::new(4).unwrap(),
        )
    }

    /// Each plan as (shard index → partitions).
    fn plans(topology: &Topology, down: &[usize], count: usize) -> Vec<Vec<(usize, Vec<u32>)>> {
        let down: HashSet<usize> = down.iter().copied().collect();
        (0..count)
            .map(|_| {
                topology.plan(&[0, 1, 2, 3], &down, topology.turn()).unwrap().into_iter().collect()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_search_spreads_its_partitions_over_the_caught_up_replicas_turning_between_searches()
    {
        // a holds 0-1, b 2-3, c all: each shard gets as few partitions as the others, ties
        // going to the shard the turn starts from (a, b, c, a, ...).
        let t = topology(&[
            reply("a", &[0, 1], 0),
            reply("b", &[2, 3], 0),
            reply("c", &[0, 1, 2, 3], 0),
        ]);
        assert_eq!(
            plans(&t, &[], 4),
            [
                vec![(0, vec![0]), (1, vec![2, 3]), (2, vec![1])],
                vec![(0, vec![1]), (1, vec![2, 3]), (2, vec![0])],
                vec![(0, vec![1]), (1, vec![2]), (2, vec![0, 3])],
                vec![(0, vec![0]), (1, vec![2, 3]), (2, vec![1])],
            ]
        );
        // c down: a and b every time.
        assert_eq!(plans(&t, &[2], 3), vec![vec![(0, vec![0, 1]), (1, vec![2, 3])]; 3]);
        // b and c down: partitions 2 and 3 have no replica left.
        let refused = t.plan(&[0, 2], &[1, 2].into_iter().collect(), 0).unwrap_err();
        assert_eq!(
            refused.to_string(),
            SearchError::Unavailable(
                "partition 2 has no reachable replica (held by [\"b\", \"c\"])".into()
            )
            .to_string()
        );
        // A shard that just failed is passed over while a caught-up replica can answer.
        t.shards[2].answered(Some(&Status::unavailable("gone")));
        assert_eq!(plans(&t, &[], 3), vec![vec![(0, vec![0, 1]), (1, vec![2, 3])]; 3]);
    }

    #[tokio::test]
    async fn a_replica_catching_up_answers_only_when_no_caught_up_one_can() {
        let behind = CAUGHT_UP + 1;
        let t = topology(&[reply("a", &[0, 1, 2, 3], behind), reply("b", &[0, 1, 2, 3], 0)]);
        assert_eq!(plans(&t, &[], 2), vec![vec![(1, vec![0, 1, 2, 3])]; 2]);
        assert_eq!(plans(&t, &[1], 1), vec![vec![(0, vec![0, 1, 2, 3])]]);
        let t = topology(&[reply("a", &[0, 1], behind * 2), reply("b", &[0, 1], behind)]);
        // Neither caught up: the least behind.
        assert_eq!(
            t.plan(&[0, 1], &HashSet::new(), 0).unwrap().into_iter().collect::<Vec<_>>(),
            [(1, vec![0, 1])]
        );
    }
}
