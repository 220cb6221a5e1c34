//! `sieve.v1.Search`: one search as a stream of stage events, or many searches on one stream.
//! A client that goes away mid-search cancels it, and its model queue entries with it.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use sieve_proto::v1::search_server::Search;
use sieve_proto::v1::{
    self, SearchEvent, SearchRequest, SearchResponse, SearchResult, search_event, search_result,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{Backend, State};
use crate::{convert, limits, status};

pub struct SearchService(pub Arc<State>);

/// Searches of one `SearchStream` that may run at once; results still leave in request order.
const STREAM_CONCURRENCY: usize = 4;

type EventStream = Pin<Box<dyn Stream<Item = Result<SearchEvent, Status>> + Send>>;
type ResultStream = Pin<Box<dyn Stream<Item = Result<SearchResult, Status>> + Send>>;

/// Runs one search, handing each stage's event to `emit` as it lands.
async fn run(
    state: &State,
    request: SearchRequest,
    mut emit: impl FnMut(search_event::Event),
) -> Result<(), Status> {
    let mut request = request;
    let read =
        convert::consistency(request.consistency, std::mem::take(&mut request.consistency_token))?;
    let (name, query) = convert::search_request(request, &state.config)?;
    let on_stage = |list| emit(search_event::Event::Hits(convert::stage_list(list)));
    let summary = match &state.backend {
        Backend::Local(store) => {
            convert::standalone_read(&read)?;
            let collection = store.collection(&name).map_err(status::storage)?;
            state.planner.search(collection, query, on_stage).await
        }
        Backend::Cluster(cluster) => {
            let read = convert::cluster_read(cluster, read)?;
            let corpus = cluster.corpus(&name, read).await.map_err(status::cluster)?;
            state.planner.search(corpus, query, on_stage).await
        }
        Backend::Models => return Err(super::no_collections()),
    }
    .map_err(status::search)?;
    let done = convert::summary(summary);
    crate::metrics::searched(&done);
    emit(search_event::Event::Done(done));
    Ok(())
}

/// Runs one search and gathers its events into one response.
async fn collect(state: &State, request: SearchRequest) -> Result<SearchResponse, Status> {
    let mut response = SearchResponse::default();
    run(state, request, |event| match event {
        search_event::Event::Hits(stage) => response.stages.push(stage),
        search_event::Event::Done(done) => response.done = Some(done),
    })
    .await?;
    Ok(response)
}

#[tonic::async_trait]
impl Search for SearchService {
    type SearchStream = EventStream;
    type SearchStreamStream = ResultStream;

    async fn search(
        &self,
        request: Request<SearchRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let state = Arc::clone(&self.0);
        let deadline = limits::deadline(request.metadata(), &state.config)?;
        let permit = state.admission.search()?;
        let span = tracing::info_span!(
            "search",
            collection = request.get_ref().collection.as_str(),
            top_k = request.get_ref().top_k,
        );
        crate::telemetry::link_to_caller(&span, request.metadata());
        let request = request.into_inner();
        let (events, stream) = mpsc::unbounded_channel();
        let search = async move {
            let _permit = permit;
            let send = |event| {
                let _ = events.send(Ok(SearchEvent { event: Some(event) }));
            };
            tokio::select! {
                outcome = limits::within(deadline, "the search", run(&state, request, send)) => {
                    if let Err(status) = outcome {
                        let _ = events.send(Err(status));
                    }
                }
                // Dropping the search drops its model queue entries with it.
                () = events.closed() => tracing::debug!("search cancelled: the client went away"),
            }
        };
        tokio::spawn(tracing::Instrument::instrument(search, span));
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(stream))))
    }

    async fn search_stream(
        &self,
        request: Request<Streaming<SearchRequest>>,
    ) -> Result<Response<ResultStream>, Status> {
        let state = Arc::clone(&self.0);
        let deadline = limits::deadline(request.metadata(), &state.config)?;
        // One slot for the whole stream, which runs at most STREAM_CONCURRENCY searches at once.
        let permit = Arc::new(state.admission.search()?);
        let results = request
            .into_inner()
            .enumerate()
            .map(move |(index, request)| {
                let state = Arc::clone(&state);
                let permit = Arc::clone(&permit);
                async move {
                    let _permit = permit;
                    let request = request?;
                    let search = limits::within(deadline, "the search", collect(&state, request));
                    let outcome = match search.await {
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
