//! JSON views of API messages for `--json` output.

use crate::proto;
use serde_json::{Value as Json, json};

pub fn value(value: &proto::Value) -> Json {
    use proto::value::Kind;
    match &value.kind {
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::IntValue(n)) => json!(n),
        Some(Kind::FloatValue(x)) => json!(x),
        Some(Kind::BoolValue(b)) => json!(b),
        None => Json::Null,
    }
}

fn metadata(metadata: &std::collections::HashMap<String, proto::Value>) -> Json {
    let sorted: std::collections::BTreeMap<&String, Json> =
        metadata.iter().map(|(k, v)| (k, value(v))).collect();
    json!(sorted)
}

pub fn document(doc: &proto::Document) -> Json {
    let mut out = json!({"id": doc.id, "title": doc.title, "text": doc.text, "metadata": metadata(&doc.metadata)});
    if !doc.vector.is_empty() {
        out["vector"] = json!(doc.vector);
    }
    out
}

pub fn collection(c: &proto::Collection) -> Json {
    let config = c.config.clone().unwrap_or_default();
    let stats = c.stats.unwrap_or_default();
    let dense = config.dense.map(|d| {
        let hnsw = d.hnsw.unwrap_or_default();
        json!({
            "dimension": d.dimension,
            "distance": proto::Distance::try_from(d.distance).map(|d| d.as_str_name()).unwrap_or("?"),
            "embedder": d.embedder,
            "hnsw": {"m": hnsw.m, "ef_construction": hnsw.ef_construction, "ef_search": hnsw.ef_search},
        })
    });
    json!({
        "name": c.name,
        "dense": dense,
        "analyzer": config.keyword.map(|k| k.analyzer).unwrap_or_default(),
        "documents": stats.documents,
        "vectors": stats.vectors,
        "tombstones": stats.tombstones,
        "sequence": stats.sequence,
        "created_unix_ms": c.created_unix_ms,
    })
}

pub fn snapshot(s: &proto::Snapshot) -> Json {
    json!({
        "name": s.name,
        "collection": s.collection,
        "sequence": s.sequence,
        "documents": s.documents,
        "size_bytes": s.size_bytes,
        "created_unix_ms": s.created_unix_ms,
    })
}

pub fn partition_snapshot(s: &proto::PartitionSnapshot) -> Json {
    json!({
        "partition": s.partition,
        "shard": s.shard,
        "stream_seq": s.stream_seq,
        "collections": s.collections,
        "documents": s.documents,
        "size_bytes": s.size_bytes,
        "purged": s.purged,
    })
}

pub fn info(info: &proto::GetInfoResponse) -> Json {
    let l = info.limits.unwrap_or_default();
    json!({
        "version": info.version,
        "build": info.build,
        "collections": info.collections,
        "limits": {
            "max_message_bytes": l.max_message_bytes,
            "max_batch_documents": l.max_batch_documents,
            "max_text_bytes": l.max_text_bytes,
            "max_id_bytes": l.max_id_bytes,
            "max_metadata_entries": l.max_metadata_entries,
            "max_dimension": l.max_dimension,
            "max_top_k": l.max_top_k,
            "max_candidates": l.max_candidates,
            "max_filter_depth": l.max_filter_depth,
            "max_query_bytes": l.max_query_bytes,
            "max_ids_per_request": l.max_ids_per_request,
            "max_rerank_texts": l.max_rerank_texts,
            "max_rerank_candidates": l.max_rerank_candidates,
            "max_concurrent_searches": l.max_concurrent_searches,
            "max_ingest_streams": l.max_ingest_streams,
            "request_timeout_secs": l.request_timeout_secs,
            "ingest_idle_timeout_secs": l.ingest_idle_timeout_secs,
        },
        "api_keys_required": info.api_keys_required,
        "tls": info.tls,
        "role": info.role,
        "cluster": info.cluster.as_ref().map(|c| json!({
            "partitions": c.partitions,
            "assignment_epoch": c.assignment_epoch,
            "shards": c.shards.iter().map(|s| json!({"name": s.name, "partitions": s.partitions, "assigned": s.assigned, "behind": s.behind, "not_ready": s.not_ready, "address": s.address})).collect::<Vec<_>>(),
            "unserved": c.unserved,
            "silent": c.silent.iter().map(|s| json!({"name": s.name, "partitions": s.partitions, "assigned": s.assigned, "not_ready": s.not_ready, "address": s.address})).collect::<Vec<_>>(),
        })),
        "models": info.models.iter().map(|m| json!({
            "name": m.name, "architecture": m.architecture, "precision": m.precision, "kernels": m.kernels,
            "max_length": m.max_length, "dimension": m.dimension, "max_batch_tokens": m.max_batch_tokens,
            "max_batch_requests": m.max_batch_requests, "queue_capacity": m.queue_capacity,
            "queued": m.queued, "cancelled": m.cancelled, "batches": m.batches, "inputs": m.inputs, "served_by": m.served_by,
        })).collect::<Vec<_>>(),
        "default_cascade": info.default_cascade.iter().map(|s| json!({"model": s.model, "keep": s.keep})).collect::<Vec<_>>(),
        "default_embedder": info.default_embedder,
    })
}

fn placement(p: &Option<proto::RetrieverHit>) -> Json {
    p.map_or(Json::Null, |p| json!({"rank": p.rank, "score": p.score}))
}

pub fn search(response: &proto::SearchResponse) -> Json {
    let stages: Vec<Json> = response
        .stages
        .iter()
        .map(|stage| {
            let hits: Vec<Json> = stage
                .hits
                .iter()
                .map(|h| {
                    json!({
                        "id": h.id, "score": h.score, "title": h.title, "text": h.text,
                        "metadata": metadata(&h.metadata), "bm25": placement(&h.bm25), "dense": placement(&h.dense),
                        "fused": placement(&h.fused),
                        "stages": h.stages.iter().map(|s| json!({"stage": s.stage, "model": s.model, "rank": s.rank, "score": s.score})).collect::<Vec<_>>(),
                        "backfilled": h.backfilled,
                    })
                })
                .collect();
            json!({"stage": stage.stage, "model": stage.model, "hits": hits})
        })
        .collect();
    let done = response.done.clone().unwrap_or_default();
    let timings: serde_json::Map<String, Json> =
        done.timings.iter().map(|t| (t.phase.clone(), json!(t.micros))).collect();
    json!({
        "stages": stages,
        "done": {
            "mode": proto::Mode::try_from(done.mode).map(|m| m.as_str_name()).unwrap_or("?"),
            "bm25_candidates": done.bm25_candidates,
            "dense_candidates": done.dense_candidates,
            "fused_candidates": done.fused_candidates,
            "returned": done.returned,
            "timings_micros": timings,
            "models": done.models.iter().map(|m| json!({
                "step": m.step, "model": m.model, "inputs": m.inputs, "kept": m.kept,
                "queue_micros": m.queue_micros, "compute_micros": m.compute_micros,
            })).collect::<Vec<_>>(),
        },
    })
}
