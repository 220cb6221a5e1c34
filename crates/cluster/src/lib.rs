//! Sieve's cluster mode (SCALE.md): a replicated log on NATS JetStream that routers append
//! to and shards apply exactly once, and the partitioner that places documents.
//!
//! ```
//! use sieve_cluster::{LogOp, Partitioner};
//!
//! let partitions = Partitioner::new(16)?;
//! assert_eq!(partitions.partition_of("doc-1"), 1);
//! let op = LogOp::Write { collection: "papers".into(), upserts: vec![], deletes: vec!["doc-1".into()] };
//! assert_eq!(LogOp::decode(&op.encode())?, op);
//! # Ok::<(), String>(())
//! ```

mod apply;
mod assignment;
mod catalog;
mod cluster;
mod jetstream;
mod log;
mod message;
mod models;
mod partition;
mod roster;
mod router;
mod service;
mod shard;
mod token;

pub use apply::{Applied, Applier, ApplyError};
pub use assignment::{AssignError, Assignment, Assignments};
pub use catalog::{Catalog, CatalogEntry, CatalogError};
pub use cluster::{Cluster, ClusterError, Counts, ReadAt, RouterSettings};
pub use jetstream::{JetStreamLog, StreamSettings};
pub use log::{Appended, Bounds, Entry, Log, LogError, append_retrying};
pub use message::LogOp;
pub use models::{ModelsService, model_status, model_tier};
pub use partition::{Partition, Partitioner};
pub use roster::{ANNOUNCE_EVERY, Roster, ShardRecord};
pub use router::{ClusterCorpus, ShardView, Topology, shard_client, shard_clients};
pub use service::{ShardService, proto};
pub use shard::{
    CAUGHT_UP, Contents, PartitionState, Retrieval, Retrieved, Shard, ShardError, Snapshotted,
    merge,
};
pub use token::Token;
