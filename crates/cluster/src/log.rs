//! The replicated log a cluster writes through: one ordered stream per partition. A trait, so
//! another broker (Kafka, Redpanda) could replace JetStream without touching shards or router.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;

use crate::partition::Partition;

/// A message read back from a partition's stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The partition whose stream holds it.
    pub partition: Partition,
    /// Its sequence in that stream (from 1, contiguous unless messages were removed).
    pub seq: u64,
    /// What was appended.
    pub payload: Bytes,
}

/// What an append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The message's sequence in its partition's stream.
    pub seq: u64,
    /// The log already held a message with this id (a retried append): nothing was added.
    pub duplicate: bool,
}

/// The sequences a partition's stream holds now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// The oldest message still held (messages before it were purged); `last + 1` when empty.
    pub first: u64,
    /// The newest message; 0 when none was ever appended.
    pub last: u64,
}

/// Why a log call failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// No quorum or no connection: the call may succeed later; an append may or may not have
    /// been stored, so retry it with the same message id.
    #[error("log unavailable: {0}")]
    Unavailable(String),
    /// The partition's stream is full (`discard: new`): nothing was stored.
    #[error("log full: {0}")]
    Full(String),
    /// Anything else (misconfiguration, a malformed reply).
    #[error("log error: {0}")]
    Other(String),
}

/// An ordered, replicated, durable log of byte messages, one stream per partition.
pub trait Log: Send + Sync + 'static {
    /// Appends `payload` to `partition`'s stream under message id `id`: a second append with
    /// the same id inside the log's duplicate window stores nothing and reports the first
    /// one's sequence. Returns once the message is durable on a quorum.
    fn append(
        &self,
        partition: Partition,
        id: &str,
        payload: Bytes,
    ) -> impl Future<Output = Result<Appended, LogError>> + Send;

    /// The sequences `partition`'s stream holds now.
    fn bounds(&self, partition: Partition)
    -> impl Future<Output = Result<Bounds, LogError>> + Send;

    /// `partition`'s messages from sequence `from` on, in order, waiting for new ones at the
    /// end. Removed messages are absent: a reader sees the gap in the sequences.
    fn read(
        &self,
        partition: Partition,
        from: u64,
    ) -> impl Future<
        Output = Result<
            impl Stream<Item = Result<Entry, LogError>> + Send + Unpin + 'static,
            LogError,
        >,
    > + Send;

    /// Stores the partition snapshot at `file` as `partition`'s newest, replacing the one
    /// before, replicated beside the streams so that a replica on any machine can bootstrap
    /// from it.
    fn put_snapshot(
        &self,
        partition: Partition,
        file: &Path,
    ) -> impl Future<Output = Result<(), LogError>> + Send;

    /// Writes `partition`'s newest snapshot into `into`; `false` when it has none.
    fn get_snapshot(
        &self,
        partition: Partition,
        into: &Path,
    ) -> impl Future<Output = Result<bool, LogError>> + Send;

    /// Removes `partition`'s messages below `seq` (after a snapshot covers them).
    fn purge_before(
        &self,
        partition: Partition,
        seq: u64,
    ) -> impl Future<Output = Result<(), LogError>> + Send;
}

/// Appends with retries under the same message id until `within` has passed: a retry of an
/// append that was stored comes back as a duplicate with the first one's sequence, so a
/// message is stored once however often the log failed over meanwhile. Only `Unavailable`
/// is retried; the last error comes back when time runs out.
pub async fn append_retrying<L: Log>(
    log: &L,
    partition: Partition,
    id: &str,
    payload: Bytes,
    within: Duration,
) -> Result<Appended, LogError> {
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(50);
    loop {
        match log.append(partition, id, payload.clone()).await {
            Err(LogError::Unavailable(why)) if Instant::now() + pause < deadline => {
                tracing::debug!(partition, id, %why, "append failed; retrying with the same id");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            done => return done,
        }
    }
}
