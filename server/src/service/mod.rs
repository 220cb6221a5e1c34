//! The gRPC services of `sieve.v1`.

mod admin;
mod collections;
mod documents;
mod info;
mod rerank;
mod search;

use std::sync::Arc;

use sieve_planner::Planner;
use sieve_storage::Store;
use tokio::sync::watch;

pub use admin::AdminService;
pub use collections::CollectionsService;
pub use documents::DocumentsService;
pub use info::InfoService;
pub use rerank::RerankService;
pub use search::SearchService;

use crate::config::Config;
use crate::limits::Admission;

/// What every service shares.
pub struct State {
    /// All collections.
    pub store: Arc<Store>,
    /// Limits and settings.
    pub config: Config,
    /// Runs searches with the loaded models and the default cascade.
    pub planner: Arc<Planner>,
    /// Concurrency limits.
    pub admission: Admission,
    /// Turns true when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
}
