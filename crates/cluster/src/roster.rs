//! The shards' status bucket (SCALE.md, "Metadata"): each shard records where routers reach
//! it, what it holds and how far behind it is, renewed every few seconds in a replicated
//! JetStream KV bucket. Routers read it to find the shards, so adding a shard is starting it;
//! a record not renewed (a shard killed without withdrawing) ages out of the bucket.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::StorageType;
use bytes::Bytes;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::jetstream::JetStreamLog;
use crate::log::LogError;
use crate::message::{decode_value, encode_value};
use crate::partition::Partition;
use crate::shard::Shard;

const BUCKET: &str = "sieve_shards";

/// How often a shard renews its record.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(5);

/// How long a record lives unless renewed.
const EXPIRES_AFTER: Duration = Duration::from_secs(30);

/// A shard as its last record describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// Where routers reach its internal gRPC service (`http://host:port`).
    pub address: String,
    /// The partitions it holds.
    pub partitions: Vec<Partition>,
    /// Stream messages its partitions had still to apply, summed.
    pub behind: u64,
    /// Why it was not caught up; empty when it was.
    pub not_ready: String,
}

impl ShardRecord {
    /// What `shard`, reached at `address`, holds now.
    pub fn of(shard: &Shard, address: &str) -> ShardRecord {
        let behind =
            shard.status(false).map_or(0, |states| states.iter().map(|p| p.behind()).sum());
        ShardRecord {
            address: address.to_string(),
            partitions: shard.partitions(),
            behind,
            not_ready: shard.ready().err().unwrap_or_default(),
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(format!("shard status bucket: {e}"))
}

/// The shard status bucket.
#[derive(Clone)]
pub struct Roster {
    kv: kv::Store,
}

impl Roster {
    /// Opens the bucket on `log`'s cluster, creating it (`replicas` copies) if missing.
    pub async fn open(log: &JetStreamLog, replicas: usize) -> Result<Roster, LogError> {
        let kv = log
            .key_value(kv::Config {
                bucket: BUCKET.to_string(),
                description: "Sieve shards: name -> address, partitions, lag".to_string(),
                history: 1,
                storage: StorageType::File,
                num_replicas: replicas,
                max_age: EXPIRES_AFTER,
                ..Default::default()
            })
            .await?;
        Ok(Roster { kv })
    }

    /// Records (or renews) shard `name`'s record.
    pub async fn announce(&self, name: &str, record: &ShardRecord) -> Result<(), LogError> {
        self.kv.put(name, Bytes::from(encode_value(record))).await.map_err(unavailable)?;
        Ok(())
    }

    /// Removes shard `name`'s record: it stopped on purpose.
    pub async fn withdraw(&self, name: &str) -> Result<(), LogError> {
        self.kv.delete(name).await.map_err(unavailable)
    }

    /// Every shard recorded now, by name. A record this build cannot read is left out (and
    /// logged): a newer shard's record must not hide the others.
    pub async fn records(&self) -> Result<BTreeMap<String, ShardRecord>, LogError> {
        let names: Vec<String> =
            self.kv.keys().await.map_err(unavailable)?.try_collect().await.map_err(unavailable)?;
        let mut records = BTreeMap::new();
        for name in names {
            let Some(bytes) = self.kv.get(&name).await.map_err(unavailable)? else { continue };
            match decode_value::<ShardRecord>(&bytes) {
                Ok(record) => {
                    records.insert(name, record);
                }
                Err(reason) => tracing::warn!(shard = name, reason, "unreadable shard record"),
            }
        }
        Ok(records)
    }
}
