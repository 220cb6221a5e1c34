"""Plain Python views of Sieve's messages: what the wrapper returns and accepts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Union

from sieve.v1 import common_pb2, search_pb2

MetadataValue = Union[str, int, float, bool]


def value_to_proto(value: MetadataValue) -> common_pb2.Value:
    # bool first: True is also an int in Python.
    if isinstance(value, bool):
        return common_pb2.Value(bool_value=value)
    if isinstance(value, int):
        return common_pb2.Value(int_value=value)
    if isinstance(value, float):
        return common_pb2.Value(float_value=value)
    if isinstance(value, str):
        return common_pb2.Value(string_value=value)
    raise TypeError(f"metadata values are str, int, float or bool, not {type(value).__name__}")


def value_from_proto(value: common_pb2.Value) -> Optional[MetadataValue]:
    kind = value.WhichOneof("kind")
    return None if kind is None else getattr(value, kind)


@dataclass
class Document:
    """A document to ingest, or one read back by `Client.get`."""

    id: str
    text: str = ""
    title: str = ""
    metadata: Dict[str, MetadataValue] = field(default_factory=dict)
    # Empty: the collection's embedder (if any) makes the vector.
    vector: List[float] = field(default_factory=list)

    def to_proto(self) -> common_pb2.Document:
        return common_pb2.Document(
            id=self.id,
            title=self.title,
            text=self.text,
            metadata={k: value_to_proto(v) for k, v in self.metadata.items()},
            vector=self.vector,
        )

    @classmethod
    def from_proto(cls, doc: common_pb2.Document) -> "Document":
        return cls(
            id=doc.id,
            text=doc.text,
            title=doc.title,
            metadata={k: value_from_proto(v) for k, v in doc.metadata.items()},
            vector=list(doc.vector),
        )


DocumentLike = Union[Document, common_pb2.Document, Mapping[str, object]]


def document_to_proto(doc: DocumentLike) -> common_pb2.Document:
    """A `Document`, a generated `Document`, or a dict in the BEIR / `sieve ingest` shape
    (`id` or `_id`, `title`, `text`, `metadata`, `vector`)."""
    if isinstance(doc, common_pb2.Document):
        return doc
    if isinstance(doc, Document):
        return doc.to_proto()
    if isinstance(doc, Mapping):
        known = {"id", "_id", "title", "text", "metadata", "vector"}
        unknown = set(doc) - known
        if unknown:
            raise ValueError(f"unknown document fields {sorted(unknown)}; expected {sorted(known)}")
        doc_id = doc.get("id", doc.get("_id"))
        if not isinstance(doc_id, str):
            raise ValueError(f"a document needs a string `id` (or `_id`), got {doc_id!r}")
        return Document(
            id=doc_id,
            text=str(doc.get("text", "")),
            title=str(doc.get("title", "")),
            metadata=dict(doc.get("metadata") or {}),  # type: ignore[arg-type]
            vector=list(doc.get("vector") or []),  # type: ignore[arg-type]
        ).to_proto()
    raise TypeError(f"cannot ingest a {type(doc).__name__} as a document")


@dataclass(frozen=True)
class RetrieverRank:
    """Where one retriever (BM25, dense, or the fused list) placed a hit."""

    rank: int
    score: float


@dataclass(frozen=True)
class StageScore:
    """A hit's place and cross-encoder score at one rerank stage."""

    stage: int
    model: str
    rank: int
    score: float


@dataclass(frozen=True)
class Hit:
    id: str
    # The score of the stage that produced the list this hit is in.
    score: float
    title: str
    text: str
    metadata: Dict[str, Optional[MetadataValue]]
    bm25: Optional[RetrieverRank]
    dense: Optional[RetrieverRank]
    fused: Optional[RetrieverRank]
    stages: List[StageScore]
    # Not kept by the stage whose list this is: it follows the kept hits in first-stage order
    # (`backfill=True`), and `score` is its fused score.
    backfilled: bool = False

    @classmethod
    def from_proto(cls, hit: search_pb2.Hit) -> "Hit":
        def rank(field_name: str) -> Optional[RetrieverRank]:
            if not hit.HasField(field_name):
                return None
            r = getattr(hit, field_name)
            return RetrieverRank(rank=r.rank, score=r.score)

        return cls(
            id=hit.id,
            score=hit.score,
            title=hit.title,
            text=hit.text,
            metadata={k: value_from_proto(v) for k, v in hit.metadata.items()},
            bm25=rank("bm25"),
            dense=rank("dense"),
            fused=rank("fused"),
            stages=[StageScore(s.stage, s.model, s.rank, s.score) for s in hit.stages],
            backfilled=hit.backfilled,
        )


@dataclass(frozen=True)
class Stage:
    """One stage's ranked list: "fused", then "rerank:1", "rerank:2", ..."""

    name: str
    model: str
    hits: List[Hit]

    @classmethod
    def from_proto(cls, stage: search_pb2.StageHits) -> "Stage":
        return cls(stage.stage, stage.model, [Hit.from_proto(h) for h in stage.hits])


@dataclass(frozen=True)
class SearchDone:
    """The closing event of a search: what ran and where the time went."""

    mode: str
    timings_micros: Dict[str, int]
    bm25_candidates: int
    dense_candidates: int
    fused_candidates: int
    returned: int
    raw: search_pb2.Done

    @classmethod
    def from_proto(cls, done: search_pb2.Done) -> "SearchDone":
        return cls(
            mode=search_pb2.Mode.Name(done.mode).removeprefix("MODE_").lower(),
            timings_micros={t.phase: t.micros for t in done.timings},
            bm25_candidates=done.bm25_candidates,
            dense_candidates=done.dense_candidates,
            fused_candidates=done.fused_candidates,
            returned=done.returned,
            raw=done,
        )


@dataclass(frozen=True)
class SearchResult:
    """Every stage's list, in order; `hits` is the last one: the answer."""

    stages: List[Stage]
    done: SearchDone

    @property
    def hits(self) -> List[Hit]:
        return self.stages[-1].hits if self.stages else []

    def ids(self) -> List[str]:
        return [h.id for h in self.hits]


@dataclass(frozen=True)
class RerankResult:
    """One scored text: its position in the request, its score, and the text itself."""

    index: int
    score: float
    text: str


@dataclass
class IngestResult:
    """What an `ingest` call wrote, summed over its acks."""

    accepted: List[str] = field(default_factory=list)
    deleted: List[str] = field(default_factory=list)
    # (id, gRPC status code name, message) for each document the server refused.
    errors: List[tuple] = field(default_factory=list)
    batches: int = 0
    # The collection's durable sequence number after the last batch.
    sequence: int = 0


@dataclass(frozen=True)
class GetResult:
    documents: List[Document]
    missing: List[str]


@dataclass(frozen=True)
class DeleteResult:
    deleted: List[str]
    missing: List[str]
    sequence: int


def stages_arg(rerank: Optional[Sequence[Union[str, tuple]]]) -> List[search_pb2.RerankStage]:
    """Rerank stages as `("model", keep)` pairs, `("model", keep, min_score)` triples, or
    `"model:keep"` / `"model:keep@min_score"` strings (`min_score`: keep only candidates the
    model scores at least this high, a raw logit)."""
    stages = []
    for stage in rerank or []:
        min_score: Optional[float] = None
        if isinstance(stage, str):
            model, sep, keep = stage.rpartition(":")
            keep, at, minimum = keep.partition("@")
            if not sep or not keep.isdigit():
                raise ValueError(f"rerank stage {stage!r} is not `model:keep` or `model:keep@min_score`")
            if at:
                try:
                    min_score = float(minimum)
                except ValueError:
                    raise ValueError(f"rerank stage {stage!r}: min_score is not a number") from None
        elif len(stage) == 3:
            model, keep, min_score = stage
        else:
            model, keep = stage
        proto_stage = search_pb2.RerankStage(model=model, keep=int(keep))
        if min_score is not None:
            proto_stage.min_score = float(min_score)
        stages.append(proto_stage)
    return stages
