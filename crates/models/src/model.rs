//! A loaded model: checkpoint description, tokenizer and network, run synchronously on one
//! batch at a time. [`crate::BatchedModel`] puts a queue in front of it.

use std::path::Path;

use candle_core::{DType, Device};

use crate::calibration;
use crate::checkpoint::{Architecture, Checkpoint};
use crate::error::{ModelError, Result};
use crate::kernels::Kernels;
use crate::network::{Network, Outputs};
use crate::tokenize::{Encoded, TextTokenizer};

/// The precision weights are converted to on load and computed in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// 32-bit floats (default: exact agreement with the reference outputs).
    #[default]
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
    /// Linear layers in int8 (weights per output channel, activations per token), as many as
    /// calibration at load finds keep the outputs within [`INT8_DRIFT`] of bf16, the others in
    /// bf16; attention in bf16. Sieve's own kernels only.
    Int8,
    /// The fastest that passes the accuracy gates for the model on its kernels
    /// ([`Precision::fastest`]), chosen at load.
    Auto,
}

/// How far an int8 model's outputs may drift from bf16 on the calibration texts: logits by
/// at most this much (half the int8 gate of 0.1 against f32), embeddings to a cosine of at
/// least 1 minus a tenth of it (each vector to its bf16 twin).
pub const INT8_DRIFT: f32 = 0.05;

/// Whether `got` stays within [`INT8_DRIFT`] of `reference`.
fn within_int8_drift(reference: &Outputs, got: &Outputs) -> bool {
    match (reference, got) {
        (Outputs::Scores(reference), Outputs::Scores(got)) => {
            reference.iter().zip(got).all(|(a, b)| (a - b).abs() <= INT8_DRIFT)
        }
        (Outputs::Vectors(reference), Outputs::Vectors(got)) => {
            reference.iter().zip(got).all(|(a, b)| {
                a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() >= 1.0 - INT8_DRIFT / 10.0
            })
        }
        _ => false,
    }
}

impl Precision {
    /// Parses "f32", "f16", "bf16", "int8" or "auto".
    pub fn from_name(name: &str) -> Option<Precision> {
        match name {
            "int8" | "i8" => Some(Precision::Int8),
            "auto" => Some(Precision::Auto),
            "f32" | "float32" => Some(Precision::F32),
            "f16" | "float16" => Some(Precision::F16),
            "bf16" | "bfloat16" => Some(Precision::Bf16),
            _ => None,
        }
    }

    /// The fastest precision that passes the accuracy gates for `architecture` on `kernels`.
    /// On the AVX-512 set: int8 for embedders (all-MiniLM-L6-v2 at cosine ≥ 0.998 to
    /// sentence-transformers' f32 vectors, SciFact nDCG@10 within 0.0023 of bf16, see
    /// docs/BENCHMARKS.md), bf16 for cross-encoders (logits within 0.05 of f32; their int8
    /// calibration keeps too few layers in int8 to gain speed); f32 elsewhere.
    pub fn fastest(kernels: Kernels, architecture: Architecture) -> Precision {
        match kernels {
            Kernels::Avx512 if architecture.is_cross_encoder() => Precision::Bf16,
            Kernels::Avx512 => Precision::Int8,
            _ => Precision::F32,
        }
    }

    /// "f32", "f16", "bf16", "int8" or "auto".
    pub fn name(self) -> &'static str {
        match self {
            Precision::Int8 => "int8",
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }

    pub(crate) fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
            Precision::Bf16 | Precision::Int8 => DType::BF16,
            Precision::Auto => DType::F32,
        }
    }
}

/// A checkpoint ready to run.
pub struct Model {
    name: String,
    checkpoint: Checkpoint,
    tokenizer: TextTokenizer,
    network: Network,
    pad: u32,
    precision: Precision,
    kernels: Kernels,
    device: Device,
}

impl Model {
    /// Loads the checkpoint folder `dir` under `name`, on the CPU, with the kernels
    /// `SIEVE_KERNELS` names or else the fastest this CPU runs.
    pub fn load(
        name: &str,
        dir: &Path,
        max_length: Option<usize>,
        precision: Precision,
    ) -> Result<Model> {
        let kernels = Kernels::from_env().map_err(ModelError::Unsupported)?;
        Model::load_with_kernels(name, dir, max_length, precision, kernels)
    }

    /// Loads with the given kernels. Sieve's own kernels compute in f32 or bf16 (bf16 needs
    /// the AVX-512 set, or the portable one that emulates it); f16 runs on the reference path.
    pub fn load_with_kernels(
        name: &str,
        dir: &Path,
        max_length: Option<usize>,
        precision: Precision,
        kernels: Kernels,
    ) -> Result<Model> {
        if !kernels.is_supported() {
            return Err(ModelError::Unsupported(format!(
                "model '{name}': the {} kernels need a CPU feature this one lacks ({})",
                kernels.name(),
                crate::kernels::cpu_description()
            )));
        }
        let checkpoint = Checkpoint::open(dir, max_length)?;
        let precision = match precision {
            Precision::Auto => Precision::fastest(kernels, checkpoint.architecture),
            chosen => chosen,
        };
        let kernels = match precision {
            Precision::F32 | Precision::Auto => kernels,
            Precision::Bf16 if kernels.run_bf16() => kernels,
            Precision::Bf16 => {
                return Err(ModelError::Unsupported(format!(
                    "model '{name}': bf16 runs on the avx512 kernels (AVX512-BF16), the {} \
                     kernels compute in f32 ({}): use dtype f32, or leave it unset for the \
                     fastest this CPU runs",
                    kernels.name(),
                    crate::kernels::cpu_description()
                )));
            }
            Precision::Int8 if kernels.run_int8() => kernels,
            Precision::Int8 => {
                return Err(ModelError::Unsupported(format!(
                    "model '{name}': int8 runs on the avx512 kernels (AVX512-VNNI), not on the {} \
                     kernels ({}): use dtype f32 or bf16, or leave it unset for the fastest \
                     this CPU runs",
                    kernels.name(),
                    crate::kernels::cpu_description()
                )));
            }
            Precision::F16 => Kernels::Reference,
        };
        let device = Device::Cpu;
        let tokenizer = TextTokenizer::load(name, dir, checkpoint.max_length)?;
        let (mut network, pad) = Network::load(&checkpoint, precision, &device, kernels)?;
        if precision == Precision::Int8 {
            let inputs =
                calibration::inputs(&tokenizer, checkpoint.architecture.is_cross_encoder())?;
            let report = network
                .calibrate(&inputs.iter().collect::<Vec<_>>(), within_int8_drift)
                .map_err(|e| ModelError::inference(name, "int8 calibration", e))?;
            let kept = report.iter().filter(|(_, _, int8)| *int8).count();
            for (layer, error, int8) in &report {
                tracing::debug!(model = name, layer, error, int8, "int8 calibration");
            }
            tracing::info!(
                model = name,
                int8_layers = kept,
                linear_layers = report.len(),
                "int8 calibration: the layers whose int8 outputs drift most stay bf16"
            );
        }
        Ok(Model {
            name: name.to_string(),
            checkpoint,
            tokenizer,
            network,
            pad,
            precision,
            kernels,
            device,
        })
    }

    /// The kernels its forward pass runs on.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// The name it was loaded under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it computes.
    pub fn architecture(&self) -> Architecture {
        self.checkpoint.architecture
    }

    /// Its window in tokens.
    pub fn max_length(&self) -> usize {
        self.checkpoint.max_length
    }

    /// The compute precision.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Embedding size (the hidden size).
    pub fn dimension(&self) -> usize {
        self.checkpoint.config.get("hidden_size").and_then(|v| v.as_u64()).unwrap_or(0) as usize
    }

    /// The tokenizer, set to this model's window.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// One forward pass over a batch (padded to its longest member).
    pub fn forward(&self, batch: &[&Encoded]) -> Result<Outputs> {
        if batch.is_empty() {
            return Ok(if self.architecture().is_cross_encoder() {
                Outputs::Scores(Vec::new())
            } else {
                Outputs::Vectors(Vec::new())
            });
        }
        self.network
            .forward(batch, self.pad, &self.device)
            .map_err(|e| ModelError::inference(&self.name, "forward pass", e))
    }

    /// Scores (query, passage) pairs in one batch: the unqueued path, for tests and tools.
    pub fn score_pairs(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>> {
        self.require_cross_encoder()?;
        let encoded = passages
            .iter()
            .map(|p| self.tokenizer.encode_pair(query, p))
            .collect::<Result<Vec<_>>>()?;
        match self.forward(&encoded.iter().collect::<Vec<_>>())? {
            Outputs::Scores(scores) => Ok(scores),
            Outputs::Vectors(_) => unreachable!("cross-encoders return scores"),
        }
    }

    /// Embeds texts in one batch: the unqueued path, for tests and tools.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.require_embedder()?;
        let encoded =
            texts.iter().map(|t| self.tokenizer.encode_text(t)).collect::<Result<Vec<_>>>()?;
        match self.forward(&encoded.iter().collect::<Vec<_>>())? {
            Outputs::Vectors(vectors) => Ok(vectors),
            Outputs::Scores(_) => unreachable!("embedders return vectors"),
        }
    }

    pub(crate) fn require_cross_encoder(&self) -> Result<()> {
        if self.architecture().is_cross_encoder() {
            Ok(())
        } else {
            Err(ModelError::InvalidInput(format!(
                "model '{}' is an embedder ({}), not a cross-encoder",
                self.name,
                self.architecture().name()
            )))
        }
    }

    pub(crate) fn require_embedder(&self) -> Result<()> {
        if self.architecture().is_cross_encoder() {
            Err(ModelError::InvalidInput(format!(
                "model '{}' is a cross-encoder ({}), not an embedder",
                self.name,
                self.architecture().name()
            )))
        } else {
            Ok(())
        }
    }
}
