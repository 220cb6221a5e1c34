//! The shard applier: reads a partition's stream from the position after the last one applied
//! and applies each message exactly once. The position is written in the same sled
//! transaction as the documents, so a crash at any moment neither loses nor repeats a message.

use std::sync::Arc;

use futures::StreamExt;
use parking_lot::Mutex;
use sieve_storage::{Error as StorageError, LogPosition, Logged, OutOfOrder, Store, WriteBatch};
use tokio::sync::watch;

use crate::log::{Entry, Log, LogError};
use crate::message::LogOp;
use crate::partition::Partition;

/// What applying one message did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Applied; the partition's position is now the message's sequence.
    Written,
    /// At or below the partition's position: applied before, skipped.
    Duplicate,
    /// Past the next expected message: not applied; read again from `applied + 1`.
    Gap {
        /// The partition's position.
        applied: u64,
    },
}

/// Why a partition stopped being applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The log could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The store failed to write (disk full, I/O).
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// Messages after the shard's position were purged from the stream: it cannot catch up
    /// by reading and must be bootstrapped from a partition snapshot.
    #[error(
        "partition {partition}: applied up to message {applied} but the stream now starts at \
         {first}; the messages in between were purged, so this replica must be bootstrapped \
         from a partition snapshot"
    )]
    Trimmed {
        /// The partition.
        partition: Partition,
        /// Its applied position here.
        applied: u64,
        /// The oldest message its stream still holds.
        first: u64,
    },
    /// A message after the position is missing from the stream although later ones are
    /// there: the replica stops rather than skip it.
    #[error(
        "partition {partition}: message {missing} is missing from the stream (applied up to \
         {applied}, the stream delivered {delivered} next); refusing to skip it"
    )]
    Lost {
        /// The partition.
        partition: Partition,
        /// Its applied position here.
        applied: u64,
        /// The sequence that should have come next.
        missing: u64,
        /// What came instead.
        delivered: u64,
    },
    /// A message this build cannot apply.
    #[error("partition {partition} message {seq}: {reason}")]
    Malformed {
        /// The partition.
        partition: Partition,
        /// The message's sequence.
        seq: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// How long a follower waits for its next message before it checks that the stream has
/// nothing new for it.
const STALL_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Applies log messages to one shard's store.
pub struct Applier<L> {
    log: Arc<L>,
    store: Arc<Store>,
    /// The followed partition's position, published after each message.
    progress: watch::Sender<u64>,
    /// Held while a message is applied, so that a snapshot taken under it sees one position.
    gate: Arc<Mutex<()>>,
}

impl<L: Log> Applier<L> {
    /// An applier writing `log`'s messages into `store`.
    pub fn new(log: Arc<L>, store: Arc<Store>) -> Self {
        Applier::sharing(log, store, watch::Sender::new(0), Arc::new(Mutex::new(())))
    }

    /// An applier that publishes its position on `progress` and applies each message under
    /// `gate` (a replica keeps both across the appliers it runs, one per store).
    pub fn sharing(
        log: Arc<L>,
        store: Arc<Store>,
        progress: watch::Sender<u64>,
        gate: Arc<Mutex<()>>,
    ) -> Self {
        Applier { log, store, progress, gate }
    }

    /// The followed partition's applied position as it moves (set once `follow` starts).
    pub fn progress(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }

    /// Applies one message exactly once (blocking: it writes and flushes sled and commits the
    /// indexes). A write to a collection that no longer exists moves the position only.
    pub fn apply(&self, entry: &Entry) -> Result<Applied, ApplyError> {
        let at = LogPosition { partition: entry.partition, seq: entry.seq };
        let malformed =
            |reason: String| ApplyError::Malformed { partition: at.partition, seq: at.seq, reason };
        let op = LogOp::decode(&entry.payload).map_err(malformed)?;
        let _held = self.gate.lock();
        let refused = match op {
            LogOp::Create { collection, config } => {
                // Creating is idempotent, so it may run before the position check: a crash
                // between the two re-applies it harmlessly.
                if let Some(refused) = self.out_of_order(at)? {
                    return Ok(refused);
                }
                match self.store.create_collection(&collection, config.clone()) {
                    Ok(_) => {}
                    Err(StorageError::CollectionExists(_)) => {
                        let existing = self.store.collection(&collection)?;
                        if *existing.config() != config {
                            // Left empty by a create that did not reach every partition (the
                            // router took the name back): the new settings replace it.
                            if existing.stats().documents > 0 {
                                return Err(malformed(format!(
                                    "collection '{collection}' exists here with other settings \
                                     and holds documents"
                                )));
                            }
                            drop(existing);
                            self.store.delete_collection(&collection)?;
                            self.store.create_collection(&collection, config)?;
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
                refusal(self.store.skip_logged(at)?)
            }
            LogOp::Write { collection, upserts, deletes } => {
                match self.store.collection(&collection) {
                    Ok(target) => {
                        refusal(target.write_logged(&WriteBatch { upserts, deletes }, at)?)
                    }
                    Err(StorageError::CollectionNotFound(_)) => {
                        refusal(self.store.skip_logged(at)?)
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            LogOp::Drop { collection } => {
                if let Some(refused) = self.out_of_order(at)? {
                    return Ok(refused);
                }
                // Dropping is idempotent too: a crash before the position moves drops nothing
                // new when the message is applied again.
                match self.store.delete_collection(&collection) {
                    Ok(()) | Err(StorageError::CollectionNotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                refusal(self.store.skip_logged(at)?)
            }
        };
        Ok(refused.map_or(Applied::Written, applied_as))
    }

    fn out_of_order(&self, at: LogPosition) -> Result<Option<Applied>, ApplyError> {
        let applied = self.store.log_position(at.partition)?;
        Ok(at.follows(applied).err().map(applied_as))
    }

    /// Follows `partition`'s stream from the store's position until an error (or until the
    /// caller aborts the task): each message is applied once, in order; a gap is re-read once
    /// from the position, and refused if it is still there.
    pub async fn follow(self: Arc<Self>, partition: Partition) -> Result<(), ApplyError> {
        let mut reread_at = None;
        loop {
            let applied = self.store.log_position(partition)?;
            self.progress.send_replace(applied);
            let bounds = self.log.bounds(partition).await?;
            if bounds.first > applied + 1 && bounds.last > applied {
                return Err(ApplyError::Trimmed { partition, applied, first: bounds.first });
            }
            let mut entries = self.log.read(partition, applied + 1).await?;
            loop {
                let entry = match tokio::time::timeout(STALL_CHECK, entries.next()).await {
                    Ok(Some(entry)) => entry?,
                    Ok(None) => break,
                    // Quiet for a while: fine if the stream holds nothing new, otherwise the
                    // reader lost its server (a consumer lives on one) and reads again now
                    // rather than after its missed heartbeats.
                    Err(_) => {
                        let applied = *self.progress.borrow();
                        if self.log.bounds(partition).await?.last > applied {
                            tracing::debug!(partition, applied, "reader stalled; reading again");
                            break;
                        }
                        continue;
                    }
                };
                let seq = entry.seq;
                let applier = Arc::clone(&self);
                let outcome = tokio::task::spawn_blocking(move || applier.apply(&entry))
                    .await
                    .map_err(|e| ApplyError::Malformed {
                    partition,
                    seq,
                    reason: format!("applying panicked: {e}"),
                })??;
                if outcome == Applied::Written {
                    self.progress.send_replace(seq);
                }
                if let Applied::Gap { applied } = outcome {
                    if reread_at == Some(applied) {
                        return Err(ApplyError::Lost {
                            partition,
                            applied,
                            missing: applied + 1,
                            delivered: seq,
                        });
                    }
                    tracing::warn!(
                        partition,
                        applied,
                        delivered = seq,
                        "gap in the stream; reading again from the position"
                    );
                    reread_at = Some(applied);
                    break;
                }
            }
        }
    }
}

/// What a message refused as out of order did.
fn applied_as(refused: OutOfOrder) -> Applied {
    match refused {
        OutOfOrder::Duplicate { .. } => Applied::Duplicate,
        OutOfOrder::Gap { applied } => Applied::Gap { applied },
    }
}

fn refusal<T>(logged: Logged<T>) -> Option<OutOfOrder> {
    match logged {
        Logged::Applied(_) => None,
        Logged::Refused(refused) => Some(refused),
    }
}
