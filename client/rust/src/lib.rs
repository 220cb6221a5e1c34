//! A typed async client for Sieve's gRPC API (`sieve.v1`), and the `sieve` command-line tool.
//!
//! ```no_run
//! use sieve_client::{Client, proto};
//!
//! # async fn demo() -> Result<(), sieve_client::Error> {
//! let client = Client::connect("http://127.0.0.1:7700").await?;
//! client.create_collection("notes", proto::CollectionConfig::default()).await?;
//! let doc = proto::Document { id: "1".into(), text: "Hello, Sieve".into(), ..Default::default() };
//! let ack = client.upsert("notes", vec![doc]).await?;
//! assert_eq!(ack.accepted, ["1"]);
//! let answer = client.search(proto::SearchRequest::new("notes", "hello").with_top_k(5)).await?;
//! println!("{}", answer.hits()[0].id);
//! # Ok(())
//! # }
//! ```

pub mod cli;
pub mod eval;
pub mod jsonl;

use futures::{Stream, StreamExt};
use proto::admin_client::AdminClient;
use proto::collections_client::CollectionsClient;
use proto::documents_client::DocumentsClient;
use proto::info_client::InfoClient;
use proto::rerank_client::RerankClient;
use proto::search_client::SearchClient;
pub use sieve_proto::v1 as proto;
use tonic::Streaming;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Largest message the client sends or accepts (the server's default limit).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// Address as given.
        address: String,
        /// Transport failure.
        source: tonic::transport::Error,
    },
    /// The connection settings cannot be used.
    #[error("{0}")]
    Config(String),
    /// The server answered with an error status.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// The server's answer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// How to reach a server beyond its address: an API key and TLS settings.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// Sent as `authorization: Bearer <key>` with every call.
    pub api_key: Option<String>,
    /// PEM CA certificate(s) that signed the server's certificate (`https://` addresses);
    /// without it the Mozilla roots are trusted.
    pub ca_cert: Option<Vec<u8>>,
    /// PEM client certificate and private key, for servers that require one.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Adds the API key to every call.
#[derive(Clone, Debug, Default)]
pub struct ApiKey(Option<MetadataValue<Ascii>>);

impl Interceptor for ApiKey {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Transport = InterceptedService<Channel, ApiKey>;

/// A connection to one Sieve server; cheap to clone, safe to share.
#[derive(Clone, Debug)]
pub struct Client {
    collections: CollectionsClient<Transport>,
    documents: DocumentsClient<Transport>,
    search: SearchClient<Transport>,
    rerank: RerankClient<Transport>,
    info: InfoClient<Transport>,
    admin: AdminClient<Transport>,
    health: tonic_health::pb::health_client::HealthClient<Transport>,
}

impl Client {
    /// Connects to `address` (`http://host:port`, or `host:port`) without key or TLS.
    pub async fn connect(address: impl AsRef<str>) -> Result<Client, Error> {
        Self::connect_with(address, &ConnectOptions::default()).await
    }

    /// Connects to `address`; `https://` addresses use TLS.
    pub async fn connect_with(
        address: impl AsRef<str>,
        options: &ConnectOptions,
    ) -> Result<Client, Error> {
        let address = address.as_ref();
        let uri =
            if address.contains("://") { address.to_string() } else { format!("http://{address}") };
        let connect_error = |source| Error::Connect { address: address.to_string(), source };
        let mut endpoint = Endpoint::from_shared(uri.clone()).map_err(connect_error)?;
        if uri.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            tls = match &options.ca_cert {
                Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
                None => tls.with_webpki_roots(),
            };
            if let Some((cert, key)) = &options.identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(tls).map_err(connect_error)?;
        } else if options.ca_cert.is_some() || options.identity.is_some() {
            return Err(Error::Config(format!(
                "TLS settings were given but {address} is not an https:// address"
            )));
        }
        let channel = endpoint.connect().await.map_err(connect_error)?;
        let key =
            match &options.api_key {
                None => ApiKey::default(),
                Some(key) => ApiKey(Some(format!("Bearer {key}").parse().map_err(|_| {
                    Error::Config("the API key must be printable ASCII".to_string())
                })?)),
            };
        Ok(Self::from_channel(channel, key))
    }

    /// Wraps an existing channel (for custom timeouts or transports).
    pub fn from_channel(channel: Channel, api_key: ApiKey) -> Client {
        let channel = InterceptedService::new(channel, api_key);
        Client {
            collections: CollectionsClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            documents: DocumentsClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            search: SearchClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            rerank: RerankClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            info: InfoClient::new(channel.clone()),
            admin: AdminClient::new(channel.clone()),
            health: tonic_health::pb::health_client::HealthClient::new(channel),
        }
    }

    /// Whether the server (`service` ""), or one of its services (`"sieve.v1.Search"`), is
    /// SERVING, per `grpc.health.v1`.
    pub async fn serving(&self, service: impl Into<String>) -> Result<bool, Error> {
        use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
        let request = HealthCheckRequest { service: service.into() };
        let status = self.health.clone().check(request).await?.into_inner().status;
        Ok(status == ServingStatus::Serving as i32)
    }

    /// Writes a consistent snapshot of a collection on the server (`<data_dir>/snapshots`).
    pub async fn create_snapshot(
        &self,
        collection: impl Into<String>,
    ) -> Result<proto::Snapshot, Error> {
        let request = proto::CreateSnapshotRequest { collection: collection.into() };
        Ok(self.admin.clone().create_snapshot(request).await?.into_inner())
    }

    /// Creates the new collection `into` from a snapshot.
    pub async fn restore_snapshot(
        &self,
        snapshot: impl Into<String>,
        into: impl Into<String>,
    ) -> Result<proto::Collection, Error> {
        let request =
            proto::RestoreSnapshotRequest { snapshot: snapshot.into(), collection: into.into() };
        Ok(self.admin.clone().restore_snapshot(request).await?.into_inner())
    }

    /// Snapshots on the server, oldest first (of one collection, or all with "").
    pub async fn list_snapshots(
        &self,
        collection: impl Into<String>,
    ) -> Result<Vec<proto::Snapshot>, Error> {
        let request = proto::ListSnapshotsRequest { collection: collection.into() };
        Ok(self.admin.clone().list_snapshots(request).await?.into_inner().snapshots)
    }

    /// Cluster routers: snapshots log partitions (every one when `partitions` is empty) into
    /// the cluster's snapshot store; with `purge`, removes the stream messages each covers.
    pub async fn snapshot_partitions(
        &self,
        partitions: Vec<u32>,
        purge: bool,
    ) -> Result<Vec<proto::PartitionSnapshot>, Error> {
        let request = proto::SnapshotPartitionsRequest { partitions, purge };
        Ok(self.admin.clone().snapshot_partitions(request).await?.into_inner().snapshots)
    }

    /// Cluster routers: gives `partition` to shard `add` and/or takes it from shard `remove`
    /// (empty: none), the latter only once another replica (`add`'s, in a move) serves it caught up, waiting up to
    /// `wait_ms` (0: the server's default). Returns the assignment's epoch and the shards the
    /// partition is assigned to after.
    pub async fn assign_partition(
        &self,
        partition: u32,
        add: impl Into<String>,
        remove: impl Into<String>,
        wait_ms: u32,
    ) -> Result<proto::AssignPartitionResponse, Error> {
        let request = proto::AssignPartitionRequest {
            partition,
            add: add.into(),
            remove: remove.into(),
            wait_ms,
        };
        Ok(self.admin.clone().assign_partition(request).await?.into_inner())
    }

    /// Deletes a snapshot file on the server.
    pub async fn delete_snapshot(&self, snapshot: impl Into<String>) -> Result<(), Error> {
        let request = proto::DeleteSnapshotRequest { snapshot: snapshot.into() };
        self.admin.clone().delete_snapshot(request).await?;
        Ok(())
    }

    /// Server version, build and limits.
    pub async fn info(&self) -> Result<proto::GetInfoResponse, Error> {
        Ok(self.info.clone().get_info(proto::GetInfoRequest {}).await?.into_inner())
    }

    /// Creates a collection.
    pub async fn create_collection(
        &self,
        name: impl Into<String>,
        config: proto::CollectionConfig,
    ) -> Result<proto::Collection, Error> {
        let request = proto::CreateCollectionRequest { name: name.into(), config: Some(config) };
        Ok(self.collections.clone().create_collection(request).await?.into_inner())
    }

    /// A collection's settings and counts.
    pub async fn collection(&self, name: impl Into<String>) -> Result<proto::Collection, Error> {
        let request = proto::GetCollectionRequest { name: name.into() };
        Ok(self.collections.clone().get_collection(request).await?.into_inner())
    }

    /// Every collection.
    pub async fn list_collections(&self) -> Result<Vec<proto::Collection>, Error> {
        let response =
            self.collections.clone().list_collections(proto::ListCollectionsRequest {}).await?;
        Ok(response.into_inner().collections)
    }

    /// Deletes a collection and its documents.
    pub async fn delete_collection(&self, name: impl Into<String>) -> Result<(), Error> {
        let request = proto::DeleteCollectionRequest { name: name.into() };
        self.collections.clone().delete_collection(request).await?;
        Ok(())
    }

    /// Streams batches in; the server answers each with an ack, in order, once it is durable.
    pub async fn ingest(
        &self,
        batches: impl Stream<Item = proto::IngestRequest> + Send + 'static,
    ) -> Result<Streaming<proto::IngestAck>, Error> {
        Ok(self.documents.clone().ingest(batches).await?.into_inner())
    }

    /// Writes one batch of documents and waits for its ack.
    pub async fn upsert(
        &self,
        collection: impl Into<String>,
        documents: Vec<proto::Document>,
    ) -> Result<proto::IngestAck, Error> {
        let request =
            proto::IngestRequest { collection: collection.into(), documents, ..Default::default() };
        let mut acks = self.ingest(futures::stream::iter([request])).await?;
        match acks.message().await? {
            Some(ack) => Ok(ack),
            None => Err(Error::Protocol("ingest stream closed without an ack".into())),
        }
    }

    /// Documents by id.
    pub async fn get(
        &self,
        collection: impl Into<String>,
        ids: Vec<String>,
        include_vectors: bool,
    ) -> Result<proto::GetResponse, Error> {
        let request = proto::GetRequest {
            collection: collection.into(),
            ids,
            include_vectors,
            ..Default::default()
        };
        Ok(self.documents.clone().get(request).await?.into_inner())
    }

    /// Documents by id, with every field of the request (cluster mode: its consistency).
    pub async fn get_with(&self, request: proto::GetRequest) -> Result<proto::GetResponse, Error> {
        Ok(self.documents.clone().get(request).await?.into_inner())
    }

    /// Deletes documents by id.
    pub async fn delete(
        &self,
        collection: impl Into<String>,
        ids: Vec<String>,
    ) -> Result<proto::DeleteResponse, Error> {
        let request = proto::DeleteRequest { collection: collection.into(), ids };
        Ok(self.documents.clone().delete(request).await?.into_inner())
    }

    /// Runs a search and gathers its events: every stage's hits and the closing summary.
    pub async fn search(
        &self,
        request: proto::SearchRequest,
    ) -> Result<proto::SearchResponse, Error> {
        let mut events = self.search_events(request).await?;
        let mut response = proto::SearchResponse::default();
        while let Some(event) = events.message().await? {
            match event.event {
                Some(proto::search_event::Event::Hits(stage)) => response.stages.push(stage),
                Some(proto::search_event::Event::Done(done)) => response.done = Some(done),
                None => return Err(Error::Protocol("empty search event".into())),
            }
        }
        if response.done.is_none() {
            return Err(Error::Protocol("search stream ended without `done`".into()));
        }
        Ok(response)
    }

    /// Runs a search and returns its events as they arrive.
    pub async fn search_events(
        &self,
        request: proto::SearchRequest,
    ) -> Result<Streaming<proto::SearchEvent>, Error> {
        Ok(self.search.clone().search(request).await?.into_inner())
    }

    /// Runs many searches on one stream; results arrive in request order.
    pub async fn search_stream(
        &self,
        requests: impl Stream<Item = proto::SearchRequest> + Send + 'static,
    ) -> Result<impl Stream<Item = Result<proto::SearchResult, Error>>, Error> {
        let results = self.search.clone().search_stream(requests).await?.into_inner();
        Ok(results.map(|r| r.map_err(Error::from)))
    }

    /// Scores `texts` for `query` with a cross-encoder (`model` empty = the server's default);
    /// results best first.
    pub async fn rerank(
        &self,
        request: proto::RerankRequest,
    ) -> Result<proto::RerankResponse, Error> {
        Ok(self.rerank.clone().rerank(request).await?.into_inner())
    }
}
