//! Sieve's storage: collections of documents kept in sled (the source of truth: documents, an
//! op log and metadata), indexed for BM25 by tantivy and for vectors by an hnsw_rs graph, both
//! derived from sled and brought back in step on open by op-log replay or rebuild.
//!
//! ```
//! use sieve_storage::{CollectionConfig, DenseConfig, Distance, Document, HnswParams, Store, StoreOptions, WriteBatch};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path(), StoreOptions::default())?;
//! let dense = DenseConfig { dimension: 2, distance: Distance::Cosine, embedder: None, hnsw: HnswParams::default() };
//! let notes = store.create_collection("notes", CollectionConfig { dense: Some(dense), ..Default::default() })?;
//! let doc = |id: &str, text: &str, v: [f32; 2]| Document {
//!     id: id.into(), text: text.into(), vector: Some(v.to_vec()), ..Default::default()
//! };
//! let batch = WriteBatch { upserts: vec![doc("a", "red apples", [1.0, 0.0]), doc("b", "green pears", [0.0, 1.0])], deletes: vec![] };
//! assert_eq!(notes.write(&batch)?.sequence, 2);
//!
//! assert_eq!(&*notes.search_bm25("apple", 10, None)?[0].id, "a");
//! assert_eq!(&*notes.search_dense(&[0.1, 0.9], 10, None)?[0].id, "b");
//! store.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod collection;
mod config;
mod document;
mod error;
mod filter;
mod graph;
mod keyword;
mod logged;
mod record;
pub mod snapshot;
mod store;
mod vectors;

pub use collection::{
    Candidate, Collection, CollectionStats, IndexCounts, Rejected, WriteBatch, WriteOutcome,
};
pub use config::{
    Analyzer, CollectionConfig, DenseConfig, Distance, HnswParams, StoreOptions,
    check_collection_name,
};
pub use document::{Document, Metadata, Value};
pub use error::{Error, Result};
pub use filter::Filter;
pub use keyword::Bm25Stats;
pub use logged::{LogPosition, Logged, OutOfOrder};
pub use store::Store;

/// Internal id of one version of a document; never reused, so a replaced or deleted version
/// stays recognisable as a tombstone in the graph.
pub type PointId = u64;

/// Position in a collection's op log; every upsert or delete takes the next one.
pub type Seq = u64;

/// A retriever's score; higher is better.
pub type Score = f32;
