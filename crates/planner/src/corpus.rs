//! What a search reads: one collection in this process, or a collection spread over a
//! cluster's shards. The planner embeds, fuses and reranks the same way over either.

use std::sync::Arc;

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
