//! Sieve's model stack on candle: Hugging Face checkpoints (BERT bi-encoders, BERT and
//! XLM-RoBERTa cross-encoders) loaded from folders, tokenized with their own `tokenizer.json`,
//! and served through per-model queues that batch by a token budget.

mod checkpoint;
mod error;
mod model;
mod network;
mod queue;
mod registry;
mod tokenize;

pub use checkpoint::{Architecture, Checkpoint, Pooling};
pub use error::{ModelError, Result};
pub use model::{Model, Precision};
pub use network::Outputs;
pub use queue::{BatchPolicy, Batched, Output, Queue, QueueStats};
pub use registry::{BatchedModel, Embedded, ModelSpec, Registry, Scored, model_dir};
pub use tokenize::{Encoded, TextTokenizer};
