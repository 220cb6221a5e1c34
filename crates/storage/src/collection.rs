//! One collection: sled as the source of truth, the BM25 index and the HNSW graph derived from
//! it, and the single writer that keeps all three in step.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::config::{CollectionConfig, DenseConfig, StoreOptions};
use crate::document::{Document, Metadata};
use crate::error::{Context, Error, Result};
use crate::filter::Filter;
use crate::graph::Graph;
use crate::keyword::{Bm25Stats, KeywordIndex, KeywordWriter};
use crate::logged::{self, LogPosition, Logged, OutOfOrder};
use crate::record::{Op, decode_record, encode_record, key_seq, record_pid, seq_key};
use crate::vectors::Vectors;
use crate::{PointId, Score, Seq};

const LAST_SEQ: &[u8] = b"last_seq";
/// BM25 candidates fetched beyond `k`: retired versions and ties at the cut.
const BM25_SPARE: usize = 16;
const NEXT_PID: &[u8] = b"next_pid";

/// A first-stage match: which document, which version, how well it scored.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The caller's document id.
    pub id: Arc<str>,
    /// The matched version.
    pub pid: PointId,
    /// BM25 score, or vector similarity (higher is better).
    pub score: Score,
}

/// Ranked lists order by score, best first, then by external id: never by internal ids or
/// index layout, so a collection split over shards ranks as one.
fn best_first(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id))
}

/// A batch of writes, applied atomically: upserts first, then deletes.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    /// Documents to insert or replace.
    pub upserts: Vec<Document>,
    /// Ids to delete; unknown ids are ignored.
    pub deletes: Vec<String>,
}

/// A document the batch refused, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    /// Position in [`WriteBatch::upserts`].
    pub index: usize,
    /// The document's id as sent.
    pub id: String,
    /// What is wrong, naming the field.
    pub reason: String,
}

/// What a durable batch did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteOutcome {
    /// Ids written, in batch order.
    pub accepted: Vec<String>,
    /// Documents refused; the rest of the batch landed.
    pub rejected: Vec<Rejected>,
    /// Ids deleted (those that existed).
    pub deleted: Vec<String>,
    /// The collection's sequence number after the batch (durable).
    pub sequence: Seq,
}

/// Counts for monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CollectionStats {
    /// Live documents.
    pub documents: u64,
    /// Live documents with a vector.
    pub vectors: u64,
    /// Dead points still in the HNSW graph.
    pub tombstones: u64,
    /// Last durable sequence number.
    pub sequence: Seq,
    /// The sequence the committed BM25 index is current to (behind `sequence` only after an
    /// indexing failure; caught up at the next start).
    pub bm25_sequence: Seq,
    /// The sequence of the HNSW graph's last dump: ops after it are replayed at start
    /// (equal to `sequence` without dense settings).
    pub graph_dump_sequence: Seq,
}

/// Document counts as each store sees them; equal when the indexes are in step with sled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexCounts {
    /// Documents in sled.
    pub sled: u64,
    /// Documents visible in the BM25 index.
    pub bm25: u64,
    /// Live points in the HNSW graph (graph points minus tombstones).
    pub graph_live: u64,
    /// Live documents with a vector, per sled.
    pub sled_vectors: u64,
}

struct Point {
    id: Arc<str>,
    metadata: Metadata,
}

/// Live document versions by point id: the authority on what searches may return.
#[derive(Default)]
struct Points(FxHashMap<PointId, Point>);

impl Points {
    fn visible(&self, pid: PointId, filter: Option<&Filter>) -> bool {
        self.0.get(&pid).is_some_and(|p| filter.is_none_or(|f| f.matches(&p.metadata)))
    }
}

struct Dense {
    config: DenseConfig,
    vectors: RwLock<Vectors>,
    graph: RwLock<Arc<Graph>>,
}

struct Trees {
    docs: sled::Tree,
    oplog: sled::Tree,
    meta: sled::Tree,
}

/// State only the writer touches.
struct Writer {
    /// `None` once the collection is closed or dropped.
    keyword: Option<KeywordWriter>,
    next_pid: PointId,
    last_seq: Seq,
    /// The op the HNSW dump on disk is current to.
    graph_seq: Seq,
    /// Set when writing a batch to sled failed (disk full, read-only, I/O error): sled may hold
    /// that batch in memory while the indexes and the counters above do not, so no further
    /// batch may be written until a restart recovers from what is on disk.
    failed: Option<(std::io::ErrorKind, String)>,
}

/// One op of a batch, encoded for sled.
struct Staged<'a> {
    id: &'a str,
    /// The new record; `None` for a delete.
    record: Option<Vec<u8>>,
    key: [u8; 8],
    op: Vec<u8>,
}

/// A planned op of the batch being written.
enum Planned<'a> {
    Upsert { doc: &'a Document, pid: PointId, replaced: Option<PointId>, vector: Option<Vec<f32>> },
    Delete { id: &'a str, pid: PointId },
}

/// A named set of documents with its BM25 and HNSW indexes.
pub struct Collection {
    name: String,
    config: CollectionConfig,
    created_ms: u64,
    options: StoreOptions,
    db: sled::Db,
    trees: Trees,
    /// The store's log positions (cluster shards), written with the documents they bring.
    positions: sled::Tree,
    dir: PathBuf,
    points: Arc<RwLock<Points>>,
    keyword: KeywordIndex,
    dense: Option<Dense>,
    writer: Mutex<Writer>,
    sequence: AtomicU64,
    /// The op the committed BM25 index is current to.
    bm25_sequence: AtomicU64,
    /// The op the HNSW dump on disk is current to (mirrors `Writer::graph_seq` for readers).
    graph_dump_sequence: AtomicU64,
}

pub(crate) fn tree_prefix(uid: u64) -> String {
    format!("c{uid}/")
}

impl Collection {
    /// Opens (or initialises) a collection: loads live points from sled, then brings each
    /// derived index up to sled's last sequence by op-log replay, or rebuilds it from sled.
    pub(crate) fn open(
        db: &sled::Db,
        uid: u64,
        name: &str,
        config: CollectionConfig,
        created_ms: u64,
        dir: PathBuf,
        options: StoreOptions,
    ) -> Result<Collection> {
        let tree = |suffix: &str| {
            let tree_name = format!("{}{suffix}", tree_prefix(uid));
            db.open_tree(&tree_name).context(format!("opening sled tree {tree_name}"))
        };
        let trees = Trees { docs: tree("docs")?, oplog: tree("oplog")?, meta: tree("meta")? };
        let read_u64 = |key: &[u8]| -> Result<u64> {
            match trees.meta.get(key).context("reading collection meta")? {
                None => Ok(0),
                Some(v) => v.as_ref().try_into().map(u64::from_be_bytes).map_err(|_| {
                    Error::Corrupt(format!(
                        "collection '{name}' meta key {}",
                        String::from_utf8_lossy(key)
                    ))
                }),
            }
        };
        let last_seq = read_u64(LAST_SEQ)?;
        let next_pid = read_u64(NEXT_PID)?;
        // Ops at or below the floor were truncated: an index older than that cannot catch up.
        let floor = match trees.oplog.first().context("reading the op log")? {
            Some((key, _)) => key_seq(&key)? - 1,
            None => last_seq,
        };
        // An index ahead of sled means sled lost acknowledged writes (sled is written and
        // flushed before any index): refuse rather than serve part of the data. An index from
        // before the op log's floor cannot catch up: rebuild it.
        let usable = |what: &str, seq: Seq| -> Result<bool> {
            if seq > last_seq {
                return Err(Error::Corrupt(format!(
                    "collection '{name}': its {what} index is at sequence {seq} but sled is at \
                     {last_seq}, so sled lost acknowledged writes. Refusing to open rather than \
                     serve part of the data; restore the data directory from a backup"
                )));
            }
            let ok = seq >= floor;
            if !ok {
                tracing::warn!(
                    collection = name,
                    what,
                    seq,
                    floor,
                    last_seq,
                    "index older than the op log; rebuilding"
                );
            }
            Ok(ok)
        };

        let bm25_dir = dir.join("bm25");
        let opened = match KeywordIndex::open(&bm25_dir, config.analyzer) {
            Some(opened) if usable("BM25", opened.2)? => Some(opened),
            _ => None,
        };
        let (keyword, mut keyword_writer, keyword_seq) = match opened {
            Some((index, writer, seq)) => (index, writer, Some(seq)),
            None => {
                let (index, writer) = KeywordIndex::create(&bm25_dir, config.analyzer)?;
                (index, writer, None)
            }
        };

        let mut points = Points::default();
        let mut vectors = config.dense.as_ref().map(|d| Vectors::new(d.dimension));
        for entry in trees.docs.iter() {
            let (key, value) = entry.context("scanning documents")?;
            let (pid, doc) = decode_record(&key, &value)?;
            if let (Some(vectors), Some(v), Some(dense)) =
                (vectors.as_mut(), &doc.vector, &config.dense)
            {
                vectors.insert(pid, &dense.distance.prepare(v));
            }
            if keyword_seq.is_none() {
                keyword_writer.upsert(&doc.id, pid, &doc.title, &doc.text)?;
            }
            points.0.insert(pid, Point { id: doc.id.into(), metadata: doc.metadata });
        }
        match keyword_seq {
            None => {
                keyword_writer.commit(last_seq, &keyword)?;
                if last_seq > 0 {
                    tracing::info!(
                        collection = name,
                        documents = points.0.len(),
                        "BM25 index rebuilt from sled"
                    );
                }
            }
            Some(seq) if seq < last_seq => {
                replay_keyword(&trees, &mut keyword_writer, seq)?;
                keyword_writer.commit(last_seq, &keyword)?;
                tracing::info!(
                    collection = name,
                    from = seq,
                    to = last_seq,
                    "BM25 index caught up from the op log"
                );
            }
            Some(_) => {}
        }

        let (dense, graph_seq) = match (config.dense.clone(), vectors) {
            (Some(dense_config), Some(vectors)) => {
                let hnsw_dir = dir.join("hnsw");
                let (distance, dimension) = (dense_config.distance, dense_config.dimension);
                let loaded = match Graph::load(&hnsw_dir, dense_config.hnsw, distance, dimension) {
                    Some(loaded) if usable("HNSW", loaded.1)? => Some(loaded),
                    _ => None,
                };
                let (graph, graph_seq) = match loaded {
                    Some((graph, dump_seq)) => {
                        let replayed = replay_graph(&trees, &graph, &vectors, dump_seq)?;
                        tracing::info!(collection = name, replayed, "HNSW graph loaded");
                        (graph, dump_seq)
                    }
                    None => {
                        let graph = Graph::build(dense_config.hnsw, distance, &vectors);
                        graph.dump(&hnsw_dir, last_seq, distance, dimension)?;
                        if last_seq > 0 {
                            tracing::info!(
                                collection = name,
                                vectors = vectors.len(),
                                "HNSW graph rebuilt from sled"
                            );
                        }
                        (graph, last_seq)
                    }
                };
                let dense = Dense {
                    config: dense_config,
                    vectors: RwLock::new(vectors),
                    graph: RwLock::new(Arc::new(graph)),
                };
                (Some(dense), graph_seq)
            }
            _ => (None, last_seq),
        };

        let collection = Collection {
            name: name.to_string(),
            config,
            created_ms,
            options,
            db: db.clone(),
            trees,
            positions: db.open_tree(logged::TREE).context("opening log positions")?,
            dir,
            points: Arc::new(RwLock::new(points)),
            keyword,
            dense,
            writer: Mutex::new(Writer {
                failed: None,
                keyword: Some(keyword_writer),
                next_pid,
                last_seq,
                graph_seq,
            }),
            sequence: AtomicU64::new(last_seq),
            bm25_sequence: AtomicU64::new(last_seq),
            graph_dump_sequence: AtomicU64::new(graph_seq),
        };
        collection.truncate_oplog(&collection.writer.lock())?;
        Ok(collection)
    }

    /// The collection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its fixed settings.
    pub fn config(&self) -> &CollectionConfig {
        &self.config
    }

    /// Creation time, milliseconds since the Unix epoch.
    pub fn created_ms(&self) -> u64 {
        self.created_ms
    }

    /// Current counts.
    pub fn stats(&self) -> CollectionStats {
        let documents = self.points.read().0.len() as u64;
        let (vectors, tombstones) = match &self.dense {
            Some(dense) => {
                let live = dense.vectors.read().len();
                (live as u64, dense.graph.read().len().saturating_sub(live) as u64)
            }
            None => (0, 0),
        };
        CollectionStats {
            documents,
            vectors,
            tombstones,
            sequence: self.sequence.load(Ordering::Acquire),
            bm25_sequence: self.bm25_sequence.load(Ordering::Acquire),
            graph_dump_sequence: self.graph_dump_sequence.load(Ordering::Acquire),
        }
    }

    /// Document counts per store, for consistency checks.
    pub fn index_counts(&self) -> IndexCounts {
        let _no_writes = self.writer.lock();
        let (graph_live, sled_vectors) = match &self.dense {
            Some(dense) => {
                let vectors = dense.vectors.read();
                let graph = dense.graph.read().clone();
                let live_in_graph = graph.count_accepted(&|pid| vectors.contains(pid as PointId));
                (live_in_graph as u64, vectors.len() as u64)
            }
            None => (0, 0),
        };
        IndexCounts {
            sled: self.trees.docs.len() as u64,
            bm25: self.keyword.num_docs(),
            graph_live,
            sled_vectors,
        }
    }

    /// Checks one document against the collection's settings.
    /// Writes a batch durably (sled flushed), then applies it to both indexes before returning,
    /// so a returned outcome is both durable and visible to searches.
    pub fn write(&self, batch: &WriteBatch) -> Result<WriteOutcome> {
        match self.write_at(batch, None)? {
            Logged::Applied(outcome) => Ok(outcome),
            Logged::Refused(_) => unreachable!("only a logged write is checked for its position"),
        }
    }

    /// Writes a batch that is message `at` of a cluster's log, exactly once: unless `at` is
    /// the next message of its partition, nothing is written and the reason comes back;
    /// otherwise the partition's position moves to `at` in the same sled transaction as the
    /// documents (also when every document is rejected).
    pub fn write_logged(
        &self,
        batch: &WriteBatch,
        at: LogPosition,
    ) -> Result<Logged<WriteOutcome>> {
        self.write_at(batch, Some(at))
    }

    fn write_at(
        &self,
        batch: &WriteBatch,
        at: Option<LogPosition>,
    ) -> Result<Logged<WriteOutcome>> {
        let started = Instant::now();
        let mut w = self.writer.lock();
        if w.keyword.is_none() {
            return Err(Error::CollectionNotFound(self.name.clone()));
        }
        if let Some((kind, why)) = &w.failed {
            return Err(Error::io(
                format!(
                    "collection '{}' takes no writes since a storage failure; everything \
                     acknowledged is on disk, restart the server once the data directory is \
                     writable",
                    self.name
                ),
                std::io::Error::new(*kind, why.clone()),
            ));
        }
        if let Some(at) = at {
            let applied = logged::decode(
                self.positions.get(logged::key(at.partition)).context("reading a log position")?,
            )?;
            if let Err(refused) = logged::check(applied, at) {
                return Ok(Logged::Refused(refused));
            }
        }
        let mut outcome = WriteOutcome::default();
        // Ids touched earlier in this batch, with their version after that op.
        let mut touched: HashMap<&str, Option<PointId>> = HashMap::new();
        let mut planned = Vec::new();
        let mut next_pid = w.next_pid;
        let verdicts = self.config.screen(&batch.upserts);
        for ((index, doc), verdict) in batch.upserts.iter().enumerate().zip(verdicts) {
            if let Some(reason) = verdict {
                outcome.rejected.push(Rejected { index, id: doc.id.clone(), reason });
                continue;
            }
            let replaced = self.current_pid(&touched, &doc.id)?;
            let pid = next_pid;
            next_pid += 1;
            touched.insert(&doc.id, Some(pid));
            let vector = match (&doc.vector, &self.dense) {
                (Some(v), Some(dense)) => Some(dense.config.distance.prepare(v)),
                _ => None,
            };
            planned.push(Planned::Upsert { doc, pid, replaced, vector });
            outcome.accepted.push(doc.id.clone());
        }
        for id in &batch.deletes {
            if let Some(pid) = self.current_pid(&touched, id)? {
                touched.insert(id, None);
                planned.push(Planned::Delete { id, pid });
                outcome.deleted.push(id.clone());
            }
        }
        if planned.is_empty() {
            outcome.sequence = w.last_seq;
            if let Some(at) = at {
                // Checked above under the writer lock; the partition feeds collections one
                // message at a time, so the position cannot have moved since.
                self.positions
                    .insert(logged::key(at.partition), &at.seq.to_be_bytes())
                    .and_then(|_| self.db.flush())
                    .context(format!("recording log position {at:?}"))?;
            }
            return Ok(Logged::Applied(outcome));
        }

        let first_seq = w.last_seq + 1;
        let last_seq = w.last_seq + planned.len() as u64;
        // Encoded outside the transaction, which sled may run more than once.
        let staged: Vec<Staged> = (first_seq..)
            .zip(&planned)
            .map(|(seq, op)| match op {
                Planned::Upsert { doc, pid, .. } => Staged {
                    id: &doc.id,
                    record: Some(encode_record(*pid, doc)),
                    key: seq_key(seq),
                    op: Op::Upsert { id: doc.id.clone(), pid: *pid }.encode(),
                },
                Planned::Delete { id, pid } => Staged {
                    id,
                    record: None,
                    key: seq_key(seq),
                    op: Op::Delete { id: id.to_string(), pid: *pid }.encode(),
                },
            })
            .collect();
        let committed = (&self.trees.docs, &self.trees.oplog, &self.trees.meta, &self.positions)
            .transaction(|(docs, oplog, meta, positions)| {
                if let Some(at) = at {
                    let key = logged::key(at.partition);
                    let applied = logged::decode(positions.get(key)?)
                        .map_err(|e| ConflictableTransactionError::Abort(Err(e)))?;
                    logged::check(applied, at)
                        .map_err(|refused| ConflictableTransactionError::Abort(Ok(refused)))?;
                    positions.insert(&key, &at.seq.to_be_bytes())?;
                }
                for Staged { id, record, key, op } in &staged {
                    match record {
                        Some(record) => docs.insert(id.as_bytes(), record.as_slice())?,
                        None => docs.remove(id.as_bytes())?,
                    };
                    oplog.insert(key, op.as_slice())?;
                }
                meta.insert(LAST_SEQ, &last_seq.to_be_bytes())?;
                meta.insert(NEXT_PID, &next_pid.to_be_bytes())?;
                Ok::<_, ConflictableTransactionError<Result<OutOfOrder>>>(())
            });
        let committed = match committed {
            Ok(()) => self.db.flush().map(|_| ()),
            Err(TransactionError::Storage(e)) => Err(e),
            Err(TransactionError::Abort(Ok(refused))) => return Ok(Logged::Refused(refused)),
            Err(TransactionError::Abort(Err(e))) => return Err(e),
        };
        if let Err(e) = committed {
            let kind = match &e {
                sled::Error::Io(io) => io.kind(),
                _ => std::io::ErrorKind::Other,
            };
            w.failed = Some((kind, e.to_string()));
            tracing::error!(collection = self.name, error = %e, "writing to sled failed; the collection takes no more writes until restart");
            return Err(Error::io(format!("writing a batch to collection '{}'", self.name), e));
        }
        let durable = started.elapsed();
        w.next_pid = next_pid;
        w.last_seq = last_seq;
        self.sequence.store(last_seq, Ordering::Release);

        self.apply(&mut w, &planned, last_seq).map_err(|e| {
            tracing::error!(collection = self.name, error = %e, "batch is durable but indexing failed; it will be replayed on restart");
            e
        })?;
        let indexed = started.elapsed();
        self.maintain(&mut w)?;
        tracing::debug!(
            collection = self.name,
            ops = planned.len(),
            durable_ms = durable.as_secs_f64() * 1e3,
            indexed_ms = indexed.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "batch written"
        );
        outcome.sequence = last_seq;
        Ok(Logged::Applied(outcome))
    }

    /// The live version of `id`, seeing earlier ops of the current batch first.
    fn current_pid(
        &self,
        touched: &HashMap<&str, Option<PointId>>,
        id: &str,
    ) -> Result<Option<PointId>> {
        if let Some(pid) = touched.get(id) {
            return Ok(*pid);
        }
        match self.trees.docs.get(id).context("reading a document")? {
            Some(bytes) => Ok(Some(record_pid(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Applies a durable batch to the BM25 index, the vector table, the graph and the point table.
    fn apply(&self, w: &mut Writer, planned: &[Planned], last_seq: Seq) -> Result<()> {
        let keyword = w.keyword.as_mut().expect("checked open at the start of write");
        for op in planned {
            match op {
                Planned::Upsert { doc, pid, .. } => {
                    keyword.upsert(&doc.id, *pid, &doc.title, &doc.text)?
                }
                Planned::Delete { id, .. } => keyword.delete(id),
            }
        }
        // tantivy analyses the staged documents on its own thread while this one fills the
        // graph. New points in the graph stay invisible until published below.
        if let Some(dense) = &self.dense {
            let items: Vec<(&[f32], usize)> = planned
                .iter()
                .filter_map(|op| match op {
                    Planned::Upsert { pid, vector: Some(v), .. } => {
                        Some((v.as_slice(), *pid as usize))
                    }
                    _ => None,
                })
                .collect();
            dense.graph.read().clone().insert_many(&items);
        }
        keyword.commit(last_seq, &self.keyword)?;
        self.bm25_sequence.store(last_seq, Ordering::Release);
        self.publish(planned);
        Ok(())
    }

    /// Makes the batch's versions the live ones, in the point table and the vector table at
    /// once (lock order: points, then vectors), so no search sees one table ahead of the other.
    fn publish(&self, planned: &[Planned]) {
        let mut points = self.points.write();
        let mut vectors = self.dense.as_ref().map(|dense| dense.vectors.write());
        for op in planned {
            let retired = match op {
                Planned::Upsert { doc, pid, replaced, vector } => {
                    let point =
                        Point { id: doc.id.as_str().into(), metadata: doc.metadata.clone() };
                    points.0.insert(*pid, point);
                    if let (Some(vectors), Some(v)) = (vectors.as_mut(), vector) {
                        vectors.insert(*pid, v);
                    }
                    *replaced
                }
                Planned::Delete { pid, .. } => Some(*pid),
            };
            if let Some(old) = retired {
                points.0.remove(&old);
                if let Some(vectors) = vectors.as_mut() {
                    vectors.remove(old);
                }
            }
        }
    }

    /// After a batch: rebuild a tombstone-heavy graph, dump a stale one, trim the op log.
    fn maintain(&self, w: &mut Writer) -> Result<()> {
        if let Some(dense) = &self.dense {
            let graph_points = dense.graph.read().len();
            let live = dense.vectors.read().len();
            let tombstones = graph_points.saturating_sub(live);
            if tombstones as f64 > self.options.tombstone_ratio * graph_points as f64 {
                let rebuilt =
                    Graph::build(dense.config.hnsw, dense.config.distance, &dense.vectors.read());
                *dense.graph.write() = Arc::new(rebuilt);
                tracing::info!(
                    collection = self.name,
                    tombstones,
                    live,
                    "HNSW graph rebuilt without tombstones"
                );
                self.dump_graph(w)?;
            } else if w.last_seq - w.graph_seq >= self.options.graph_dump_every {
                self.dump_graph(w)?;
            }
        }
        self.truncate_oplog(w)
    }

    fn dump_graph(&self, w: &mut Writer) -> Result<()> {
        let Some(dense) = &self.dense else { return Ok(()) };
        let graph = dense.graph.read().clone();
        graph.dump(
            &self.dir.join("hnsw"),
            w.last_seq,
            dense.config.distance,
            dense.config.dimension,
        )?;
        w.graph_seq = w.last_seq;
        self.graph_dump_sequence.store(w.last_seq, Ordering::Release);
        Ok(())
    }

    /// Drops op-log entries every derived index has durably applied.
    fn truncate_oplog(&self, w: &Writer) -> Result<()> {
        let floor = if self.dense.is_some() { w.graph_seq } else { w.last_seq };
        let mut batch = sled::Batch::default();
        let mut any = false;
        for entry in self.trees.oplog.range(..=seq_key(floor)) {
            let (key, _) = entry.context("reading the op log")?;
            batch.remove(key);
            any = true;
        }
        if any {
            self.trees.oplog.apply_batch(batch).context("trimming the op log")?;
        }
        Ok(())
    }

    /// Segments of the BM25 index a search opens now (see [`Collection::compact_bm25`]).
    pub fn bm25_segments(&self) -> usize {
        self.keyword.segments()
    }

    /// Merges the BM25 index's small segments into one (see `KeywordWriter::merge_small`);
    /// writes to this collection wait meanwhile, searches do not. For a collection no longer
    /// written to, e.g. a cluster partition whose applier is idle. `true` when it merged.
    pub fn compact_bm25(&self) -> Result<bool> {
        let mut w = self.writer.lock();
        match w.keyword.as_mut() {
            Some(keyword) => keyword.merge_small(&self.keyword),
            None => Ok(false),
        }
    }

    /// Dumps what is not yet on disk and releases the index writer; later writes fail.
    pub(crate) fn close(&self) -> Result<()> {
        let mut w = self.writer.lock();
        let Some(keyword) = w.keyword.take() else { return Ok(()) };
        if self.dense.is_some() && w.graph_seq < w.last_seq {
            self.dump_graph(&mut w)?;
        }
        self.truncate_oplog(&w)?;
        keyword.finish()?;
        self.db.flush().context("flushing sled")?;
        Ok(())
    }

    /// Stops writes for good (the collection is being deleted).
    pub(crate) fn retire(&self) {
        if let Some(keyword) = self.writer.lock().keyword.take()
            && let Err(e) = keyword.finish()
        {
            tracing::warn!(collection = self.name, error = %e, "finishing BM25 merges of a deleted collection");
        }
    }

    /// Runs `f` at one consistent point of the collection: with the last durable sequence, the
    /// number of live documents and every live document (in id order). Writes to this
    /// collection wait until `f` returns; searches do not.
    pub fn read_consistent<T>(
        &self,
        f: impl FnOnce(Seq, u64, &mut dyn Iterator<Item = Result<Document>>) -> Result<T>,
    ) -> Result<T> {
        let w = self.writer.lock();
        if w.keyword.is_none() {
            return Err(Error::CollectionNotFound(self.name.clone()));
        }
        let count = self.points.read().0.len() as u64;
        let mut documents = self.trees.docs.iter().map(|item| {
            let (id, bytes) = item.context("reading a document")?;
            Ok(decode_record(&id, &bytes)?.1)
        });
        f(w.last_seq, count, &mut documents)
    }

    /// The stored document with this id.
    pub fn get(&self, id: &str) -> Result<Option<Document>> {
        match self.trees.docs.get(id).context("reading a document")? {
            Some(bytes) => Ok(Some(decode_record(id.as_bytes(), &bytes)?.1)),
            None => Ok(None),
        }
    }

    /// Top `k` BM25 matches that pass the filter, best first, ties by id.
    pub fn search_bm25(
        &self,
        query: &str,
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<Candidate>> {
        self.bm25(query, k, filter, None)
    }

    /// This collection's BM25 statistics for `query`; a cluster sums them over its shards.
    pub fn bm25_stats(&self, query: &str) -> Result<Bm25Stats> {
        self.keyword.stats(query)
    }

    /// Like [`Collection::search_bm25`], scored with the given statistics instead of the
    /// collection's own: with statistics summed over a cluster's shards, each shard's scores
    /// equal those one collection holding every document would give.
    pub fn search_bm25_with_stats(
        &self,
        query: &str,
        k: usize,
        filter: Option<&Filter>,
        stats: &Bm25Stats,
    ) -> Result<Vec<Candidate>> {
        self.bm25(query, k, filter, Some(stats))
    }

    fn bm25(
        &self,
        query: &str,
        k: usize,
        filter: Option<&Filter>,
        stats: Option<&Bm25Stats>,
    ) -> Result<Vec<Candidate>> {
        // Spare candidates cover points retired since the index's last commit, and ties at
        // the k-th score, which are ordered by id below rather than by tantivy's doc order.
        let fetch = k + BM25_SPARE;
        let ranked = |found: Vec<(PointId, Score)>| {
            let points = self.points.read();
            let mut live: Vec<Candidate> = found
                .into_iter()
                .filter_map(|(pid, score)| {
                    points.0.get(&pid).map(|p| Candidate { id: Arc::clone(&p.id), pid, score })
                })
                .collect();
            live.sort_by(best_first);
            live
        };
        if filter.is_none() {
            // The index holds only committed live versions; the filtered path below is the
            // fallback when too many of them were retired since.
            let found = self.keyword.search(query, fetch, None, stats)?;
            let fetched = found.len();
            let mut live = ranked(found);
            if live.len() >= k || fetched < fetch {
                live.truncate(k);
                return Ok(live);
            }
        }
        let points = Arc::clone(&self.points);
        let owned_filter = filter.cloned();
        let accept = move |pid: PointId| points.read().visible(pid, owned_filter.as_ref());
        let mut live = ranked(self.keyword.search(query, fetch, Some(Arc::new(accept)), stats)?);
        live.truncate(k);
        Ok(live)
    }

    /// Top `k` vectors by similarity to `vector` that pass the filter, best first. Exact below
    /// the store's threshold or when the filtered graph walk finds fewer than `k`.
    pub fn search_dense(
        &self,
        vector: &[f32],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<Candidate>> {
        let Some(dense) = &self.dense else {
            return Err(Error::InvalidArgument(format!(
                "query_vector: collection '{}' has no dense settings",
                self.name
            )));
        };
        let distance = dense.config.distance;
        distance
            .check(vector, dense.config.dimension)
            .map_err(|why| Error::InvalidArgument(format!("query_vector: {why}")))?;
        let query = distance.prepare(vector);
        let points = self.points.read();
        let vectors = dense.vectors.read();
        let accept = |pid: PointId| points.visible(pid, filter);
        let id_of = |pid: PointId| points.0.get(&pid).map(|p| Arc::clone(&p.id));
        let exact = || match filter {
            // The vector table holds exactly the live versions (see `publish`), so an
            // unfiltered scan needs no per-point lookup.
            None => vectors.exact_top_k(&query, k, distance, |_| true, id_of),
            Some(_) => vectors.exact_top_k(&query, k, distance, accept, id_of),
        };
        let threshold = self.options.exact_search_threshold as f64;
        let live = vectors.len();
        let passing_share = match filter {
            None => 1.0,
            Some(_) => sample_share(&vectors, &accept),
        };
        let found = if k == 0 || passing_share * live as f64 <= threshold {
            // Few candidates pass: scanning them exactly is cheaper than walking the graph,
            // and a selective filter still yields every match.
            exact()
        } else {
            let graph = dense.graph.read().clone();
            let ef = dense.config.hnsw.ef_search;
            // Over-fetch for tombstones and filtered-out points; grow until k pass, and
            // scan exactly once the graph walk would cover a large part of the collection.
            let live_share = live as f64 / graph.len().max(1) as f64;
            let mut fetch = ((k as f64 / (passing_share * live_share)) * 1.2).ceil() as usize + 8;
            loop {
                let passing: Vec<(PointId, Score)> = graph
                    .search(&query, fetch, ef)
                    .into_iter()
                    .filter(|&pid| accept(pid))
                    .filter_map(|pid| {
                        vectors.get(pid).map(|v| (pid, distance.similarity(&query, v)))
                    })
                    .take(k)
                    .collect();
                if passing.len() >= k.min(live) {
                    break passing;
                }
                fetch *= 4;
                if fetch >= graph.len() / 4 {
                    break exact();
                }
            }
        };
        let mut found: Vec<Candidate> = found
            .into_iter()
            .filter_map(|(pid, score)| {
                points.0.get(&pid).map(|p| Candidate { id: Arc::clone(&p.id), pid, score })
            })
            .collect();
        found.sort_by(best_first);
        Ok(found)
    }
}

/// Re-applies op-log entries after `after` to the BM25 index. Each upsert indexes the version
/// sled holds now, or only removes the id when a later op replaced or deleted it.
fn replay_keyword(trees: &Trees, writer: &mut KeywordWriter, after: Seq) -> Result<()> {
    for (_, op) in read_ops(&trees.oplog, after)? {
        match op {
            Op::Upsert { id, pid } => match trees.docs.get(&id).context("reading a document")? {
                Some(bytes) if record_pid(&bytes)? == pid => {
                    let (_, doc) = decode_record(id.as_bytes(), &bytes)?;
                    writer.upsert(&id, pid, &doc.title, &doc.text)?;
                }
                _ => writer.delete(&id),
            },
            Op::Delete { id, .. } => writer.delete(&id),
        }
    }
    Ok(())
}

/// Inserts into a graph loaded from a dump at `after` the versions upserted since that are
/// still live; returns how many.
fn replay_graph(trees: &Trees, graph: &Graph, vectors: &Vectors, after: Seq) -> Result<usize> {
    let mut missing = Vec::new();
    for (_, op) in read_ops(&trees.oplog, after)? {
        if let Op::Upsert { pid, .. } = op
            && let Some(v) = vectors.get(pid)
        {
            missing.push((v, pid as usize));
        }
    }
    graph.insert_many(&missing);
    Ok(missing.len())
}

/// The share of live vectors that `accept` lets through, estimated on up to 1,024 of them
/// spread evenly over the table.
fn sample_share(vectors: &Vectors, accept: &dyn Fn(PointId) -> bool) -> f64 {
    let step = (vectors.len() / 1024).max(1);
    let (mut seen, mut passed) = (0usize, 0usize);
    for (pid, _) in vectors.iter().step_by(step) {
        seen += 1;
        passed += usize::from(accept(pid));
    }
    if seen == 0 { 0.0 } else { passed as f64 / seen as f64 }
}

/// Op-log entries after `after`, in order.
fn read_ops(oplog: &sled::Tree, after: Seq) -> Result<Vec<(Seq, Op)>> {
    oplog
        .range(seq_key(after + 1)..)
        .map(|entry| {
            let (key, value) = entry.context("reading the op log")?;
            let seq = key_seq(&key)?;
            Ok((seq, Op::decode(seq, &value)?))
        })
        .collect()
}
