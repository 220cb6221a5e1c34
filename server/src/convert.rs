//! Proto messages to domain types and back. Every inbound field is checked here, against the
//! configured limits, with messages that name the field.

use sieve_planner::{Fusion, Hit, Mode, Plan, Query, StageList, StageSpec, Summary};
use sieve_proto::v1;
use sieve_storage::{
    Analyzer, Collection, CollectionConfig, DenseConfig, Distance, Document, Filter, HnswParams,
    Metadata, Value,
};
use tonic::Status;

use crate::config::Config;

/// A message for a client that sent something wrong.
pub type Invalid = String;

pub fn value(value: v1::Value, field: &str) -> Result<Value, Invalid> {
    use v1::value::Kind;
    match value.kind {
        Some(Kind::StringValue(s)) => Ok(Value::String(s)),
        Some(Kind::IntValue(n)) => Ok(Value::Int(n)),
        Some(Kind::FloatValue(x)) if x.is_finite() => Ok(Value::Float(x)),
        Some(Kind::FloatValue(x)) => Err(format!("{field}: float must be finite, got {x}")),
        Some(Kind::BoolValue(b)) => Ok(Value::Bool(b)),
        None => Err(format!(
            "{field}: no value set (one of string_value, int_value, float_value, bool_value)"
        )),
    }
}

pub fn value_to_proto(value: Value) -> v1::Value {
    match value {
        Value::String(s) => s.into(),
        Value::Int(n) => n.into(),
        Value::Float(x) => x.into(),
        Value::Bool(b) => b.into(),
    }
}

pub fn metadata_to_proto(metadata: Metadata) -> std::collections::HashMap<String, v1::Value> {
    metadata.into_iter().map(|(k, v)| (k, value_to_proto(v))).collect()
}

/// Checks an id sent by a client.
pub fn id(id: &str, field: &str, config: &Config) -> Result<(), Invalid> {
    if id.is_empty() {
        Err(format!("{field}: must not be empty"))
    } else if id.len() > config.max_id_bytes {
        Err(format!(
            "{field}: {} bytes exceeds the limit of {} (max_id_bytes)",
            id.len(),
            config.max_id_bytes
        ))
    } else {
        Ok(())
    }
}

/// One ingested document; the message names fields relative to the document.
pub fn document(doc: v1::Document, config: &Config) -> Result<Document, Invalid> {
    id(&doc.id, "id", config)?;
    if doc.metadata.len() > config.max_metadata_entries {
        return Err(format!(
            "metadata: {} entries exceeds the limit of {} (max_metadata_entries)",
            doc.metadata.len(),
            config.max_metadata_entries
        ));
    }
    let mut text_bytes = doc.title.len() + doc.text.len();
    let mut metadata = Metadata::new();
    for (key, v) in doc.metadata {
        if key.is_empty() || key.len() > 256 {
            return Err(format!("metadata: key of {} bytes (must be 1 to 256)", key.len()));
        }
        let v = value(v, &format!("metadata[{key:?}]"))?;
        if let Value::String(s) = &v {
            text_bytes += s.len();
        }
        metadata.insert(key, v);
    }
    if text_bytes > config.max_text_bytes {
        return Err(format!(
            "text: title, text and metadata strings total {text_bytes} bytes, over the limit of {} (max_text_bytes)",
            config.max_text_bytes
        ));
    }
    let vector = (!doc.vector.is_empty()).then_some(doc.vector);
    Ok(Document { id: doc.id, title: doc.title, text: doc.text, metadata, vector })
}

pub fn document_to_proto(doc: Document, include_vector: bool) -> v1::Document {
    v1::Document {
        id: doc.id,
        title: doc.title,
        text: doc.text,
        metadata: metadata_to_proto(doc.metadata),
        vector: if include_vector { doc.vector.unwrap_or_default() } else { Vec::new() },
    }
}

/// A filter; depth is checked while converting so a hostile nesting cannot exhaust the stack.
pub fn filter(filter: v1::Filter, config: &Config) -> Result<Filter, Invalid> {
    let converted = filter_at(filter, "filter", 1, config.max_filter_depth)?;
    converted.check(config.max_filter_depth)?;
    Ok(converted)
}

fn filter_at(
    filter: v1::Filter,
    path: &str,
    depth: usize,
    max_depth: usize,
) -> Result<Filter, Invalid> {
    use v1::filter::Clause;
    if depth > max_depth {
        return Err(format!(
            "{path}: filter nesting exceeds the limit of {max_depth} levels (max_filter_depth)"
        ));
    }
    match filter.clause {
        None => Err(format!("{path}: no clause set (one of equals, range, any_of, and)")),
        Some(Clause::Equals(eq)) => {
            let v = eq.value.ok_or_else(|| format!("{path}.equals.value: missing"))?;
            Ok(Filter::Equals { value: value(v, &format!("{path}.equals.value"))?, key: eq.key })
        }
        Some(Clause::Range(r)) => Ok(Filter::Range { key: r.key, gte: r.gte, lte: r.lte }),
        Some(Clause::AnyOf(any)) => {
            let values = any
                .values
                .into_iter()
                .enumerate()
                .map(|(i, v)| value(v, &format!("{path}.any_of.values[{i}]")))
                .collect::<Result<_, _>>()?;
            Ok(Filter::AnyOf { key: any.key, values })
        }
        Some(Clause::And(and)) => {
            let clauses = and
                .clauses
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    filter_at(c, &format!("{path}.and.clauses[{i}]"), depth + 1, max_depth)
                })
                .collect::<Result<_, _>>()?;
            Ok(Filter::And(clauses))
        }
    }
}

/// Collection settings as sent, and whether the client asked for keyword-only.
pub fn collection_config(
    config: Option<v1::CollectionConfig>,
) -> Result<(CollectionConfig, bool), Invalid> {
    let config = config.unwrap_or_default();
    if config.keyword_only && config.dense.is_some() {
        return Err(
            "config.keyword_only: conflicts with config.dense; send one or the other".into()
        );
    }
    let analyzer_name = config.keyword.map(|k| k.analyzer).unwrap_or_default();
    let analyzer = Analyzer::from_name(&analyzer_name).ok_or_else(|| {
        format!("config.keyword.analyzer: '{analyzer_name}' is not an analyzer (english, simple)")
    })?;
    let dense = match config.dense {
        None => None,
        Some(dense) => {
            let distance = match v1::Distance::try_from(dense.distance) {
                Ok(v1::Distance::Unspecified | v1::Distance::Cosine) => Distance::Cosine,
                Ok(v1::Distance::Dot) => Distance::Dot,
                Ok(v1::Distance::L2) => Distance::L2,
                Err(_) => {
                    return Err(format!("config.dense.distance: unknown value {}", dense.distance));
                }
            };
            let defaults = HnswParams::default();
            let hnsw = dense.hnsw.unwrap_or_default();
            let or_default =
                |value: u32, default: usize| if value == 0 { default } else { value as usize };
            Some(DenseConfig {
                dimension: dense.dimension as usize,
                distance,
                embedder: (!dense.embedder.is_empty()).then_some(dense.embedder),
                hnsw: HnswParams {
                    m: or_default(hnsw.m, defaults.m),
                    ef_construction: or_default(hnsw.ef_construction, defaults.ef_construction),
                    ef_search: or_default(hnsw.ef_search, defaults.ef_search),
                },
            })
        }
    };
    Ok((CollectionConfig { dense, analyzer }, config.keyword_only))
}

pub fn config_to_proto(config: &CollectionConfig) -> v1::CollectionConfig {
    let dense = config.dense.as_ref().map(|d| v1::DenseConfig {
        dimension: d.dimension as u32,
        distance: match d.distance {
            Distance::Cosine => v1::Distance::Cosine,
            Distance::Dot => v1::Distance::Dot,
            Distance::L2 => v1::Distance::L2,
        } as i32,
        embedder: d.embedder.clone().unwrap_or_default(),
        hnsw: Some(v1::HnswParams {
            m: d.hnsw.m as u32,
            ef_construction: d.hnsw.ef_construction as u32,
            ef_search: d.hnsw.ef_search as u32,
        }),
    });
    v1::CollectionConfig {
        keyword_only: dense.is_none(),
        dense,
        keyword: Some(v1::KeywordConfig { analyzer: config.analyzer.name().to_string() }),
    }
}

pub fn collection_to_proto(collection: &Collection) -> v1::Collection {
    let stats = collection.stats();
    v1::Collection {
        name: collection.name().to_string(),
        config: Some(config_to_proto(collection.config())),
        stats: Some(v1::CollectionStats {
            documents: stats.documents,
            vectors: stats.vectors,
            tombstones: stats.tombstones,
            sequence: stats.sequence,
        }),
        created_unix_ms: collection.created_ms(),
    }
}

/// A cluster's collection: its catalog entry with counts summed over its partitions (a
/// cluster has no single write sequence: `sequence` is 0, tokens take its place).
pub fn cluster_collection_to_proto(
    name: &str,
    entry: &sieve_cluster::CatalogEntry,
    counts: sieve_cluster::Counts,
) -> v1::Collection {
    v1::Collection {
        name: name.to_string(),
        config: Some(config_to_proto(&entry.config)),
        stats: Some(v1::CollectionStats {
            documents: counts.documents,
            vectors: counts.vectors,
            tombstones: counts.tombstones,
            sequence: 0,
        }),
        created_unix_ms: entry.created_ms,
    }
}

/// What a read asked to see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// Whatever the replicas hold (the default).
    Eventual,
    /// At least the writes behind this consistency token.
    After(String),
    /// Every write acknowledged before the read.
    Strong,
}

/// A request's consistency level and token, checked against each other.
pub fn consistency(level: i32, token: String) -> Result<Read, Status> {
    let read = match v1::Consistency::try_from(level) {
        Ok(v1::Consistency::Unspecified | v1::Consistency::Eventual) => Read::Eventual,
        Ok(v1::Consistency::After) if token.is_empty() => {
            return Err(Status::invalid_argument(
                "consistency_token: required with CONSISTENCY_AFTER (an \
                 IngestAck.consistency_token)",
            ));
        }
        Ok(v1::Consistency::After) => return Ok(Read::After(token)),
        Ok(v1::Consistency::Strong) => Read::Strong,
        Err(_) => {
            return Err(Status::invalid_argument(format!("consistency: unknown value {level}")));
        }
    };
    if !token.is_empty() {
        return Err(Status::invalid_argument(
            "consistency_token: only read with CONSISTENCY_AFTER; set consistency to AFTER or \
             leave the token empty",
        ));
    }
    Ok(read)
}

/// A standalone server reads everything acknowledged, so EVENTUAL and STRONG hold as they
/// are; a token only means something to the cluster that issued it.
pub fn standalone_read(read: &Read) -> Result<(), Status> {
    match read {
        Read::Eventual | Read::Strong => Ok(()),
        Read::After(_) => Err(Status::failed_precondition(
            "consistency: CONSISTENCY_AFTER takes a cluster router's token, and this is a \
             standalone server, where every acknowledged write is already visible (use \
             CONSISTENCY_EVENTUAL or STRONG)",
        )),
    }
}

/// The cluster read for a request's consistency.
pub fn cluster_read(
    cluster: &sieve_cluster::Cluster,
    read: Read,
) -> Result<sieve_cluster::ReadAt, Status> {
    Ok(match read {
        Read::Eventual => sieve_cluster::ReadAt::Eventual,
        Read::Strong => sieve_cluster::ReadAt::Strong,
        Read::After(text) => {
            sieve_cluster::ReadAt::After(cluster.token(&text).map_err(crate::status::cluster)?)
        }
    })
}

pub fn snapshot_to_proto(info: sieve_storage::snapshot::SnapshotInfo) -> v1::Snapshot {
    v1::Snapshot {
        config: Some(config_to_proto(&info.config)),
        name: info.name,
        collection: info.collection,
        sequence: info.sequence,
        documents: info.documents,
        size_bytes: info.size_bytes,
        created_unix_ms: info.created_unix_ms,
    }
}

/// A search request: the collection name and the query to run on it.
pub fn search_request(
    request: v1::SearchRequest,
    config: &Config,
) -> Result<(String, Query), Status> {
    let invalid = |msg: String| Err(Status::invalid_argument(msg));
    if request.collection.is_empty() {
        return invalid("collection: must not be empty".into());
    }
    if request.query.len() > config.max_query_bytes {
        return invalid(format!(
            "query: {} bytes exceeds the limit of {} (max_query_bytes)",
            request.query.len(),
            config.max_query_bytes
        ));
    }
    let top_k = match request.top_k as usize {
        0 => None,
        k if k > config.max_top_k => {
            return invalid(format!(
                "top_k: {k} exceeds the limit of {} (max_top_k)",
                config.max_top_k
            ));
        }
        k => Some(k),
    };
    let plan = request.plan.unwrap_or_default();
    let candidates = |value: u32, field: &str| match value as usize {
        0 => Ok(None),
        k if k > config.max_candidates => Err(Status::invalid_argument(format!(
            "plan.{field}: {k} exceeds the limit of {} (max_candidates)",
            config.max_candidates
        ))),
        k => Ok(Some(k)),
    };
    let mode = match v1::Mode::try_from(plan.mode) {
        Ok(v1::Mode::Unspecified) => None,
        Ok(v1::Mode::Bm25) => Some(Mode::Bm25),
        Ok(v1::Mode::Dense) => Some(Mode::Dense),
        Ok(v1::Mode::Hybrid) => Some(Mode::Hybrid),
        Err(_) => return invalid(format!("plan.mode: unknown value {}", plan.mode)),
    };
    let fusion = match v1::Fusion::try_from(plan.fusion) {
        Ok(v1::Fusion::Unspecified | v1::Fusion::Rrf) => Fusion::Rrf,
        Ok(v1::Fusion::Linear) => Fusion::Linear,
        Err(_) => return invalid(format!("plan.fusion: unknown value {}", plan.fusion)),
    };
    if plan.rrf_k.is_some_and(|k| k > 1_000_000) {
        return invalid(format!(
            "plan.rrf_k: {} exceeds the limit of 1000000",
            plan.rrf_k.unwrap_or_default()
        ));
    }
    let rerank_candidates = match plan.candidates as usize {
        0 => None,
        n if n > config.max_rerank_candidates => {
            return invalid(format!(
                "plan.candidates: {n} exceeds the limit of {} (max_rerank_candidates)",
                config.max_rerank_candidates
            ));
        }
        n => Some(n),
    };
    if plan.no_rerank && !plan.rerank.is_empty() {
        return invalid("plan.no_rerank: conflicts with plan.rerank; send one or the other".into());
    }
    let rerank = if plan.no_rerank {
        Some(Vec::new())
    } else if plan.rerank.is_empty() {
        None
    } else {
        let stages = plan
            .rerank
            .iter()
            .enumerate()
            .map(|(i, stage)| {
                if stage.model.is_empty() {
                    return Err(Status::invalid_argument(format!(
                        "plan.rerank[{i}].model: must not be empty"
                    )));
                }
                if let Some(min) = stage.min_score.filter(|m| !m.is_finite()) {
                    return Err(Status::invalid_argument(format!(
                        "plan.rerank[{i}].min_score: must be a finite number (a raw logit), got \
                         {min}"
                    )));
                }
                Ok(StageSpec {
                    model: stage.model.clone(),
                    keep: stage.keep as usize,
                    min_score: stage.min_score,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Some(stages)
    };
    let filter =
        request.filter.map(|f| filter(f, config)).transpose().map_err(Status::invalid_argument)?;
    let query = Query {
        text: request.query,
        vector: (!request.query_vector.is_empty()).then_some(request.query_vector),
        top_k,
        filter,
        plan: Plan {
            mode,
            bm25_k: candidates(plan.bm25_k, "bm25_k")?,
            dense_k: candidates(plan.dense_k, "dense_k")?,
            rrf_k: plan.rrf_k,
            bm25_weight: plan.bm25_weight,
            dense_weight: plan.dense_weight,
            fusion,
            rerank,
            candidates: rerank_candidates,
            rerank_windows: plan.rerank_windows,
            backfill: plan.backfill,
            no_score_cache: plan.no_score_cache,
        },
        omit_text: request.include_text == Some(false),
    };
    Ok((request.collection, query))
}

fn hit_to_proto(hit: Hit) -> v1::Hit {
    let placement = |p: sieve_planner::Placement| v1::RetrieverHit { rank: p.rank, score: p.score };
    v1::Hit {
        id: hit.id.to_string(),
        score: hit.score as f32,
        title: hit.title,
        text: hit.text,
        metadata: metadata_to_proto(hit.metadata),
        bm25: hit.bm25.map(placement),
        dense: hit.dense.map(placement),
        fused: Some(placement(hit.fused)),
        stages: hit
            .stages
            .into_iter()
            .map(|s| v1::StageRank {
                stage: s.stage as u32,
                model: s.model,
                rank: s.rank,
                score: s.score,
            })
            .collect(),
        backfilled: hit.backfilled,
    }
}

fn mode_to_proto(mode: Mode) -> v1::Mode {
    match mode {
        Mode::Bm25 => v1::Mode::Bm25,
        Mode::Dense => v1::Mode::Dense,
        Mode::Hybrid => v1::Mode::Hybrid,
    }
}

fn micros(d: std::time::Duration) -> u64 {
    d.as_micros() as u64
}

/// One stage's list.
pub fn stage_list(list: StageList) -> v1::StageHits {
    v1::StageHits {
        stage: list.name,
        model: list.model.unwrap_or_default(),
        hits: list.hits.into_iter().map(hit_to_proto).collect(),
    }
}

/// The closing summary of a search.
pub fn summary(summary: Summary) -> v1::Done {
    let t = summary.timings;
    let phases = [
        ("embed", t.embed),
        ("bm25", t.bm25),
        ("dense", t.dense),
        ("fusion", t.fusion),
        ("fetch", t.fetch),
        ("rerank", t.rerank),
        ("total", t.total),
    ];
    v1::Done {
        timings: phases
            .into_iter()
            .map(|(phase, d)| v1::Timing { phase: phase.to_string(), micros: micros(d) })
            .collect(),
        mode: mode_to_proto(summary.mode) as i32,
        bm25_candidates: summary.bm25_candidates as u32,
        dense_candidates: summary.dense_candidates as u32,
        fused_candidates: summary.fused_candidates as u32,
        returned: summary.returned as u32,
        models: summary
            .models
            .into_iter()
            .map(|m| v1::ModelTiming {
                step: m.step,
                model: m.model,
                inputs: m.inputs as u32,
                kept: m.kept as u32,
                cached: m.cached as u32,
                queue_micros: micros(m.queue_time),
                compute_micros: micros(m.compute_time),
            })
            .collect(),
    }
}
