//! The log on NATS JetStream: one replicated stream per partition (`SIEVE_P{p}`, subject
//! `sieve.p{p}`), file storage, `discard: new`, a duplicate window for retried appends.

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::context::{Context, PublishErrorKind};
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_nats::jetstream::{self, Message, kv, object_store};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::log::{Appended, Bounds, Entry, Log, LogError};
use crate::partition::Partition;

/// How a cluster's streams are created.
#[derive(Clone, Debug)]
pub struct StreamSettings {
    /// Partitions, hence streams (fixed at cluster creation).
    pub partitions: u32,
    /// Copies of each stream on distinct NATS servers (3 survives one server's loss).
    pub replicas: usize,
    /// Retried appends with the same message id inside this window are stored once.
    pub duplicate_window: Duration,
    /// Bytes a stream may hold before appends are refused (`discard: new`); -1: no limit.
    pub max_bytes: i64,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            partitions: 16,
            replicas: 3,
            duplicate_window: Duration::from_secs(120),
            max_bytes: -1,
        }
    }
}

/// A [`Log`] on a NATS JetStream cluster.
#[derive(Clone)]
pub struct JetStreamLog {
    context: Context,
}

/// The object store bucket holding each partition's newest snapshot (object `p{partition}`).
const SNAPSHOTS: &str = "sieve_snapshots";

fn snapshot_object(partition: Partition) -> String {
    format!("p{partition}")
}

fn stream_name(partition: Partition) -> String {
    format!("SIEVE_P{partition}")
}

fn subject(partition: Partition) -> String {
    format!("sieve.p{partition}")
}

fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(e.to_string())
}

impl JetStreamLog {
    /// Connects to the NATS servers at `urls` (any one of the cluster's is enough; the client
    /// learns the rest) and creates the partition streams that are missing. Existing streams
    /// are used as they are.
    pub async fn connect(urls: &[String], settings: &StreamSettings) -> Result<Self, LogError> {
        let client = async_nats::ConnectOptions::new()
            .name("sieve")
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .connect(urls)
            .await
            .map_err(unavailable)?;
        // A publish waits for its ack at most this long (a leader election takes 4.5-8.5 s
        // after a kill -9, SCALE.md); callers retry with the same message id.
        let context =
            jetstream::context::ContextBuilder::new().timeout(Duration::from_secs(5)).build(client);
        for partition in 0..settings.partitions {
            let config = stream::Config {
                name: stream_name(partition),
                subjects: vec![subject(partition)],
                storage: StorageType::File,
                num_replicas: settings.replicas,
                discard: DiscardPolicy::New,
                duplicate_window: settings.duplicate_window,
                max_bytes: settings.max_bytes,
                allow_direct: true,
                ..Default::default()
            };
            context.get_or_create_stream(config).await.map_err(|e| {
                LogError::Unavailable(format!("creating stream {}: {e}", stream_name(partition)))
            })?;
        }
        if context.get_object_store(SNAPSHOTS).await.is_err() {
            context
                .create_object_store(object_store::Config {
                    bucket: SNAPSHOTS.to_string(),
                    description: Some("Sieve partition snapshots: p{partition}".to_string()),
                    storage: StorageType::File,
                    num_replicas: settings.replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| LogError::Unavailable(format!("creating bucket {SNAPSHOTS}: {e}")))?;
        }
        Ok(JetStreamLog { context })
    }

    /// Like [`JetStreamLog::connect`], retried while the cluster starts (servers not yet
    /// listening, no JetStream meta leader yet) until `within` has passed.
    pub async fn connect_waiting(
        urls: &[String],
        settings: &StreamSettings,
        within: Duration,
    ) -> Result<Self, LogError> {
        let deadline = std::time::Instant::now() + within;
        loop {
            match Self::connect(urls, settings).await {
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, "the log is not ready; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                done => return done,
            }
        }
    }

    /// The JetStream context, for the cluster's KV buckets.
    pub(crate) fn context(&self) -> &Context {
        &self.context
    }

    /// The KV bucket `config` names, created with `config` when missing (an existing one is
    /// used as it is).
    pub(crate) async fn key_value(&self, config: kv::Config) -> Result<kv::Store, LogError> {
        let bucket = config.bucket.clone();
        if let Ok(store) = self.context.get_key_value(&bucket).await {
            return Ok(store);
        }
        self.context
            .create_key_value(config)
            .await
            .map_err(|e| LogError::Unavailable(format!("creating bucket {bucket}: {e}")))
    }

    async fn stream(&self, partition: Partition) -> Result<stream::Stream, LogError> {
        self.context.get_stream(stream_name(partition)).await.map_err(unavailable)
    }
}

impl Log for JetStreamLog {
    async fn append(
        &self,
        partition: Partition,
        id: &str,
        payload: Bytes,
    ) -> Result<Appended, LogError> {
        let publish = jetstream::message::PublishMessage::build().message_id(id).payload(payload);
        let refused = |e: jetstream::context::PublishError| match e.kind() {
            PublishErrorKind::MaxPayloadExceeded => LogError::Other(e.to_string()),
            // A full stream answers with a JetStream error naming its limit.
            _ if e.to_string().contains("maximum") => LogError::Full(e.to_string()),
            _ => unavailable(e),
        };
        let ack = self
            .context
            .send_publish(subject(partition), publish)
            .await
            .map_err(refused)?
            .await
            .map_err(refused)?;
        Ok(Appended { seq: ack.sequence, duplicate: ack.duplicate })
    }

    async fn bounds(&self, partition: Partition) -> Result<Bounds, LogError> {
        let state = self.stream(partition).await?.get_info().await.map_err(unavailable)?.state;
        // An empty stream reports its first sequence as 0 before any append.
        let first =
            if state.messages == 0 { state.last_sequence + 1 } else { state.first_sequence };
        Ok(Bounds { first, last: state.last_sequence })
    }

    async fn read(
        &self,
        partition: Partition,
        from: u64,
    ) -> Result<impl Stream<Item = Result<Entry, LogError>> + Send + Unpin + 'static, LogError>
    {
        let deliver_policy = if from <= 1 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence { start_sequence: from }
        };
        // An ordered consumer: no acks, recreated by the client after a failover from the
        // last sequence it delivered, so the reader sees every message once, in order.
        let consumer = self
            .stream(partition)
            .await?
            .create_consumer(pull::OrderedConfig { deliver_policy, ..Default::default() })
            .await
            .map_err(unavailable)?;
        let messages = consumer.messages().await.map_err(unavailable)?;
        Ok(messages
            .map(move |message| {
                let message: Message = message.map_err(unavailable)?;
                let seq =
                    message.info().map_err(|e| LogError::Other(e.to_string()))?.stream_sequence;
                Ok(Entry { partition, seq, payload: message.payload.clone() })
            })
            .boxed())
    }

    async fn put_snapshot(&self, partition: Partition, file: &Path) -> Result<(), LogError> {
        let bucket = self.context.get_object_store(SNAPSHOTS).await.map_err(unavailable)?;
        let mut reader = tokio::fs::File::open(file)
            .await
            .map_err(|e| LogError::Other(format!("opening {}: {e}", file.display())))?;
        bucket.put(snapshot_object(partition).as_str(), &mut reader).await.map_err(unavailable)?;
        Ok(())
    }

    async fn get_snapshot(&self, partition: Partition, into: &Path) -> Result<bool, LogError> {
        let bucket = self.context.get_object_store(SNAPSHOTS).await.map_err(unavailable)?;
        let mut object = match bucket.get(snapshot_object(partition)).await {
            Ok(object) => object,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(unavailable(e)),
        };
        let mut file = tokio::fs::File::create(into)
            .await
            .map_err(|e| LogError::Other(format!("creating {}: {e}", into.display())))?;
        // The object store checks the digest it recorded at the end of the read.
        tokio::io::copy(&mut object, &mut file).await.map_err(unavailable)?;
        file.sync_all()
            .await
            .map_err(|e| LogError::Other(format!("syncing {}: {e}", into.display())))?;
        Ok(true)
    }

    async fn purge_before(&self, partition: Partition, seq: u64) -> Result<(), LogError> {
        self.stream(partition).await?.purge().sequence(seq).await.map_err(unavailable)?;
        Ok(())
    }
}
