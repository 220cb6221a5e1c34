from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_message_bytes", "max_batch_documents", "max_text_bytes", "max_id_bytes", "max_metadata_entries", "max_dimension", "max_top_k", "max_candidates", "max_filter_depth", "max_query_bytes", "max_ids_per_request", "max_rerank_texts", "max_rerank_candidates", "max_concurrent_searches", "max_ingest_streams", "request_timeout_secs", "ingest_idle_timeout_secs")
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_TEXT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_ID_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_METADATA_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MAX_DIMENSION_FIELD_NUMBER: _ClassVar[int]
    MAX_TOP_K_FIELD_NUMBER: _ClassVar[int]
    MAX_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MAX_FILTER_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_QUERY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_IDS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_RERANK_TEXTS_FIELD_NUMBER: _ClassVar[int]
    MAX_RERANK_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_SEARCHES_FIELD_NUMBER: _ClassVar[int]
    MAX_INGEST_STREAMS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TIMEOUT_SECS_FIELD_NUMBER: _ClassVar[int]
    INGEST_IDLE_TIMEOUT_SECS_FIELD_NUMBER: _ClassVar[int]
    max_message_bytes: int
    max_batch_documents: int
    max_text_bytes: int
    max_id_bytes: int
    max_metadata_entries: int
    max_dimension: int
    max_top_k: int
    max_candidates: int
    max_filter_depth: int
    max_query_bytes: int
    max_ids_per_request: int
    max_rerank_texts: int
    max_rerank_candidates: int
    max_concurrent_searches: int
    max_ingest_streams: int
    request_timeout_secs: int
    ingest_idle_timeout_secs: int
    def __init__(self, max_message_bytes: _Optional[int] = ..., max_batch_documents: _Optional[int] = ..., max_text_bytes: _Optional[int] = ..., max_id_bytes: _Optional[int] = ..., max_metadata_entries: _Optional[int] = ..., max_dimension: _Optional[int] = ..., max_top_k: _Optional[int] = ..., max_candidates: _Optional[int] = ..., max_filter_depth: _Optional[int] = ..., max_query_bytes: _Optional[int] = ..., max_ids_per_request: _Optional[int] = ..., max_rerank_texts: _Optional[int] = ..., max_rerank_candidates: _Optional[int] = ..., max_concurrent_searches: _Optional[int] = ..., max_ingest_streams: _Optional[int] = ..., request_timeout_secs: _Optional[int] = ..., ingest_idle_timeout_secs: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "architecture", "precision", "max_length", "dimension", "max_batch_tokens", "max_batch_requests", "queue_capacity", "queued", "cancelled", "batches", "inputs", "kernels", "served_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    KERNELS_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    architecture: str
    precision: str
    max_length: int
    dimension: int
    max_batch_tokens: int
    max_batch_requests: int
    queue_capacity: int
    queued: int
    cancelled: int
    batches: int
    inputs: int
    kernels: str
    served_by: str
    def __init__(self, name: _Optional[str] = ..., architecture: _Optional[str] = ..., precision: _Optional[str] = ..., max_length: _Optional[int] = ..., dimension: _Optional[int] = ..., max_batch_tokens: _Optional[int] = ..., max_batch_requests: _Optional[int] = ..., queue_capacity: _Optional[int] = ..., queued: _Optional[int] = ..., cancelled: _Optional[int] = ..., batches: _Optional[int] = ..., inputs: _Optional[int] = ..., kernels: _Optional[str] = ..., served_by: _Optional[str] = ...) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("version", "build", "collections", "limits", "models", "default_cascade", "default_embedder", "api_keys_required", "tls", "role", "cluster")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BUILD_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_CASCADE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    API_KEYS_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    version: str
    build: str
    collections: int
    limits: Limits
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    default_cascade: _containers.RepeatedCompositeFieldContainer[RerankStageInfo]
    default_embedder: str
    api_keys_required: bool
    tls: bool
    role: str
    cluster: ClusterInfo
    def __init__(self, version: _Optional[str] = ..., build: _Optional[str] = ..., collections: _Optional[int] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., default_cascade: _Optional[_Iterable[_Union[RerankStageInfo, _Mapping]]] = ..., default_embedder: _Optional[str] = ..., api_keys_required: bool = ..., tls: bool = ..., role: _Optional[str] = ..., cluster: _Optional[_Union[ClusterInfo, _Mapping]] = ...) -> None: ...

class ClusterInfo(_message.Message):
    __slots__ = ("partitions", "shards", "unserved", "silent", "assignment_epoch")
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    UNSERVED_FIELD_NUMBER: _ClassVar[int]
    SILENT_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_EPOCH_FIELD_NUMBER: _ClassVar[int]
    partitions: int
    shards: _containers.RepeatedCompositeFieldContainer[ShardInfo]
    unserved: _containers.RepeatedScalarFieldContainer[int]
    silent: _containers.RepeatedCompositeFieldContainer[ShardInfo]
    assignment_epoch: int
    def __init__(self, partitions: _Optional[int] = ..., shards: _Optional[_Iterable[_Union[ShardInfo, _Mapping]]] = ..., unserved: _Optional[_Iterable[int]] = ..., silent: _Optional[_Iterable[_Union[ShardInfo, _Mapping]]] = ..., assignment_epoch: _Optional[int] = ...) -> None: ...

class ShardInfo(_message.Message):
    __slots__ = ("name", "partitions", "behind", "not_ready", "address", "assigned")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    BEHIND_FIELD_NUMBER: _ClassVar[int]
    NOT_READY_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    name: str
    partitions: _containers.RepeatedScalarFieldContainer[int]
    behind: int
    not_ready: str
    address: str
    assigned: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., partitions: _Optional[_Iterable[int]] = ..., behind: _Optional[int] = ..., not_ready: _Optional[str] = ..., address: _Optional[str] = ..., assigned: _Optional[_Iterable[int]] = ...) -> None: ...

class RerankStageInfo(_message.Message):
    __slots__ = ("model", "keep")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KEEP_FIELD_NUMBER: _ClassVar[int]
    model: str
    keep: int
    def __init__(self, model: _Optional[str] = ..., keep: _Optional[int] = ...) -> None: ...
