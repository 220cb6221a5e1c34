from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Distance(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DISTANCE_UNSPECIFIED: _ClassVar[Distance]
    DISTANCE_COSINE: _ClassVar[Distance]
    DISTANCE_DOT: _ClassVar[Distance]
    DISTANCE_L2: _ClassVar[Distance]
DISTANCE_UNSPECIFIED: Distance
DISTANCE_COSINE: Distance
DISTANCE_DOT: Distance
DISTANCE_L2: Distance

class HnswParams(_message.Message):
    __slots__ = ("m", "ef_construction", "ef_search")
    M_FIELD_NUMBER: _ClassVar[int]
    EF_CONSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    EF_SEARCH_FIELD_NUMBER: _ClassVar[int]
    m: int
    ef_construction: int
    ef_search: int
    def __init__(self, m: _Optional[int] = ..., ef_construction: _Optional[int] = ..., ef_search: _Optional[int] = ...) -> None: ...

class DenseConfig(_message.Message):
    __slots__ = ("dimension", "distance", "embedder", "hnsw")
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    HNSW_FIELD_NUMBER: _ClassVar[int]
    dimension: int
    distance: Distance
    embedder: str
    hnsw: HnswParams
    def __init__(self, dimension: _Optional[int] = ..., distance: _Optional[_Union[Distance, str]] = ..., embedder: _Optional[str] = ..., hnsw: _Optional[_Union[HnswParams, _Mapping]] = ...) -> None: ...

class KeywordConfig(_message.Message):
    __slots__ = ("analyzer",)
    ANALYZER_FIELD_NUMBER: _ClassVar[int]
    analyzer: str
    def __init__(self, analyzer: _Optional[str] = ...) -> None: ...

class CollectionConfig(_message.Message):
    __slots__ = ("dense", "keyword", "keyword_only")
    DENSE_FIELD_NUMBER: _ClassVar[int]
    KEYWORD_FIELD_NUMBER: _ClassVar[int]
    KEYWORD_ONLY_FIELD_NUMBER: _ClassVar[int]
    dense: DenseConfig
    keyword: KeywordConfig
    keyword_only: bool
    def __init__(self, dense: _Optional[_Union[DenseConfig, _Mapping]] = ..., keyword: _Optional[_Union[KeywordConfig, _Mapping]] = ..., keyword_only: bool = ...) -> None: ...

class CollectionStats(_message.Message):
    __slots__ = ("documents", "vectors", "tombstones", "sequence")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONES_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    documents: int
    vectors: int
    tombstones: int
    sequence: int
    def __init__(self, documents: _Optional[int] = ..., vectors: _Optional[int] = ..., tombstones: _Optional[int] = ..., sequence: _Optional[int] = ...) -> None: ...

class Collection(_message.Message):
    __slots__ = ("name", "config", "stats", "created_unix_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    config: CollectionConfig
    stats: CollectionStats
    created_unix_ms: int
    def __init__(self, name: _Optional[str] = ..., config: _Optional[_Union[CollectionConfig, _Mapping]] = ..., stats: _Optional[_Union[CollectionStats, _Mapping]] = ..., created_unix_ms: _Optional[int] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("name", "config")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    name: str
    config: CollectionConfig
    def __init__(self, name: _Optional[str] = ..., config: _Optional[_Union[CollectionConfig, _Mapping]] = ...) -> None: ...

class GetCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections",)
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[Collection]
    def __init__(self, collections: _Optional[_Iterable[_Union[Collection, _Mapping]]] = ...) -> None: ...

class DeleteCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteCollectionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
