//! Sieve's model stack: Hugging Face checkpoints (BERT bi-encoders, BERT and XLM-RoBERTa
//! cross-encoders) loaded from folders with candle, run on Sieve's own encoder layer and CPU
//! kernels (or candle's, the reference), and served through per-model queues that batch by a
//! token budget. The registry hands out each model in its role: an [`Embedder`] embeds, a
//! [`CrossEncoder`] scores pairs.
//!
//! ```
//! use sieve_models::{Kernels, Model, Precision};
//!
//! let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
//!     .join("../../../shared/fixtures/tiny-bert-ce");
//! let score = |kernels| -> sieve_models::Result<Vec<f32>> {
//!     let model = Model::load_with_kernels("tiny-bert-ce", &dir, Some(128), Precision::F32, kernels)?;
//!     model.score_pairs("what is sieve?", &["a retrieval engine", "a kitchen sieve"])
//! };
//! // The kernels this CPU runs best give candle's scores to float rounding.
//! let (fast, reference) = (score(Kernels::detect())?, score(Kernels::Reference)?);
//! assert_eq!(fast.len(), 2);
//! assert!(fast.iter().zip(&reference).all(|(a, b)| (a - b).abs() < 1e-4));
//! # Ok::<(), sieve_models::ModelError>(())
//! ```

mod calibration;
mod checkpoint;
mod encoder;
mod error;
/// The CPU kernels, public for their benchmarks (`benches/kernels.rs`) only.
#[doc(hidden)]
pub mod kernels;
mod model;
mod network;
mod queue;
mod registry;
mod tokenize;

pub use checkpoint::Architecture;
pub use error::{ModelError, Result};
pub use kernels::{Kernels, cpu_description};
pub use model::{Model, Precision};
pub use network::Outputs;
pub use queue::{BatchPolicy, QueueStats};
pub use registry::{
    BatchedModel, CrossEncoder, Embedded, Embedder, ModelDescription, ModelFuture, ModelSpec,
    Registry, RemoteModel, Scored, model_dir,
};
pub use tokenize::{Encoded, TextTokenizer};
