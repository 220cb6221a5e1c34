//! The gRPC services of `sieve.v1`.

mod admin;
mod collections;
mod documents;
mod info;
mod rerank;
mod search;

use std::sync::Arc;

use sieve_cluster::Cluster;
use sieve_planner::Planner;
use sieve_storage::Store;
use tokio::sync::watch;
use tonic::Status;

pub use admin::AdminService;
pub use collections::CollectionsService;
pub use documents::DocumentsService;
pub use info::InfoService;
pub use rerank::RerankService;
pub use search::SearchService;

use crate::config::Config;
use crate::limits::Admission;

/// Where the collections live.
pub enum Backend {
    /// In this process's own storage (the standalone role).
    Local(Arc<Store>),
    /// In a cluster, reached through its log, catalog and shards (the router role).
    Cluster(Arc<Cluster>),
    /// Nowhere: a model tier holds no collections.
    Models,
}

/// What a model tier answers to a call about collections.
pub fn no_collections() -> Status {
    Status::failed_precondition(
        "this server is a model tier: it holds no collections (send collection calls to a \
         router)",
    )
}

/// What every service shares.
pub struct State {
    /// All collections.
    pub backend: Backend,
    /// Limits and settings.
    pub config: Config,
    /// Runs searches with the loaded models and the default cascade.
    pub planner: Arc<Planner>,
    /// Concurrency limits.
    pub admission: Admission,
    /// Turns true when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
}

impl State {
    /// The local store, for calls a router does not serve (yet): UNIMPLEMENTED there.
    pub fn store(&self, call: &str) -> Result<&Arc<Store>, Status> {
        match &self.backend {
            Backend::Local(store) => Ok(store),
            Backend::Cluster(_) => Err(Status::unimplemented(format!(
                "{call} is not available through a cluster router yet (SCALE.md: partition \
                 snapshots are per shard)"
            ))),
            Backend::Models => Err(no_collections()),
        }
    }
}
