//! What a collection fixes at creation (dense and keyword settings) and what the store is
//! tuned with.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How vectors are compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Distance {
    /// Cosine similarity; vectors are normalised on ingest.
    #[default]
    Cosine,
    /// Inner product of the vectors as sent.
    Dot,
    /// Euclidean distance (scores are its negation, so higher is better).
    L2,
}

/// HNSW graph parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    /// Links per node.
    pub m: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
    /// Candidate list size while searching (the search uses `max(ef_search, k)`).
    pub ef_search: usize,
}

impl HnswParams {
    /// Upper bound on `m`: hnsw_rs exits the process above 256; 128 is already far past useful.
    pub const MAX_M: usize = 128;
    /// Upper bound on the `ef` values.
    pub const MAX_EF: usize = 4096;
}

impl Default for HnswParams {
    fn default() -> Self {
        Self { m: 16, ef_construction: 100, ef_search: 100 }
    }
}

/// Dense retrieval settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DenseConfig {
    /// Vector length.
    pub dimension: usize,
    /// Similarity.
    pub distance: Distance,
    /// Built-in embedder model; `None` = clients supply vectors.
    pub embedder: Option<String>,
    /// Graph parameters.
    pub hnsw: HnswParams,
}

/// Text analysis for the BM25 index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Analyzer {
    /// Lowercase, English stopwords (Lucene's list), Snowball English stemming.
    #[default]
    English,
    /// Lowercase only.
    Simple,
}

impl Analyzer {
    /// Parses the API name ("english", "simple"); empty means the default.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "" | "english" => Some(Analyzer::English),
            "simple" => Some(Analyzer::Simple),
            _ => None,
        }
    }

    /// The API name.
    pub fn name(self) -> &'static str {
        match self {
            Analyzer::English => "english",
            Analyzer::Simple => "simple",
        }
    }
}

/// A collection's fixed settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectionConfig {
    /// Dense settings; `None` = keyword-only collection.
    pub dense: Option<DenseConfig>,
    /// BM25 analyzer.
    pub analyzer: Analyzer,
}

impl CollectionConfig {
    /// Whether a document fits this collection (an id, a vector only with dense settings, of
    /// the right dimension and finite); `Err` is the reason a write rejects it with.
    pub fn check_document(&self, doc: &crate::Document) -> std::result::Result<(), String> {
        if doc.id.is_empty() {
            return Err("id: must not be empty".to_string());
        }
        match (&doc.vector, &self.dense) {
            (Some(_), None) => Err(
                "vector: this collection has no dense settings, so documents cannot carry vectors"
                    .to_string(),
            ),
            (Some(v), Some(dense)) => {
                dense.distance.check(v, dense.dimension).map_err(|why| format!("vector: {why}"))
            }
            (None, _) => Ok(()),
        }
    }

    /// Why a write batch rejects each of `upserts` (`None`: it goes in): what
    /// [`check_document`](Self::check_document) says, or an id already upserted earlier in the
    /// batch. A cluster's router asks this before the batch enters the log, a collection when
    /// it writes; both give the same answers.
    pub fn screen(&self, upserts: &[crate::Document]) -> Vec<Option<String>> {
        let mut first_index: std::collections::HashMap<&str, usize> =
            std::collections::HashMap::new();
        upserts
            .iter()
            .enumerate()
            .map(|(index, doc)| {
                if let Err(reason) = self.check_document(doc) {
                    return Some(reason);
                }
                if let Some(first) = first_index.get(doc.id.as_str()) {
                    return Some(format!(
                        "id: '{}' already appears at position {first} of this batch",
                        doc.id
                    ));
                }
                first_index.insert(&doc.id, index);
                None
            })
            .collect()
    }

    /// Checks the settings; the error names the field.
    pub fn check(&self, max_dimension: usize) -> Result<()> {
        let Some(dense) = &self.dense else { return Ok(()) };
        let invalid = |msg: String| Err(Error::InvalidArgument(msg));
        if dense.dimension == 0 || dense.dimension > max_dimension {
            return invalid(format!(
                "config.dense.dimension: must be between 1 and {max_dimension}, got {}",
                dense.dimension
            ));
        }
        let HnswParams { m, ef_construction, ef_search } = dense.hnsw;
        if !(2..=HnswParams::MAX_M).contains(&m) {
            return invalid(format!(
                "config.dense.hnsw.m: must be between 2 and {}, got {m}",
                HnswParams::MAX_M
            ));
        }
        if ef_construction < m || ef_construction > HnswParams::MAX_EF {
            return invalid(format!(
                "config.dense.hnsw.ef_construction: must be between m ({m}) and {}, got {ef_construction}",
                HnswParams::MAX_EF
            ));
        }
        if ef_search == 0 || ef_search > HnswParams::MAX_EF {
            return invalid(format!(
                "config.dense.hnsw.ef_search: must be between 1 and {}, got {ef_search}",
                HnswParams::MAX_EF
            ));
        }
        Ok(())
    }
}

/// Checks a collection name: 1-64 ASCII letters, digits, '_' or '-', starting with a letter or digit.
pub fn check_collection_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "name: '{}' is not a valid collection name (1-64 characters: ASCII letters, digits, \
             '_' or '-', starting with a letter or digit)",
            name.escape_debug()
        )))
    }
}

/// Store-wide tuning.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// sled page cache size in bytes.
    pub cache_bytes: u64,
    /// Dense search is exact (brute force) when at most this many candidate vectors exist.
    pub exact_search_threshold: usize,
    /// Dump the HNSW graph after this many op-log entries since the last dump.
    pub graph_dump_every: u64,
    /// Rebuild the HNSW graph when tombstones exceed this fraction of its points.
    pub tombstone_ratio: f64,
    /// Largest accepted vector dimension.
    pub max_dimension: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 256 << 20,
            exact_search_threshold: 10_000,
            graph_dump_every: 50_000,
            tombstone_ratio: 0.2,
            max_dimension: 4096,
        }
    }
}
