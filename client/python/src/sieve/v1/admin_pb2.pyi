from sieve.v1 import collections_pb2 as _collections_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Snapshot(_message.Message):
    __slots__ = ("name", "collection", "sequence", "documents", "size_bytes", "created_unix_ms", "config")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    name: str
    collection: str
    sequence: int
    documents: int
    size_bytes: int
    created_unix_ms: int
    config: _collections_pb2.CollectionConfig
    def __init__(self, name: _Optional[str] = ..., collection: _Optional[str] = ..., sequence: _Optional[int] = ..., documents: _Optional[int] = ..., size_bytes: _Optional[int] = ..., created_unix_ms: _Optional[int] = ..., config: _Optional[_Union[_collections_pb2.CollectionConfig, _Mapping]] = ...) -> None: ...

class CreateSnapshotRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class RestoreSnapshotRequest(_message.Message):
    __slots__ = ("snapshot", "collection")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    snapshot: str
    collection: str
    def __init__(self, snapshot: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class ListSnapshotsRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class ListSnapshotsResponse(_message.Message):
    __slots__ = ("snapshots",)
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[Snapshot]
    def __init__(self, snapshots: _Optional[_Iterable[_Union[Snapshot, _Mapping]]] = ...) -> None: ...

class DeleteSnapshotRequest(_message.Message):
    __slots__ = ("snapshot",)
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    snapshot: str
    def __init__(self, snapshot: _Optional[str] = ...) -> None: ...

class DeleteSnapshotResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SnapshotPartitionsRequest(_message.Message):
    __slots__ = ("partitions", "purge")
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    PURGE_FIELD_NUMBER: _ClassVar[int]
    partitions: _containers.RepeatedScalarFieldContainer[int]
    purge: bool
    def __init__(self, partitions: _Optional[_Iterable[int]] = ..., purge: bool = ...) -> None: ...

class PartitionSnapshot(_message.Message):
    __slots__ = ("partition", "shard", "stream_seq", "collections", "documents", "size_bytes", "purged")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    STREAM_SEQ_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PURGED_FIELD_NUMBER: _ClassVar[int]
    partition: int
    shard: str
    stream_seq: int
    collections: int
    documents: int
    size_bytes: int
    purged: bool
    def __init__(self, partition: _Optional[int] = ..., shard: _Optional[str] = ..., stream_seq: _Optional[int] = ..., collections: _Optional[int] = ..., documents: _Optional[int] = ..., size_bytes: _Optional[int] = ..., purged: bool = ...) -> None: ...

class SnapshotPartitionsResponse(_message.Message):
    __slots__ = ("snapshots",)
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[PartitionSnapshot]
    def __init__(self, snapshots: _Optional[_Iterable[_Union[PartitionSnapshot, _Mapping]]] = ...) -> None: ...

class AssignPartitionRequest(_message.Message):
    __slots__ = ("partition", "add", "remove", "wait_ms")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    ADD_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    partition: int
    add: str
    remove: str
    wait_ms: int
    def __init__(self, partition: _Optional[int] = ..., add: _Optional[str] = ..., remove: _Optional[str] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class AssignPartitionResponse(_message.Message):
    __slots__ = ("epoch", "shards")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    shards: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, epoch: _Optional[int] = ..., shards: _Optional[_Iterable[str]] = ...) -> None: ...
