//! `sieve.v1.Documents`: streamed ingest with durable acks, get and delete by id.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use sieve_cluster::{CatalogEntry, Cluster, ReadAt};
use sieve_models::Embedder;
use sieve_proto::v1::documents_server::Documents;
use sieve_proto::v1::{
    self, DeleteRequest, DeleteResponse, DocumentError, GetRequest, GetResponse, IngestAck,
    IngestRequest,
};
use sieve_storage::{Collection, CollectionConfig, Document, Rejected, WriteBatch, WriteOutcome};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

use super::{Backend, State};
use crate::convert;
use crate::status::{self, blocking};

pub struct DocumentsService(pub Arc<State>);

type AckStream = Pin<Box<dyn Stream<Item = Result<IngestAck, Status>> + Send>>;

/// Acks buffered for a slow reader before the server stops reading batches.
const ACK_BUFFER: usize = 4;

fn collection(state: &State, name: &str) -> Result<Arc<Collection>, Status> {
    if name.is_empty() {
        return Err(Status::invalid_argument("collection: must not be empty"));
    }
    state.store("this call")?.collection(name).map_err(status::storage)
}

fn check_ids(ids: &[String], field: &str, state: &State) -> Result<(), Status> {
    let config = &state.config;
    if ids.len() > config.max_ids_per_request {
        return Err(Status::invalid_argument(format!(
            "{field}: {} ids exceeds the limit of {} (max_ids_per_request)",
            ids.len(),
            config.max_ids_per_request
        )));
    }
    ids.iter()
        .enumerate()
        .try_for_each(|(i, id)| convert::id(id, &format!("{field}[{i}]"), config))
        .map_err(Status::invalid_argument)
}

/// Validates, writes and acknowledges one batch. Batch-level problems (unknown collection,
/// limits) are an error status; a bad document only gets its own entry in the ack. `stream`
/// numbers this ingest stream (cluster mode: part of the log message ids).
async fn ingest_batch(
    state: &Arc<State>,
    stream: u64,
    batch: u64,
    request: IngestRequest,
) -> Result<IngestAck, Status> {
    let config = &state.config;
    let started = std::time::Instant::now();
    let documents = request.documents.len();
    let request_bytes = prost::Message::encoded_len(&request);
    let name = request.collection.clone();
    if request.documents.len() > config.max_batch_documents {
        return Err(Status::invalid_argument(format!(
            "documents: {} documents in batch {batch} exceeds the limit of {} (max_batch_documents)",
            request.documents.len(),
            config.max_batch_documents
        )));
    }
    let ack_level = match v1::AckLevel::try_from(request.ack) {
        Ok(level) => level,
        Err(_) => {
            return Err(Status::invalid_argument(format!("ack: unknown value {}", request.ack)));
        }
    };
    check_ids(&request.delete_ids, "delete_ids", state)?;
    let target = target(state, &request.collection).await?;
    let collection_config = target.config();
    let embedder = embedder_of(state, collection_config);
    let mut errors = Vec::new();
    let mut positions = Vec::with_capacity(request.documents.len());
    let mut upserts = Vec::with_capacity(request.documents.len());
    for (index, doc) in request.documents.into_iter().enumerate() {
        let id = doc.id.clone();
        match convert::document(doc, config) {
            Ok(doc) => {
                positions.push(index);
                upserts.push(doc);
            }
            Err(message) => errors.push(DocumentError {
                index: index as u32,
                id,
                error: Some(v1::Error { code: Code::InvalidArgument as u32, message }),
            }),
        }
    }
    embed_missing_vectors(state, collection_config, &mut upserts).await?;
    let write = WriteBatch { upserts, deletes: request.delete_ids };
    let (outcome, token, visible) = match target {
        Target::Local(collection) => {
            let outcome =
                blocking(move || collection.write(&write).map_err(status::storage)).await?;
            (outcome, String::new(), true)
        }
        Target::Cluster(cluster, entry) => {
            let (outcome, write) = precheck(&entry.config, write);
            let deleted = existing(&cluster, &name, &write.deletes).await?;
            let token = cluster
                .write(&name, write.upserts, write.deletes, stream, batch)
                .await
                .map_err(status::cluster)?;
            let visible = match ack_level {
                v1::AckLevel::Durable => false,
                v1::AckLevel::Unspecified | v1::AckLevel::Visible => {
                    cluster.wait_visible(&token).await
                }
            };
            (WriteOutcome { deleted, ..outcome }, token.to_string(), visible)
        }
    };
    errors.extend(outcome.rejected.into_iter().map(|r| DocumentError {
        index: positions[r.index] as u32,
        id: r.id,
        error: Some(v1::Error { code: Code::InvalidArgument as u32, message: r.reason }),
    }));
    errors.sort_by_key(|e| e.index);
    let (next_batch_size, backoff_ms) = advice(state, &embedder, documents, started.elapsed());
    let ack = IngestAck {
        batch,
        accepted: outcome.accepted,
        errors,
        deleted: outcome.deleted,
        sequence: outcome.sequence,
        next_batch_size,
        backoff_ms,
        consistency_token: token,
        visible,
    };
    crate::metrics::ingested(&name, request_bytes, &ack);
    Ok(ack)
}

/// The collection a write goes to.
enum Target {
    Local(Arc<Collection>),
    Cluster(Arc<Cluster>, CatalogEntry),
}

impl Target {
    fn config(&self) -> &CollectionConfig {
        match self {
            Target::Local(collection) => collection.config(),
            Target::Cluster(_, entry) => &entry.config,
        }
    }
}

async fn target(state: &State, name: &str) -> Result<Target, Status> {
    match &state.backend {
        Backend::Local(_) => Ok(Target::Local(collection(state, name)?)),
        Backend::Cluster(cluster) => {
            if name.is_empty() {
                return Err(Status::invalid_argument("collection: must not be empty"));
            }
            let entry = cluster.get(name).await.map_err(status::cluster)?;
            Ok(Target::Cluster(Arc::clone(cluster), entry))
        }
        Backend::Models => Err(super::no_collections()),
    }
}

/// The checks a standalone write makes per document, made by the router before the batch
/// enters the log (shards apply what the log holds, and cannot answer the client): the
/// outcome lists the rejected documents and the accepted ids; the batch keeps the accepted.
fn precheck(config: &CollectionConfig, batch: WriteBatch) -> (WriteOutcome, WriteBatch) {
    let mut outcome = WriteOutcome::default();
    let mut upserts = Vec::with_capacity(batch.upserts.len());
    let verdicts = config.screen(&batch.upserts);
    for ((index, doc), verdict) in batch.upserts.into_iter().enumerate().zip(verdicts) {
        match verdict {
            Some(reason) => outcome.rejected.push(Rejected { index, id: doc.id, reason }),
            None => {
                outcome.accepted.push(doc.id.clone());
                upserts.push(doc);
            }
        }
    }
    (outcome, WriteBatch { upserts, deletes: batch.deletes })
}

/// Which of `ids` exist now (what a delete reports as deleted; the rest are missing).
async fn existing(cluster: &Cluster, name: &str, ids: &[String]) -> Result<Vec<String>, Status> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let corpus = cluster.corpus(name, ReadAt::Eventual).await.map_err(status::cluster)?;
    let keys: Vec<Arc<str>> = ids.iter().map(|id| Arc::from(id.as_str())).collect();
    let found = corpus.fetch_documents(&keys).await.map_err(status::search)?;
    let mut seen = HashSet::new();
    Ok(ids
        .iter()
        .zip(found)
        .filter(|(id, doc)| doc.is_some() && seen.insert(id.as_str()))
        .map(|(id, _)| id.clone())
        .collect())
}

/// The built-in embedder of a collection, if it has one.
fn embedder_of(state: &State, config: &CollectionConfig) -> Option<Embedder> {
    let name = config.dense.as_ref()?.embedder.clone()?;
    state.planner.models().embedder(&name).ok()
}

/// Backpressure for the next batches: a size that would take about `ingest_target_batch_ms`
/// at this batch's pace (moving at most ×2 or ÷2 per batch, within max_batch_documents), and a
/// pause while the embedder's queue is more than half full.
fn advice(
    state: &State,
    embedder: &Option<Embedder>,
    documents: usize,
    took: std::time::Duration,
) -> (u32, u32) {
    if documents == 0 {
        return (0, 0);
    }
    let config = &state.config;
    let target = config.ingest_target_batch_ms as f64 * 1000.0;
    let at_pace = documents as f64 * target / (took.as_micros().max(1) as f64);
    let size = at_pace
        .clamp((documents / 2).max(1) as f64, (documents * 2) as f64)
        .min(config.max_batch_documents as f64);
    // A model tier's queue is not seen from here: its calls slow down instead.
    let backoff = match embedder.as_ref().and_then(Embedder::local) {
        Some(model) => {
            let queued = model.stats().queued.load(std::sync::atomic::Ordering::Relaxed);
            if queued * 2 > model.policy().queue_capacity { took.as_millis() as u32 } else { 0 }
        }
        None => 0,
    };
    (size.round() as u32, backoff)
}

/// Embeds `title + " " + text` of the documents that came without a vector, when the
/// collection has a built-in embedder.
async fn embed_missing_vectors(
    state: &State,
    config: &CollectionConfig,
    documents: &mut [Document],
) -> Result<(), Status> {
    let Some(name) = config.dense.as_ref().and_then(|d| d.embedder.as_deref()) else {
        return Ok(());
    };
    let missing: Vec<usize> =
        (0..documents.len()).filter(|&i| documents[i].vector.is_none()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let embedder = state.planner.models().embedder(name).map_err(status::model)?;
    let texts = missing
        .iter()
        .map(|&i| format!("{} {}", documents[i].title, documents[i].text).trim().to_string())
        .collect();
    let embedded = embedder.embed(texts).await.map_err(status::model)?;
    for (i, vector) in missing.into_iter().zip(embedded.vectors) {
        documents[i].vector = Some(vector);
    }
    Ok(())
}

/// An ingest stream that sent nothing for `ingest_idle_timeout_secs` gives its slot back.
fn idle_timeout(state: &State) -> Status {
    Status::deadline_exceeded(format!(
        "no batch for {} s (ingest_idle_timeout_secs): the ingest stream is closed; \
         everything acknowledged is durable",
        state.config.ingest_idle_timeout_secs
    ))
}

#[tonic::async_trait]
impl Documents for DocumentsService {
    type IngestStream = AckStream;

    async fn ingest(
        &self,
        request: Request<Streaming<IngestRequest>>,
    ) -> Result<Response<AckStream>, Status> {
        let state = Arc::clone(&self.0);
        let permit = state.admission.ingest()?;
        let mut inbound = request.into_inner();
        let (acks, ack_stream) = mpsc::channel(ACK_BUFFER);
        tokio::spawn(async move {
            let _permit = permit;
            let mut shutdown = state.shutdown.clone();
            let idle = std::time::Duration::from_secs(state.config.ingest_idle_timeout_secs.max(1));
            let stream = match &state.backend {
                Backend::Cluster(cluster) => cluster.next_stream(),
                Backend::Local(_) | Backend::Models => 0,
            };
            for batch in 0u64.. {
                if *shutdown.borrow() {
                    let _ = acks.send(Err(shutting_down())).await;
                    return;
                }
                let next = tokio::select! {
                    next = tokio::time::timeout(idle, inbound.message()) => match next {
                        Ok(next) => next,
                        Err(_) => {
                            let _ = acks.send(Err(idle_timeout(&state))).await;
                            return;
                        }
                    },
                    _ = shutdown.changed() => {
                        let _ = acks.send(Err(shutting_down())).await;
                        return;
                    }
                };
                let request = match next {
                    Ok(Some(request)) => request,
                    Ok(None) => return,
                    Err(status) => {
                        // A message the server could not decode (e.g. over max_message_bytes),
                        // or a client that went away; the former deserves its status back.
                        tracing::debug!(%status, batch, "ingest stream broken");
                        let _ = acks.send(Err(status)).await;
                        return;
                    }
                };
                let ack = ingest_batch(&state, stream, batch, request).await;
                let failed = ack.is_err();
                if acks.send(ack).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(ack_stream))))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let mut request = request.into_inner();
        check_ids(&request.ids, "ids", &self.0)?;
        let read = convert::consistency(
            request.consistency,
            std::mem::take(&mut request.consistency_token),
        )?;
        if let Backend::Cluster(cluster) = &self.0.backend {
            if request.collection.is_empty() {
                return Err(Status::invalid_argument("collection: must not be empty"));
            }
            let read = convert::cluster_read(cluster, read)?;
            let corpus =
                cluster.corpus(&request.collection, read).await.map_err(status::cluster)?;
            let keys: Vec<Arc<str>> = request.ids.iter().map(|id| Arc::from(id.as_str())).collect();
            let found = corpus.fetch_documents(&keys).await.map_err(status::search)?;
            let mut response = GetResponse::default();
            for (id, doc) in request.ids.into_iter().zip(found) {
                match doc {
                    Some(doc) => response
                        .documents
                        .push(convert::document_to_proto(doc, request.include_vectors)),
                    None => response.missing.push(id),
                }
            }
            return Ok(Response::new(response));
        }
        convert::standalone_read(&read)?;
        let collection = collection(&self.0, &request.collection)?;
        let response = blocking(move || {
            let mut response = GetResponse::default();
            for id in request.ids {
                match collection.get(&id).map_err(status::storage)? {
                    Some(doc) => response
                        .documents
                        .push(convert::document_to_proto(doc, request.include_vectors)),
                    None => response.missing.push(id),
                }
            }
            Ok(response)
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let request = request.into_inner();
        check_ids(&request.ids, "ids", &self.0)?;
        if let Backend::Cluster(cluster) = &self.0.backend {
            return delete_in_cluster(cluster, request).await.map(Response::new);
        }
        let collection = collection(&self.0, &request.collection)?;
        let name = request.collection;
        let ids = request.ids;
        let outcome = {
            let batch = WriteBatch { upserts: Vec::new(), deletes: ids.clone() };
            blocking(move || collection.write(&batch).map_err(status::storage)).await?
        };
        crate::metrics::deleted(&name, outcome.deleted.len());
        let deleted: HashSet<&String> = outcome.deleted.iter().collect();
        let missing = ids.iter().filter(|id| !deleted.contains(id)).cloned().collect();
        Ok(Response::new(DeleteResponse {
            deleted: outcome.deleted,
            missing,
            sequence: outcome.sequence,
            consistency_token: String::new(),
        }))
    }
}

/// Deletes through the log, acknowledged once visible (or its wait ran out).
async fn delete_in_cluster(
    cluster: &Arc<Cluster>,
    request: DeleteRequest,
) -> Result<DeleteResponse, Status> {
    if request.collection.is_empty() {
        return Err(Status::invalid_argument("collection: must not be empty"));
    }
    let name = request.collection;
    cluster.get(&name).await.map_err(status::cluster)?;
    let deleted = existing(cluster, &name, &request.ids).await?;
    let token = cluster
        .write(&name, Vec::new(), request.ids.clone(), cluster.next_stream(), 0)
        .await
        .map_err(status::cluster)?;
    cluster.wait_visible(&token).await;
    crate::metrics::deleted(&name, deleted.len());
    let gone: HashSet<&String> = deleted.iter().collect();
    let missing = request.ids.iter().filter(|id| !gone.contains(id)).cloned().collect();
    Ok(DeleteResponse { deleted, missing, sequence: 0, consistency_token: token.to_string() })
}

fn shutting_down() -> Status {
    Status::unavailable("server is shutting down; every batch acknowledged so far is durable")
}
