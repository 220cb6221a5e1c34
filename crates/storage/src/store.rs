//! The store: one sled database for every collection, the catalog of collections, and their
//! index directories under the data dir.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use crate::collection::{Collection, tree_prefix};
use crate::config::{CollectionConfig, StoreOptions, check_collection_name};
use crate::error::{Context, Error, Result};
use crate::logged::{self, LogPosition, Logged};

const NEXT_UID: &[u8] = b"next_uid";
/// The store's identity in sled; the same value is kept in [`MARKER`] beside it.
const STORE_ID: &[u8] = b"store_id";
/// A file in the data directory that outlives a lost or corrupt sled database, so that an
/// empty sled there is recognised as data loss, not as a new store.
const MARKER: &str = "sieve-store.json";

/// The content of [`MARKER`].
#[derive(Serialize, Deserialize)]
struct Marker {
    store_id: u64,
    created_ms: u64,
}

/// A collection as the catalog records it.
#[derive(Serialize, Deserialize)]
struct CatalogEntry {
    uid: u64,
    config: CollectionConfig,
    created_ms: u64,
}

/// All collections under one data directory.
pub struct Store {
    db: sled::Db,
    dir: PathBuf,
    options: StoreOptions,
    catalog: sled::Tree,
    store_meta: sled::Tree,
    collections: RwLock<BTreeMap<String, Arc<Collection>>>,
    /// Serialises create and delete.
    ddl: Mutex<()>,
}

impl Store {
    /// Opens the store at `dir` (created if missing), opening every collection and removing
    /// leftovers of collections deleted mid-way. A store whose sled data cannot be read is an
    /// error: serving part of the data is worse than not serving.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Store> {
        std::fs::create_dir_all(dir)
            .context(format!("creating data directory {}", dir.display()))?;
        let sled_dir = dir.join("sled");
        let db = open_sled(&sled_dir, options.cache_bytes).map_err(|e| match e {
            sled::Error::Corruption { .. } => Error::Corrupt(format!(
                "the sled database at {} is corrupt ({e}). Refusing to start rather than serve \
                 part of the data: restore the data directory from a backup",
                sled_dir.display()
            )),
            other => Error::io(format!("opening sled database at {}", sled_dir.display()), other),
        })?;
        let catalog = db.open_tree("catalog").context("opening the catalog")?;
        let store_meta = db.open_tree("store").context("opening store metadata")?;
        check_identity(dir, &db, &catalog, &store_meta)?;
        let mut collections = BTreeMap::new();
        let mut uids = Vec::new();
        for entry in catalog.iter() {
            let (key, value) = entry.context("reading the catalog")?;
            let name = String::from_utf8(key.to_vec())
                .map_err(|_| Error::Corrupt("catalog name is not UTF-8".into()))?;
            let entry: CatalogEntry = serde_json::from_slice(&value)
                .map_err(|e| Error::Corrupt(format!("catalog entry for '{name}': {e}")))?;
            let collection = Collection::open(
                &db,
                entry.uid,
                &name,
                entry.config,
                entry.created_ms,
                collection_dir(dir, entry.uid),
                options.clone(),
            )?;
            tracing::info!(
                collection = name,
                documents = collection.stats().documents,
                "collection opened"
            );
            uids.push(entry.uid);
            collections.insert(name, Arc::new(collection));
        }
        let store = Store {
            db,
            dir: dir.to_path_buf(),
            options,
            catalog,
            store_meta,
            collections: RwLock::new(collections),
            ddl: Mutex::new(()),
        };
        store.remove_orphans(&uids)?;
        Ok(store)
    }

    /// Removes trees and directories of collections no longer in the catalog (left by a crash
    /// during a delete). A directory of a collection sled never numbered means sled lost its
    /// catalog: an error, and the directory stays.
    fn remove_orphans(&self, live: &[u64]) -> Result<()> {
        let next_uid = self.next_uid()?;
        let live_prefixes: Vec<String> = live.iter().map(|&uid| tree_prefix(uid)).collect();
        for name in self.db.tree_names() {
            let name = String::from_utf8_lossy(&name).into_owned();
            if name.starts_with('c')
                && name.contains('/')
                && !live_prefixes.iter().any(|p| name.starts_with(p))
            {
                self.db.drop_tree(&name).context(format!("dropping orphan tree {name}"))?;
            }
        }
        let root = self.dir.join("collections");
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                let uid = entry.file_name().to_str().and_then(|s| s.parse::<u64>().ok());
                if uid.is_some_and(|uid| uid >= next_uid) {
                    return Err(Error::Corrupt(format!(
                        "{} holds collection {} that the sled database at {} has no record of: \
                         sled lost data. Refusing to start rather than serve part of the data; \
                         restore the data directory from a backup",
                        root.display(),
                        entry.path().display(),
                        self.dir.join("sled").display()
                    )));
                }
                if uid.is_some_and(|uid| !live.contains(&uid)) {
                    std::fs::remove_dir_all(entry.path())
                        .context(format!("removing {}", entry.path().display()))?;
                }
            }
        }
        Ok(())
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store's tuning.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Creates an empty collection.
    pub fn create_collection(
        &self,
        name: &str,
        config: CollectionConfig,
    ) -> Result<Arc<Collection>> {
        check_collection_name(name)?;
        config.check(self.options.max_dimension)?;
        let _ddl = self.ddl.lock();
        if self.collections.read().contains_key(name) {
            return Err(Error::CollectionExists(name.to_string()));
        }
        let uid = self.next_uid()?;
        let created_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let entry = CatalogEntry { uid, config: config.clone(), created_ms };
        let entry_bytes = serde_json::to_vec(&entry).expect("catalog entries serialise");
        (&self.catalog, &self.store_meta)
            .transaction(|(catalog, meta)| {
                catalog.insert(name.as_bytes(), entry_bytes.as_slice())?;
                meta.insert(NEXT_UID, &(uid + 1).to_be_bytes())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| Error::io(format!("recording collection '{name}'"), format!("{e:?}")))?;
        self.db.flush().context("flushing the catalog")?;
        let dir = collection_dir(&self.dir, uid);
        let collection = Arc::new(Collection::open(
            &self.db,
            uid,
            name,
            config,
            created_ms,
            dir,
            self.options.clone(),
        )?);
        self.collections.write().insert(name.to_string(), Arc::clone(&collection));
        tracing::info!(collection = name, uid, "collection created");
        Ok(collection)
    }

    /// The number the next collection gets (1 in a new store).
    fn next_uid(&self) -> Result<u64> {
        match self.store_meta.get(NEXT_UID).context("reading store metadata")? {
            Some(v) => v
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| Error::Corrupt("next_uid".into())),
            None => Ok(1),
        }
    }

    /// The named collection.
    pub fn collection(&self, name: &str) -> Result<Arc<Collection>> {
        self.collections
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::CollectionNotFound(name.to_string()))
    }

    /// Every collection, by name.
    pub fn collections(&self) -> Vec<Arc<Collection>> {
        self.collections.read().values().cloned().collect()
    }

    /// Deletes a collection and all its data. The catalog entry goes first, so a crash
    /// mid-way leaves only orphans that the next open removes.
    pub fn delete_collection(&self, name: &str) -> Result<()> {
        let _ddl = self.ddl.lock();
        let collection = self.collection(name)?;
        let uid = self.uid_of(name)?;
        self.catalog.remove(name).context("removing the catalog entry")?;
        self.db.flush().context("flushing the catalog")?;
        self.collections.write().remove(name);
        collection.retire();
        for suffix in ["docs", "oplog", "meta"] {
            self.db
                .drop_tree(format!("{}{suffix}", tree_prefix(uid)))
                .context("dropping a collection tree")?;
        }
        let dir = collection_dir(&self.dir, uid);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).context(format!("removing {}", dir.display()))?;
        }
        tracing::info!(collection = name, uid, "collection deleted");
        Ok(())
    }

    fn uid_of(&self, name: &str) -> Result<u64> {
        let bytes = self
            .catalog
            .get(name)
            .context("reading the catalog")?
            .ok_or_else(|| Error::CollectionNotFound(name.to_string()))?;
        let entry: CatalogEntry = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Corrupt(format!("catalog entry for '{name}': {e}")))?;
        Ok(entry.uid)
    }

    /// Each log partition's applied position (cluster shards; empty on a standalone store).
    pub fn log_positions(&self) -> Result<BTreeMap<u32, u64>> {
        logged::read_all(&self.db.open_tree(logged::TREE).context("opening log positions")?)
    }

    /// `partition`'s applied position: the last log message applied (0 before the first).
    pub fn log_position(&self, partition: u32) -> Result<u64> {
        let positions = self.db.open_tree(logged::TREE).context("opening log positions")?;
        logged::decode(positions.get(logged::key(partition)).context("reading a log position")?)
    }

    /// Records a logged message that writes no collection (its collection was deleted since
    /// it was published), exactly once, like [`Collection::write_logged`].
    pub fn skip_logged(&self, at: LogPosition) -> Result<Logged<()>> {
        let positions = self.db.open_tree(logged::TREE).context("opening log positions")?;
        let key = logged::key(at.partition);
        let applied = logged::decode(positions.get(key).context("reading a log position")?)?;
        if let Err(refused) = logged::check(applied, at) {
            return Ok(Logged::Refused(refused));
        }
        positions.insert(key, &at.seq.to_be_bytes()).context("recording a log position")?;
        self.db.flush().context("flushing a log position")?;
        Ok(Logged::Applied(()))
    }

    /// Starts `partition`'s position at `at.seq` on a store restored from a partition snapshot
    /// (whose position is still 0), then flushes everything: the next message applied must be
    /// `at.seq + 1`.
    pub fn start_log_at(&self, at: LogPosition) -> Result<()> {
        let positions = self.db.open_tree(logged::TREE).context("opening log positions")?;
        let key = logged::key(at.partition);
        let applied = logged::decode(positions.get(key).context("reading a log position")?)?;
        if applied != 0 {
            return Err(Error::InvalidArgument(format!(
                "partition {}: already at message {applied}; only a new store starts elsewhere",
                at.partition
            )));
        }
        positions.insert(key, &at.seq.to_be_bytes()).context("recording a log position")?;
        self.db.flush().context("flushing a log position")?;
        Ok(())
    }

    /// Persists every derived index and flushes sled. Call once, at shutdown.
    pub fn close(&self) -> Result<()> {
        for collection in self.collections() {
            collection.close()?;
        }
        self.db.flush().context("flushing sled")?;
        Ok(())
    }
}

/// How long [`open_sled`] waits for a just-closed database's file lock.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Opens sled, waiting up to [`LOCK_WAIT`] while its file lock is held. sled 0.34 finishes
/// writes of a dropped database on its own thread pool, which keeps the lock for a moment
/// after the last handle is gone, so reopening a store in the same process (a restored
/// partition, a test) can find it still held. A lock another process holds is still held
/// after the wait, and the error says so.
fn open_sled(dir: &Path, cache_bytes: u64) -> sled::Result<sled::Db> {
    let start = Instant::now();
    loop {
        match sled::Config::new().path(dir).cache_capacity(cache_bytes).open() {
            Err(sled::Error::Io(e)) if is_lock_held(&e) && start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Whether sled's open failed on its file lock (sled reports it as a plain I/O error).
fn is_lock_held(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::WouldBlock
        || error.to_string().contains("could not acquire lock")
}

fn collection_dir(root: &Path, uid: u64) -> PathBuf {
    root.join("collections").join(uid.to_string())
}

/// Checks that the sled database is the one this data directory was made with: a lost or
/// corrupt sled opens as an empty database, which must not be served as an empty store.
/// A new store (no marker, empty sled, no collection directories) gets its identity here.
fn check_identity(
    dir: &Path,
    db: &sled::Db,
    catalog: &sled::Tree,
    store_meta: &sled::Tree,
) -> Result<()> {
    let marker_path = dir.join(MARKER);
    let sled_dir = dir.join("sled");
    let marker: Option<Marker> = match std::fs::read(&marker_path) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
            Error::Corrupt(format!("{} is not a store marker: {e}", marker_path.display()))
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(format!("reading {}", marker_path.display()), e)),
    };
    let in_sled = match store_meta.get(STORE_ID).context("reading store metadata")? {
        Some(v) => Some(
            v.as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| Error::Corrupt("store_id".into()))?,
        ),
        None => None,
    };
    let lost = |what: String| {
        Error::Corrupt(format!(
            "the sled database at {} {what}. Refusing to start rather than serve part of the \
             data: restore the data directory from a backup, or move it away to start empty",
            sled_dir.display()
        ))
    };
    match (marker, in_sled) {
        (Some(marker), Some(id)) if marker.store_id == id => Ok(()),
        (Some(marker), Some(id)) => Err(lost(format!(
            "belongs to another store (id {id:016x}; {} says {:016x})",
            marker_path.display(),
            marker.store_id
        ))),
        (Some(marker), None) => Err(lost(format!(
            "holds no store record, but this data directory was initialised at {} ms since \
             the epoch ({}): sled lost its data or is corrupt",
            marker.created_ms,
            marker_path.display()
        ))),
        (None, Some(id)) => write_marker(&marker_path, id),
        (None, None) => {
            let indexes = dir.join("collections");
            let has_indexes =
                std::fs::read_dir(&indexes).is_ok_and(|mut entries| entries.next().is_some());
            let sled_empty =
                catalog.is_empty() && store_meta.get(NEXT_UID).ok().flatten().is_none();
            if sled_empty && has_indexes {
                return Err(lost(format!(
                    "is empty, but {} holds collection indexes: sled lost its data or is corrupt",
                    indexes.display()
                )));
            }
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            let id = (now.as_nanos() as u64) ^ (u64::from(std::process::id()) << 40);
            store_meta.insert(STORE_ID, &id.to_be_bytes()).context("recording the store id")?;
            db.flush().context("flushing the store id")?;
            write_marker(&marker_path, id)
        }
    }
}

/// Writes the marker durably (temporary file, fsync, rename).
fn write_marker(path: &Path, store_id: u64) -> Result<()> {
    use std::io::Write as _;
    let created_ms =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let bytes =
        serde_json::to_vec_pretty(&Marker { store_id, created_ms }).expect("the marker serialises");
    let tmp = path.with_extension("json.tmp");
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(parent) = path.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    };
    write().context(format!("writing {}", path.display()))
}
