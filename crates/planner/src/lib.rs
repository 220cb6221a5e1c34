//! One search from plan to hits: BM25 and dense retrieval run in parallel inside the store
//! (filters applied during retrieval), their lists are fused (RRF or normalised linear), and
//! the top hits' payloads are fetched from sled, with the time each phase took.
//!
//! ```
//! use sieve_planner::{Plan, Query, search};
//! use sieve_storage::{CollectionConfig, Document, Store, StoreOptions, WriteBatch};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path(), StoreOptions::default())?;
//! let docs = store.create_collection("docs", CollectionConfig::default())?;
//! let doc = Document { id: "1".into(), title: "Rust".into(), text: "Fearless concurrency.".into(), ..Default::default() };
//! docs.write(&WriteBatch { upserts: vec![doc], deletes: vec![] })?;
//!
//! let outcome = search(&docs, &Query { text: "concurrency".into(), ..Query::default() })?;
//! assert_eq!(&*outcome.hits[0].id, "1");
//! assert_eq!(outcome.hits[0].bm25.unwrap().rank, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod fusion;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use fusion::{Fused, Ranking, linear_fusion, reciprocal_rank_fusion};
use sieve_storage::{Candidate, Collection, Filter, Metadata};

/// Candidates each retriever returns when the plan does not say.
pub const DEFAULT_CANDIDATES: usize = 100;
/// The RRF constant when the plan does not say (Cormack et al., 2009).
pub const DEFAULT_RRF_K: u32 = 60;
/// Hits returned when the query does not say.
pub const DEFAULT_TOP_K: usize = 10;

/// Which first-stage retrievers run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// BM25 only.
    Bm25,
    /// Vector similarity only.
    Dense,
    /// Both, fused.
    Hybrid,
}

/// How retriever lists are combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fusion {
    /// Reciprocal Rank Fusion.
    #[default]
    Rrf,
    /// Min-max normalised scores, weighted and summed.
    Linear,
}

/// How to run one search; `None` fields take the defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Retrievers to run; by default hybrid when there is a query vector and text, dense with
    /// a vector alone, BM25 otherwise.
    pub mode: Option<Mode>,
    /// BM25 candidates.
    pub bm25_k: Option<usize>,
    /// Dense candidates.
    pub dense_k: Option<usize>,
    /// RRF constant.
    pub rrf_k: Option<u32>,
    /// BM25 weight in fusion (default 1).
    pub bm25_weight: Option<f32>,
    /// Dense weight in fusion (default 1).
    pub dense_weight: Option<f32>,
    /// Fusion method.
    pub fusion: Fusion,
}

/// One search.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Query {
    /// Query text for BM25.
    pub text: String,
    /// Query vector for dense retrieval.
    pub vector: Option<Vec<f32>>,
    /// Hits to return.
    pub top_k: Option<usize>,
    /// Metadata filter, applied inside both retrievers.
    pub filter: Option<Filter>,
    /// How to run it.
    pub plan: Plan,
    /// Leave hit texts out of the answer.
    pub omit_text: bool,
}

/// Where a retriever placed a hit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placement {
    /// From 1.
    pub rank: u32,
    /// The retriever's own score.
    pub score: f32,
}

/// One answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// Document id.
    pub id: Arc<str>,
    /// Fused score.
    pub score: f64,
    /// Where BM25 placed it.
    pub bm25: Option<Placement>,
    /// Where dense retrieval placed it.
    pub dense: Option<Placement>,
    /// Title.
    pub title: String,
    /// Text (empty when the query omits texts).
    pub text: String,
    /// Metadata.
    pub metadata: Metadata,
}

/// Time spent per phase.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// BM25 retrieval.
    pub bm25: Duration,
    /// Dense retrieval.
    pub dense: Duration,
    /// Fusion.
    pub fusion: Duration,
    /// Payload fetch from sled.
    pub fetch: Duration,
    /// Whole search.
    pub total: Duration,
}

/// The answer to one search, with how it was produced.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchOutcome {
    /// The mode that ran.
    pub mode: Mode,
    /// Best first.
    pub hits: Vec<Hit>,
    /// Candidates BM25 returned.
    pub bm25_candidates: usize,
    /// Candidates dense retrieval returned.
    pub dense_candidates: usize,
    /// Distinct documents after fusion.
    pub fused_candidates: usize,
    /// Time per phase.
    pub timings: Timings,
}

/// Why a search could not run.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The query or plan is malformed; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] sieve_storage::Error),
}

impl Query {
    /// The mode this query runs in on a collection.
    pub fn resolve_mode(&self, collection: &Collection) -> Result<Mode, SearchError> {
        let invalid = |msg: String| Err(SearchError::InvalidArgument(msg));
        let has_text = !self.text.trim().is_empty();
        let has_dense = collection.config().dense.is_some();
        if self.vector.is_some() && !has_dense {
            return invalid(format!(
                "query_vector: collection '{}' has no dense settings",
                collection.name()
            ));
        }
        let mode = match self.plan.mode {
            Some(mode) => mode,
            None if self.vector.is_some() && has_text => Mode::Hybrid,
            None if self.vector.is_some() => Mode::Dense,
            None => Mode::Bm25,
        };
        if matches!(mode, Mode::Bm25 | Mode::Hybrid) && !has_text {
            return invalid(format!("query: must not be empty for {} search", mode_name(mode)));
        }
        if matches!(mode, Mode::Dense | Mode::Hybrid) && self.vector.is_none() {
            return invalid(if has_dense {
                format!(
                    "query_vector: required for {} search (collection '{}' has no built-in embedder)",
                    mode_name(mode),
                    collection.name()
                )
            } else {
                format!(
                    "plan.mode: collection '{}' has no dense settings; use BM25",
                    collection.name()
                )
            });
        }
        Ok(mode)
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Bm25 => "BM25",
        Mode::Dense => "dense",
        Mode::Hybrid => "hybrid",
    }
}

fn check_weight(name: &str, weight: Option<f32>) -> Result<f64, SearchError> {
    match weight {
        None => Ok(1.0),
        Some(w) if w.is_finite() && w >= 0.0 => Ok(f64::from(w)),
        Some(w) => Err(SearchError::InvalidArgument(format!(
            "plan.{name}: must be a finite number >= 0, got {w}"
        ))),
    }
}

/// Runs one search on a collection.
pub fn search(collection: &Collection, query: &Query) -> Result<SearchOutcome, SearchError> {
    let started = Instant::now();
    let mode = query.resolve_mode(collection)?;
    let plan = &query.plan;
    let bm25_weight = check_weight("bm25_weight", plan.bm25_weight)?;
    let dense_weight = check_weight("dense_weight", plan.dense_weight)?;
    let top_k = query.top_k.unwrap_or(DEFAULT_TOP_K);
    let filter = query.filter.as_ref();

    let run_bm25 = || -> Result<(Vec<Candidate>, Duration), SearchError> {
        let t = Instant::now();
        let k =
            plan.bm25_k.unwrap_or(DEFAULT_CANDIDATES).max(top_k_if_alone(mode, Mode::Bm25, top_k));
        Ok((collection.search_bm25(&query.text, k, filter)?, t.elapsed()))
    };
    let run_dense = || -> Result<(Vec<Candidate>, Duration), SearchError> {
        let t = Instant::now();
        let k = plan.dense_k.unwrap_or(DEFAULT_CANDIDATES).max(top_k_if_alone(
            mode,
            Mode::Dense,
            top_k,
        ));
        let vector = query.vector.as_deref().expect("resolve_mode checked the vector");
        Ok((collection.search_dense(vector, k, filter)?, t.elapsed()))
    };
    let none = || Ok((Vec::new(), Duration::ZERO));
    let (bm25, dense) = match mode {
        Mode::Bm25 => (run_bm25(), none()),
        Mode::Dense => (none(), run_dense()),
        // The dense walk runs on a scoped thread (not the shared rayon pool, which graph
        // builds may be holding) while this thread runs BM25.
        Mode::Hybrid => std::thread::scope(|scope| {
            let dense = scope.spawn(run_dense);
            let bm25 = run_bm25();
            (bm25, dense.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
        }),
    };
    let (bm25, bm25_time) = bm25?;
    let (dense, dense_time) = dense?;

    let fusion_started = Instant::now();
    let to_ranking = |weight: f64, list: &[Candidate]| Ranking {
        weight,
        entries: list.iter().map(|c| (Arc::clone(&c.id), c.score)).collect(),
    };
    let lists = [to_ranking(bm25_weight, &bm25), to_ranking(dense_weight, &dense)];
    let fused = match plan.fusion {
        Fusion::Rrf => {
            reciprocal_rank_fusion(&lists, f64::from(plan.rrf_k.unwrap_or(DEFAULT_RRF_K)))
        }
        Fusion::Linear => linear_fusion(&lists),
    };
    let fusion_time = fusion_started.elapsed();

    let fetch_started = Instant::now();
    let placement = |list: &[Candidate], rank: Option<u32>| {
        rank.map(|rank| Placement { rank, score: list[rank as usize - 1].score })
    };
    let mut hits = Vec::with_capacity(top_k.min(fused.len()));
    for entry in &fused {
        if hits.len() == top_k {
            break;
        }
        // A document deleted since retrieval is skipped, and the next one takes its place.
        let Some(doc) = collection.get(&entry.id)? else { continue };
        hits.push(Hit {
            id: Arc::clone(&entry.id),
            score: entry.score,
            bm25: placement(&bm25, entry.ranks[0]),
            dense: placement(&dense, entry.ranks[1]),
            title: doc.title,
            text: if query.omit_text { String::new() } else { doc.text },
            metadata: doc.metadata,
        });
    }
    let fetch_time = fetch_started.elapsed();

    Ok(SearchOutcome {
        mode,
        bm25_candidates: bm25.len(),
        dense_candidates: dense.len(),
        fused_candidates: fused.len(),
        hits,
        timings: Timings {
            bm25: bm25_time,
            dense: dense_time,
            fusion: fusion_time,
            fetch: fetch_time,
            total: started.elapsed(),
        },
    })
}

/// A retriever running alone must supply at least `top_k` candidates.
fn top_k_if_alone(mode: Mode, retriever: Mode, top_k: usize) -> usize {
    if mode == retriever { top_k } else { 0 }
}
