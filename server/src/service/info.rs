//! `sieve.v1.Info`: version, build and limits.

use std::sync::Arc;

use sieve_proto::v1::info_server::Info;
use std::sync::atomic::Ordering;

use sieve_models::ModelDescription;

use sieve_proto::v1::{
    ClusterInfo, GetInfoRequest, GetInfoResponse, Limits, ModelInfo, RerankStageInfo, ShardInfo,
};
use tonic::{Request, Response, Status};

use super::{Backend, State};

pub struct InfoService(pub Arc<State>);

/// `<git commit> <profile>`, fixed at build time.
pub const BUILD: &str = concat!(env!("SIEVE_GIT_COMMIT"), " ", env!("SIEVE_PROFILE"));

#[tonic::async_trait]
impl Info for InfoService {
    async fn get_info(
        &self,
        _request: Request<GetInfoRequest>,
    ) -> Result<Response<GetInfoResponse>, Status> {
        let c = &self.0.config;
        let limits = Limits {
            max_message_bytes: c.max_message_bytes as u64,
            max_batch_documents: c.max_batch_documents as u32,
            max_text_bytes: c.max_text_bytes as u64,
            max_id_bytes: c.max_id_bytes as u32,
            max_metadata_entries: c.max_metadata_entries as u32,
            max_dimension: c.max_dimension as u32,
            max_top_k: c.max_top_k as u32,
            max_candidates: c.max_candidates as u32,
            max_filter_depth: c.max_filter_depth as u32,
            max_query_bytes: c.max_query_bytes as u64,
            max_ids_per_request: c.max_ids_per_request as u32,
            max_rerank_texts: c.max_rerank_texts as u32,
            max_rerank_candidates: c.max_rerank_candidates as u32,
            max_concurrent_searches: c.max_concurrent_searches as u32,
            max_ingest_streams: c.max_ingest_streams as u32,
            request_timeout_secs: c.request_timeout_secs,
            ingest_idle_timeout_secs: c.ingest_idle_timeout_secs,
        };
        let planner = &self.0.planner;
        let models = planner
            .models()
            .iter()
            .map(|(name, batched)| {
                let (policy, stats) = (batched.policy(), batched.stats());
                ModelInfo {
                    max_batch_tokens: policy.max_batch_tokens as u32,
                    max_batch_requests: policy.max_batch_requests as u32,
                    queue_capacity: policy.queue_capacity as u32,
                    queued: stats.queued.load(Ordering::Acquire) as u64,
                    cancelled: stats.cancelled.load(Ordering::Relaxed),
                    batches: stats.batches.load(Ordering::Relaxed),
                    inputs: stats.inputs.load(Ordering::Relaxed),
                    ..described(name, &ModelDescription::of(batched.model()))
                }
            })
            .collect::<Vec<_>>();
        let remote = planner.models().remote().map(|(name, model)| ModelInfo {
            served_by: model.served_by().to_string(),
            ..described(name, model.description())
        });
        let models = models.into_iter().chain(remote).collect();
        let default_cascade = planner
            .default_cascade()
            .iter()
            .map(|stage| RerankStageInfo { model: stage.model.clone(), keep: stage.keep as u32 })
            .collect();
        let (role, collections, cluster) = match &self.0.backend {
            Backend::Local(store) => ("standalone", store.collections().len() as u64, None),
            Backend::Cluster(cluster) => {
                let names = cluster.list().await.map_err(crate::status::cluster)?;
                let topology = cluster.topology();
                // Info answers without it when the assignment bucket cannot be read.
                let assignment = match cluster.assignment().await {
                    Ok(assignment) => assignment,
                    Err(e) => {
                        tracing::debug!(error = %e, "assignment unread for Info");
                        sieve_cluster::Assignment::default()
                    }
                };
                let assigned = |name: &str| -> Vec<u32> {
                    assignment
                        .held_by(name)
                        .map(|held| held.iter().copied().collect())
                        .unwrap_or_default()
                };
                let shards = topology
                    .shards()
                    .into_iter()
                    .map(|shard| ShardInfo {
                        name: shard.name.to_string(),
                        partitions: shard.partitions,
                        behind: shard.behind,
                        not_ready: shard.not_ready.to_string(),
                        address: shard.address.to_string(),
                        assigned: assigned(shard.name),
                    })
                    .collect();
                let silent = topology
                    .silent()
                    .iter()
                    .map(|(address, why)| {
                        let (name, record) = cluster.recorded(address).unzip();
                        let name = name.unwrap_or_default();
                        ShardInfo {
                            assigned: assigned(&name),
                            name,
                            partitions: record.map(|r| r.partitions).unwrap_or_default(),
                            not_ready: format!("does not answer: {why}"),
                            address: address.clone(),
                            ..ShardInfo::default()
                        }
                    })
                    .collect();
                let shape = ClusterInfo {
                    partitions: cluster.partitioner().count(),
                    shards,
                    unserved: topology.unserved(),
                    silent,
                    assignment_epoch: assignment.epoch,
                };
                ("router", names.len() as u64, Some(shape))
            }
            Backend::Models => ("model", 0, None),
        };
        Ok(Response::new(GetInfoResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            build: BUILD.to_string(),
            collections,
            role: role.to_string(),
            cluster,
            limits: Some(limits),
            models,
            default_cascade,
            default_embedder: c.default_embedder.clone(),
            api_keys_required: !(c.admin_keys.0.is_empty() && c.read_keys.0.is_empty()),
            tls: !c.tls_cert.as_os_str().is_empty(),
        }))
    }
}

/// What `Info` says of a model wherever it runs (its queue's fields left at zero).
fn described(name: &str, d: &ModelDescription) -> ModelInfo {
    ModelInfo {
        name: name.to_string(),
        architecture: d.architecture.clone(),
        precision: d.precision.clone(),
        max_length: d.max_length as u32,
        dimension: d.dimension as u32,
        kernels: d.kernels.clone(),
        ..ModelInfo::default()
    }
}
