//! The models a server loads at start, each behind its queue, found by name: `org/name`
//! resolves to `<models dir>/org--name/` (or an explicit path), and with the `hub` feature a
//! missing model is downloaded from the Hugging Face hub.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
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
#[derive(Clone, Debug, Default, PartialEq)]
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

/// What a model is, wherever it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelDescription {
    /// The name requests use.
    pub name: String,
    /// The `architectures` name of its `config.json`.
    pub architecture: String,
    /// Whether it scores (query, passage) pairs rather than embedding texts.
    pub cross_encoder: bool,
    /// Compute precision.
    pub precision: String,
    /// Kernels of its forward pass.
    pub kernels: String,
    /// Window in tokens.
    pub max_length: usize,
    /// Embedding size (embedders), hidden size (cross-encoders).
    pub dimension: usize,
}

impl ModelDescription {
    /// A loaded model's description.
    pub fn of(model: &Model) -> ModelDescription {
        ModelDescription {
            name: model.name().to_string(),
            architecture: model.architecture().name().to_string(),
            cross_encoder: model.architecture().is_cross_encoder(),
            precision: model.precision().name().to_string(),
            kernels: model.kernels().name().to_string(),
            max_length: model.max_length(),
            dimension: model.dimension(),
        }
    }
}

/// A boxed future of a remote model call.
pub type ModelFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// A model that runs in another process (a cluster's model tier), called over the network.
pub trait RemoteModel: Send + Sync {
    /// What it is.
    fn description(&self) -> &ModelDescription;
    /// Where it runs (an address), for `Info` and errors.
    fn served_by(&self) -> &str;
    /// Embeds texts (an embedder).
    fn embed(&self, texts: Vec<String>) -> ModelFuture<'_, Embedded>;
    /// Scores (query, passage) pairs (a cross-encoder).
    fn score(&self, query: String, passages: Vec<String>, windows: bool)
    -> ModelFuture<'_, Scored>;
}

/// A model in this process behind its queue, or one in another process.
#[derive(Clone)]
enum Backend {
    Local(Arc<BatchedModel>),
    Remote(Arc<dyn RemoteModel>),
}

impl Backend {
    fn name(&self) -> &str {
        match self {
            Backend::Local(model) => model.model().name(),
            Backend::Remote(model) => &model.description().name,
        }
    }

    fn dimension(&self) -> usize {
        match self {
            Backend::Local(model) => model.model().dimension(),
            Backend::Remote(model) => model.description().dimension,
        }
    }

    fn cross_encoder(&self) -> bool {
        match self {
            Backend::Local(model) => model.model().architecture().is_cross_encoder(),
            Backend::Remote(model) => model.description().cross_encoder,
        }
    }

    fn architecture(&self) -> &str {
        match self {
            Backend::Local(model) => model.model().architecture().name(),
            Backend::Remote(model) => &model.description().architecture,
        }
    }

    fn local(&self) -> Option<&BatchedModel> {
        match self {
            Backend::Local(model) => Some(model),
            Backend::Remote(_) => None,
        }
    }
}

/// A bi-encoder, in this process behind its queue or in a model tier: the handle that embeds.
#[derive(Clone)]
pub struct Embedder(Backend);

impl Embedder {
    /// The model as an embedder, or why it is not one.
    pub fn new(model: Arc<BatchedModel>) -> Result<Embedder> {
        model.model().require_embedder()?;
        Ok(Embedder(Backend::Local(model)))
    }

    /// A remote model as an embedder, or why it is not one.
    pub fn remote(model: Arc<dyn RemoteModel>) -> Result<Embedder> {
        let backend = Backend::Remote(model);
        if backend.cross_encoder() {
            return Err(ModelError::InvalidInput(format!(
                "model '{}' is a cross-encoder ({}), not an embedder",
                backend.name(),
                backend.architecture()
            )));
        }
        Ok(Embedder(backend))
    }

    /// Embeds texts (cut at the window).
    pub async fn embed(&self, texts: Vec<String>) -> Result<Embedded> {
        match &self.0 {
            Backend::Local(model) => model.embed(texts).await,
            Backend::Remote(model) => model.embed(texts).await,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The size of its vectors.
    pub fn dimension(&self) -> usize {
        self.0.dimension()
    }

    /// The model and its queue when it runs in this process.
    pub fn local(&self) -> Option<&BatchedModel> {
        self.0.local()
    }
}

/// A cross-encoder, in this process behind its queue or in a model tier: the handle that
/// scores (query, passage) pairs.
#[derive(Clone)]
pub struct CrossEncoder(Backend);

impl CrossEncoder {
    /// The model as a cross-encoder, or why it is not one.
    pub fn new(model: Arc<BatchedModel>) -> Result<CrossEncoder> {
        model.model().require_cross_encoder()?;
        Ok(CrossEncoder(Backend::Local(model)))
    }

    /// A remote model as a cross-encoder, or why it is not one.
    pub fn remote(model: Arc<dyn RemoteModel>) -> Result<CrossEncoder> {
        let backend = Backend::Remote(model);
        if !backend.cross_encoder() {
            return Err(ModelError::InvalidInput(format!(
                "model '{}' is an embedder ({}), not a cross-encoder",
                backend.name(),
                backend.architecture()
            )));
        }
        Ok(CrossEncoder(backend))
    }

    /// Scores (query, passage) pairs. Passages longer than the window are cut, or with
    /// `windows` scored as overlapping windows and given their best window's score.
    pub async fn score(&self, query: &str, passages: Vec<String>, windows: bool) -> Result<Scored> {
        match &self.0 {
            Backend::Local(model) => model.score(query, passages, windows).await,
            Backend::Remote(model) => model.score(query.to_string(), passages, windows).await,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The model and its queue when it runs in this process.
    pub fn local(&self) -> Option<&BatchedModel> {
        self.0.local()
    }
}

/// Every model a server loaded, by name, and the models of a model tier it calls.
#[derive(Default)]
pub struct Registry {
    models: BTreeMap<String, Arc<BatchedModel>>,
    remote: BTreeMap<String, Arc<dyn RemoteModel>>,
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
        Ok(Registry { models, remote: BTreeMap::new() })
    }

    /// Adds a loaded model (tests and tools).
    pub fn insert(&mut self, name: impl Into<String>, model: Arc<BatchedModel>) {
        self.models.insert(name.into(), model);
    }

    /// The model of that name.
    pub fn get(&self, name: &str) -> Option<&Arc<BatchedModel>> {
        self.models.get(name)
    }

    /// Adds a model of a model tier; a model loaded here of the same name goes first.
    pub fn insert_remote(&mut self, model: Arc<dyn RemoteModel>) {
        self.remote.insert(model.description().name.clone(), model);
    }

    /// Every model loaded here, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<BatchedModel>)> {
        self.models.iter()
    }

    /// Every model of a model tier that serves here (none loaded here has its name), by name.
    pub fn remote(&self) -> impl Iterator<Item = (&String, &Arc<dyn RemoteModel>)> {
        self.remote.iter().filter(|(name, _)| !self.models.contains_key(*name))
    }

    /// The names of every cross-encoder, here or in a model tier.
    pub fn cross_encoder_names(&self) -> Vec<&str> {
        let local = self
            .models
            .iter()
            .filter(|(_, m)| m.model().architecture().is_cross_encoder())
            .map(|(name, _)| name.as_str());
        let remote = self
            .remote()
            .filter(|(_, m)| m.description().cross_encoder)
            .map(|(name, _)| name.as_str());
        let mut names: Vec<&str> = local.chain(remote).collect();
        names.sort_unstable();
        names
    }

    /// The cross-encoder of that name, or why it cannot serve.
    pub fn cross_encoder(&self, name: &str) -> Result<CrossEncoder> {
        match self.require(name)? {
            Backend::Local(model) => CrossEncoder::new(model),
            Backend::Remote(model) => CrossEncoder::remote(model),
        }
    }

    /// The embedder of that name, or why it cannot serve.
    pub fn embedder(&self, name: &str) -> Result<Embedder> {
        match self.require(name)? {
            Backend::Local(model) => Embedder::new(model),
            Backend::Remote(model) => Embedder::remote(model),
        }
    }

    fn require(&self, name: &str) -> Result<Backend> {
        if let Some(model) = self.models.get(name) {
            return Ok(Backend::Local(Arc::clone(model)));
        }
        if let Some(model) = self.remote.get(name) {
            return Ok(Backend::Remote(Arc::clone(model)));
        }
        let mut loaded: Vec<&str> =
            self.models.keys().chain(self.remote.keys()).map(String::as_str).collect();
        loaded.sort_unstable();
        loaded.dedup();
        Err(ModelError::InvalidInput(format!(
            "model '{name}' is not loaded by this server (loaded: {})",
            if loaded.is_empty() { "none".to_string() } else { loaded.join(", ") }
        )))
    }
}
