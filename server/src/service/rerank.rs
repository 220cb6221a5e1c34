//! `sieve.v1.Rerank`: cross-encoder scoring of texts for a query, without a collection.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use sieve_models::CrossEncoder;
use sieve_proto::v1::rerank_server::Rerank;
use sieve_proto::v1::{
    self, RerankRequest, RerankResponse, RerankResult, RerankStreamResult, rerank_stream_result,
};
use tonic::{Request, Response, Status, Streaming};

use super::State;
use crate::status;

pub struct RerankService(pub Arc<State>);

/// Requests of one `RerankStream` that may run at once; results leave in request order.
const STREAM_CONCURRENCY: usize = 4;

type ResultStream = Pin<Box<dyn Stream<Item = Result<RerankStreamResult, Status>> + Send>>;

/// The cross-encoder a request names, or the default one: the default cascade's first stage,
/// or the only cross-encoder loaded.
fn model(state: &State, name: &str) -> Result<CrossEncoder, Status> {
    let models = state.planner.models();
    if !name.is_empty() {
        return models
            .cross_encoder(name)
            .map_err(|e| Status::invalid_argument(format!("model: {e}")));
    }
    if let Some(stage) = state.planner.default_cascade().first() {
        return models.cross_encoder(&stage.model).map_err(status::model);
    }
    match models.cross_encoder_names().as_slice() {
        [only] => models.cross_encoder(only).map_err(status::model),
        [] => Err(Status::failed_precondition("this server has no cross-encoder loaded")),
        several => Err(Status::invalid_argument(format!(
            "model: required, there is no default cascade (loaded cross-encoders: {})",
            several.join(", ")
        ))),
    }
}

async fn rerank(state: &State, request: RerankRequest) -> Result<RerankResponse, Status> {
    let config = &state.config;
    let invalid = |msg: String| Err(Status::invalid_argument(msg));
    if request.query.len() > config.max_query_bytes {
        return invalid(format!(
            "query: {} bytes exceeds the limit of {} (max_query_bytes)",
            request.query.len(),
            config.max_query_bytes
        ));
    }
    if request.texts.is_empty() {
        return invalid("texts: must not be empty".into());
    }
    if request.texts.len() > config.max_rerank_texts {
        return invalid(format!(
            "texts: {} texts exceeds the limit of {} (max_rerank_texts)",
            request.texts.len(),
            config.max_rerank_texts
        ));
    }
    if let Some((i, text)) =
        request.texts.iter().enumerate().find(|(_, t)| t.len() > config.max_text_bytes)
    {
        return invalid(format!(
            "texts[{i}]: {} bytes exceeds the limit of {} (max_text_bytes)",
            text.len(),
            config.max_text_bytes
        ));
    }
    let model = model(state, &request.model)?;
    let count = request.texts.len();
    let scored =
        model.score(&request.query, request.texts, request.windows).await.map_err(status::model)?;
    let top_n = if request.top_n == 0 { count } else { request.top_n as usize };
    let indices: Vec<usize> = (0..count).collect();
    let results = sieve_rerank::best(&indices, &scored.scores, top_n)
        .into_iter()
        .map(|(index, score)| RerankResult { index: index as u32, score })
        .collect();
    Ok(RerankResponse {
        results,
        model: model.name().to_string(),
        queue_micros: scored.queue_time.as_micros() as u64,
        compute_micros: scored.compute_time.as_micros() as u64,
    })
}

#[tonic::async_trait]
impl Rerank for RerankService {
    type RerankStreamStream = ResultStream;

    async fn rerank(
        &self,
        request: Request<RerankRequest>,
    ) -> Result<Response<RerankResponse>, Status> {
        Ok(Response::new(rerank(&self.0, request.into_inner()).await?))
    }

    async fn rerank_stream(
        &self,
        request: Request<Streaming<RerankRequest>>,
    ) -> Result<Response<ResultStream>, Status> {
        let state = Arc::clone(&self.0);
        let results = request
            .into_inner()
            .enumerate()
            .map(move |(index, request)| {
                let state = Arc::clone(&state);
                async move {
                    let outcome = match rerank(&state, request?).await {
                        Ok(response) => rerank_stream_result::Outcome::Response(response),
                        Err(status) => rerank_stream_result::Outcome::Error(v1::Error {
                            code: status.code() as u32,
                            message: status.message().to_string(),
                        }),
                    };
                    Ok(RerankStreamResult { index: index as u64, outcome: Some(outcome) })
                }
            })
            .buffered(STREAM_CONCURRENCY);
        Ok(Response::new(Box::pin(results)))
    }
}
