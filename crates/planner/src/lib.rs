//! One search from plan to hits: the query embedded when the collection has an embedder, BM25
//! and dense retrieval in parallel inside the store (filters applied during retrieval), their
//! lists fused (RRF or normalised linear), the candidates' payloads fetched from sled, then the
//! rerank cascade, with each stage's list reported as it lands and the time every phase took.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sieve_models::Registry;
//! use sieve_planner::{Planner, Query};
//! use sieve_storage::{CollectionConfig, Document, Store, StoreOptions, WriteBatch};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path(), StoreOptions::default())?;
//! let docs = store.create_collection("docs", CollectionConfig::default())?;
//! let doc = Document { id: "1".into(), title: "Rust".into(), text: "Fearless concurrency.".into(), ..Default::default() };
//! docs.write(&WriteBatch { upserts: vec![doc], deletes: vec![] })?;
//!
//! let planner = Planner::new(Arc::new(Registry::default()), Vec::new());
//! let mut lists = Vec::new();
//! let query = Query { text: "concurrency".into(), ..Query::default() };
//! planner.search(docs, query, |list| lists.push(list)).await?;
//! assert_eq!(&*lists[0].hits[0].id, "1");
//! assert_eq!(lists[0].hits[0].bm25.unwrap().rank, 1);
//! # Ok(())
//! # }
//! ```

mod corpus;
mod fusion;
mod query;
mod search;

pub use corpus::{Both, Corpus, Hybrid, Ranked};
pub use fusion::{Fused, Ranking, linear_fusion, reciprocal_rank_fusion};
pub use query::{Fusion, Mode, Plan, Query};
pub use search::{Hit, ModelStep, Placement, Planner, StageList, Summary, Timings};
pub use sieve_rerank::{StagePlacement, StageSpec};

/// Candidates each retriever returns when the plan does not say.
pub const DEFAULT_CANDIDATES: usize = 100;
/// The RRF constant when the plan does not say (Cormack et al., 2009).
pub const DEFAULT_RRF_K: u32 = 60;
/// Hits returned when the query does not say.
pub const DEFAULT_TOP_K: usize = 10;
/// Fused candidates entering the rerank cascade when the plan does not say.
pub const DEFAULT_RERANK_CANDIDATES: usize = 50;

/// Why a search could not run.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The query or plan is malformed; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] sieve_storage::Error),
    /// A model failed or refused (e.g. its queue is full).
    #[error(transparent)]
    Model(#[from] sieve_models::ModelError),
    /// Part of the corpus cannot be reached now (a cluster partition without a serving
    /// replica); the message says which.
    #[error("{0}")]
    Unavailable(String),
    /// The search was interrupted (its worker task failed).
    #[error("{0}")]
    Internal(String),
}

impl From<sieve_rerank::RerankError> for SearchError {
    fn from(error: sieve_rerank::RerankError) -> Self {
        match error {
            // The cascade's messages name the request field (plan.rerank[i]...).
            sieve_rerank::RerankError::InvalidCascade(why) => SearchError::InvalidArgument(why),
            sieve_rerank::RerankError::Model(e) => SearchError::Model(e),
        }
    }
}
