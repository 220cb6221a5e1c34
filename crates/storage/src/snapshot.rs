//! Collection snapshots: one self-describing file per snapshot in `<data_dir>/snapshots`.
//!
//! A snapshot holds every live document of a collection (title, text, metadata, vector) as of
//! one op-log sequence, read while the collection's writes wait, plus the collection's
//! settings. Derived indexes are not copied: restoring writes the documents into a new
//! collection through the normal write path, which rebuilds BM25 and HNSW (vectors come from
//! the file, so nothing is re-embedded).
//!
//! Format, version 1, JSON lines: a header
//! `{"format":"sieve-snapshot","version":1,"collection":..,"sequence":..,"documents":..,
//! "created_unix_ms":..,"config":{..}}`, one [`Document`] per line, then a trailer
//! `{"end":{"documents":N}}`. A file without its trailer, or whose count disagrees, is refused
//! as truncated. Files are written under a temporary name, synced, then renamed.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::collection::{Collection, WriteBatch};
use crate::config::{CollectionConfig, check_collection_name};
use crate::document::Document;
use crate::error::{Context as _, Error, Result};
use crate::logged::LogPosition;
use crate::store::Store;

const FORMAT: &str = "sieve-snapshot";
const VERSION: u32 = 1;
const SUFFIX: &str = ".snapshot";
/// Documents per write batch when restoring.
const RESTORE_BATCH: usize = 1000;

/// What a snapshot file says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// File name in the snapshot directory.
    #[serde(skip)]
    pub name: String,
    /// The collection it was taken from.
    pub collection: String,
    /// The op-log sequence it is consistent with.
    pub sequence: u64,
    /// Live documents in it.
    pub documents: u64,
    #[serde(skip)]
    pub size_bytes: u64,
    pub created_unix_ms: u64,
    /// The collection's settings.
    pub config: CollectionConfig,
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    #[serde(flatten)]
    info: SnapshotInfo,
}

#[derive(Serialize, Deserialize)]
struct Trailer {
    end: End,
}

#[derive(Serialize, Deserialize)]
struct End {
    documents: u64,
}

/// `<data_dir>/snapshots`.
pub fn dir(store: &Store) -> PathBuf {
    store.dir().join("snapshots")
}

/// The path of a snapshot by name, refusing names that are not plain snapshot file names.
fn path_of(store: &Store, name: &str) -> Result<PathBuf> {
    let valid = name.len() <= 128
        && name.ends_with(SUFFIX)
        && name.len() > SUFFIX.len()
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if !valid {
        return Err(Error::InvalidArgument(format!(
            "snapshot: '{}' is not a snapshot name (as ListSnapshots gives them: \
             <collection>-<sequence>-<created_unix_ms>{SUFFIX})",
            name.escape_debug()
        )));
    }
    Ok(dir(store).join(name))
}

/// Writes a snapshot of `collection`; returns what it holds.
pub fn create(store: &Store, collection: &str) -> Result<SnapshotInfo> {
    let source = store.collection(collection)?;
    let dir = dir(store);
    std::fs::create_dir_all(&dir).context(format!("creating {}", dir.display()))?;
    let created_unix_ms =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let tmp = dir.join(format!(".{collection}-{created_unix_ms}.tmp"));
    let written = source.read_consistent(|sequence, documents, iter| {
        let info = SnapshotInfo {
            name: format!("{collection}-{sequence}-{created_unix_ms}{SUFFIX}"),
            collection: collection.to_string(),
            sequence,
            documents,
            size_bytes: 0,
            created_unix_ms,
            config: source.config().clone(),
        };
        write_file(&tmp, &info, iter).map(|()| info)
    });
    let mut info = match written {
        Ok(info) => info,
        Err(error) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(error);
        }
    };
    let path = dir.join(&info.name);
    std::fs::rename(&tmp, &path).context(format!("renaming {} into place", tmp.display()))?;
    File::open(&dir).and_then(|d| d.sync_all()).context(format!("syncing {}", dir.display()))?;
    info.size_bytes = std::fs::metadata(&path).context("reading the snapshot's size")?.len();
    tracing::info!(
        collection,
        snapshot = info.name,
        sequence = info.sequence,
        documents = info.documents,
        bytes = info.size_bytes,
        "snapshot written"
    );
    Ok(info)
}

fn write_file(
    path: &Path,
    info: &SnapshotInfo,
    documents: &mut dyn Iterator<Item = Result<Document>>,
) -> Result<()> {
    let what = || format!("writing snapshot {}", path.display());
    let file = File::create(path).context(what())?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    write_section(&mut out, info, documents, &what)?;
    let file = out.into_inner().map_err(|e| Error::io(what(), e.into_error()))?;
    file.sync_all().context(what())
}

/// One collection snapshot: header, documents, end marker.
fn write_section(
    out: &mut impl Write,
    info: &SnapshotInfo,
    documents: &mut dyn Iterator<Item = Result<Document>>,
    what: &dyn Fn() -> String,
) -> Result<()> {
    let header = Header { format: FORMAT.into(), version: VERSION, info: info.clone() };
    serde_json::to_writer(&mut *out, &header).map_err(|e| Error::io(what(), e))?;
    out.write_all(b"\n").context(what())?;
    let mut count = 0u64;
    for doc in documents {
        serde_json::to_writer(&mut *out, &doc?).map_err(|e| Error::io(what(), e))?;
        out.write_all(b"\n").context(what())?;
        count += 1;
    }
    if count != info.documents {
        return Err(Error::Corrupt(format!(
            "collection '{}' lists {} live documents but sled holds {count}",
            info.collection, info.documents
        )));
    }
    serde_json::to_writer(&mut *out, &Trailer { end: End { documents: count } })
        .map_err(|e| Error::io(what(), e))?;
    out.write_all(b"\n").context(what())
}

fn read_header(path: &Path, name: &str) -> Result<(SnapshotInfo, BufReader<File>)> {
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound(format!("snapshot '{name}' not found")),
        _ => Error::io(format!("opening snapshot {}", path.display()), e),
    })?;
    let size_bytes = file.metadata().context("reading a snapshot's size")?.len();
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    reader.read_line(&mut line).context(format!("reading snapshot {name}"))?;
    let mut info = parse_header(&line, name)?;
    info.size_bytes = size_bytes;
    Ok((info, reader))
}

/// A collection snapshot's header line.
fn parse_header(line: &str, name: &str) -> Result<SnapshotInfo> {
    let header: Header = serde_json::from_str(line).map_err(|e| {
        Error::Corrupt(format!("snapshot '{name}': its header is unreadable ({e})"))
    })?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(Error::Corrupt(format!(
            "snapshot '{name}' is format '{}' version {}; this server reads '{FORMAT}' version \
             {VERSION}",
            header.format, header.version
        )));
    }
    let mut info = header.info;
    info.name = name.to_string();
    Ok(info)
}

/// Snapshots in the directory (of one collection, if given), oldest first. Files that are not
/// readable snapshots are skipped with a warning.
pub fn list(store: &Store, collection: Option<&str>) -> Result<Vec<SnapshotInfo>> {
    let dir = dir(store);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.context(format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(SUFFIX) {
            continue;
        }
        match read_header(&entry.path(), &name) {
            Ok((info, _)) if collection.is_none_or(|c| c == info.collection) => found.push(info),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(snapshot = name, %error, "skipping an unreadable snapshot")
            }
        }
    }
    found.sort_by(|a, b| (a.created_unix_ms, &a.name).cmp(&(b.created_unix_ms, &b.name)));
    Ok(found)
}

/// Creates collection `into` from a snapshot. On any failure the half-made collection is
/// deleted again.
pub fn restore(store: &Store, name: &str, into: &str) -> Result<Arc<Collection>> {
    check_collection_name(into)?;
    let path = path_of(store, name)?;
    let (info, reader) = read_header(&path, name)?;
    let collection = store.create_collection(into, info.config.clone())?;
    match fill(&collection, &info, reader) {
        Ok(()) => {
            tracing::info!(
                snapshot = name,
                collection = into,
                documents = info.documents,
                "snapshot restored"
            );
            Ok(collection)
        }
        Err(error) => {
            if let Err(e) = store.delete_collection(into) {
                tracing::error!(collection = into, error = %e, "removing a failed restore");
            }
            Err(error)
        }
    }
}

fn fill(collection: &Collection, info: &SnapshotInfo, reader: BufReader<File>) -> Result<()> {
    let mut lines = reader.lines().enumerate().map(|(number, line)| (number + 2, line));
    fill_section(collection, info, &mut lines)?;
    match lines.next() {
        None => Ok(()),
        Some(_) => {
            Err(Error::Corrupt(format!("snapshot '{}': data after its end marker", info.name)))
        }
    }
}

/// Numbered lines of a snapshot file.
type Lines<'a> = dyn Iterator<Item = (usize, std::io::Result<String>)> + 'a;

/// Writes one collection's documents from `lines` (after its header) up to and including its
/// end marker, checking the counts.
fn fill_section(collection: &Collection, info: &SnapshotInfo, lines: &mut Lines) -> Result<()> {
    let name = &info.name;
    let mut batch = Vec::with_capacity(RESTORE_BATCH);
    let mut count = 0u64;
    let flush = |batch: &mut Vec<Document>| -> Result<()> {
        let write = WriteBatch { upserts: std::mem::take(batch), deletes: Vec::new() };
        let outcome = collection.write(&write)?;
        match outcome.rejected.first() {
            None => Ok(()),
            Some(r) => Err(Error::Corrupt(format!(
                "snapshot '{name}': document '{}' is refused: {}",
                r.id, r.reason
            ))),
        }
    };
    for (number, line) in lines {
        let line = line.context(format!("reading snapshot {name}"))?;
        if line.starts_with("{\"end\":") {
            let trailer: Trailer = serde_json::from_str(&line).map_err(|e| {
                Error::Corrupt(format!("snapshot '{name}': unreadable end marker ({e})"))
            })?;
            if trailer.end.documents != count || count != info.documents {
                return Err(Error::Corrupt(format!(
                    "snapshot '{name}': header says {} documents, end marker {}, found {count}",
                    info.documents, trailer.end.documents
                )));
            }
            if !batch.is_empty() {
                flush(&mut batch)?;
            }
            return Ok(());
        }
        let doc: Document = serde_json::from_str(&line).map_err(|e| {
            Error::Corrupt(format!("snapshot '{name}': line {number} is not a document ({e})"))
        })?;
        batch.push(doc);
        count += 1;
        if batch.len() == RESTORE_BATCH {
            flush(&mut batch)?;
        }
    }
    Err(Error::Corrupt(format!(
        "snapshot '{name}' is truncated: no end marker after {count} of {} documents",
        info.documents
    )))
}

/// Deletes a snapshot file.
pub fn delete(store: &Store, name: &str) -> Result<()> {
    let path = path_of(store, name)?;
    std::fs::remove_file(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound(format!("snapshot '{name}' not found")),
        _ => Error::io(format!("deleting snapshot {}", path.display()), e),
    })
}

const PARTITION_FORMAT: &str = "sieve-partition-snapshot";

/// What a partition snapshot holds: every collection of a cluster shard's partition store as
/// of one stream sequence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSnapshotInfo {
    /// The log partition.
    pub partition: u32,
    /// The last stream message applied into it: a replica restored from it reads on from the
    /// next one.
    pub stream_seq: u64,
    /// Collections in it.
    pub collections: u64,
    /// Live documents in it, over every collection.
    pub documents: u64,
    pub created_unix_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct PartitionHeader {
    format: String,
    version: u32,
    #[serde(flatten)]
    info: PartitionSnapshotInfo,
}

#[derive(Serialize, Deserialize)]
struct PartitionTrailer {
    end: PartitionEnd,
}

#[derive(Serialize, Deserialize)]
struct PartitionEnd {
    collections: u64,
}

/// Writes a snapshot of `partition` as `store` holds it into `path` (under a temporary name,
/// synced, then renamed). Format, version 1, JSON lines: a header
/// `{"format":"sieve-partition-snapshot","version":1,"partition":..,"stream_seq":..,
/// "collections":..,"documents":..,"created_unix_ms":..}`, then each collection as a
/// collection snapshot (header, documents, end marker) in name order, then
/// `{"end":{"collections":N}}`.
///
/// The caller holds the partition's writes (its applier paused): a position that moves while
/// the file is written fails the snapshot rather than mix two states.
pub fn write_partition(
    store: &Store,
    partition: u32,
    path: &Path,
) -> Result<PartitionSnapshotInfo> {
    let stream_seq = store.log_position(partition)?;
    let mut collections = store.collections();
    collections.sort_by(|a, b| a.name().cmp(b.name()));
    let created_unix_ms =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let documents = collections.iter().map(|c| c.stats().documents).sum();
    let info = PartitionSnapshotInfo {
        partition,
        stream_seq,
        collections: collections.len() as u64,
        documents,
        created_unix_ms,
    };
    let tmp = path.with_extension("tmp");
    let what = || format!("writing partition snapshot {}", tmp.display());
    let written = (|| {
        let file = File::create(&tmp).context(what())?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let header = PartitionHeader {
            format: PARTITION_FORMAT.into(),
            version: VERSION,
            info: info.clone(),
        };
        serde_json::to_writer(&mut out, &header).map_err(|e| Error::io(what(), e))?;
        out.write_all(b"\n").context(what())?;
        let mut total = 0;
        for collection in &collections {
            total += collection.read_consistent(|sequence, documents, iter| {
                let section = SnapshotInfo {
                    name: String::new(),
                    collection: collection.name().to_string(),
                    sequence,
                    documents,
                    size_bytes: 0,
                    created_unix_ms,
                    config: collection.config().clone(),
                };
                write_section(&mut out, &section, iter, &what).map(|()| documents)
            })?;
        }
        serde_json::to_writer(
            &mut out,
            &PartitionTrailer { end: PartitionEnd { collections: info.collections } },
        )
        .map_err(|e| Error::io(what(), e))?;
        out.write_all(b"\n").context(what())?;
        let file = out.into_inner().map_err(|e| Error::io(what(), e.into_error()))?;
        file.sync_all().context(what())?;
        let now = store.log_position(partition)?;
        if now != stream_seq || total != documents {
            return Err(Error::Corrupt(format!(
                "partition {partition} moved from message {stream_seq} to {now} while its \
                 snapshot was written; its writes must be held meanwhile"
            )));
        }
        Ok(())
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(error);
    }
    std::fs::rename(&tmp, path).context(format!("renaming {} into place", tmp.display()))?;
    if let Some(parent) = path.parent() {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .context(format!("syncing {}", parent.display()))?;
    }
    Ok(info)
}

/// A partition snapshot's header.
pub fn read_partition_info(path: &Path) -> Result<PartitionSnapshotInfo> {
    let name = path.display().to_string();
    let file = File::open(path).context(format!("opening partition snapshot {name}"))?;
    let mut line = String::new();
    BufReader::new(file).read_line(&mut line).context(format!("reading {name}"))?;
    parse_partition_header(&line, &name)
}

fn parse_partition_header(line: &str, name: &str) -> Result<PartitionSnapshotInfo> {
    let header: PartitionHeader = serde_json::from_str(line).map_err(|e| {
        Error::Corrupt(format!("partition snapshot '{name}': its header is unreadable ({e})"))
    })?;
    if header.format != PARTITION_FORMAT || header.version != VERSION {
        return Err(Error::Corrupt(format!(
            "partition snapshot '{name}' is format '{}' version {}; this server reads \
             '{PARTITION_FORMAT}' version {VERSION}",
            header.format, header.version
        )));
    }
    Ok(header.info)
}

/// Fills `store` (new, holding no collection and no position for the partition) from the
/// partition snapshot at `path`, then sets the partition's position to the snapshot's stream
/// sequence and flushes. A failure leaves a store to throw away.
pub fn restore_partition(store: &Store, path: &Path) -> Result<PartitionSnapshotInfo> {
    let name = path.display().to_string();
    let file = File::open(path).context(format!("opening partition snapshot {name}"))?;
    let mut lines = BufReader::with_capacity(1 << 20, file)
        .lines()
        .enumerate()
        .map(|(number, line)| (number + 1, line));
    let header = match lines.next() {
        Some((_, line)) => line.context(format!("reading {name}"))?,
        None => return Err(Error::Corrupt(format!("partition snapshot '{name}' is empty"))),
    };
    let info = parse_partition_header(&header, &name)?;
    if store.log_position(info.partition)? != 0 || !store.collections().is_empty() {
        return Err(Error::InvalidArgument(format!(
            "partition {}: a snapshot is restored into a new store only",
            info.partition
        )));
    }
    let mut documents = 0;
    for _ in 0..info.collections {
        let Some((_, line)) = lines.next() else {
            return Err(Error::Corrupt(format!(
                "partition snapshot '{name}' is truncated: it ends before its {} collections",
                info.collections
            )));
        };
        let mut section = parse_header(&line.context(format!("reading {name}"))?, &name)?;
        section.name = format!("{name} ({})", section.collection);
        let collection = store.create_collection(&section.collection, section.config.clone())?;
        fill_section(&collection, &section, &mut lines)?;
        documents += section.documents;
    }
    let trailer = match lines.next() {
        Some((_, line)) => line.context(format!("reading {name}"))?,
        None => {
            return Err(Error::Corrupt(format!(
                "partition snapshot '{name}' is truncated: no end marker"
            )));
        }
    };
    let end: PartitionTrailer = serde_json::from_str(&trailer).map_err(|e| {
        Error::Corrupt(format!("partition snapshot '{name}': unreadable end marker ({e})"))
    })?;
    if end.end.collections != info.collections || documents != info.documents {
        return Err(Error::Corrupt(format!(
            "partition snapshot '{name}': header says {} collections and {} documents, found \
             {} and {documents}",
            info.collections, info.documents, end.end.collections
        )));
    }
    if lines.next().is_some() {
        return Err(Error::Corrupt(format!(
            "partition snapshot '{name}': data after its end marker"
        )));
    }
    store.start_log_at(LogPosition { partition: info.partition, seq: info.stream_seq })?;
    Ok(info)
}
