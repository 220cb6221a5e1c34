//! Sieve's model stack on candle: Hugging Face checkpoints (BERT bi-encoders, BERT and
//! XLM-RoBERTa cross-encoders) loaded from folders, tokenized with their own `tokenizer.json`,
//! and served through per-model queues that batch by a token budget.

mod checkpoint;
mod error;
mod model;
mod network;
mod tokenize;

pub use checkpoint::{Architecture, Checkpoint, Pooling};
pub use error::{ModelError, Result};
pub use model::{Model, Precision};
pub use network::Outputs;
pub use tokenize::{Encoded, TextTokenizer};
