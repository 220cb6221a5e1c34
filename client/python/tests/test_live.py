"""The Python SDK against the live server: create → ingest → search (with a cascade) → delete,
filters, stage events, rerank, backpressure, and errors as `SieveError` with the gRPC status."""

import json
import random

import grpc
import pytest

import sieve
from sieve import filters as f
from conftest import ADMIN_KEY, CROSS_ENCODER, DEMO_CORPUS, READ_KEY

QUESTION = "How do honeybees tell each other where the food is?"


def demo_documents():
    return [json.loads(line) for line in DEMO_CORPUS.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def demo(server):
    """The 42-passage demo corpus in a collection embedded by the server."""
    with sieve.Client(server, api_key=ADMIN_KEY, timeout=120) as client:
        created = client.create_collection("py-demo")
        assert created.name == "py-demo"
        assert created.config.dense.dimension == 384
        result = client.ingest("py-demo", demo_documents(), batch_size=10)
        assert result.errors == []
        assert result.accepted == [d["_id"] for d in demo_documents()]
        assert result.sequence == 42
        assert result.batches >= 3
        yield "py-demo"


def test_hybrid_search_with_a_cascade_then_delete(admin, demo):
    result = admin.search(demo, QUESTION, top_k=3, candidates=10, rerank=[(CROSS_ENCODER, 3)])
    assert [s.name for s in result.stages] == ["fused", "rerank:1"]
    assert result.stages[1].model == CROSS_ENCODER
    assert len(result.stages[0].hits) == 10
    assert len(result.hits) == 3
    top = result.hits[0]
    assert top.id == "bees-dance"
    assert top.title == "How honeybees share directions"
    assert top.metadata == {"topic": "biology", "year": 1967}
    assert top.stages[0].model == CROSS_ENCODER and top.stages[0].rank == 1
    assert top.score == top.stages[0].score
    assert top.fused is not None and top.bm25 is not None and top.dense is not None
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)
    assert result.done.mode == "hybrid"
    assert result.done.returned == 3
    assert {"bm25", "dense", "fusion", "rerank", "total"} <= set(result.done.timings_micros)

    deleted = admin.delete(demo, ["bees-dance", "no-such-id"])
    assert deleted.deleted == ["bees-dance"]
    assert deleted.missing == ["no-such-id"]
    assert deleted.sequence == 43
    after = admin.search(demo, QUESTION, top_k=10, no_rerank=True)
    assert "bees-dance" not in after.ids()
    got = admin.get(demo, ["bees-dance", "bees-color"])
    assert [d.id for d in got.documents] == ["bees-color"]
    assert got.missing == ["bees-dance"]
    admin.ingest(demo, [d for d in demo_documents() if d["_id"] == "bees-dance"])
    assert admin.get(demo, ["bees-dance"]).documents[0].metadata["year"] == 1967


def test_filters_apply_inside_both_retrievers(admin, demo):
    result = admin.search(demo, "rivers and floods", top_k=20, no_rerank=True,
                          filter=f.all_of(f.range("year", gte=1900), f.any_of("topic", ["geography", "history"])))
    assert result.hits, "the demo corpus has post-1900 geography and history passages"
    for hit in result.hits:
        assert hit.metadata["year"] >= 1900
        assert hit.metadata["topic"] in ("geography", "history")
    only = admin.search(demo, QUESTION, top_k=5, no_rerank=True, mode="bm25", filter=f.eq("topic", "biology"))
    assert only.done.mode == "bm25"
    assert {h.metadata["topic"] for h in only.hits} == {"biology"}


def test_search_stages_arrive_in_order(admin, demo):
    events = list(admin.search_stages(demo, QUESTION, top_k=2, candidates=5, rerank=[f"{CROSS_ENCODER}:2"]))
    assert [type(e).__name__ for e in events] == ["Stage", "Stage", "SearchDone"]
    assert [events[0].name, events[1].name] == ["fused", "rerank:1"]
    assert len(events[0].hits) == 5 and len(events[1].hits) == 2
    assert events[2].returned == 2


def test_a_cascade_keeping_few_backfills_in_fused_order(admin, demo):
    result = admin.search(demo, QUESTION, top_k=6, candidates=8, rerank=[(CROSS_ENCODER, 2)], backfill=True)
    fused, last = result.stages[0].hits, result.hits
    assert len(last) == 6
    kept = [h.id for h in last[:2]]
    assert not any(h.backfilled for h in last[:2]) and all(h.backfilled for h in last[2:])
    rest = [(h.id, h.score) for h in fused if h.id not in kept][:4]
    assert [(h.id, h.score) for h in last[2:]] == rest
    assert all(h.stages == [] for h in last[2:])


def test_a_stage_threshold_drops_low_scores_even_from_the_backfill(admin, demo):
    plain = admin.search(demo, QUESTION, top_k=8, candidates=8, rerank=[(CROSS_ENCODER, 8)])
    scores = [h.score for h in plain.hits]
    cut = scores[2]  # the third best logit: exactly three reach it
    result = admin.search(demo, QUESTION, top_k=8, candidates=8, rerank=[(CROSS_ENCODER, 8, cut)], backfill=True)
    assert [h.id for h in result.hits] == [h.id for h in plain.hits[:3]]
    assert not any(h.backfilled for h in result.hits)
    same = admin.search(demo, QUESTION, top_k=8, candidates=8, rerank=[f"{CROSS_ENCODER}:8@{cut!r}"])
    assert [h.id for h in same.hits] == [h.id for h in plain.hits[:3]]
    with pytest.raises(sieve.SieveError) as refused:
        admin.search(demo, QUESTION, candidates=8, rerank=[(CROSS_ENCODER, 2, float("nan"))])
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "plan.rerank[0].min_score: must be a finite number (a raw logit), got NaN" in str(refused.value)


def test_rerank_scores_texts_best_first(admin):
    texts = ["Glaciers carve valleys.", "Vitamin D deficiency weakens bone.", "Bees dance."]
    results = admin.rerank("vitamin D and bones", texts, model=CROSS_ENCODER)
    assert [r.index for r in results][0] == 1
    assert results[0].text == "Vitamin D deficiency weakens bone."
    assert sorted(r.index for r in results) == [0, 1, 2]
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert len(admin.rerank("vitamin D and bones", texts, model=CROSS_ENCODER, top_n=1)) == 1


def test_ingest_follows_the_servers_batch_size_advice(admin):
    admin.create_collection("py-vectors", dimension=8, distance="cosine")
    rng = random.Random(7)
    docs = [sieve.Document(id=f"v{i}", text=f"vector document {i}", vector=[rng.uniform(-1, 1) for _ in range(8)])
            for i in range(3000)]
    docs.insert(5, {"id": "bad", "text": "wrong dimension", "vector": [1.0, 2.0]})
    acks = list(admin.ingest_stream("py-vectors", docs, batch_size=50, delete_ids=["v0", "v1"]))
    sizes = [len(a.accepted) + len(a.errors) for a in acks]
    advice = [a.next_batch_size for a in acks]
    # Batches are pipelined (up to 2 in flight), so a batch takes the latest advice its sender
    # had seen: the first size, or what an earlier ack said. The last document batch may be short.
    assert sizes[0] == 50
    for i in range(1, len(sizes) - 2):
        assert sizes[i] in [50] + advice[:i], f"batch sizes {sizes}, advice {advice}"
    assert max(sizes) >= 400, f"the advice to grow was followed: {sizes}"
    assert sum(sizes) == 3001
    assert acks[0].errors[0].id == "bad"
    assert grpc.StatusCode.INVALID_ARGUMENT.value[0] == acks[0].errors[0].error.code
    assert "dimension" in acks[0].errors[0].error.message
    assert list(acks[-1].deleted) == ["v0", "v1"]
    stats = admin.get_collection("py-vectors").stats
    assert (stats.documents, stats.vectors) == (2998, 2998)
    hits = admin.search("py-vectors", vector=docs[10].vector, mode="dense", top_k=1).hits
    assert hits[0].id == docs[10].id


def test_errors_carry_the_grpc_status(server, admin, demo):
    with pytest.raises(sieve.SieveError) as missing:
        admin.search("no-such-collection", "anything")
    assert missing.value.code == grpc.StatusCode.NOT_FOUND
    assert "no-such-collection" in missing.value.message

    with pytest.raises(sieve.SieveError) as bad:
        admin.search(demo, QUESTION, top_k=1_000_000)
    assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert bad.value.message == "top_k: 1000000 exceeds the limit of 1000 (max_top_k)"

    with sieve.Client(server, api_key=READ_KEY) as reader:
        assert reader.search(demo, QUESTION, top_k=1, no_rerank=True).ids()
        with pytest.raises(sieve.SieveError) as denied:
            reader.delete(demo, ["bees-color"])
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
    with sieve.Client(server) as anonymous:
        with pytest.raises(sieve.SieveError) as unauthenticated:
            anonymous.list_collections()
        assert unauthenticated.value.code == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(sieve.SieveError) as exists:
        admin.create_collection(demo)
    assert exists.value.code == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(ValueError, match="model:keep"):
        admin.search(demo, QUESTION, rerank=["no-keep"])


def test_partition_snapshots_are_for_a_cluster_router(admin):
    with pytest.raises(sieve.SieveError) as refused:
        admin.snapshot_partitions([0], purge=True)
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "SnapshotPartitions is for a cluster router" in str(refused.value)


def test_partition_assignment_is_for_a_cluster_router(admin):
    with pytest.raises(sieve.SieveError) as refused:
        admin.assign_partition(0, add="shard-4", remove="shard-1")
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "AssignPartition is for a cluster router" in str(refused.value)


def test_a_snapshot_round_trips(admin, demo):
    snapshot = admin.create_snapshot(demo)
    assert snapshot.collection == demo and snapshot.documents == 42
    assert snapshot.name in [s.name for s in admin.list_snapshots(demo)]
    restored = admin.restore_snapshot(snapshot.name, "py-restored")
    assert restored.stats.documents == 42
    ids = [d["_id"] for d in demo_documents()]
    assert admin.get("py-restored", ids, include_vectors=True) == admin.get(demo, ids, include_vectors=True)
    assert admin.search("py-restored", QUESTION, top_k=1, no_rerank=True).ids() == ["bees-dance"]
    admin.delete_snapshot(snapshot.name)
    with pytest.raises(sieve.SieveError) as gone:
        admin.delete_snapshot(snapshot.name)
    assert gone.value.code == grpc.StatusCode.NOT_FOUND
