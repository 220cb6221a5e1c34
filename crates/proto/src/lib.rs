//! Sieve's public gRPC API, package `sieve.v1`, generated from `proto/` at build time.
//!
//! ```
//! use sieve_proto::v1::{Document, Value};
//!
//! let doc = Document {
//!     id: "doc-1".into(),
//!     title: "Hello".into(),
//!     text: "A first document.".into(),
//!     metadata: [("year".to_string(), Value::from(2024_i64))].into(),
//!     vector: vec![],
//! };
//! assert_eq!(doc.metadata["year"], Value::from(2024_i64));
//! ```

/// Generated messages, clients and servers of `sieve.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("sieve.v1");
}

/// The encoded `FileDescriptorSet` of `sieve.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sieve_descriptor.bin"));

use v1::value::Kind;

impl From<&str> for v1::Value {
    fn from(value: &str) -> Self {
        Self { kind: Some(Kind::StringValue(value.to_owned())) }
    }
}

impl From<String> for v1::Value {
    fn from(value: String) -> Self {
        Self { kind: Some(Kind::StringValue(value)) }
    }
}

impl From<i64> for v1::Value {
    fn from(value: i64) -> Self {
        Self { kind: Some(Kind::IntValue(value)) }
    }
}

impl From<f64> for v1::Value {
    fn from(value: f64) -> Self {
        Self { kind: Some(Kind::FloatValue(value)) }
    }
}

impl From<bool> for v1::Value {
    fn from(value: bool) -> Self {
        Self { kind: Some(Kind::BoolValue(value)) }
    }
}

impl v1::Filter {
    /// `metadata[key] == value`.
    pub fn equals(key: impl Into<String>, value: impl Into<v1::Value>) -> Self {
        let clause = v1::Equals { key: key.into(), value: Some(value.into()) };
        Self { clause: Some(v1::filter::Clause::Equals(clause)) }
    }

    /// `gte <= metadata[key] <= lte`.
    pub fn range(key: impl Into<String>, gte: Option<f64>, lte: Option<f64>) -> Self {
        let clause = v1::Range { key: key.into(), gte, lte };
        Self { clause: Some(v1::filter::Clause::Range(clause)) }
    }

    /// `metadata[key]` is one of `values`.
    pub fn any_of<V: Into<v1::Value>>(
        key: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        let values = values.into_iter().map(Into::into).collect();
        Self { clause: Some(v1::filter::Clause::AnyOf(v1::AnyOf { key: key.into(), values })) }
    }

    /// Every clause holds.
    pub fn and(clauses: impl IntoIterator<Item = v1::Filter>) -> Self {
        let clauses = clauses.into_iter().collect();
        Self { clause: Some(v1::filter::Clause::And(v1::And { clauses })) }
    }
}

impl v1::SearchRequest {
    /// A search for `query` in `collection`, with every other setting at its default.
    pub fn new(collection: impl Into<String>, query: impl Into<String>) -> Self {
        Self { collection: collection.into(), query: query.into(), ..Self::default() }
    }

    /// Returns `k` hits.
    pub fn with_top_k(mut self, k: u32) -> Self {
        self.top_k = k;
        self
    }

    /// Adds a query vector for dense retrieval.
    pub fn with_vector(mut self, vector: Vec<f32>) -> Self {
        self.query_vector = vector;
        self
    }

    /// Keeps only documents that pass `filter`.
    pub fn with_filter(mut self, filter: v1::Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Runs these retrievers.
    pub fn with_mode(mut self, mode: v1::Mode) -> Self {
        self.plan.get_or_insert_with(Default::default).mode = mode as i32;
        self
    }

    /// Reranks with these (model, keep) stages instead of the server's default cascade.
    pub fn with_rerank<S: Into<String>>(
        mut self,
        stages: impl IntoIterator<Item = (S, u32)>,
    ) -> Self {
        let plan = self.plan.get_or_insert_with(Default::default);
        plan.rerank = stages
            .into_iter()
            .map(|(model, keep)| v1::RerankStage { model: model.into(), keep, min_score: None })
            .collect();
        self
    }

    /// Sends `n` fused candidates into the cascade.
    pub fn with_candidates(mut self, n: u32) -> Self {
        self.plan.get_or_insert_with(Default::default).candidates = n;
        self
    }

    /// Keep few, backfill: each rerank stage's list goes on, after the hits it keeps, with
    /// the other candidates in first-stage order (`Plan.backfill`).
    pub fn with_backfill(mut self) -> Self {
        self.plan.get_or_insert_with(Default::default).backfill = Some(true);
        self
    }

    /// Cluster mode: sees at least the writes behind `token` (an
    /// `IngestAck.consistency_token`): read-your-writes.
    pub fn after(mut self, token: impl Into<String>) -> Self {
        self.consistency = v1::Consistency::After as i32;
        self.consistency_token = token.into();
        self
    }

    /// Cluster mode: sees every write acknowledged before it starts.
    pub fn strong(mut self) -> Self {
        self.consistency = v1::Consistency::Strong as i32;
        self.consistency_token.clear();
        self
    }
}

impl v1::SearchResponse {
    /// The answer: the last stage's hits.
    pub fn hits(&self) -> &[v1::Hit] {
        self.stages.last().map_or(&[], |stage| &stage.hits)
    }
}
