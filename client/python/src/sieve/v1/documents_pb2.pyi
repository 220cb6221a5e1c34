from sieve.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AckLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACK_LEVEL_UNSPECIFIED: _ClassVar[AckLevel]
    ACK_LEVEL_VISIBLE: _ClassVar[AckLevel]
    ACK_LEVEL_DURABLE: _ClassVar[AckLevel]
ACK_LEVEL_UNSPECIFIED: AckLevel
ACK_LEVEL_VISIBLE: AckLevel
ACK_LEVEL_DURABLE: AckLevel

class IngestRequest(_message.Message):
    __slots__ = ("collection", "documents", "delete_ids", "ack")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    DELETE_IDS_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    collection: str
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.Document]
    delete_ids: _containers.RepeatedScalarFieldContainer[str]
    ack: AckLevel
    def __init__(self, collection: _Optional[str] = ..., documents: _Optional[_Iterable[_Union[_common_pb2.Document, _Mapping]]] = ..., delete_ids: _Optional[_Iterable[str]] = ..., ack: _Optional[_Union[AckLevel, str]] = ...) -> None: ...

class DocumentError(_message.Message):
    __slots__ = ("index", "id", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    id: str
    error: _common_pb2.Error
    def __init__(self, index: _Optional[int] = ..., id: _Optional[str] = ..., error: _Optional[_Union[_common_pb2.Error, _Mapping]] = ...) -> None: ...

class IngestAck(_message.Message):
    __slots__ = ("batch", "accepted", "errors", "deleted", "sequence", "next_batch_size", "backoff_ms", "consistency_token", "visible")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    NEXT_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MS_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    VISIBLE_FIELD_NUMBER: _ClassVar[int]
    batch: int
    accepted: _containers.RepeatedScalarFieldContainer[str]
    errors: _containers.RepeatedCompositeFieldContainer[DocumentError]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    sequence: int
    next_batch_size: int
    backoff_ms: int
    consistency_token: str
    visible: bool
    def __init__(self, batch: _Optional[int] = ..., accepted: _Optional[_Iterable[str]] = ..., errors: _Optional[_Iterable[_Union[DocumentError, _Mapping]]] = ..., deleted: _Optional[_Iterable[str]] = ..., sequence: _Optional[int] = ..., next_batch_size: _Optional[int] = ..., backoff_ms: _Optional[int] = ..., consistency_token: _Optional[str] = ..., visible: bool = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("collection", "ids", "include_vectors", "consistency", "consistency_token")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    include_vectors: bool
    consistency: _common_pb2.Consistency
    consistency_token: str
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., include_vectors: bool = ..., consistency: _Optional[_Union[_common_pb2.Consistency, str]] = ..., consistency_token: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("documents", "missing")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.Document]
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.Document, _Mapping]]] = ..., missing: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("collection", "ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted", "missing", "sequence", "consistency_token")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    missing: _containers.RepeatedScalarFieldContainer[str]
    sequence: int
    consistency_token: str
    def __init__(self, deleted: _Optional[_Iterable[str]] = ..., missing: _Optional[_Iterable[str]] = ..., sequence: _Optional[int] = ..., consistency_token: _Optional[str] = ...) -> None: ...
