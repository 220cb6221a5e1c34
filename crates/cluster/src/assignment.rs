//! The cluster's assignment (SCALE.md, "Metadata"): which shards hold which partitions, one
//! versioned record in a replicated JetStream KV bucket. Every shard follows it, taking on
//! the partitions it is given and dropping those taken away; routers change it (one compare-
//! and-set per change, so two routers never lose each other's change). A shard that starts
//! and is not in it yet joins with the partitions of its settings; from then on the
//! assignment, not the settings, says what it holds.

use std::collections::{BTreeMap, BTreeSet};

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::StorageType;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::jetstream::JetStreamLog;
use crate::log::LogError;
use crate::message::{decode_value, encode_value};
use crate::partition::Partition;

const BUCKET: &str = "sieve_assignment";
const KEY: &str = "shards";

/// How many times a change is tried again when another change landed between its read and
/// its write.
const CHANGE_TRIES: usize = 16;

/// Which shards hold which partitions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Its version: the KV revision that wrote it (0 while nothing was ever assigned).
    #[serde(skip)]
    pub epoch: u64,
    /// Per shard (by name), the partitions it holds.
    pub shards: BTreeMap<String, BTreeSet<Partition>>,
}

impl Assignment {
    /// The partitions `shard` holds; `None` when it never joined.
    pub fn held_by(&self, shard: &str) -> Option<&BTreeSet<Partition>> {
        self.shards.get(shard)
    }

    /// The shards holding `partition`, by name.
    pub fn owners(&self, partition: Partition) -> Vec<&str> {
        self.shards
            .iter()
            .filter(|(_, held)| held.contains(&partition))
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// Why an assignment change was not made.
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    /// The change is not allowed as the assignment stands; the message says why.
    #[error("{0}")]
    Refused(String),
    /// The bucket could not be read or written.
    #[error(transparent)]
    Log(#[from] LogError),
}

fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(format!("assignment bucket: {e}"))
}

/// The assignment bucket.
#[derive(Clone)]
pub struct Assignments {
    kv: kv::Store,
}

impl Assignments {
    /// Opens the bucket on `log`'s cluster, creating it (`replicas` copies) if missing.
    pub async fn open(log: &JetStreamLog, replicas: usize) -> Result<Assignments, LogError> {
        let kv = log
            .key_value(kv::Config {
                bucket: BUCKET.to_string(),
                description: "Sieve assignment: shard -> partitions, versioned".to_string(),
                history: 16,
                storage: StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
            .await?;
        Ok(Assignments { kv })
    }

    /// The assignment now, and the KV revision to change it from (`None`: never written).
    async fn current(&self) -> Result<(Assignment, Option<u64>), LogError> {
        let Some(entry) = self.kv.entry(KEY).await.map_err(unavailable)? else {
            return Ok((Assignment::default(), None));
        };
        if entry.operation != kv::Operation::Put {
            return Ok((Assignment::default(), Some(entry.revision)));
        }
        let mut assignment: Assignment = decode_value(&entry.value).map_err(|reason| {
            LogError::Other(format!("the assignment cannot be read: {reason}"))
        })?;
        assignment.epoch = entry.revision;
        Ok((assignment, Some(entry.revision)))
    }

    /// The assignment now.
    pub async fn read(&self) -> Result<Assignment, LogError> {
        Ok(self.current().await?.0)
    }

    /// Applies `change` to the assignment and writes the result if it differs, as one
    /// compare-and-set: when another change landed first, `change` runs again on the newer
    /// assignment. `change` refuses with `Err(why)`. Returns the assignment as written (or
    /// as it stood, when `change` left it alone).
    pub async fn change<F>(&self, mut change: F) -> Result<Assignment, AssignError>
    where
        F: FnMut(&mut Assignment) -> Result<(), String>,
    {
        for _ in 0..CHANGE_TRIES {
            let (current, revision) = self.current().await?;
            let mut changed = current.clone();
            change(&mut changed).map_err(AssignError::Refused)?;
            if changed == current {
                return Ok(current);
            }
            let value = Bytes::from(encode_value(&changed));
            let written = match revision {
                None => match self.kv.create(KEY, value).await {
                    Ok(revision) => Some(revision),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => None,
                    Err(e) => return Err(unavailable(e).into()),
                },
                Some(revision) => match self.kv.update(KEY, value, revision).await {
                    Ok(revision) => Some(revision),
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => None,
                    Err(e) => return Err(unavailable(e).into()),
                },
            };
            if let Some(epoch) = written {
                changed.epoch = epoch;
                return Ok(changed);
            }
        }
        Err(AssignError::Log(LogError::Unavailable(format!(
            "assignment bucket: {CHANGE_TRIES} changes landed between reading and writing; retry"
        ))))
    }

    /// Shard `shard`'s partitions: those the assignment gives it, or `partitions` (its
    /// settings), recorded as its own, when it has never joined.
    pub async fn join(
        &self,
        shard: &str,
        partitions: &[Partition],
    ) -> Result<(BTreeSet<Partition>, u64), AssignError> {
        let assignment = self
            .change(|assignment| {
                assignment
                    .shards
                    .entry(shard.to_string())
                    .or_insert_with(|| partitions.iter().copied().collect());
                Ok(())
            })
            .await?;
        let held = assignment.held_by(shard).cloned().unwrap_or_default();
        Ok((held, assignment.epoch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_the_shards_holding_a_partition_by_name() {
        let assignment = Assignment {
            epoch: 3,
            shards: BTreeMap::from([
                ("shard-b".to_string(), BTreeSet::from([1, 2])),
                ("shard-a".to_string(), BTreeSet::from([0, 1])),
                ("shard-c".to_string(), BTreeSet::new()),
            ]),
        };
        assert_eq!(assignment.owners(1), vec!["shard-a", "shard-b"]);
        assert_eq!(assignment.owners(0), vec!["shard-a"]);
        assert!(assignment.owners(3).is_empty());
        assert_eq!(assignment.held_by("shard-c"), Some(&BTreeSet::new()));
        assert_eq!(assignment.held_by("shard-d"), None);
        // The epoch is the KV revision, not part of the stored record.
        let stored = encode_value(&assignment);
        let read: Assignment = decode_value(&stored).unwrap();
        assert_eq!((read.epoch, &read.shards), (0, &assignment.shards));
    }
}
