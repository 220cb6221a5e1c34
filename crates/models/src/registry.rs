//! The models a server loads at start, each behind its queue, found by name: `org/name`
//! resolves to `<models dir>/org--name/` (or an explicit path), and with the `hub` feature a
//! missing model is downloaded from the Hugging Face hub.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{ModelError, Result};
use crate::kernels::{Kernels, cpu_description};
use crate::model::{Model, Precision};
use crate::queue::{BatchPolicy, Output, Queue, QueueStats};
use crate::tokenize::Encoded;

/// A model to load.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// Hugging Face id (`org/name`), the name requests use.
    pub name: String,
    /// Checkpoint folder; default `<models dir>/org--name`.
    pub path: Option<PathBuf>,
    /// Window in tokens; default from the checkpoint.
    pub max_length: Option<usize>,
    /// Compute precision.
    pub precision: Precision,
    /// Kernels of the forward pass.
    pub kernels: Kernels,
    /// Batching.
    pub batch: BatchPolicy,
}

impl ModelSpec {
    /// A spec with default settings.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            path: None,
            max_length: None,
            precision: Precision::F32,
            kernels: Kernels::detect(),
            batch: BatchPolicy::default(),
        }
    }
}

/// Where a model's checkpoint folder is expected.
pub fn model_dir(name: &str, models_dir: &Path) -> PathBuf {
    models_dir.join(name.replace('/', "--"))
}

/// The checkpoint folder of a spec: its path, or the models dir; downloaded from the hub when
/// missing and the `hub` feature is on.
fn resolve(spec: &ModelSpec, models_dir: &Path) -> Result<PathBuf> {
    let dir = spec.path.clone().unwrap_or_else(|| model_dir(&spec.name, models_dir));
    if dir.join("config.json").is_file() {
        return Ok(dir);
    }
    #[cfg(feature = "hub")]
    if spec.path.is_none() {
        return download(&spec.name);
    }
    Err(ModelError::NotFound(format!(
        "model '{}' not found: no checkpoint at {}. Put the Hugging Face folder there (config.json, \
         tokenizer.json, model.safetensors; e.g. `git clone https://huggingface.co/{} {}`), set its \
         `path`, or build the server with `--features hub` to download it at start-up",
        spec.name,
        dir.display(),
        spec.name,
        dir.display()
    )))
}

#[cfg(feature = "hub")]
fn download(name: &str) -> Result<PathBuf> {
    let api = hf_hub::api::sync::Api::new().map_err(|e| {
        ModelError::NotFound(format!("model '{name}': Hugging Face hub client: {e}"))
    })?;
    let repo = api.model(name.to_string());
    let fetch = |file: &str| repo.get(file);
    let config = fetch("config.json").map_err(|e| {
        ModelError::NotFound(format!("model '{name}': downloading config.json: {e}"))
    })?;
    for file in ["tokenizer.json", "model.safetensors"] {
        fetch(file).map_err(|e| {
            ModelError::NotFound(format!("model '{name}': downloading {file}: {e}"))
        })?;
    }
    // Optional files that refine the window and pooling.
    for file in ["tokenizer_config.json", "sentence_bert_config.json", "1_Pooling/config.json"] {
        let _ = fetch(file);
    }
    tracing::info!(model = name, "downloaded from the Hugging Face hub");
    Ok(config.parent().expect("a file has a folder").to_path_buf())
}

/// Cross-encoder scores of one call, with where the time went.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    /// One logit per passage (the best window's when windowed).
    pub scores: Vec<f32>,
    /// Waiting in the queue.
    pub queue_time: Duration,
    /// Computing.
    pub compute_time: Duration,
}

/// Embeddings of one call, with where the time went.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedded {
    /// One unit vector per text.
    pub vectors: Vec<Vec<f32>>,
    /// Waiting in the queue.
    pub queue_time: Duration,
    /// Computing.
    pub compute_time: Duration,
}

/// A model behind its batching queue: what servers call.
pub struct BatchedModel {
    queue: Queue,
}

impl BatchedModel {
    /// Loads a model and starts its queue.
    pub fn load(spec: &ModelSpec, models_dir: &Path) -> Result<BatchedModel> {
        let dir = resolve(spec, models_dir)?;
        let model = Model::load_with_kernels(
            &spec.name,
            &dir,
            spec.max_length,
            spec.precision,
            spec.kernels,
        )?;
        Ok(BatchedModel { queue: Queue::start(Arc::new(model), spec.batch)? })
    }

    /// Wraps an already loaded model.
    pub fn new(model: Model, batch: BatchPolicy) -> Result<BatchedModel> {
        Ok(BatchedModel { queue: Queue::start(Arc::new(model), batch)? })
    }

    /// The model.
    pub fn model(&self) -> &Model {
        self.queue.model()
    }

    /// Queue counters.
    pub fn stats(&self) -> &QueueStats {
        self.queue.stats()
    }

    /// Batch policy.
    pub fn policy(&self) -> BatchPolicy {
        self.queue.policy()
    }

    /// Tokenizes on the blocking pool (it is CPU work).
    async fn tokenize<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Model) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let model = Arc::clone(self.queue.model());
        tokio::task::spawn_blocking(move || work(&model))
            .await
            .map_err(|e| ModelError::Inference(format!("tokenizing: {e}")))?
    }

    async fn score(&self, query: &str, passages: Vec<String>, windows: bool) -> Result<Scored> {
        let query = query.to_string();
        // Each input, and the passage it belongs to.
        let (inputs, owners): (Vec<Encoded>, Vec<usize>) = self
            .tokenize(move |model| {
                let mut inputs = Vec::with_capacity(passages.len());
                let mut owners = Vec::with_capacity(passages.len());
                for (i, passage) in passages.iter().enumerate() {
                    let encoded = if windows {
                        model.tokenizer().encode_pair_windows(&query, passage)?
                    } else {
                        vec![model.tokenizer().encode_pair(&query, passage)?]
                    };
                    owners.extend(std::iter::repeat_n(i, encoded.len()));
                    inputs.extend(encoded);
                }
                Ok((inputs, owners))
            })
            .await?;
        let count = owners.last().map_or(0, |&last| last + 1);
        let batched = self.queue.run(inputs).await?;
        let mut scores = vec![f32::NEG_INFINITY; count];
        for (owner, output) in owners.into_iter().zip(batched.outputs) {
            if let Output::Score(score) = output {
                scores[owner] = scores[owner].max(score);
            }
        }
        Ok(Scored { scores, queue_time: batched.queue_time, compute_time: batched.compute_time })
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Embedded> {
        let inputs = self
            .tokenize(move |model| {
                texts.iter().map(|t| model.tokenizer().encode_text(t)).collect::<Result<Vec<_>>>()
            })
            .await?;
        let batched = self.queue.run(inputs).await?;
        let vectors = batched
            .outputs
            .into_iter()
            .map(|output| match output {
                Output::Vector(v) => v,
                Output::Score(_) => unreachable!("embedders return vectors"),
            })
            .collect();
        Ok(Embedded { vectors, queue_time: batched.queue_time, compute_time: batched.compute_time })
    }
}

/// A loaded bi-encoder behind its queue: the handle that embeds.
#[derive(Clone)]
pub struct Embedder(Arc<BatchedModel>);

impl Embedder {
    /// The model as an embedder, or why it is not one.
    pub fn new(model: Arc<BatchedModel>) -> Result<Embedder> {
        model.model().require_embedder()?;
        Ok(Embedder(model))
    }

    /// Embeds texts (cut at the window).
    pub async fn embed(&self, texts: Vec<String>) -> Result<Embedded> {
        self.0.embed(texts).await
    }
}

impl std::ops::Deref for Embedder {
    type Target = BatchedModel;
    fn deref(&self) -> &BatchedModel {
        &self.0
    }
}

/// A loaded cross-encoder behind its queue: the handle that scores (query, passage) pairs.
#[derive(Clone)]
pub struct CrossEncoder(Arc<BatchedModel>);

impl CrossEncoder {
    /// The model as a cross-encoder, or why it is not one.
    pub fn new(model: Arc<BatchedModel>) -> Result<CrossEncoder> {
        model.model().require_cross_encoder()?;
        Ok(CrossEncoder(model))
    }

    /// Scores (query, passage) pairs. Passages longer than the window are cut, or with
    /// `windows` scored as overlapping windows and given their best window's score.
    pub async fn score(&self, query: &str, passages: Vec<String>, windows: bool) -> Result<Scored> {
        self.0.score(query, passages, windows).await
    }
}

impl std::ops::Deref for CrossEncoder {
    type Target = BatchedModel;
    fn deref(&self) -> &BatchedModel {
        &self.0
    }
}

/// Every model a server loaded, by name.
#[derive(Default)]
pub struct Registry {
    models: BTreeMap<String, Arc<BatchedModel>>,
}

impl Registry {
    /// Loads every spec; the first that fails stops start-up with its reason.
    pub fn load(specs: &[ModelSpec], models_dir: &Path) -> Result<Registry> {
        let mut models = BTreeMap::new();
        for spec in specs {
            if models.contains_key(&spec.name) {
                return Err(ModelError::Unsupported(format!(
                    "model '{}' is listed twice",
                    spec.name
                )));
            }
            let loaded = BatchedModel::load(spec, models_dir)?;
            let model = loaded.model();
            tracing::info!(
                model = spec.name,
                architecture = model.architecture().name(),
                max_length = model.max_length(),
                precision = model.precision().name(),
                kernels = model.kernels().name(),
                cpu = cpu_description(),
                "model loaded"
            );
            models.insert(spec.name.clone(), Arc::new(loaded));
        }
        Ok(Registry { models })
    }

    /// Adds a loaded model (tests and tools).
    pub fn insert(&mut self, name: impl Into<String>, model: Arc<BatchedModel>) {
        self.models.insert(name.into(), model);
    }

    /// The model of that name.
    pub fn get(&self, name: &str) -> Option<&Arc<BatchedModel>> {
        self.models.get(name)
    }

    /// Every model, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<BatchedModel>)> {
        self.models.iter()
    }

    /// The loaded cross-encoder of that name, or why it cannot serve.
    pub fn cross_encoder(&self, name: &str) -> Result<CrossEncoder> {
        CrossEncoder::new(Arc::clone(self.require(name)?))
    }

    /// The loaded embedder of that name, or why it cannot serve.
    pub fn embedder(&self, name: &str) -> Result<Embedder> {
        Embedder::new(Arc::clone(self.require(name)?))
    }

    fn require(&self, name: &str) -> Result<&Arc<BatchedModel>> {
        self.models.get(name).ok_or_else(|| {
            let loaded: Vec<&str> = self.models.keys().map(String::as_str).collect();
            ModelError::InvalidInput(format!(
                "model '{name}' is not loaded by this server (loaded: {})",
                if loaded.is_empty() { "none".to_string() } else { loaded.join(", ") }
            ))
        })
    }
}
