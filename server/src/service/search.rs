//! `sieve.v1.Search`: one search as a stream of stage events, or many searches on one stream.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use sieve_proto::v1::search_server::Search;
use sieve_proto::v1::{
    self, SearchEvent, SearchRequest, SearchResponse, SearchResult, search_event, search_result,
};
use tonic::{Request, Response, Status, Streaming};

use super::State;
use crate::convert;
use crate::status::{self, blocking};

pub struct SearchService(pub Arc<State>);

/// Searches of one `SearchStream` that may run at once; results still leave in request order.
const STREAM_CONCURRENCY: usize = 4;

type EventStream = Pin<Box<dyn Stream<Item = Result<SearchEvent, Status>> + Send>>;
type ResultStream = Pin<Box<dyn Stream<Item = Result<SearchResult, Status>> + Send>>;

async fn run(state: Arc<State>, request: SearchRequest) -> Result<SearchResponse, Status> {
    let (name, query) = convert::search_request(request, &state.config)?;
    let collection = state.store.collection(&name).map_err(status::storage)?;
    let outcome =
        blocking(move || sieve_planner::search(&collection, &query).map_err(status::search))
            .await?;
    Ok(convert::search_outcome(outcome))
}

#[tonic::async_trait]
impl Search for SearchService {
    type SearchStream = EventStream;
    type SearchStreamStream = ResultStream;

    async fn search(
        &self,
        request: Request<SearchRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let response = run(Arc::clone(&self.0), request.into_inner()).await?;
        let stages = response.stages.into_iter().map(search_event::Event::Hits);
        let events: Vec<Result<SearchEvent, Status>> = stages
            .chain(response.done.map(search_event::Event::Done))
            .map(|event| Ok(SearchEvent { event: Some(event) }))
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(events))))
    }

    async fn search_stream(
        &self,
        request: Request<Streaming<SearchRequest>>,
    ) -> Result<Response<ResultStream>, Status> {
        let state = Arc::clone(&self.0);
        let results = request
            .into_inner()
            .enumerate()
            .map(move |(index, request)| {
                let state = Arc::clone(&state);
                async move {
                    let request = request?;
                    let outcome = match run(state, request).await {
                        Ok(response) => search_result::Outcome::Response(response),
                        Err(status) => search_result::Outcome::Error(v1::Error {
                            code: status.code() as u32,
                            message: status.message().to_string(),
                        }),
                    };
                    Ok(SearchResult { index: index as u64, outcome: Some(outcome) })
                }
            })
            .buffered(STREAM_CONCURRENCY);
        Ok(Response::new(Box::pin(results)))
    }
}
