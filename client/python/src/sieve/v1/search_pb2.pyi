from sieve.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODE_UNSPECIFIED: _ClassVar[Mode]
    MODE_BM25: _ClassVar[Mode]
    MODE_DENSE: _ClassVar[Mode]
    MODE_HYBRID: _ClassVar[Mode]

class Fusion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FUSION_UNSPECIFIED: _ClassVar[Fusion]
    FUSION_RRF: _ClassVar[Fusion]
    FUSION_LINEAR: _ClassVar[Fusion]
MODE_UNSPECIFIED: Mode
MODE_BM25: Mode
MODE_DENSE: Mode
MODE_HYBRID: Mode
FUSION_UNSPECIFIED: Fusion
FUSION_RRF: Fusion
FUSION_LINEAR: Fusion

class Plan(_message.Message):
    __slots__ = ("mode", "bm25_k", "dense_k", "rrf_k", "bm25_weight", "dense_weight", "fusion", "rerank", "no_rerank", "candidates", "rerank_windows", "backfill", "no_score_cache")
    MODE_FIELD_NUMBER: _ClassVar[int]
    BM25_K_FIELD_NUMBER: _ClassVar[int]
    DENSE_K_FIELD_NUMBER: _ClassVar[int]
    RRF_K_FIELD_NUMBER: _ClassVar[int]
    BM25_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    DENSE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    FUSION_FIELD_NUMBER: _ClassVar[int]
    RERANK_FIELD_NUMBER: _ClassVar[int]
    NO_RERANK_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    RERANK_WINDOWS_FIELD_NUMBER: _ClassVar[int]
    BACKFILL_FIELD_NUMBER: _ClassVar[int]
    NO_SCORE_CACHE_FIELD_NUMBER: _ClassVar[int]
    mode: Mode
    bm25_k: int
    dense_k: int
    rrf_k: int
    bm25_weight: float
    dense_weight: float
    fusion: Fusion
    rerank: _containers.RepeatedCompositeFieldContainer[RerankStage]
    no_rerank: bool
    candidates: int
    rerank_windows: bool
    backfill: bool
    no_score_cache: bool
    def __init__(self, mode: _Optional[_Union[Mode, str]] = ..., bm25_k: _Optional[int] = ..., dense_k: _Optional[int] = ..., rrf_k: _Optional[int] = ..., bm25_weight: _Optional[float] = ..., dense_weight: _Optional[float] = ..., fusion: _Optional[_Union[Fusion, str]] = ..., rerank: _Optional[_Iterable[_Union[RerankStage, _Mapping]]] = ..., no_rerank: bool = ..., candidates: _Optional[int] = ..., rerank_windows: bool = ..., backfill: bool = ..., no_score_cache: bool = ...) -> None: ...

class RerankStage(_message.Message):
    __slots__ = ("model", "keep", "min_score")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KEEP_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    model: str
    keep: int
    min_score: float
    def __init__(self, model: _Optional[str] = ..., keep: _Optional[int] = ..., min_score: _Optional[float] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("collection", "query", "query_vector", "top_k", "filter", "plan", "include_text", "consistency", "consistency_token")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    QUERY_VECTOR_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_TEXT_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    collection: str
    query: str
    query_vector: _containers.RepeatedScalarFieldContainer[float]
    top_k: int
    filter: _common_pb2.Filter
    plan: Plan
    include_text: bool
    consistency: _common_pb2.Consistency
    consistency_token: str
    def __init__(self, collection: _Optional[str] = ..., query: _Optional[str] = ..., query_vector: _Optional[_Iterable[float]] = ..., top_k: _Optional[int] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., include_text: bool = ..., consistency: _Optional[_Union[_common_pb2.Consistency, str]] = ..., consistency_token: _Optional[str] = ...) -> None: ...

class RetrieverHit(_message.Message):
    __slots__ = ("rank", "score")
    RANK_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    rank: int
    score: float
    def __init__(self, rank: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("id", "score", "title", "text", "metadata", "bm25", "dense", "fused", "stages", "backfilled")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Value, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    BM25_FIELD_NUMBER: _ClassVar[int]
    DENSE_FIELD_NUMBER: _ClassVar[int]
    FUSED_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    BACKFILLED_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: float
    title: str
    text: str
    metadata: _containers.MessageMap[str, _common_pb2.Value]
    bm25: RetrieverHit
    dense: RetrieverHit
    fused: RetrieverHit
    stages: _containers.RepeatedCompositeFieldContainer[StageRank]
    backfilled: bool
    def __init__(self, id: _Optional[str] = ..., score: _Optional[float] = ..., title: _Optional[str] = ..., text: _Optional[str] = ..., metadata: _Optional[_Mapping[str, _common_pb2.Value]] = ..., bm25: _Optional[_Union[RetrieverHit, _Mapping]] = ..., dense: _Optional[_Union[RetrieverHit, _Mapping]] = ..., fused: _Optional[_Union[RetrieverHit, _Mapping]] = ..., stages: _Optional[_Iterable[_Union[StageRank, _Mapping]]] = ..., backfilled: bool = ...) -> None: ...

class StageRank(_message.Message):
    __slots__ = ("stage", "model", "rank", "score")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    stage: int
    model: str
    rank: int
    score: float
    def __init__(self, stage: _Optional[int] = ..., model: _Optional[str] = ..., rank: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class StageHits(_message.Message):
    __slots__ = ("stage", "hits", "model")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    stage: str
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    model: str
    def __init__(self, stage: _Optional[str] = ..., hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...

class Timing(_message.Message):
    __slots__ = ("phase", "micros")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    MICROS_FIELD_NUMBER: _ClassVar[int]
    phase: str
    micros: int
    def __init__(self, phase: _Optional[str] = ..., micros: _Optional[int] = ...) -> None: ...

class ModelTiming(_message.Message):
    __slots__ = ("step", "model", "inputs", "kept", "queue_micros", "compute_micros", "cached")
    STEP_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MICROS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MICROS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    step: str
    model: str
    inputs: int
    kept: int
    queue_micros: int
    compute_micros: int
    cached: int
    def __init__(self, step: _Optional[str] = ..., model: _Optional[str] = ..., inputs: _Optional[int] = ..., kept: _Optional[int] = ..., queue_micros: _Optional[int] = ..., compute_micros: _Optional[int] = ..., cached: _Optional[int] = ...) -> None: ...

class Done(_message.Message):
    __slots__ = ("timings", "mode", "bm25_candidates", "dense_candidates", "fused_candidates", "returned", "models")
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    BM25_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    DENSE_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    FUSED_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    RETURNED_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    timings: _containers.RepeatedCompositeFieldContainer[Timing]
    mode: Mode
    bm25_candidates: int
    dense_candidates: int
    fused_candidates: int
    returned: int
    models: _containers.RepeatedCompositeFieldContainer[ModelTiming]
    def __init__(self, timings: _Optional[_Iterable[_Union[Timing, _Mapping]]] = ..., mode: _Optional[_Union[Mode, str]] = ..., bm25_candidates: _Optional[int] = ..., dense_candidates: _Optional[int] = ..., fused_candidates: _Optional[int] = ..., returned: _Optional[int] = ..., models: _Optional[_Iterable[_Union[ModelTiming, _Mapping]]] = ...) -> None: ...

class SearchEvent(_message.Message):
    __slots__ = ("hits", "done")
    HITS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    hits: StageHits
    done: Done
    def __init__(self, hits: _Optional[_Union[StageHits, _Mapping]] = ..., done: _Optional[_Union[Done, _Mapping]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("stages", "done")
    STAGES_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    stages: _containers.RepeatedCompositeFieldContainer[StageHits]
    done: Done
    def __init__(self, stages: _Optional[_Iterable[_Union[StageHits, _Mapping]]] = ..., done: _Optional[_Union[Done, _Mapping]] = ...) -> None: ...

class SearchResult(_message.Message):
    __slots__ = ("index", "response", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    response: SearchResponse
    error: _common_pb2.Error
    def __init__(self, index: _Optional[int] = ..., response: _Optional[_Union[SearchResponse, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.Error, _Mapping]] = ...) -> None: ...
