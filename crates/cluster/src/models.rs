//! The model tier (SCALE.md): a process that loads models and serves them to routers over
//! the internal `sieve.cluster.v1.Models` service, so routers hold no models and each tier
//! scales on its own; and the router's side, each of the tier's models as a
//! [`RemoteModel`] in the router's registry.

use std::sync::Arc;
use std::time::Duration;

use sieve_models::{
    Embedded, ModelDescription, ModelError, ModelFuture, Registry, RemoteModel, Scored,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

use crate::service::proto;
use crate::service::proto::models_client::ModelsClient;

/// The most texts or passages one call may carry (a router sends a batch or a cascade stage).
const MAX_INPUTS: usize = 4096;

/// Serves a registry's models over gRPC.
pub struct ModelsService {
    registry: Arc<Registry>,
}

impl ModelsService {
    /// The tonic service for `registry`'s models.
    pub fn server(registry: Arc<Registry>) -> proto::models_server::ModelsServer<ModelsService> {
        proto::models_server::ModelsServer::new(ModelsService { registry })
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
}

fn description_to_proto(d: &ModelDescription) -> proto::ModelDescription {
    proto::ModelDescription {
        name: d.name.clone(),
        architecture: d.architecture.clone(),
        cross_encoder: d.cross_encoder,
        precision: d.precision.clone(),
        kernels: d.kernels.clone(),
        max_length: d.max_length as u32,
        dimension: d.dimension as u32,
    }
}

fn description_from_proto(d: proto::ModelDescription) -> ModelDescription {
    ModelDescription {
        name: d.name,
        architecture: d.architecture,
        cross_encoder: d.cross_encoder,
        precision: d.precision,
        kernels: d.kernels,
        max_length: d.max_length as usize,
        dimension: d.dimension as usize,
    }
}

/// A model error as the status the router turns back into it.
fn to_status(error: ModelError) -> Status {
    match error {
        ModelError::InvalidInput(msg) => Status::invalid_argument(msg),
        ModelError::Overloaded(msg) => Status::resource_exhausted(msg),
        ModelError::Closed(_) | ModelError::Unavailable(_) => {
            Status::unavailable(error.to_string())
        }
        ModelError::NotFound(_) | ModelError::Unsupported(_) | ModelError::Inference(_) => {
            tracing::error!(%error, "model failure");
            Status::internal(error.to_string())
        }
    }
}

fn check_inputs(what: &str, count: usize) -> Result<(), Status> {
    if count == 0 {
        return Err(Status::invalid_argument(format!("{what}: must not be empty")));
    }
    if count > MAX_INPUTS {
        return Err(Status::invalid_argument(format!(
            "{what}: {count} exceeds the limit of {MAX_INPUTS} per call"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl proto::models_server::Models for ModelsService {
    async fn describe(
        &self,
        _request: Request<proto::DescribeRequest>,
    ) -> Result<Response<proto::DescribeReply>, Status> {
        let models = self
            .registry
            .iter()
            .map(|(_, batched)| description_to_proto(&ModelDescription::of(batched.model())))
            .collect();
        Ok(Response::new(proto::DescribeReply { models }))
    }

    async fn embed(
        &self,
        request: Request<proto::EmbedRequest>,
    ) -> Result<Response<proto::EmbedReply>, Status> {
        let request = request.into_inner();
        check_inputs("texts", request.texts.len())?;
        let embedder = self.registry.embedder(&request.model).map_err(to_status)?;
        let embedded = embedder.embed(request.texts).await.map_err(to_status)?;
        Ok(Response::new(proto::EmbedReply {
            vectors: embedded.vectors.into_iter().map(|values| proto::Vector { values }).collect(),
            queue_micros: embedded.queue_time.as_micros() as u64,
            compute_micros: embedded.compute_time.as_micros() as u64,
        }))
    }

    async fn score(
        &self,
        request: Request<proto::ScoreRequest>,
    ) -> Result<Response<proto::ScoreReply>, Status> {
        let request = request.into_inner();
        check_inputs("passages", request.passages.len())?;
        let model = self.registry.cross_encoder(&request.model).map_err(to_status)?;
        let scored = model
            .score(&request.query, request.passages, request.windows)
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::ScoreReply {
            scores: scored.scores,
            queue_micros: scored.queue_time.as_micros() as u64,
            compute_micros: scored.compute_time.as_micros() as u64,
        }))
    }
}

/// One model of a model tier, as a router calls it.
struct TierModel {
    description: ModelDescription,
    url: String,
    client: ModelsClient<Channel>,
}

impl TierModel {
    /// A failed call as the model error the router's planner reports.
    fn error(&self, status: Status) -> ModelError {
        let name = &self.description.name;
        match status.code() {
            Code::InvalidArgument => ModelError::InvalidInput(status.message().to_string()),
            Code::ResourceExhausted => ModelError::Overloaded(status.message().to_string()),
            Code::Internal => ModelError::Inference(status.message().to_string()),
            _ => ModelError::Unavailable(format!(
                "model '{name}' at the model tier {}: {}",
                self.url,
                status.message()
            )),
        }
    }
}

impl RemoteModel for TierModel {
    fn description(&self) -> &ModelDescription {
        &self.description
    }

    fn served_by(&self) -> &str {
        &self.url
    }

    fn embed(&self, texts: Vec<String>) -> ModelFuture<'_, Embedded> {
        Box::pin(async move {
            let request = proto::EmbedRequest { model: self.description.name.clone(), texts };
            let reply =
                self.client.clone().embed(request).await.map_err(|s| self.error(s))?.into_inner();
            Ok(Embedded {
                vectors: reply.vectors.into_iter().map(|v| v.values).collect(),
                queue_time: Duration::from_micros(reply.queue_micros),
                compute_time: Duration::from_micros(reply.compute_micros),
            })
        })
    }

    fn score(
        &self,
        query: String,
        passages: Vec<String>,
        windows: bool,
    ) -> ModelFuture<'_, Scored> {
        Box::pin(async move {
            let request = proto::ScoreRequest {
                model: self.description.name.clone(),
                query,
                passages,
                windows,
            };
            let reply =
                self.client.clone().score(request).await.map_err(|s| self.error(s))?.into_inner();
            Ok(Scored {
                scores: reply.scores,
                queue_time: Duration::from_micros(reply.queue_micros),
                compute_time: Duration::from_micros(reply.compute_micros),
            })
        })
    }
}

/// The models of the model tier at `url` (`http://host:port`, a load-balanced service),
/// asking until it answers or `within` has passed (it may still be loading its models).
pub async fn model_tier(url: &str, within: Duration) -> Result<Vec<Arc<dyn RemoteModel>>, String> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("models_url '{url}': {e}"))?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true);
    let client = ModelsClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let deadline = tokio::time::Instant::now() + within;
    let reply = loop {
        match client.clone().describe(proto::DescribeRequest {}).await {
            Ok(reply) => break reply.into_inner(),
            Err(status) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(url, error = %status, "model tier not answering yet");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(status) => {
                return Err(format!(
                    "the model tier at {url} did not answer within {within:?}: {}",
                    status.message()
                ));
            }
        }
    };
    Ok(reply
        .models
        .into_iter()
        .map(|d| {
            Arc::new(TierModel {
                description: description_from_proto(d),
                url: url.to_string(),
                client: client.clone(),
            }) as Arc<dyn RemoteModel>
        })
        .collect())
}
