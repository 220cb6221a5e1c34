//! The model tier (SCALE.md): a process that loads models and serves them to routers over
//! the internal `sieve.cluster.v1.Models` service, so routers hold no models and each tier
//! scales on its own; and the router's side, each of the tier's models as a
//! [`RemoteModel`] in the router's registry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::RwLock;

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

/// A model error as a gRPC status: the mapping every server uses, so that a router turns a
/// model tier's answer back into the same error.
pub fn model_status(error: ModelError) -> Status {
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
        let embedder = self.registry.embedder(&request.model).map_err(model_status)?;
        let embedded = embedder.embed(request.texts).await.map_err(model_status)?;
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
        let model = self.registry.cross_encoder(&request.model).map_err(model_status)?;
        let scored = model
            .score(&request.query, request.passages, request.windows)
            .await
            .map_err(model_status)?;
        Ok(Response::new(proto::ScoreReply {
            scores: scored.scores,
            queue_micros: scored.queue_time.as_micros() as u64,
            compute_micros: scored.compute_time.as_micros() as u64,
        }))
    }
}

/// How often the tier's host name is resolved again (a headless Service lists its pods).
const RESOLVE_EVERY: Duration = Duration::from_secs(5);

/// A connection to each address the model tier's host name resolves to, refreshed every
/// [`RESOLVE_EVERY`]: calls go round the members, and a call a member cannot take (it is
/// gone, restarting) goes to the next one, so the tier's pods share the work and one lost pod
/// costs no call.
struct Pool {
    url: String,
    members: RwLock<Vec<Member>>,
    next: AtomicUsize,
}

#[derive(Clone)]
struct Member {
    addr: String,
    client: ModelsClient<Channel>,
}

fn member(addr: String) -> Result<Member, String> {
    let endpoint = Endpoint::from_shared(addr.clone())
        .map_err(|e| format!("model tier address '{addr}': {e}"))?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true);
    let client = ModelsClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    Ok(Member { addr, client })
}

impl Pool {
    /// A pool for `url`; a host name (not an IP address) is resolved now and then every
    /// [`RESOLVE_EVERY`] for as long as the pool lives.
    async fn start(url: &str) -> Result<Arc<Pool>, String> {
        let uri: tonic::transport::Uri =
            url.parse().map_err(|e| format!("models_url '{url}': {e}"))?;
        let (scheme, host) = match (uri.scheme_str(), uri.host()) {
            (Some(scheme), Some(host)) => (scheme.to_string(), host.to_string()),
            _ => {
                return Err(format!("models_url '{url}': not an address such as http://host:port"));
            }
        };
        let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        let pool = Arc::new(Pool {
            url: url.to_string(),
            members: RwLock::new(vec![member(url.trim_end_matches('/').to_string())?]),
            next: AtomicUsize::new(0),
        });
        // An address, or TLS (certificates name the host, not its addresses): one connection.
        if host.parse::<std::net::IpAddr>().is_ok() || scheme == "https" {
            return Ok(pool);
        }
        pool.resolve(&host, port).await;
        let weak = Arc::downgrade(&pool);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RESOLVE_EVERY).await;
                let Some(pool) = weak.upgrade() else { return };
                pool.resolve(&host, port).await;
            }
        });
        Ok(pool)
    }

    /// Replaces the members with the host's addresses now, keeping the connections of those
    /// it already had; a failed or empty lookup keeps the members as they are.
    async fn resolve(&self, host: &str, port: u16) {
        let found = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::lookup_host((host.to_string(), port)),
        )
        .await;
        let mut addrs: Vec<String> = match found {
            Ok(Ok(addrs)) => addrs.map(|a| format!("http://{a}")).collect(),
            Ok(Err(e)) => {
                tracing::debug!(host, error = %e, "model tier name not resolved; keeping its members");
                return;
            }
            Err(_) => return,
        };
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            return;
        }
        let current = self.members.read().clone();
        if current.iter().map(|m| &m.addr).eq(addrs.iter()) {
            return;
        }
        let members: Vec<Member> = addrs
            .into_iter()
            .filter_map(|addr| match current.iter().find(|m| m.addr == addr) {
                Some(kept) => Some(kept.clone()),
                None => member(addr).ok(),
            })
            .collect();
        tracing::info!(url = self.url, members = ?members.iter().map(|m| &m.addr).collect::<Vec<_>>(), "model tier members");
        *self.members.write() = members;
    }

    /// Runs `call` on the members in turn from the next one, until one answers or fails
    /// with something other than being unreachable.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, Status>
    where
        F: Fn(ModelsClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<T>, Status>>,
    {
        let members = self.members.read().clone();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = Status::unavailable("the model tier has no members");
        for i in 0..members.len() {
            let member = &members[(start + i) % members.len()];
            match call(member.client.clone()).await {
                Ok(reply) => return Ok(reply.into_inner()),
                Err(status) if status.code() == Code::Unavailable => {
                    tracing::debug!(member = member.addr, error = %status, "model tier member unreachable");
                    last = status;
                }
                Err(status) => return Err(status),
            }
        }
        Err(last)
    }
}

/// One model of a model tier, as a router calls it.
struct TierModel {
    description: ModelDescription,
    pool: Arc<Pool>,
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
                self.pool.url,
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
        &self.pool.url
    }

    fn embed(&self, texts: Vec<String>) -> ModelFuture<'_, Embedded> {
        Box::pin(async move {
            let request = proto::EmbedRequest { model: self.description.name.clone(), texts };
            let reply = self
                .pool
                .call(|mut client| {
                    let request = request.clone();
                    async move { client.embed(request).await }
                })
                .await
                .map_err(|s| self.error(s))?;
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
            let reply = self
                .pool
                .call(|mut client| {
                    let request = request.clone();
                    async move { client.score(request).await }
                })
                .await
                .map_err(|s| self.error(s))?;
            Ok(Scored {
                scores: reply.scores,
                queue_time: Duration::from_micros(reply.queue_micros),
                compute_time: Duration::from_micros(reply.compute_micros),
            })
        })
    }
}

/// The models of the model tier at `url` (`http://host:port`: a host name is resolved, and
/// every address it has is a member the calls go round; a Kubernetes headless Service names
/// each pod), asking until it answers or `within` has passed (it may still be loading models).
pub async fn model_tier(url: &str, within: Duration) -> Result<Vec<Arc<dyn RemoteModel>>, String> {
    let pool = Pool::start(url).await?;
    let deadline = tokio::time::Instant::now() + within;
    let reply = loop {
        match pool
            .call(|mut client| async move { client.describe(proto::DescribeRequest {}).await })
            .await
        {
            Ok(reply) => break reply,
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
            Arc::new(TierModel { description: description_from_proto(d), pool: Arc::clone(&pool) })
                as Arc<dyn RemoteModel>
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model tier with no models on a free loopback port, until the handle is aborted.
    async fn tier() -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let service = ModelsService::server(Arc::new(Registry::default()));
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
        (addr, server)
    }

    fn pool_of(addrs: &[&str]) -> Pool {
        Pool {
            url: "http://tier:7720".into(),
            members: RwLock::new(addrs.iter().map(|a| member(a.to_string()).unwrap()).collect()),
            next: AtomicUsize::new(0),
        }
    }

    async fn describe(pool: &Pool) -> Result<proto::DescribeReply, Status> {
        pool.call(|mut client| async move { client.describe(proto::DescribeRequest {}).await })
            .await
    }

    #[tokio::test]
    async fn calls_go_round_the_members_and_past_an_unreachable_one() {
        let (a, a_server) = tier().await;
        let (b, _b_server) = tier().await;
        // Nothing listens on port 1.
        let pool = pool_of(&["http://127.0.0.1:1", &a, &b]);
        for call in 0..6 {
            let reply = describe(&pool).await.unwrap_or_else(|e| panic!("call {call}: {e}"));
            assert!(reply.models.is_empty());
        }
        assert_eq!(pool.next.load(Ordering::Relaxed), 6, "each call starts at the next member");
        a_server.abort();
        for call in 0..4 {
            describe(&pool).await.unwrap_or_else(|e| panic!("call {call} with a gone: {e}"));
        }
        let gone = pool_of(&["http://127.0.0.1:1"]);
        let failed = describe(&gone).await.unwrap_err();
        assert_eq!(failed.code(), Code::Unavailable, "{failed:?}");
        // The tier's own answer comes back as it is, not retried elsewhere.
        let refused = pool
            .call(|mut client| async move {
                client.embed(proto::EmbedRequest { model: "m".into(), texts: vec![] }).await
            })
            .await
            .unwrap_err();
        assert_eq!(
            (refused.code(), refused.message()),
            (Code::InvalidArgument, "texts: must not be empty")
        );
    }

    #[tokio::test]
    async fn a_host_name_resolves_to_its_addresses() {
        let (a, _server) = tier().await;
        let port = a.rsplit_once(':').unwrap().1;
        let pool = Pool::start(&format!("http://localhost:{port}")).await.unwrap();
        let members: Vec<String> = pool.members.read().iter().map(|m| m.addr.clone()).collect();
        assert!(members.contains(&format!("http://127.0.0.1:{port}")), "{members:?}");
        describe(&pool).await.unwrap();
        let bad = Pool::start("tier:7720").await.err().unwrap();
        assert_eq!(bad, "models_url 'tier:7720': not an address such as http://host:port");
    }
}
