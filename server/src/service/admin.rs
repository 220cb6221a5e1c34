//! `sieve.v1.Admin`: snapshots of collections (create, restore into a new collection, list,
//! delete) and, on a cluster router, of log partitions and their assignment to shards. The
//! file work runs off the async runtime; every method needs an admin key.

use std::sync::Arc;
use std::time::Duration;

use sieve_proto::v1::admin_server::Admin;
use sieve_proto::v1::{
    AssignPartitionRequest, AssignPartitionResponse, Collection, CreateSnapshotRequest,
    DeleteSnapshotRequest, DeleteSnapshotResponse, ListSnapshotsRequest, ListSnapshotsResponse,
    PartitionSnapshot, RestoreSnapshotRequest, Snapshot, SnapshotPartitionsRequest,
    SnapshotPartitionsResponse,
};
use sieve_storage::snapshot;
use tonic::{Request, Response, Status};

use super::{Backend, State};
use crate::convert;
use crate::status::{self, blocking};

pub struct AdminService(pub Arc<State>);

impl AdminService {
    /// The cluster behind a router, for its cluster-only calls: a model tier has no
    /// collections, and a standalone server answers FAILED_PRECONDITION with `standalone`.
    fn router(&self, standalone: &'static str) -> Result<&Arc<sieve_cluster::Cluster>, Status> {
        match &self.0.backend {
            Backend::Cluster(cluster) => Ok(cluster),
            Backend::Models => Err(super::no_collections()),
            Backend::Local(_) => Err(Status::failed_precondition(standalone)),
        }
    }
}

fn required(value: &str, field: &str) -> Result<(), Status> {
    if value.is_empty() {
        Err(Status::invalid_argument(format!("{field}: must not be empty")))
    } else {
        Ok(())
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_snapshot(
        &self,
        request: Request<CreateSnapshotRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        let name = request.into_inner().collection;
        required(&name, "collection")?;
        let store = Arc::clone(self.0.store("CreateSnapshot")?);
        let info =
            blocking(move || snapshot::create(&store, &name).map_err(status::storage)).await?;
        Ok(Response::new(convert::snapshot_to_proto(info)))
    }

    async fn restore_snapshot(
        &self,
        request: Request<RestoreSnapshotRequest>,
    ) -> Result<Response<Collection>, Status> {
        let request = request.into_inner();
        required(&request.snapshot, "snapshot")?;
        required(&request.collection, "collection")?;
        let store = Arc::clone(self.0.store("RestoreSnapshot")?);
        let restored = blocking(move || {
            let collection = snapshot::restore(&store, &request.snapshot, &request.collection)
                .map_err(status::storage)?;
            Ok(convert::collection_to_proto(&collection))
        })
        .await?;
        Ok(Response::new(restored))
    }

    async fn list_snapshots(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        let collection = request.into_inner().collection;
        let store = Arc::clone(self.0.store("ListSnapshots")?);
        let found = blocking(move || {
            let filter = (!collection.is_empty()).then_some(collection.as_str());
            snapshot::list(&store, filter).map_err(status::storage)
        })
        .await?;
        let snapshots = found.into_iter().map(convert::snapshot_to_proto).collect();
        Ok(Response::new(ListSnapshotsResponse { snapshots }))
    }

    async fn delete_snapshot(
        &self,
        request: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        let name = request.into_inner().snapshot;
        required(&name, "snapshot")?;
        let store = Arc::clone(self.0.store("DeleteSnapshot")?);
        blocking(move || snapshot::delete(&store, &name).map_err(status::storage)).await?;
        Ok(Response::new(DeleteSnapshotResponse {}))
    }

    async fn snapshot_partitions(
        &self,
        request: Request<SnapshotPartitionsRequest>,
    ) -> Result<Response<SnapshotPartitionsResponse>, Status> {
        let request = request.into_inner();
        let cluster = self.router(
            "SnapshotPartitions is for a cluster router (--role router): a standalone server \
             has no log partitions; snapshot its collections with CreateSnapshot",
        )?;
        let taken =
            cluster.snapshot(&request.partitions, request.purge).await.map_err(status::cluster)?;
        let snapshots = taken
            .into_iter()
            .map(|(shard, s)| PartitionSnapshot {
                partition: s.partition,
                shard,
                stream_seq: s.stream_seq,
                collections: s.collections,
                documents: s.documents,
                size_bytes: s.bytes,
                purged: s.purged,
            })
            .collect();
        Ok(Response::new(SnapshotPartitionsResponse { snapshots }))
    }

    async fn assign_partition(
        &self,
        request: Request<AssignPartitionRequest>,
    ) -> Result<Response<AssignPartitionResponse>, Status> {
        let request = request.into_inner();
        let cluster = self.router(
            "AssignPartition is for a cluster router (--role router): a standalone server has \
             no log partitions or shards",
        )?;
        let wait = match request.wait_ms {
            0 => ASSIGN_WAIT_DEFAULT,
            ms if ms > ASSIGN_WAIT_MAX.as_millis() as u32 => {
                return Err(Status::invalid_argument(format!(
                    "wait_ms: {ms} is above the limit of {}",
                    ASSIGN_WAIT_MAX.as_millis()
                )));
            }
            ms => Duration::from_millis(u64::from(ms)),
        };
        let assignment = cluster
            .assign(request.partition, request.add.trim(), request.remove.trim(), wait)
            .await
            .map_err(status::cluster)?;
        Ok(Response::new(AssignPartitionResponse {
            epoch: assignment.epoch,
            shards: assignment.owners(request.partition).into_iter().map(String::from).collect(),
        }))
    }
}

/// How long `AssignPartition`'s `remove` waits for another replica by default, and at most.
const ASSIGN_WAIT_DEFAULT: Duration = Duration::from_secs(60);
const ASSIGN_WAIT_MAX: Duration = Duration::from_secs(600);
