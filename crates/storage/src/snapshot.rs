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
    let header = Header { format: FORMAT.into(), version: VERSION, info: info.clone() };
    serde_json::to_writer(&mut out, &header).map_err(|e| Error::io(what(), e))?;
    out.write_all(b"\n").context(what())?;
    let mut count = 0u64;
    for doc in documents {
        serde_json::to_writer(&mut out, &doc?).map_err(|e| Error::io(what(), e))?;
        out.write_all(b"\n").context(what())?;
        count += 1;
    }
    if count != info.documents {
        return Err(Error::Corrupt(format!(
            "collection '{}' lists {} live documents but sled holds {count}",
            info.collection, info.documents
        )));
    }
    serde_json::to_writer(&mut out, &Trailer { end: End { documents: count } })
        .map_err(|e| Error::io(what(), e))?;
    out.write_all(b"\n").context(what())?;
    let file = out.into_inner().map_err(|e| Error::io(what(), e.into_error()))?;
    file.sync_all().context(what())
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
    let header: Header = serde_json::from_str(&line).map_err(|e| {
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
    info.size_bytes = size_bytes;
    Ok((info, reader))
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
    let name = &info.name;
    let mut batch = Vec::with_capacity(RESTORE_BATCH);
    let mut count = 0u64;
    let mut ended = false;
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
    for (number, line) in reader.lines().enumerate() {
        let line = line.context(format!("reading snapshot {name}"))?;
        if ended {
            return Err(Error::Corrupt(format!("snapshot '{name}': data after its end marker")));
        }
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
            ended = true;
            continue;
        }
        let doc: Document = serde_json::from_str(&line).map_err(|e| {
            Error::Corrupt(format!(
                "snapshot '{name}': line {} is not a document ({e})",
                number + 2
            ))
        })?;
        batch.push(doc);
        count += 1;
        if batch.len() == RESTORE_BATCH {
            flush(&mut batch)?;
        }
    }
    if !ended {
        return Err(Error::Corrupt(format!(
            "snapshot '{name}' is truncated: no end marker after {count} of {} documents",
            info.documents
        )));
    }
    if !batch.is_empty() {
        flush(&mut batch)?;
    }
    Ok(())
}

/// Deletes a snapshot file.
pub fn delete(store: &Store, name: &str) -> Result<()> {
    let path = path_of(store, name)?;
    std::fs::remove_file(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound(format!("snapshot '{name}' not found")),
        _ => Error::io(format!("deleting snapshot {}", path.display()), e),
    })
}
