//! The networks behind each architecture, on candle: candle-transformers' BERT and XLM-RoBERTa
//! encoders, with Sieve's heads (BERT pooler + classifier; embedder pooling + L2 norm).

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder};
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use candle_transformers::models::xlm_roberta::{
    Config as XlmrConfig, XLMRobertaForSequenceClassification,
};

use crate::checkpoint::{Architecture, Checkpoint, Pooling};
use crate::encoder::Encoder;
use crate::error::{ModelError, Result};
use crate::kernels::{Isa, Kernels};
use crate::model::Precision;
use crate::tokenize::Encoded;

/// What a forward pass returns, one entry per input.
#[derive(Clone, Debug, PartialEq)]
pub enum Outputs {
    /// Cross-encoder relevance logits.
    Scores(Vec<f32>),
    /// L2-normalised sentence embeddings.
    Vectors(Vec<Vec<f32>>),
}

pub(crate) enum Network {
    /// Sieve's own encoder on its kernels (any architecture).
    Own(Box<Encoder>),
    Embedder {
        bert: BertModel,
        pooling: Pooling,
    },
    BertCrossEncoder {
        bert: BertModel,
        pooler: Linear,
        classifier: Linear,
    },
    XlmRoberta {
        model: Box<XLMRobertaForSequenceClassification>,
    },
}

fn unsupported(checkpoint: &Checkpoint, e: impl std::fmt::Display) -> ModelError {
    ModelError::Unsupported(format!("{}: {e}", checkpoint.dir.display()))
}

impl Network {
    /// Loads the weights and builds the network: Sieve's own encoder when `kernels` names one
    /// (linear layers in bf16 for that precision, else f32), else candle's (the reference),
    /// its weights converted to `precision`.
    pub(crate) fn load(
        checkpoint: &Checkpoint,
        precision: Precision,
        device: &Device,
        kernels: Kernels,
    ) -> Result<(Network, u32)> {
        let own = Isa::of(kernels);
        // The own encoder reads every tensor as f32 and packs it itself.
        let dtype = if own.is_some() { DType::F32 } else { precision.dtype() };
        let weights = checkpoint.dir.join("model.safetensors");
        // SAFETY: the file is memory-mapped read-only; Sieve never writes model files.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], dtype, device) }
            .map_err(|e| unsupported(checkpoint, e))?;
        let config = &checkpoint.config;
        let pad = config.get("pad_token_id").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
        if let Some(isa) = own {
            let encoder = Encoder::load(checkpoint, vb, isa, precision)
                .map_err(|e| unsupported(checkpoint, e))?;
            return Ok((Network::Own(Box::new(encoder)), pad));
        }
        let network = match checkpoint.architecture {
            Architecture::BertEmbedder | Architecture::BertCrossEncoder => {
                let mut bert_config: BertConfig = serde_json::from_value(config.clone())
                    .map_err(|e| unsupported(checkpoint, e))?;
                // Weights may or may not carry the `bert.` prefix; candle tries the bare names
                // first and then `<model_type>.`.
                bert_config.model_type.get_or_insert_with(|| "bert".to_string());
                let bert = BertModel::load(vb.clone(), &bert_config)
                    .map_err(|e| unsupported(checkpoint, e))?;
                match checkpoint.architecture {
                    Architecture::BertEmbedder => {
                        Network::Embedder { bert, pooling: checkpoint.pooling }
                    }
                    _ => {
                        let hidden = bert_config.hidden_size;
                        let pooler_vb = if vb.contains_tensor("bert.pooler.dense.weight") {
                            vb.pp("bert.pooler.dense")
                        } else {
                            vb.pp("pooler.dense")
                        };
                        let pooler = candle_nn::linear(hidden, hidden, pooler_vb)
                            .map_err(|e| unsupported(checkpoint, e))?;
                        let classifier =
                            candle_nn::linear(hidden, checkpoint.num_labels, vb.pp("classifier"))
                                .map_err(|e| unsupported(checkpoint, e))?;
                        Network::BertCrossEncoder { bert, pooler, classifier }
                    }
                }
            }
            Architecture::XlmRobertaCrossEncoder => {
                let mut config = config.clone();
                // candle's config requires this key, which some checkpoints leave out.
                if let Some(object) = config.as_object_mut() {
                    object.entry("position_embedding_type").or_insert("absolute".into());
                }
                let xlmr_config: XlmrConfig =
                    serde_json::from_value(config).map_err(|e| unsupported(checkpoint, e))?;
                let vb = if vb.contains_tensor("roberta.embeddings.word_embeddings.weight") {
                    vb
                } else {
                    // Bare names: map candle's `roberta.*` requests onto them.
                    vb.rename_f(|name: &str| {
                        name.strip_prefix("roberta.").unwrap_or(name).to_string()
                    })
                };
                let model = XLMRobertaForSequenceClassification::new(
                    checkpoint.num_labels,
                    &xlmr_config,
                    vb,
                )
                .map_err(|e| unsupported(checkpoint, e))?;
                Network::XlmRoberta { model: Box::new(model) }
            }
        };
        Ok((network, pad))
    }

    /// Calibrates an int8 model on `batch` (see [`Encoder::calibrate`]); nothing to do for
    /// the others.
    pub(crate) fn calibrate(
        &mut self,
        batch: &[&Encoded],
        accept: impl Fn(&Outputs, &Outputs) -> bool,
    ) -> candle_core::Result<Vec<(String, f64, bool)>> {
        match self {
            Network::Own(encoder) => encoder.calibrate(batch, accept),
            _ => Ok(Vec::new()),
        }
    }

    /// One forward pass over a batch padded to its longest member.
    pub(crate) fn forward(
        &self,
        batch: &[&Encoded],
        pad: u32,
        device: &Device,
    ) -> candle_core::Result<Outputs> {
        if let Network::Own(encoder) = self {
            return encoder.forward(batch);
        }
        let longest = batch.iter().map(|e| e.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(batch.len() * longest);
        let mut type_ids = Vec::with_capacity(batch.len() * longest);
        let mut mask = Vec::with_capacity(batch.len() * longest);
        for encoded in batch {
            let padding = longest - encoded.len();
            ids.extend_from_slice(&encoded.ids);
            ids.extend(std::iter::repeat_n(pad, padding));
            type_ids.extend_from_slice(&encoded.type_ids);
            type_ids.extend(std::iter::repeat_n(0, padding));
            mask.extend(std::iter::repeat_n(1f32, encoded.len()));
            mask.extend(std::iter::repeat_n(0f32, padding));
        }
        let shape = (batch.len(), longest);
        let ids = Tensor::from_vec(ids, shape, device)?;
        let type_ids = Tensor::from_vec(type_ids, shape, device)?;
        let mask = Tensor::from_vec(mask, shape, device)?;
        match self {
            Network::Embedder { bert, pooling } => {
                let states = bert.forward(&ids, &type_ids, Some(&mask))?;
                let pooled = match pooling {
                    Pooling::Cls => states.narrow(1, 0, 1)?.squeeze(1)?,
                    Pooling::Mean => {
                        let mask = mask.to_dtype(states.dtype())?.unsqueeze(2)?;
                        let summed = states.broadcast_mul(&mask)?.sum(1)?;
                        summed.broadcast_div(&mask.sum(1)?)?
                    }
                };
                let pooled = pooled.to_dtype(DType::F32)?;
                let norms = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
                Ok(Outputs::Vectors(pooled.broadcast_div(&norms)?.to_vec2()?))
            }
            Network::BertCrossEncoder { bert, pooler, classifier } => {
                let states = bert.forward(&ids, &type_ids, Some(&mask))?;
                let cls = states.narrow(1, 0, 1)?.squeeze(1)?;
                let logits = classifier.forward(&pooler.forward(&cls)?.tanh()?)?;
                Ok(Outputs::Scores(first_column(&logits)?))
            }
            Network::XlmRoberta { model } => {
                let logits = model.forward(&ids, &mask, &type_ids)?;
                Ok(Outputs::Scores(first_column(&logits)?))
            }
            Network::Own(_) => unreachable!("handled above"),
        }
    }
}

/// The first label's logit of each row.
fn first_column(logits: &Tensor) -> candle_core::Result<Vec<f32>> {
    logits.narrow(1, 0, 1)?.squeeze(1)?.to_dtype(DType::F32)?.to_vec1()
}
