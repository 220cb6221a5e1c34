//! Sieve's own BERT / XLM-RoBERTa encoder on its kernels: weights read once through candle's
//! `VarBuilder` and prepacked, inputs packed end to end (no padding, so no FLOP or mask is spent
//! on it), a workspace reused across batches, and one rayon region per layer stage.
//!
//! A cross-encoder's last layer runs for the first token only: its head reads nothing else, so
//! keys and values are computed for every token and the rest for one row per sequence (exact).

use std::cell::RefCell;

use candle_core::DType;
use candle_nn::VarBuilder;
use parking_lot::Mutex;
use rayon::prelude::*;

use crate::checkpoint::{Architecture, Checkpoint, Pooling};
use crate::kernels::bf16::{self, PackedBf16};
use crate::kernels::int8::PackedI8;
use crate::kernels::{self, Activation, Isa, Packed, ROW_BLOCK, Shared, Weights, gemm, par_gemm};
use crate::model::Precision;
use crate::network::Outputs;
use crate::tokenize::Encoded;

/// A linear layer: packed weight and bias.
struct Linear {
    weight: Weight,
    bias: Vec<f32>,
}

/// A linear layer's weight, packed for its precision.
enum Weight {
    F32(Packed),
    /// Rounded to bf16: products in bf16, sums in f32.
    Bf16(PackedBf16),
    /// Quantized to int8 per output column, activations per token: integer products and sums.
    Int8(Box<PackedI8>),
    /// Both bf16 and int8 while calibration measures, on real inputs, how far the int8 outputs
    /// land from the bf16 ones; the bf16 outputs flow on.
    Calibrating(Box<Calibrating>),
}

struct Calibrating {
    bf16: PackedBf16,
    int8: PackedI8,
    /// What [`Linear::apply`] runs (set between passes, through `&mut`).
    mode: Mode,
    /// Σ (int8 − bf16)² and Σ (bf16 − bias)² over the outputs measured.
    error: Mutex<(f64, f64)>,
}

/// What a calibrating layer runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// bf16, with int8 measured beside it.
    Measure,
    Bf16,
    Int8,
}

impl Calibrating {
    /// `c = a · Wᵀ + bias` by the current mode, on this thread or over the pool.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        isa: Isa,
        a: &[f32],
        m: usize,
        bias: &[f32],
        c: &mut [f32],
        ldc: usize,
        par: bool,
    ) {
        match (self.mode, par) {
            (Mode::Int8, true) => par_gemm(isa, a, m, &self.int8, Some(bias), c),
            (Mode::Int8, false) => gemm(isa, a, m, &self.int8, Some(bias), c, ldc),
            (_, true) => par_gemm(isa, a, m, &self.bf16, Some(bias), c),
            (_, false) => gemm(isa, a, m, &self.bf16, Some(bias), c, ldc),
        }
        if self.mode == Mode::Measure {
            self.measure(isa, a, m, bias, c, ldc);
        }
    }

    /// Runs the int8 form on the input the bf16 one just read (its output `c`, rows at stride
    /// `ldc`) and adds up the difference.
    fn measure(&self, isa: Isa, a: &[f32], m: usize, bias: &[f32], c: &[f32], ldc: usize) {
        let n = self.int8.n();
        let mut out = vec![0f32; m * n];
        gemm(isa, a, m, &self.int8, Some(bias), &mut out, n);
        let (mut error, mut norm) = (0f64, 0f64);
        for (row, expected) in out.chunks_exact(n).zip(c.chunks(ldc)) {
            for ((got, want), b) in row.iter().zip(expected).zip(bias) {
                error += ((got - want) as f64).powi(2);
                norm += ((want - b) as f64).powi(2);
            }
        }
        let mut total = self.error.lock();
        total.0 += error;
        total.1 += norm;
    }
}

impl Linear {
    /// Output width.
    fn n(&self) -> usize {
        match &self.weight {
            Weight::F32(w) => w.n(),
            Weight::Bf16(w) => w.n(),
            Weight::Int8(w) => w.n(),
            Weight::Calibrating(calibrating) => calibrating.bf16.n(),
        }
    }

    /// `c = a · Wᵀ + bias` for `m` rows, over the rayon pool.
    fn par_apply(&self, isa: Isa, a: &[f32], m: usize, c: &mut [f32]) {
        match &self.weight {
            Weight::F32(w) => par_gemm(isa, a, m, w, Some(&self.bias), c),
            Weight::Bf16(w) => par_gemm(isa, a, m, w, Some(&self.bias), c),
            Weight::Int8(w) => par_gemm(isa, a, m, &**w, Some(&self.bias), c),
            Weight::Calibrating(calibrating) => {
                calibrating.apply(isa, a, m, &self.bias, c, calibrating.bf16.n(), true)
            }
        }
    }

    /// `c = a · Wᵀ + bias` for `m` rows (output stride `ldc`), on this thread.
    fn apply(&self, isa: Isa, a: &[f32], m: usize, c: &mut [f32], ldc: usize) {
        match &self.weight {
            Weight::F32(w) => gemm(isa, a, m, w, Some(&self.bias), c, ldc),
            Weight::Bf16(w) => gemm(isa, a, m, w, Some(&self.bias), c, ldc),
            Weight::Int8(w) => gemm(isa, a, m, &**w, Some(&self.bias), c, ldc),
            Weight::Calibrating(calibrating) => {
                calibrating.apply(isa, a, m, &self.bias, c, ldc, false)
            }
        }
    }

    /// A calibrating layer's relative int8 error so far (RMS of the difference over RMS of the
    /// product), or `None` for a layer that is not calibrating.
    fn int8_error(&self) -> Option<f64> {
        let Weight::Calibrating(calibrating) = &self.weight else { return None };
        let (error, norm) = *calibrating.error.lock();
        Some(if norm > 0.0 { (error / norm).sqrt() } else { 0.0 })
    }

    /// Sets what a calibrating layer runs next: int8 or bf16.
    fn set_int8(&mut self, int8: bool) {
        if let Weight::Calibrating(calibrating) = &mut self.weight {
            calibrating.mode = if int8 { Mode::Int8 } else { Mode::Bf16 };
        }
    }

    /// Ends calibration in int8 or bf16.
    fn settle(&mut self, int8: bool) {
        if let Weight::Calibrating(calibrating) = &mut self.weight {
            self.weight = if int8 {
                Weight::Int8(Box::new(std::mem::take(&mut calibrating.int8)))
            } else {
                Weight::Bf16(std::mem::take(&mut calibrating.bf16))
            };
        }
    }
}

/// From this size in f32, a bf16 or int8 model keeps its word embeddings in bf16: XLM-R's
/// 250,002 × 1024 table is 1 GB in f32 (MiniLM's 30,522 × 384, 47 MB, stays f32).
const BF16_TABLE_BYTES: usize = 256 << 20;

/// An embedding table, one row per id.
enum Table {
    F32(Vec<f32>),
    /// bf16 bits (rounded to nearest even, as `model.to(torch.bfloat16)`).
    Bf16(Vec<u16>),
}

impl Table {
    #[cfg(test)]
    fn bf16(values: &[f32]) -> Table {
        Table::Bf16(values.iter().map(|&v| bf16::to_bf16(v)).collect())
    }

    /// Reads a `rows × width` table straight into bf16, a block of rows at a time, so no f32
    /// copy of the whole table is made besides candle's own (1 GB less at the loading peak for
    /// XLM-R large).
    fn read_bf16(vb: &VarBuilder, rows: usize, width: usize) -> candle_core::Result<Table> {
        let tensor = vb.get(&[rows, width][..], "weight")?.to_dtype(DType::F32)?;
        let mut table = Vec::with_capacity(rows * width);
        for start in (0..rows).step_by(4096) {
            let block = tensor.narrow(0, start, 4096.min(rows - start))?;
            let values = block.flatten_all()?.to_vec1::<f32>()?;
            table.extend(values.iter().map(|&v| bf16::to_bf16(v)));
        }
        Ok(Table::Bf16(table))
    }

    /// Row `id` into `out` (as wide as a row).
    fn read(&self, id: usize, out: &mut [f32]) {
        let width = out.len();
        match self {
            Table::F32(table) => out.copy_from_slice(&table[id * width..(id + 1) * width]),
            Table::Bf16(table) => {
                let row = &table[id * width..(id + 1) * width];
                out.iter_mut().zip(row).for_each(|(o, &v)| *o = bf16::from_bf16(v));
            }
        }
    }
}

/// LayerNorm's scale and shift.
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// One transformer layer (post-LayerNorm, as BERT and XLM-R).
struct Layer {
    query: Linear,
    /// Keys and values in one matrix: columns `0..hidden` keys, `hidden..2·hidden` values.
    key_value: Linear,
    attention_out: Linear,
    attention_norm: Norm,
    up: Linear,
    down: Linear,
    output_norm: Norm,
}

/// What turns the last hidden states into outputs.
enum Head {
    /// Pooling and L2 normalisation (bi-encoders).
    Embed(Pooling),
    /// `out(tanh(dense(first token)))`: BERT's pooler + classifier, XLM-R's classification head.
    Classify { dense: Linear, out: Linear },
}

/// Buffers of one forward pass, grown to the largest batch seen and reused.
#[derive(Default)]
struct Workspace {
    /// Hidden states, `tokens × hidden`.
    states: Vec<f32>,
    /// The next layer's states (built here, then swapped with `states`).
    next: Vec<f32>,
    /// Everything a layer uses on the way.
    buffers: Buffers,
}

/// A layer's intermediate results.
#[derive(Default)]
struct Buffers {
    queries: Vec<f32>,
    keys_values: Vec<f32>,
    context: Vec<f32>,
    /// Attention output after its residual and LayerNorm: the feed-forward block's input.
    attended: Vec<f32>,
    /// Feed-forward intermediate when a batch is too short to split by rows.
    intermediate: Vec<f32>,
}

/// Per-worker scratch of the attention and feed-forward tasks, kept between batches.
#[derive(Default)]
struct Scratch {
    keys: Packed,
    values: Packed,
    /// Keys and values rounded to bf16, for a model whose linear layers are bf16.
    keys_bf16: PackedBf16,
    values_bf16: PackedBf16,
    scores: Vec<f32>,
    intermediate: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// One (sequence, head) of attention: its keys and values (rows at stride `2 · hidden`), its
/// query rows (stride `hidden`), and where its context rows go.
struct AttentionHead<'a> {
    isa: Isa,
    hidden: usize,
    /// Keys (and values) of the sequence.
    length: usize,
    /// Query rows.
    m: usize,
    /// Values per head.
    size: usize,
    scale: f32,
    kv: (&'a [f32], &'a [f32]),
    queries: &'a [f32],
    scores: &'a mut [f32],
    context: *mut f32,
}

impl AttentionHead<'_> {
    /// `softmax(q · kᵀ · scale) · v` into the context, keys and values packed into `keys` and
    /// `values` (f32, or bf16 for a bf16 model).
    ///
    /// # Safety
    /// `context` must be writable for `m` rows of the head's columns at stride `hidden`, and no
    /// other thread may write them meanwhile.
    unsafe fn attend<W: Weights>(self, keys: &mut W, values: &mut W) {
        let AttentionHead { isa, hidden, length, m, size, scale, kv, queries, scores, context } =
            self;
        keys.pack_rows(isa, kv.0, 2 * hidden, length, size);
        values.pack_columns(isa, kv.1, 2 * hidden, length, size);
        // SAFETY: the query rows hold `size` values at stride hidden; scores hold m × length;
        // the context as the caller promises.
        unsafe {
            keys.multiply(
                isa,
                queries.as_ptr(),
                hidden,
                m,
                0..keys.panels(),
                None,
                scores.as_mut_ptr(),
                length,
            );
            for row in scores.chunks_exact_mut(length) {
                kernels::softmax(isa, row, scale);
            }
            values.multiply(
                isa,
                scores.as_ptr(),
                length,
                m,
                0..values.panels(),
                None,
                context,
                hidden,
            );
        }
    }
}

/// A BERT or XLM-RoBERTa encoder with its head, on Sieve's kernels.
pub(crate) struct Encoder {
    isa: Isa,
    /// Attention's products in bf16, for a model whose linear layers are bf16 or int8 (the
    /// head, softmax and norms stay f32).
    bf16: bool,
    hidden: usize,
    heads: usize,
    eps: f32,
    activation: Activation,
    vocab: usize,
    positions: usize,
    types: usize,
    /// First position id (XLM-R counts from `pad_token_id + 1`).
    position_offset: usize,
    /// The vocabulary's embeddings: f32, or bf16 for a large table of a bf16 or int8 model.
    word_embeddings: Table,
    position_embeddings: Vec<f32>,
    type_embeddings: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    head: Head,
    workspace: Mutex<Workspace>,
}

fn read(vb: &VarBuilder, shape: &[usize], name: &str) -> candle_core::Result<Vec<f32>> {
    vb.get(shape, name)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

fn linear(
    vb: &VarBuilder,
    n: usize,
    k: usize,
    precision: Precision,
) -> candle_core::Result<Linear> {
    stacked(std::slice::from_ref(vb), n, k, precision)
}

/// Linear layers of the same shape (`n × k` each) stacked into one: their outputs side by side.
/// An int8 layer starts out calibrating (see [`Encoder::calibrate`]).
fn stacked(
    vbs: &[VarBuilder],
    n: usize,
    k: usize,
    precision: Precision,
) -> candle_core::Result<Linear> {
    let (mut weight, mut bias) = (Vec::new(), Vec::new());
    for vb in vbs {
        weight.extend(read(vb, &[n, k], "weight")?);
        bias.extend(read(vb, &[n], "bias")?);
    }
    let n = vbs.len() * n;
    let weight = match precision {
        Precision::Bf16 => Weight::Bf16(PackedBf16::from_rows(&weight, n, k)),
        Precision::Int8 => Weight::Calibrating(Box::new(Calibrating {
            bf16: PackedBf16::from_rows(&weight, n, k),
            int8: PackedI8::from_rows(&weight, n, k),
            mode: Mode::Measure,
            error: Mutex::new((0.0, 0.0)),
        })),
        Precision::F32 | Precision::F16 | Precision::Auto => {
            Weight::F32(Packed::from_rows(&weight, n, k))
        }
    };
    Ok(Linear { weight, bias })
}

fn norm(vb: &VarBuilder, size: usize) -> candle_core::Result<Norm> {
    // Old BERT checkpoints name LayerNorm's parameters gamma and beta.
    let (scale, shift) =
        if vb.contains_tensor("weight") { ("weight", "bias") } else { ("gamma", "beta") };
    Ok(Norm { gamma: read(vb, &[size], scale)?, beta: read(vb, &[size], shift)? })
}

fn config_usize(config: &serde_json::Value, key: &str) -> candle_core::Result<usize> {
    config
        .get(key)
        .and_then(|v| v.as_u64())
        .map(|v| v as usize)
        .ok_or_else(|| candle_core::Error::Msg(format!("config.json has no {key}")))
}

impl Encoder {
    /// Reads and packs the weights of `checkpoint` from `vb` (f32, whatever the file stores;
    /// the layers' linear weights in bf16 or int8 for those precisions, the head in f32).
    pub(crate) fn load(
        checkpoint: &Checkpoint,
        vb: VarBuilder,
        isa: Isa,
        precision: Precision,
    ) -> candle_core::Result<Encoder> {
        let config = &checkpoint.config;
        let hidden = config_usize(config, "hidden_size")?;
        let heads = config_usize(config, "num_attention_heads")?;
        let layers = config_usize(config, "num_hidden_layers")?;
        let intermediate = config_usize(config, "intermediate_size")?;
        let vocab = config_usize(config, "vocab_size")?;
        let positions = config_usize(config, "max_position_embeddings")?;
        let types = config_usize(config, "type_vocab_size").unwrap_or(2);
        let eps = config.get("layer_norm_eps").and_then(|v| v.as_f64()).unwrap_or(1e-12) as f32;
        if heads == 0 || hidden % heads != 0 {
            return Err(candle_core::Error::Msg(format!(
                "hidden_size {hidden} is not a multiple of num_attention_heads {heads}"
            )));
        }
        let activation = match config.get("hidden_act").and_then(|v| v.as_str()).unwrap_or("gelu") {
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => {
                return Err(candle_core::Error::Msg(format!(
                    "hidden_act {other} is not supported"
                )));
            }
        };
        let xlmr = checkpoint.architecture == Architecture::XlmRobertaCrossEncoder;
        let prefix = if xlmr { "roberta" } else { "bert" };
        let body = if vb.contains_tensor(&format!("{prefix}.embeddings.word_embeddings.weight")) {
            vb.pp(prefix)
        } else {
            vb.clone()
        };
        let embeddings = body.pp("embeddings");
        let words = embeddings.pp("word_embeddings");
        let word_embeddings = match precision {
            Precision::Bf16 | Precision::Int8 if vocab * hidden * 4 >= BF16_TABLE_BYTES => {
                Table::read_bf16(&words, vocab, hidden)?
            }
            _ => Table::F32(read(&words, &[vocab, hidden], "weight")?),
        };
        let position_embeddings =
            read(&embeddings.pp("position_embeddings"), &[positions, hidden], "weight")?;
        let type_embeddings =
            read(&embeddings.pp("token_type_embeddings"), &[types, hidden], "weight")?;
        let embedding_norm = norm(&embeddings.pp("LayerNorm"), hidden)?;
        let layers = (0..layers)
            .map(|i| -> candle_core::Result<Layer> {
                let layer = body.pp(format!("encoder.layer.{i}"));
                let attention = layer.pp("attention");
                let own = attention.pp("self");
                let key_value = [own.pp("key"), own.pp("value")];
                Ok(Layer {
                    query: linear(&own.pp("query"), hidden, hidden, precision)?,
                    key_value: stacked(&key_value, hidden, hidden, precision)?,
                    attention_out: linear(
                        &attention.pp("output.dense"),
                        hidden,
                        hidden,
                        precision,
                    )?,
                    attention_norm: norm(&attention.pp("output.LayerNorm"), hidden)?,
                    up: linear(&layer.pp("intermediate.dense"), intermediate, hidden, precision)?,
                    down: linear(&layer.pp("output.dense"), hidden, intermediate, precision)?,
                    output_norm: norm(&layer.pp("output.LayerNorm"), hidden)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let labels = checkpoint.num_labels;
        let head = match checkpoint.architecture {
            Architecture::BertEmbedder => Head::Embed(checkpoint.pooling),
            Architecture::BertCrossEncoder => {
                let pooler = if vb.contains_tensor("bert.pooler.dense.weight") {
                    vb.pp("bert.pooler.dense")
                } else {
                    vb.pp("pooler.dense")
                };
                Head::Classify {
                    dense: linear(&pooler, hidden, hidden, Precision::F32)?,
                    out: linear(&vb.pp("classifier"), labels, hidden, Precision::F32)?,
                }
            }
            Architecture::XlmRobertaCrossEncoder => Head::Classify {
                dense: linear(&vb.pp("classifier.dense"), hidden, hidden, Precision::F32)?,
                out: linear(&vb.pp("classifier.out_proj"), labels, hidden, Precision::F32)?,
            },
        };
        let pad = config.get("pad_token_id").and_then(|v| v.as_u64()).unwrap_or(1) as usize;
        Ok(Encoder {
            isa,
            bf16: precision != Precision::F32,
            hidden,
            heads,
            eps,
            activation,
            vocab,
            positions,
            types,
            position_offset: if xlmr { pad + 1 } else { 0 },
            word_embeddings,
            position_embeddings,
            type_embeddings,
            embedding_norm,
            layers,
            head,
            workspace: Mutex::new(Workspace::default()),
        })
    }

    /// Calibrates an int8 model on `batch`: one pass in bf16 measures each linear layer's int8
    /// error beside it (relative RMS of the outputs); then the layers go to int8 in order of
    /// that error, as many as keep the outputs `accept`able against the bf16 ones (all of them
    /// if they pass, else a binary search over how many, a pass each), the rest staying bf16.
    /// Returns each layer's (name, error, kept in int8).
    pub(crate) fn calibrate(
        &mut self,
        batch: &[&Encoded],
        accept: impl Fn(&Outputs, &Outputs) -> bool,
    ) -> candle_core::Result<Vec<(String, f64, bool)>> {
        let reference = self.forward(batch)?;
        let errors: Vec<(String, f64)> = self
            .linear_layers()
            .filter_map(|(name, linear)| linear.int8_error().map(|error| (name, error)))
            .collect();
        let mut order: Vec<usize> = (0..errors.len()).collect();
        order.sort_by(|&a, &b| errors[a].1.total_cmp(&errors[b].1));
        // Which layers are int8 when the `count` smallest errors are.
        let int8_for = |count: usize| {
            let mut int8 = vec![false; order.len()];
            order[..count].iter().for_each(|&i| int8[i] = true);
            int8
        };
        // All of them first (one pass when the model takes int8 everywhere), then halving.
        let (mut low, mut high) = (0, order.len());
        let mut count = high;
        while low < high {
            for ((_, linear), int8) in self.linear_layers().zip(int8_for(count)) {
                linear.set_int8(int8);
            }
            if accept(&reference, &self.forward(batch)?) {
                low = count;
            } else {
                high = count - 1;
            }
            count = (low + high).div_ceil(2);
        }
        let int8 = int8_for(low);
        for ((_, linear), &int8) in self.linear_layers().zip(&int8) {
            linear.settle(int8);
        }
        Ok(errors.into_iter().zip(int8).map(|((name, error), int8)| (name, error, int8)).collect())
    }

    /// The layers' linear layers, named.
    fn linear_layers(&mut self) -> impl Iterator<Item = (String, &mut Linear)> {
        self.layers.iter_mut().enumerate().flat_map(|(i, layer)| {
            let Layer { query, key_value, attention_out, up, down, .. } = layer;
            [
                ("query", query),
                ("key_value", key_value),
                ("attention_out", attention_out),
                ("up", up),
                ("down", down),
            ]
            .map(|(name, linear)| (format!("layer {i} {name}"), linear))
        })
    }

    /// One forward pass over a batch, its inputs packed end to end. It runs on a worker of the
    /// rayon pool, so each parallel stage forks from there: a thread outside the pool would hand
    /// every stage over and sleep until it ends (a third of a short query's time went to those
    /// hand-offs).
    pub(crate) fn forward(&self, batch: &[&Encoded]) -> candle_core::Result<Outputs> {
        rayon::scope(|_| self.forward_here(batch))
    }

    fn forward_here(&self, batch: &[&Encoded]) -> candle_core::Result<Outputs> {
        let hidden = self.hidden;
        let mut starts = Vec::with_capacity(batch.len() + 1);
        let mut total = 0;
        for encoded in batch {
            if encoded.is_empty() {
                return Err(candle_core::Error::Msg("an input has no tokens".into()));
            }
            starts.push(total);
            total += encoded.len();
        }
        starts.push(total);
        let mut workspace = self.workspace.lock();
        let Workspace { states, next, buffers } = &mut *workspace;
        grow(states, total * hidden);
        grow(next, total * hidden);
        self.embed(batch, &starts, &mut states[..total * hidden])?;
        let (last, full) = self.layers.split_last().expect("a checkpoint has layers");
        for layer in full {
            let (input, out) = (&states[..total * hidden], &mut next[..total * hidden]);
            self.layer(layer, &starts, &starts, input, input, buffers, out);
            std::mem::swap(states, next);
        }
        let states = &states[..total * hidden];
        if let Head::Classify { .. } = self.head {
            // The head reads each sequence's first token only: the last layer's queries and
            // everything after attention run for those rows alone.
            let sequences = batch.len();
            let mut first = vec![0f32; sequences * hidden];
            for (row, &start) in first.chunks_exact_mut(hidden).zip(&starts) {
                row.copy_from_slice(&states[start * hidden..(start + 1) * hidden]);
            }
            let query_starts: Vec<usize> = (0..=sequences).collect();
            let mut out = vec![0f32; sequences * hidden];
            self.layer(last, &starts, &query_starts, states, &first, buffers, &mut out);
            return Ok(self.classify(&out, sequences));
        }
        let out = &mut next[..total * hidden];
        self.layer(last, &starts, &starts, states, states, buffers, out);
        Ok(self.pool(out, &starts))
    }

    /// Token + position + type embeddings, normalised, into `states`.
    fn embed(
        &self,
        batch: &[&Encoded],
        starts: &[usize],
        states: &mut [f32],
    ) -> candle_core::Result<()> {
        let hidden = self.hidden;
        for encoded in batch {
            if encoded.len() + self.position_offset > self.positions {
                return Err(candle_core::Error::Msg(format!(
                    "an input of {} tokens exceeds the model's {} positions",
                    encoded.len(),
                    self.positions - self.position_offset
                )));
            }
            if let Some(id) = encoded.ids.iter().find(|&&id| id as usize >= self.vocab) {
                return Err(candle_core::Error::Msg(format!(
                    "token id {id} is outside the vocabulary of {}",
                    self.vocab
                )));
            }
            if let Some(t) = encoded.type_ids.iter().find(|&&t| t as usize >= self.types) {
                return Err(candle_core::Error::Msg(format!(
                    "token type {t} is outside the model's {} types",
                    self.types
                )));
            }
        }
        let isa = self.isa;
        let norm = &self.embedding_norm;
        states.par_chunks_mut(hidden).enumerate().for_each(|(t, row)| {
            let s = starts.partition_point(|&start| start <= t) - 1;
            let (encoded, i) = (batch[s], t - starts[s]);
            self.word_embeddings.read(encoded.ids[i] as usize, row);
            let position = row_of(&self.position_embeddings, hidden, self.position_offset + i);
            let kind_id = encoded.type_ids.get(i).copied().unwrap_or(0) as usize;
            let kind = row_of(&self.type_embeddings, hidden, kind_id);
            for (j, value) in row.iter_mut().enumerate() {
                *value += position[j] + kind[j];
            }
            kernels::add_layer_norm(isa, row, &[], &norm.gamma, &norm.beta, self.eps);
        });
        Ok(())
    }

    /// One layer. Keys and values come from every token of `states` (sequence `s` holds rows
    /// `starts[s]..starts[s + 1]`); queries from the rows of `input` (sequence `s` owns rows
    /// `query_starts[s]..query_starts[s + 1]`), whose new states go to `out`.
    #[allow(clippy::too_many_arguments)]
    fn layer(
        &self,
        layer: &Layer,
        starts: &[usize],
        query_starts: &[usize],
        states: &[f32],
        input: &[f32],
        buffers: &mut Buffers,
        out: &mut [f32],
    ) {
        let (isa, hidden) = (self.isa, self.hidden);
        let (tokens, rows) = (*starts.last().unwrap_or(&0), *query_starts.last().unwrap_or(&0));
        let Buffers { queries, keys_values, context, attended, intermediate } = buffers;
        grow(keys_values, tokens * 2 * hidden);
        grow(queries, rows * hidden);
        grow(context, rows * hidden);
        grow(attended, rows * hidden);
        let (keys_values, queries) =
            (&mut keys_values[..tokens * 2 * hidden], &mut queries[..rows * hidden]);
        let (context, attended) = (&mut context[..rows * hidden], &mut attended[..rows * hidden]);
        layer.key_value.par_apply(isa, states, tokens, keys_values);
        layer.query.par_apply(isa, input, rows, queries);
        self.attend(starts, query_starts, queries, keys_values, context);
        layer.attention_out.par_apply(isa, context, rows, attended);
        self.add_norm(attended, input, &layer.attention_norm);
        self.feed_forward(layer, attended, intermediate, out);
    }

    /// Scaled dot-product attention per (sequence, head), each task on one worker's scratch.
    fn attend(
        &self,
        starts: &[usize],
        query_starts: &[usize],
        queries: &[f32],
        keys_values: &[f32],
        context: &mut [f32],
    ) {
        let (isa, hidden, heads) = (self.isa, self.hidden, self.heads);
        let size = hidden / heads;
        let scale = 1.0 / (size as f32).sqrt();
        let sequences = starts.len() - 1;
        let context = Shared(context.as_mut_ptr());
        (0..sequences * heads).into_par_iter().for_each(|task| {
            let (s, head) = (task / heads, task % heads);
            let length = starts[s + 1] - starts[s];
            let query_rows = query_starts[s]..query_starts[s + 1];
            let m = query_rows.len();
            let kv = &keys_values[starts[s] * 2 * hidden..];
            let queries = &queries[query_rows.start * hidden + head * size..];
            let context = context.get().wrapping_add(query_rows.start * hidden + head * size);
            let kv = (&kv[head * size..], &kv[hidden + head * size..]);
            SCRATCH.with_borrow_mut(|scratch| {
                let Scratch { keys, values, keys_bf16, values_bf16, scores, .. } = scratch;
                grow(scores, m * length);
                let scores = &mut scores[..m * length];
                let head = AttentionHead {
                    isa,
                    hidden,
                    length,
                    m,
                    size,
                    scale,
                    kv,
                    queries,
                    scores,
                    context,
                };
                // SAFETY: each task writes its own (rows, head) block of the context.
                unsafe {
                    if self.bf16 {
                        head.attend(keys_bf16, values_bf16)
                    } else {
                        head.attend(keys, values)
                    }
                }
            });
        });
    }

    /// `rows = LayerNorm(rows + residual)`, row by row in parallel.
    fn add_norm(&self, rows: &mut [f32], residual: &[f32], norm: &Norm) {
        let (isa, eps) = (self.isa, self.eps);
        rows.par_chunks_mut(self.hidden).zip(residual.par_chunks(self.hidden)).for_each(
            |(row, residual)| {
                kernels::add_layer_norm(isa, row, residual, &norm.gamma, &norm.beta, eps)
            },
        );
    }

    /// `out = LayerNorm(input + down(act(up(input))))`. Long batches go by row blocks, each
    /// task keeping its block's intermediate in cache; short ones split every matrix by columns.
    fn feed_forward(
        &self,
        layer: &Layer,
        input: &[f32],
        intermediate: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        let (isa, hidden, activation) = (self.isa, self.hidden, self.activation);
        let (up, down, norm) = (&layer.up, &layer.down, &layer.output_norm);
        let width = up.n();
        let rows = input.len() / hidden;
        if rows >= ROW_BLOCK * rayon::current_num_threads() {
            out.par_chunks_mut(ROW_BLOCK * hidden)
                .zip(input.par_chunks(ROW_BLOCK * hidden))
                .for_each(|(out, input)| {
                    let m = input.len() / hidden;
                    SCRATCH.with_borrow_mut(|scratch| {
                        grow(&mut scratch.intermediate, m * width);
                        let middle = &mut scratch.intermediate[..m * width];
                        up.apply(isa, input, m, middle, width);
                        activation.apply(isa, middle);
                        down.apply(isa, middle, m, out, hidden);
                    });
                    for (row, residual) in
                        out.chunks_exact_mut(hidden).zip(input.chunks_exact(hidden))
                    {
                        kernels::add_layer_norm(
                            isa,
                            row,
                            residual,
                            &norm.gamma,
                            &norm.beta,
                            self.eps,
                        );
                    }
                });
            return;
        }
        grow(intermediate, rows * width);
        let middle = &mut intermediate[..rows * width];
        up.par_apply(isa, input, rows, middle);
        middle.par_chunks_mut(width).for_each(|row| activation.apply(isa, row));
        down.par_apply(isa, middle, rows, out);
        self.add_norm(out, input, norm);
    }

    /// Cross-encoder logits (first label) from each sequence's first-token state.
    fn classify(&self, first: &[f32], rows: usize) -> Outputs {
        let Head::Classify { dense, out } = &self.head else {
            unreachable!("classify is called for cross-encoders")
        };
        let mut pooled = vec![0f32; rows * self.hidden];
        dense.apply(self.isa, first, rows, &mut pooled, self.hidden);
        pooled.iter_mut().for_each(|v| *v = v.tanh());
        let labels = out.n();
        let mut logits = vec![0f32; rows * labels];
        out.apply(self.isa, &pooled, rows, &mut logits, labels);
        Outputs::Scores(logits.chunks_exact(labels).map(|row| row[0]).collect())
    }

    /// Pooled, L2-normalised sentence embeddings.
    fn pool(&self, states: &[f32], starts: &[usize]) -> Outputs {
        let Head::Embed(pooling) = self.head else { unreachable!("pool is called for embedders") };
        let hidden = self.hidden;
        let vectors = starts
            .windows(2)
            .map(|span| {
                let rows = match pooling {
                    Pooling::Cls => &states[span[0] * hidden..(span[0] + 1) * hidden],
                    Pooling::Mean => &states[span[0] * hidden..span[1] * hidden],
                };
                let mut vector = vec![0f32; hidden];
                for row in rows.chunks_exact(hidden) {
                    vector.iter_mut().zip(row).for_each(|(v, x)| *v += x);
                }
                let count = (rows.len() / hidden) as f32;
                vector.iter_mut().for_each(|v| *v /= count);
                let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                vector.iter_mut().for_each(|v| *v /= norm);
                vector
            })
            .collect();
        Outputs::Vectors(vectors)
    }
}

/// Row `i` of a table of rows of `width`.
fn row_of(table: &[f32], width: usize, i: usize) -> &[f32] {
    &table[i * width..(i + 1) * width]
}

/// Grows `buffer` to at least `len` values (never shrinks: the workspace keeps its high-water mark).
fn grow(buffer: &mut Vec<f32>, len: usize) {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bf16_table_reads_each_row_rounded_to_bf16() {
        let values: Vec<f32> = (0..24).map(|i| (i as f32 - 11.3) * 0.37).collect();
        let (f32_table, bf16_table) = (Table::F32(values.clone()), Table::bf16(&values));
        for id in 0..3 {
            let (mut exact, mut rounded) = ([0f32; 8], [0f32; 8]);
            f32_table.read(id, &mut exact);
            bf16_table.read(id, &mut rounded);
            assert_eq!(exact, values[id * 8..(id + 1) * 8]);
            for (r, e) in rounded.iter().zip(exact) {
                assert_eq!(*r, bf16::from_bf16(bf16::to_bf16(e)));
                assert!((r - e).abs() <= e.abs() / 256.0, "{r} vs {e}");
            }
        }
    }
}
