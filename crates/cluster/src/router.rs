//! The router's view of a collection spread over shards: a [`Corpus`] whose retrievers
//! scatter to one serving replica per partition and gather by (score, id). BM25 runs in two
//! phases (statistics summed over every partition, then lists scored with them), so each
//! shard scores as one index holding every document would. Fusion, fetch order and the
//! cascade are the planner's, run once on the merged lists.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use futures::future::join_all;
use sieve_planner::{Corpus, Ranked, SearchError};
use sieve_storage::{Bm25Stats, CollectionConfig, Document, Filter};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::partition::{Partition, Partitioner};
use crate::service::proto::shard_client::ShardClient;
use crate::service::{
    decode_document, encode_filter, proto, ranked_from_proto, stats_from_proto, stats_to_proto,
};
use crate::shard::merge;

/// A shard as the router reaches it.
struct ShardHandle {
    name: String,
    client: ShardClient<Channel>,
}

/// Which shards hold which partitions, as their status reported it.
pub struct Topology {
    partitioner: Partitioner,
    shards: Vec<ShardHandle>,
    /// Per partition: the shards (indexes into `shards`) holding it and still applying.
    owners: Vec<Vec<usize>>,
}

impl Topology {
    /// Asks each shard at `addresses` (`http://host:port`) what it holds. A shard that does not
    /// answer is left out (its partitions are served by their other replicas).
    pub async fn discover(addresses: &[String]) -> Result<Topology, SearchError> {
        let mut shards = Vec::new();
        let mut held = Vec::new();
        let mut partitions = None;
        for address in addresses {
            let endpoint = Endpoint::from_shared(address.clone()).map_err(|e| {
                SearchError::InvalidArgument(format!("shard address '{address}': {e}"))
            })?;
            let mut client = ShardClient::new(endpoint.connect_lazy())
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20);
            let status = match client.status(proto::StatusRequest { detail: false }).await {
                Ok(reply) => reply.into_inner(),
                Err(e) => {
                    tracing::warn!(shard = address, error = %e, "shard does not answer; left out");
                    continue;
                }
            };
            match partitions {
                None => partitions = Some(status.partitions_total),
                Some(p) if p != status.partitions_total => {
                    return Err(SearchError::Internal(format!(
                        "shard '{}' counts {} partitions, others {p}",
                        status.shard, status.partitions_total
                    )));
                }
                Some(_) => {}
            }
            held.push(
                status
                    .partitions
                    .iter()
                    .filter(|p| p.error.is_empty())
                    .map(|p| p.partition)
                    .collect::<Vec<_>>(),
            );
            shards.push(ShardHandle { name: status.shard, client });
        }
        let count =
            partitions.ok_or_else(|| SearchError::Unavailable("no shard answered".to_string()))?;
        let partitioner = Partitioner::new(count).map_err(SearchError::Internal)?;
        let mut owners = vec![Vec::new(); count as usize];
        for (shard, partitions) in held.iter().enumerate() {
            for &p in partitions {
                if let Some(owners) = owners.get_mut(p as usize) {
                    owners.push(shard);
                }
            }
        }
        Ok(Topology { partitioner, shards, owners })
    }

    /// The cluster's partitioner.
    pub fn partitioner(&self) -> Partitioner {
        self.partitioner
    }

    /// Names of the shards holding `partition`.
    pub fn owners(&self, partition: Partition) -> Vec<&str> {
        self.owners[partition as usize].iter().map(|&s| self.shards[s].name.as_str()).collect()
    }

    /// One live replica per partition, grouped by shard.
    fn plan(
        &self,
        partitions: &[Partition],
        down: &HashSet<usize>,
    ) -> Result<BTreeMap<usize, Vec<Partition>>, SearchError> {
        let mut groups: BTreeMap<usize, Vec<Partition>> = BTreeMap::new();
        for &p in partitions {
            let shard =
                self.owners[p as usize].iter().find(|s| !down.contains(s)).ok_or_else(|| {
                    SearchError::Unavailable(format!(
                        "partition {p} has no reachable replica (held by {:?})",
                        self.owners(p)
                    ))
                })?;
            groups.entry(*shard).or_default().push(p);
        }
        Ok(groups)
    }

    /// Runs `call` on one replica per partition, each shard given the partitions it serves;
    /// a shard that fails is marked down and its partitions go to their next replica.
    async fn scatter<T, F, Fut>(
        &self,
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
            let groups = self.plan(&pending, &down)?;
            let calls = groups.into_iter().map(|(shard, parts)| {
                let reply = call(self.shards[shard].client.clone(), parts.clone());
                async move { (shard, parts, reply.await) }
            });
            pending.clear();
            for (shard, parts, reply) in join_all(calls).await {
                match reply {
                    Ok(answer) => answers.push(answer),
                    Err(status) if status.code() == Code::InvalidArgument => {
                        return Err(SearchError::InvalidArgument(status.message().to_string()));
                    }
                    Err(status) => {
                        tracing::warn!(shard = self.shards[shard].name, error = %status, "shard call failed; trying other replicas");
                        down.insert(shard);
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
    runtime: tokio::runtime::Handle,
}

impl ClusterCorpus {
    /// The collection `name` with `config`, over `topology`; shard calls run on `runtime`.
    pub fn new(
        name: &str,
        config: CollectionConfig,
        topology: Arc<Topology>,
        runtime: tokio::runtime::Handle,
    ) -> ClusterCorpus {
        ClusterCorpus { name: name.to_string(), config, topology, runtime }
    }

    fn all_partitions(&self) -> Vec<Partition> {
        (0..self.topology.partitioner.count()).collect()
    }

    /// BM25 statistics of `query` summed over every partition.
    pub async fn bm25_stats(&self, query: &str) -> Result<Bm25Stats, SearchError> {
        let parts = self
            .topology
            .scatter(&self.all_partitions(), |mut client, partitions| {
                let request = proto::StatsRequest {
                    collection: self.name.clone(),
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

    async fn retrieve(
        &self,
        text: &str,
        vector: Option<&[f32]>,
        k: usize,
        filter: Option<&Filter>,
        stats: Option<&Bm25Stats>,
    ) -> Result<Ranked, SearchError> {
        let filter = encode_filter(filter);
        let lists = self
            .topology
            .scatter(&self.all_partitions(), |mut client, partitions| {
                let request = proto::RetrieveRequest {
                    collection: self.name.clone(),
                    partitions,
                    query: text.to_string(),
                    vector: vector.map(<[f32]>::to_vec).unwrap_or_default(),
                    bm25_k: if stats.is_some() { k as u32 } else { 0 },
                    dense_k: if vector.is_some() { k as u32 } else { 0 },
                    filter: filter.clone(),
                    stats: stats.map(stats_to_proto),
                };
                async move {
                    let reply = client.retrieve(request).await?.into_inner();
                    Ok(if stats.is_some() { reply.bm25 } else { reply.dense })
                }
            })
            .await?;
        Ok(merge(lists.into_iter().map(ranked_from_proto).collect(), k))
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
            self.retrieve(text, None, k, filter, Some(&stats)).await
        })
    }

    fn dense(
        &self,
        vector: &[f32],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Ranked, SearchError> {
        self.runtime.block_on(self.retrieve("", Some(vector), k, filter, None))
    }

    fn fetch(&self, ids: &[Arc<str>]) -> Result<Vec<Option<Document>>, SearchError> {
        let partitioner = self.topology.partitioner;
        let mut by_partition: BTreeMap<Partition, Vec<String>> = BTreeMap::new();
        for id in ids {
            by_partition.entry(partitioner.partition_of(id)).or_default().push(id.to_string());
        }
        let partitions: Vec<Partition> = by_partition.keys().copied().collect();
        let found =
            self.runtime.block_on(self.topology.scatter(&partitions, |mut client, parts| {
                let ids: Vec<String> =
                    parts.iter().flat_map(|p| by_partition[p].iter().cloned()).collect();
                let request =
                    proto::FetchRequest { collection: self.name.clone(), ids: ids.clone() };
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
            }))?;
        let mut by_id: HashMap<String, Option<Document>> = found.into_iter().flatten().collect();
        Ok(ids.iter().map(|id| by_id.remove(&**id).flatten()).collect())
    }
}
