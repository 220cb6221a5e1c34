//! The cluster's catalog: collection name → settings, in a replicated JetStream KV bucket.
//! Creating is one atomic KV create, so two routers racing on a name cannot both win; the
//! creating revision is the collection's uid, new for every incarnation of a name.

use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind};
use async_nats::jetstream::stream::StorageType;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sieve_storage::CollectionConfig;

use crate::jetstream::JetStreamLog;
use crate::log::LogError;
use crate::message::{decode_value, encode_value};

const BUCKET: &str = "sieve_catalog";

/// A collection as the catalog records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// The KV revision that created it: unique, never reused for a later collection of the
    /// same name.
    #[serde(skip)]
    pub uid: u64,
    /// Its settings.
    pub config: CollectionConfig,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

/// Why a catalog call failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A collection of that name exists.
    #[error("collection '{0}' already exists")]
    Exists(String),
    /// The KV bucket cannot be reached (no quorum, no connection).
    #[error(transparent)]
    Log(#[from] LogError),
    /// An entry this build cannot read.
    #[error("catalog entry '{name}': {reason}")]
    Corrupt {
        /// The collection.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn unavailable(e: impl std::fmt::Display) -> CatalogError {
    CatalogError::Log(LogError::Unavailable(e.to_string()))
}

/// The catalog bucket.
#[derive(Clone)]
pub struct Catalog {
    kv: kv::Store,
}

impl Catalog {
    /// Opens the catalog on `log`'s cluster, creating its bucket (`replicas` copies) if missing.
    pub async fn open(log: &JetStreamLog, replicas: usize) -> Result<Catalog, CatalogError> {
        log.key_value(kv::Config {
            bucket: BUCKET.to_string(),
            description: "Sieve collections: name -> settings".to_string(),
            history: 1,
            storage: StorageType::File,
            num_replicas: replicas,
            max_age: Duration::ZERO,
            ..Default::default()
        })
        .await?;
        // Reads from the stream leader only: a direct get may be answered by a replica that
        // has not applied the last create yet, and a router that just created a collection
        // must find it.
        let context = log.context();
        let stream = format!("KV_{BUCKET}");
        let mut config =
            context.get_stream(&stream).await.map_err(unavailable)?.cached_info().config.clone();
        if config.allow_direct {
            config.allow_direct = false;
            context.update_stream(config).await.map_err(unavailable)?;
        }
        let kv = context.get_key_value(BUCKET).await.map_err(unavailable)?;
        Ok(Catalog { kv })
    }

    /// Records a new collection; `Exists` when the name is taken.
    pub async fn create(
        &self,
        name: &str,
        config: CollectionConfig,
        created_ms: u64,
    ) -> Result<CatalogEntry, CatalogError> {
        let mut entry = CatalogEntry { uid: 0, config, created_ms };
        match self.kv.create(name, Bytes::from(encode_value(&entry))).await {
            Ok(revision) => {
                entry.uid = revision;
                Ok(entry)
            }
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                Err(CatalogError::Exists(name.to_string()))
            }
            // Two creates racing: the loser fails JetStream's expected-sequence check ("wrong
            // last sequence") while the winner's entry may not be readable yet, so the client's
            // own follow-up read can miss it. The failed check alone says the name is taken.
            Err(e) if e.to_string().contains("wrong last sequence") => {
                Err(CatalogError::Exists(name.to_string()))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The collection of that name, if any.
    pub async fn get(&self, name: &str) -> Result<Option<CatalogEntry>, CatalogError> {
        let Some(found) = self.kv.entry(name).await.map_err(unavailable)? else {
            return Ok(None);
        };
        if found.operation != kv::Operation::Put {
            return Ok(None);
        }
        let mut entry: CatalogEntry = decode_value(&found.value)
            .map_err(|reason| CatalogError::Corrupt { name: name.to_string(), reason })?;
        entry.uid = found.revision;
        Ok(Some(entry))
    }

    /// Forgets a collection (a no-op when there is none).
    pub async fn delete(&self, name: &str) -> Result<(), CatalogError> {
        self.kv.delete(name).await.map_err(unavailable)
    }

    /// Every collection as it is now, then every change as it happens: `(name, Some(entry))`
    /// for a collection created, `(name, None)` for one deleted.
    pub async fn watch(
        &self,
    ) -> Result<
        impl futures::Stream<Item = Result<(String, Option<CatalogEntry>), CatalogError>> + Send,
        CatalogError,
    > {
        let changes = self.kv.watch_with_history(">").await.map_err(unavailable)?;
        Ok(changes.map(|change| {
            let change = change.map_err(unavailable)?;
            if change.operation != kv::Operation::Put {
                return Ok((change.key, None));
            }
            let mut entry: CatalogEntry = decode_value(&change.value)
                .map_err(|reason| CatalogError::Corrupt { name: change.key.clone(), reason })?;
            entry.uid = change.revision;
            Ok((change.key, Some(entry)))
        }))
    }

    /// Every collection's name, sorted.
    pub async fn names(&self) -> Result<Vec<String>, CatalogError> {
        let mut names: Vec<String> =
            self.kv.keys().await.map_err(unavailable)?.try_collect().await.map_err(unavailable)?;
        names.sort();
        Ok(names)
    }
}
