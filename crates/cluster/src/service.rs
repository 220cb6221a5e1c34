//! The shard's internal gRPC service (`sieve.cluster.v1.Shard`) over a [`Shard`], and its
//! client side, the conversions both ends share.

use std::sync::Arc;

use sieve_planner::Ranked;
use sieve_storage::{Bm25Stats, Document, Filter};
use tonic::{Request, Response, Status};

use crate::message::{decode_value, encode_value};
use crate::partition::Partition;
use crate::shard::{Retrieval, Shard, ShardError};

/// Generated messages, client and server of `sieve.cluster.v1`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("sieve.cluster.v1");
}

pub(crate) fn stats_to_proto(stats: &Bm25Stats) -> proto::Bm25Stats {
    proto::Bm25Stats {
        documents: stats.documents,
        tokens: stats.tokens,
        doc_freqs: stats.doc_freqs.clone(),
    }
}

pub(crate) fn stats_from_proto(stats: proto::Bm25Stats) -> Bm25Stats {
    Bm25Stats { documents: stats.documents, tokens: stats.tokens, doc_freqs: stats.doc_freqs }
}

pub(crate) fn ranked_to_proto(list: Ranked) -> Vec<proto::Scored> {
    list.into_iter().map(|(id, score)| proto::Scored { id: id.to_string(), score }).collect()
}

pub(crate) fn ranked_from_proto(list: Vec<proto::Scored>) -> Ranked {
    list.into_iter().map(|s| (Arc::from(s.id), s.score)).collect()
}

pub(crate) fn positions_to_proto(positions: &[(Partition, u64)]) -> Vec<proto::Position> {
    positions.iter().map(|&(partition, seq)| proto::Position { partition, seq }).collect()
}

fn positions_from_proto(positions: &[proto::Position]) -> Vec<(Partition, u64)> {
    positions.iter().map(|p| (p.partition, p.seq)).collect()
}

/// The most documents per list a retrieval returns with its lists.
const MAX_DOCUMENTS_K: usize = 100;

/// The longest a read waits at a shard for its consistency token, whatever it asks.
const MAX_READ_WAIT_MS: u32 = 30_000;

pub(crate) fn encode_filter(filter: Option<&Filter>) -> Vec<u8> {
    filter.map(encode_value).unwrap_or_default()
}

pub(crate) fn decode_document(bytes: &[u8]) -> Result<Option<Document>, String> {
    if bytes.is_empty() { Ok(None) } else { decode_value(bytes).map(Some) }
}

fn status(error: ShardError) -> Status {
    match error {
        ShardError::NotOwned { .. } => Status::failed_precondition(error.to_string()),
        ShardError::InvalidArgument(msg) => Status::invalid_argument(msg),
        ShardError::Behind { .. } | ShardError::NotServing { .. } | ShardError::Log(_) => {
            Status::unavailable(error.to_string())
        }
        ShardError::Storage(e) => Status::internal(e.to_string()),
    }
}

/// Serves a [`Shard`] over gRPC.
#[derive(Clone)]
pub struct ShardService {
    shard: Arc<Shard>,
}

impl ShardService {
    /// The tonic service for `shard`.
    pub fn server(shard: Arc<Shard>) -> proto::shard_server::ShardServer<ShardService> {
        proto::shard_server::ShardServer::new(ShardService { shard })
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shard) -> Result<T, ShardError> + Send + 'static,
    ) -> Result<T, Status> {
        let shard = Arc::clone(&self.shard);
        tokio::task::spawn_blocking(move || f(&shard))
            .await
            .map_err(|e| Status::internal(format!("shard call failed: {e}")))?
            .map_err(status)
    }

    /// Holds a read until the positions it asks for are applied (at most `wait_ms`).
    async fn after(&self, after: &[proto::Position], wait_ms: u32) -> Result<(), Status> {
        if after.is_empty() {
            return Ok(());
        }
        let within = std::time::Duration::from_millis(wait_ms.min(MAX_READ_WAIT_MS).into());
        self.shard.wait_applied(&positions_from_proto(after), within).await.map_err(status)
    }
}

#[tonic::async_trait]
impl proto::shard_server::Shard for ShardService {
    async fn stats(
        &self,
        request: Request<proto::StatsRequest>,
    ) -> Result<Response<proto::Bm25Stats>, Status> {
        let r = request.into_inner();
        self.after(&r.after, r.wait_ms).await?;
        let stats = self.blocking(move |s| s.stats(&r.collection, &r.partitions, &r.query)).await?;
        Ok(Response::new(stats_to_proto(&stats)))
    }

    async fn retrieve(
        &self,
        request: Request<proto::RetrieveRequest>,
    ) -> Result<Response<proto::RetrieveReply>, Status> {
        let r = request.into_inner();
        self.after(&r.after, r.wait_ms).await?;
        let filter = if r.filter.is_empty() {
            None
        } else {
            Some(
                decode_value(&r.filter)
                    .map_err(|e| Status::invalid_argument(format!("filter: {e}")))?,
            )
        };
        let retrieval = Retrieval {
            collection: r.collection,
            partitions: r.partitions,
            text: r.query,
            vector: (!r.vector.is_empty()).then_some(r.vector),
            bm25_k: r.bm25_k as usize,
            dense_k: r.dense_k as usize,
            filter,
            stats: r.stats.map(stats_from_proto),
            with_stats: r.with_stats,
            documents_k: (r.documents_k as usize).min(MAX_DOCUMENTS_K),
        };
        let found = self.blocking(move |s| s.retrieve(&retrieval)).await?;
        Ok(Response::new(proto::RetrieveReply {
            bm25: ranked_to_proto(found.bm25),
            dense: ranked_to_proto(found.dense),
            stats: found.stats.as_ref().map(stats_to_proto),
            documents: found
                .documents
                .iter()
                .map(|doc| proto::Fetched { id: doc.id.clone(), document: encode_value(doc) })
                .collect(),
        }))
    }

    async fn fetch(
        &self,
        request: Request<proto::FetchRequest>,
    ) -> Result<Response<proto::FetchReply>, Status> {
        let r = request.into_inner();
        self.after(&r.after, r.wait_ms).await?;
        let found = self.blocking(move |s| s.fetch(&r.collection, &r.ids)).await?;
        let documents =
            found.iter().map(|doc| doc.as_ref().map(encode_value).unwrap_or_default()).collect();
        Ok(Response::new(proto::FetchReply { documents }))
    }

    async fn status(
        &self,
        request: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusReply>, Status> {
        let detail = request.into_inner().detail;
        let states = self.blocking(move |s| s.status(detail)).await?;
        Ok(Response::new(proto::StatusReply {
            shard: self.shard.id().to_string(),
            partitions_total: self.shard.partitioner().count(),
            not_ready: self.shard.ready().err().unwrap_or_default(),
            partitions: states
                .into_iter()
                .map(|s| proto::PartitionStatus {
                    partition: s.partition,
                    applied: s.applied,
                    stream_last: s.stream_last,
                    error: s.stopped.unwrap_or_default(),
                    serving: s.serving,
                    contents: s.contents.map(|c| proto::Contents {
                        sled: c.sled,
                        bm25: c.bm25,
                        graph_live: c.graph_live,
                        digest: c.digest,
                    }),
                })
                .collect(),
        }))
    }

    async fn wait_applied(
        &self,
        request: Request<proto::WaitRequest>,
    ) -> Result<Response<proto::WaitReply>, Status> {
        let r = request.into_inner();
        let within = std::time::Duration::from_millis(r.timeout_ms.min(MAX_READ_WAIT_MS).into());
        let reached =
            match self.shard.wait_applied(&positions_from_proto(&r.positions), within).await {
                Ok(()) => true,
                Err(ShardError::Behind { .. }) => false,
                Err(e) => return Err(status(e)),
            };
        Ok(Response::new(proto::WaitReply { reached }))
    }

    async fn counts(
        &self,
        request: Request<proto::CountsRequest>,
    ) -> Result<Response<proto::CountsReply>, Status> {
        let r = request.into_inner();
        let (documents, vectors, tombstones) =
            self.blocking(move |s| s.counts(&r.collection, &r.partitions)).await?;
        Ok(Response::new(proto::CountsReply { documents, vectors, tombstones }))
    }

    async fn snapshot(
        &self,
        request: Request<proto::SnapshotRequest>,
    ) -> Result<Response<proto::SnapshotReply>, Status> {
        let r = request.into_inner();
        let partitions =
            if r.partitions.is_empty() { self.shard.partitions() } else { r.partitions };
        let done = self.shard.snapshot(&partitions, r.purge).await.map_err(status)?;
        Ok(Response::new(proto::SnapshotReply {
            shard: self.shard.id().to_string(),
            snapshots: done
                .into_iter()
                .map(|s| proto::PartitionSnapshot {
                    partition: s.info.partition,
                    stream_seq: s.info.stream_seq,
                    collections: s.info.collections,
                    documents: s.info.documents,
                    bytes: s.bytes,
                    purged: s.purged,
                })
                .collect(),
        }))
    }
}
