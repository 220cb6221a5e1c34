//! What a search reads: one collection in this process, or a collection spread over a
//! cluster's shards. The planner embeds, fuses and reranks the same way over either.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sieve_storage::{Collection, CollectionConfig, Document, Filter, Score};

use crate::SearchError;

/// A retriever's list: (document id, score), best first, ties by id.
pub type Ranked = Vec<(Arc<str>, Score)>;

/// The documents a search runs over. Calls block (the planner runs them off the async
/// executor).
pub trait Corpus: Send + Sync + 'static {
    /// The collection's name.
    fn name(&self) -> &str;
    /// Its settings (dense dimension and embedder decide the search mode).
    fn config(&self) -> &CollectionConfig;
    /// Top `k` BM25 matches that pass the filter.
    fn bm25(&self, text: &str, k: usize, filter: Option<&Filter>) -> Result<Ranked, SearchError>;
    /// Top `k` vectors by similarity that pass the filter.
    fn dense(
        &self,
        vector: &[f32],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Ranked, SearchError>;
    /// The documents with these ids, in order; `None` for one deleted since retrieval.
    fn fetch(&self, ids: &[Arc<str>]) -> Result<Vec<Option<Document>>, SearchError>;

    /// Both lists of a hybrid search, each with the time until it was ready. By default BM25
    /// here and the dense list on a scoped thread, in parallel (not on the shared rayon pool,
    /// which graph builds may be holding); a corpus spread over shards gets both in fewer
    /// rounds.
    fn hybrid(&self, lists: Hybrid<'_>) -> Result<Both, SearchError> {
        let timed = |f: &dyn Fn() -> Result<Ranked, SearchError>| {
            let started = Instant::now();
            f().map(|list| (list, started.elapsed()))
        };
        let parent = tracing::Span::current();
        std::thread::scope(|scope| {
            let dense = scope.spawn(|| {
                let _span = tracing::info_span!(parent: &parent, "dense").entered();
                timed(&|| self.dense(lists.vector, lists.dense_k, lists.filter))
            });
            let bm25 = {
                let _span = tracing::info_span!("bm25").entered();
                timed(&|| self.bm25(lists.text, lists.bm25_k, lists.filter))
            };
            let dense = dense.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            Ok(Both { bm25: bm25?, dense: dense? })
        })
    }

    /// A hint before retrieval: the search will fetch about its first `n` candidates, which a
    /// corpus over shards brings back with the lists. Nothing by default.
    fn prefetch(&self, _n: usize) {}
}

/// What a hybrid search retrieves.
#[derive(Clone, Copy, Debug)]
pub struct Hybrid<'a> {
    /// Query text for BM25.
    pub text: &'a str,
    /// BM25 list length.
    pub bm25_k: usize,
    /// Query vector.
    pub vector: &'a [f32],
    /// Dense list length.
    pub dense_k: usize,
    /// Metadata filter of both.
    pub filter: Option<&'a Filter>,
}

/// Both lists of a hybrid search, each with the time until it was ready.
#[derive(Clone, Debug)]
pub struct Both {
    /// The BM25 list.
    pub bm25: (Ranked, Duration),
    /// The dense list.
    pub dense: (Ranked, Duration),
}

impl Corpus for Collection {
    fn name(&self) -> &str {
        Collection::name(self)
    }

    fn config(&self) -> &CollectionConfig {
        Collection::config(self)
    }

    fn bm25(&self, text: &str, k: usize, filter: Option<&Filter>) -> Result<Ranked, SearchError> {
        Ok(ranked(self.search_bm25(text, k, filter)?))
    }

    fn dense(
        &self,
        vector: &[f32],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Ranked, SearchError> {
        Ok(ranked(self.search_dense(vector, k, filter)?))
    }

    fn fetch(&self, ids: &[Arc<str>]) -> Result<Vec<Option<Document>>, SearchError> {
        ids.iter().map(|id| Ok(self.get(id)?)).collect()
    }
}

fn ranked(candidates: Vec<sieve_storage::Candidate>) -> Ranked {
    candidates.into_iter().map(|c| (c.id, c.score)).collect()
}
