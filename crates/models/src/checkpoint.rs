//! A Hugging Face checkpoint folder: `config.json` decides the architecture, the tokenizer and
//! its limits come from `tokenizer.json` / `tokenizer_config.json`, the pooling of embedders
//! from sentence-transformers' `1_Pooling/config.json`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{ModelError, Result};

/// What a checkpoint computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// `BertModel`: a bi-encoder producing sentence embeddings.
    BertEmbedder,
    /// `BertForSequenceClassification`: a cross-encoder (pooler on [CLS], then classifier).
    BertCrossEncoder,
    /// `XLMRobertaForSequenceClassification`: a cross-encoder (dense + tanh on `<s>`, then
    /// out_proj), the BAAI/bge-reranker family.
    XlmRobertaCrossEncoder,
}

impl Architecture {
    /// The `architectures` name in `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::BertEmbedder => "BertModel",
            Architecture::BertCrossEncoder => "BertForSequenceClassification",
            Architecture::XlmRobertaCrossEncoder => "XLMRobertaForSequenceClassification",
        }
    }

    /// Whether it scores (query, passage) pairs rather than embedding texts.
    pub fn is_cross_encoder(self) -> bool {
        !matches!(self, Architecture::BertEmbedder)
    }
}

/// How token states become one sentence embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the attention mask.
    Mean,
    /// The first token's state.
    Cls,
}

/// The fields of `config.json` Sieve reads besides what the model code parses itself.
#[derive(Deserialize)]
struct ConfigHead {
    #[serde(default)]
    architectures: Vec<String>,
    model_type: Option<String>,
    max_position_embeddings: Option<usize>,
    pad_token_id: Option<usize>,
    num_labels: Option<usize>,
    id2label: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A checkpoint folder, checked and described.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The folder.
    pub dir: PathBuf,
    /// What it computes.
    pub architecture: Architecture,
    /// The raw `config.json`.
    pub config: serde_json::Value,
    /// Longest input in tokens, special tokens included.
    pub max_length: usize,
    /// Embedder pooling (mean unless the folder says CLS).
    pub pooling: Pooling,
    /// Outputs of a cross-encoder's classifier (Sieve ranks by the first).
    pub num_labels: usize,
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ModelError::NotFound(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| ModelError::Unsupported(format!("{} is not valid JSON: {e}", path.display())))
}

impl Checkpoint {
    /// Reads and checks the folder. `max_length` overrides what the folder says.
    pub fn open(dir: &Path, max_length: Option<usize>) -> Result<Checkpoint> {
        for file in ["config.json", "tokenizer.json", "model.safetensors"] {
            if !dir.join(file).is_file() {
                return Err(ModelError::NotFound(format!(
                    "{} has no {file}: a checkpoint folder needs config.json, tokenizer.json and model.safetensors",
                    dir.display()
                )));
            }
        }
        let config = read_json(&dir.join("config.json"))?;
        let head: ConfigHead = serde_json::from_value(config.clone())
            .map_err(|e| ModelError::Unsupported(format!("{}/config.json: {e}", dir.display())))?;
        let architecture = match head.architectures.first().map(String::as_str) {
            Some("BertModel") => Architecture::BertEmbedder,
            Some("BertForSequenceClassification") => Architecture::BertCrossEncoder,
            Some("XLMRobertaForSequenceClassification") => Architecture::XlmRobertaCrossEncoder,
            Some(other) => {
                return Err(ModelError::Unsupported(format!(
                    "{}: architecture {other} is not supported (supported: BertModel, \
                     BertForSequenceClassification, XLMRobertaForSequenceClassification)",
                    dir.display()
                )));
            }
            None if head.model_type.as_deref() == Some("bert") => Architecture::BertEmbedder,
            None => {
                return Err(ModelError::Unsupported(format!(
                    "{}/config.json names no architecture",
                    dir.display()
                )));
            }
        };
        let positions = head.max_position_embeddings.unwrap_or(512);
        // XLM-R positions start after the padding index, so two slots are never inputs.
        let position_limit = match architecture {
            Architecture::XlmRobertaCrossEncoder => {
                positions.saturating_sub(head.pad_token_id.unwrap_or(1) + 1)
            }
            _ => positions,
        };
        let from_folder = || -> Result<Option<usize>> {
            let json_number = |file: &str, key: &str| -> Result<Option<u64>> {
                let path = dir.join(file);
                if !path.is_file() {
                    return Ok(None);
                }
                Ok(read_json(&path)?.get(key).and_then(|v| v.as_u64()))
            };
            // sentence-transformers' own limit wins for embedders (all-MiniLM-L6-v2: 256,
            // while its tokenizer_config.json says 512).
            if architecture == Architecture::BertEmbedder
                && let Some(n) = json_number("sentence_bert_config.json", "max_seq_length")?
            {
                return Ok(Some(n as usize));
            }
            // Tokenizers without a limit store a huge sentinel (1e30); ignore it.
            Ok(json_number("tokenizer_config.json", "model_max_length")?
                .filter(|&n| n <= 1 << 20)
                .map(|n| n as usize))
        };
        let default_length = if architecture.is_cross_encoder() { 512 } else { 256 };
        let max_length = match max_length {
            Some(n) => n,
            None => from_folder()?.unwrap_or(default_length),
        };
        if max_length < 4 || max_length > position_limit {
            return Err(ModelError::Unsupported(format!(
                "{}: max_length {max_length} is outside 4..={position_limit} (the model's positions)",
                dir.display()
            )));
        }
        let pooling_file = dir.join("1_Pooling/config.json");
        let pooling = if pooling_file.is_file() {
            let p = read_json(&pooling_file)?;
            let flag = |name: &str| p.get(name).and_then(|v| v.as_bool()).unwrap_or(false);
            if flag("pooling_mode_cls_token") {
                Pooling::Cls
            } else if flag("pooling_mode_mean_tokens") {
                Pooling::Mean
            } else {
                return Err(ModelError::Unsupported(format!(
                    "{}: only mean and CLS pooling are supported",
                    pooling_file.display()
                )));
            }
        } else {
            Pooling::Mean
        };
        let num_labels = head.num_labels.or(head.id2label.map(|m| m.len())).unwrap_or(1).max(1);
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            architecture,
            config,
            max_length,
            pooling,
            num_labels,
        })
    }
}
