//! What a search asks for: the query, the retrievers to run, fusion, and the rerank cascade.

use sieve_rerank::StageSpec;
use sieve_storage::Filter;

use crate::SearchError;
use crate::corpus::Corpus;

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

impl Mode {
    /// Lower-case name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Bm25 => "BM25",
            Mode::Dense => "dense",
            Mode::Hybrid => "hybrid",
        }
    }
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
    /// Retrievers to run; by default hybrid when the query has (or the collection can make) a
    /// vector and there is text, dense with a vector alone, BM25 otherwise.
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
    /// Rerank stages; `None` = the planner's default cascade, empty = no reranking.
    pub rerank: Option<Vec<StageSpec>>,
    /// Fused candidates entering the cascade.
    pub candidates: Option<usize>,
    /// Score long passages as overlapping windows (best window wins) instead of cutting them.
    pub rerank_windows: bool,
    /// Each rerank stage's list goes on, after what it keeps, with the other candidates in
    /// first-stage order (`None`: the planner's default, off).
    pub backfill: Option<bool>,
    /// Neither read nor fill the planner's score cache.
    pub no_score_cache: bool,
}

/// One search.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Query {
    /// Query text for BM25 (and the embedder).
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

impl Query {
    /// The mode this query runs in on a collection.
    pub fn resolve_mode(&self, corpus: &(impl Corpus + ?Sized)) -> Result<Mode, SearchError> {
        let invalid = |msg: String| Err(SearchError::InvalidArgument(msg));
        let has_text = !self.text.trim().is_empty();
        let dense = corpus.config().dense.as_ref();
        let embedder = dense.and_then(|d| d.embedder.as_deref());
        if self.vector.is_some() && dense.is_none() {
            return invalid(format!(
                "query_vector: collection '{}' has no dense settings",
                corpus.name()
            ));
        }
        let can_embed = embedder.is_some() && has_text;
        let mode = match self.plan.mode {
            Some(mode) => mode,
            None if has_text && (self.vector.is_some() || can_embed) => Mode::Hybrid,
            None if self.vector.is_some() => Mode::Dense,
            None => Mode::Bm25,
        };
        if matches!(mode, Mode::Bm25 | Mode::Hybrid) && !has_text {
            return invalid(format!("query: must not be empty for {} search", mode.name()));
        }
        if matches!(mode, Mode::Dense | Mode::Hybrid) && self.vector.is_none() && !can_embed {
            return invalid(match (dense, embedder) {
                (None, _) => format!(
                    "plan.mode: collection '{}' has no dense settings; use BM25",
                    corpus.name()
                ),
                (Some(_), None) => format!(
                    "query_vector: required for {} search (collection '{}' has no built-in embedder)",
                    mode.name(),
                    corpus.name()
                ),
                (Some(_), Some(_)) => {
                    format!("query: must not be empty for {} search", mode.name())
                }
            });
        }
        Ok(mode)
    }
}
