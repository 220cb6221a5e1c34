"""`sieve.Client`: a thin, typed wrapper over Sieve's generated gRPC stubs."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Iterable, Iterator, List, Optional, Sequence, Union

import grpc

from sieve.types import (
    DeleteResult,
    Document,
    DocumentLike,
    GetResult,
    IngestResult,
    RerankResult,
    SearchDone,
    SearchResult,
    Stage,
    document_to_proto,
    stages_arg,
)
from sieve.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    collections_pb2,
    collections_pb2_grpc,
    common_pb2,
    documents_pb2,
    documents_pb2_grpc,
    info_pb2,
    info_pb2_grpc,
    rerank_pb2,
    rerank_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)

RerankStages = Optional[Sequence[Union[str, tuple]]]

_MODES = {
    None: search_pb2.MODE_UNSPECIFIED,
    "bm25": search_pb2.MODE_BM25,
    "dense": search_pb2.MODE_DENSE,
    "hybrid": search_pb2.MODE_HYBRID,
}
_FUSIONS = {None: search_pb2.FUSION_UNSPECIFIED, "rrf": search_pb2.FUSION_RRF, "linear": search_pb2.FUSION_LINEAR}
_DISTANCES = {
    "cosine": collections_pb2.DISTANCE_COSINE,
    "dot": collections_pb2.DISTANCE_DOT,
    "l2": collections_pb2.DISTANCE_L2,
}


class SieveError(Exception):
    """A call the server refused or could not finish: the gRPC status code and its message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_rpc(cls, error: grpc.RpcError) -> "SieveError":
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(code, details or "")


class _Advice:
    """The server's latest backpressure advice on an ingest stream, shared with the sender."""

    def __init__(self, batch_size: int):
        self.lock = threading.Lock()
        self.batch_size = batch_size
        self.backoff_ms = 0

    def update(self, ack: documents_pb2.IngestAck) -> None:
        with self.lock:
            if ack.next_batch_size:
                self.batch_size = ack.next_batch_size
            self.backoff_ms = ack.backoff_ms

    def take(self) -> tuple:
        with self.lock:
            backoff, self.backoff_ms = self.backoff_ms, 0
            return self.batch_size, backoff


class Client:
    """A connection to one Sieve server.

    >>> client = sieve.Client("127.0.0.1:7700", api_key="...")
    >>> client.search("papers", "graph neural networks", top_k=5).ids()

    `address` is `host:port`. TLS: pass `root_certificates` (PEM bytes of the CA), or `tls=True`
    for the system roots; `certificate_chain` / `private_key` for servers that require client
    certificates. `timeout` (seconds) is the default deadline of every call; each method takes
    its own `timeout` too.
    """

    def __init__(
        self,
        address: str = "127.0.0.1:7700",
        *,
        api_key: Optional[str] = None,
        tls: bool = False,
        root_certificates: Optional[bytes] = None,
        certificate_chain: Optional[bytes] = None,
        private_key: Optional[bytes] = None,
        timeout: Optional[float] = None,
        max_message_bytes: int = 64 << 20,
    ):
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        if tls or root_certificates or certificate_chain:
            credentials = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)
            self._channel = grpc.secure_channel(address, credentials, options)
        else:
            self._channel = grpc.insecure_channel(address, options)
        self._metadata = [("authorization", f"Bearer {api_key}")] if api_key else []
        self._timeout = timeout
        self._collections = collections_pb2_grpc.CollectionsStub(self._channel)
        self._documents = documents_pb2_grpc.DocumentsStub(self._channel)
        self._search = search_pb2_grpc.SearchStub(self._channel)
        self._rerank = rerank_pb2_grpc.RerankStub(self._channel)
        self._info = info_pb2_grpc.InfoStub(self._channel)
        self._admin = admin_pb2_grpc.AdminStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method, request, timeout: Optional[float]):
        try:
            return method(request, timeout=timeout or self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise SieveError.from_rpc(error) from None

    # --- server and collections ---------------------------------------------------------

    def info(self, *, timeout: Optional[float] = None) -> info_pb2.GetInfoResponse:
        """Version, limits, loaded models with their queues, default cascade."""
        return self._call(self._info.GetInfo, info_pb2.GetInfoRequest(), timeout)

    def create_collection(
        self,
        name: str,
        *,
        dimension: int = 0,
        distance: str = "cosine",
        embedder: str = "",
        keyword_only: bool = False,
        analyzer: str = "",
        hnsw_m: int = 0,
        hnsw_ef_construction: int = 0,
        hnsw_ef_search: int = 0,
        timeout: Optional[float] = None,
    ) -> collections_pb2.Collection:
        """A new collection. With neither `dimension` nor `embedder` nor `keyword_only`, it
        embeds with the server's default embedder (keyword-only when there is none).
        `dimension` alone: you send the vectors. `embedder`: the server embeds with that model."""
        if distance not in _DISTANCES:
            raise ValueError(f"distance is one of {sorted(_DISTANCES)}, not {distance!r}")
        config = collections_pb2.CollectionConfig(keyword_only=keyword_only)
        if analyzer:
            config.keyword.analyzer = analyzer
        if dimension or embedder:
            config.dense.dimension = dimension
            config.dense.distance = _DISTANCES[distance]
            config.dense.embedder = embedder
            config.dense.hnsw.m = hnsw_m
            config.dense.hnsw.ef_construction = hnsw_ef_construction
            config.dense.hnsw.ef_search = hnsw_ef_search
        request = collections_pb2.CreateCollectionRequest(name=name, config=config)
        return self._call(self._collections.CreateCollection, request, timeout)

    def get_collection(self, name: str, *, timeout: Optional[float] = None) -> collections_pb2.Collection:
        return self._call(self._collections.GetCollection, collections_pb2.GetCollectionRequest(name=name), timeout)

    def list_collections(self, *, timeout: Optional[float] = None) -> List[collections_pb2.Collection]:
        response = self._call(self._collections.ListCollections, collections_pb2.ListCollectionsRequest(), timeout)
        return list(response.collections)

    def delete_collection(self, name: str, *, timeout: Optional[float] = None) -> None:
        self._call(self._collections.DeleteCollection, collections_pb2.DeleteCollectionRequest(name=name), timeout)

    # --- snapshots ---------------------------------------------------------------------

    def create_snapshot(self, collection: str, *, timeout: Optional[float] = None) -> admin_pb2.Snapshot:
        """Writes a consistent snapshot of `collection` on the server; `.name` identifies it."""
        return self._call(self._admin.CreateSnapshot, admin_pb2.CreateSnapshotRequest(collection=collection), timeout)

    def list_snapshots(self, collection: str = "", *, timeout: Optional[float] = None) -> List[admin_pb2.Snapshot]:
        """Snapshots on the server, oldest first (one collection's, or all)."""
        request = admin_pb2.ListSnapshotsRequest(collection=collection)
        return list(self._call(self._admin.ListSnapshots, request, timeout).snapshots)

    def restore_snapshot(
        self, snapshot: str, collection: str, *, timeout: Optional[float] = None
    ) -> collections_pb2.Collection:
        """Creates the new collection `collection` from a snapshot (indexes are rebuilt)."""
        request = admin_pb2.RestoreSnapshotRequest(snapshot=snapshot, collection=collection)
        return self._call(self._admin.RestoreSnapshot, request, timeout)

    def delete_snapshot(self, snapshot: str, *, timeout: Optional[float] = None) -> None:
        self._call(self._admin.DeleteSnapshot, admin_pb2.DeleteSnapshotRequest(snapshot=snapshot), timeout)

    def snapshot_partitions(
        self, partitions: Sequence[int] = (), *, purge: bool = False, timeout: Optional[float] = None
    ) -> List[admin_pb2.PartitionSnapshot]:
        """Cluster mode (a router): snapshots each of `partitions` (none: every one) at one stream
        position into the cluster's snapshot store, in partition order; with `purge`, trims the
        streams they cover. A standalone server answers FAILED_PRECONDITION."""
        request = admin_pb2.SnapshotPartitionsRequest(partitions=list(partitions), purge=purge)
        return list(self._call(self._admin.SnapshotPartitions, request, timeout).snapshots)

    def assign_partition(
        self,
        partition: int,
        *,
        add: str = "",
        remove: str = "",
        wait_ms: int = 0,
        timeout: Optional[float] = None,
    ) -> admin_pb2.AssignPartitionResponse:
        """Cluster mode (a router): gives `partition` to shard `add` and/or takes it from shard
        `remove`, the latter only once another replica (`add`'s, in a move) serves it caught up (waiting up to
        `wait_ms`; 0: the server's 60 s). Both move it. Returns the assignment's epoch and the
        partition's shards after. A standalone server answers FAILED_PRECONDITION."""
        request = admin_pb2.AssignPartitionRequest(
            partition=partition, add=add, remove=remove, wait_ms=wait_ms
        )
        return self._call(self._admin.AssignPartition, request, timeout)

    # --- documents -----------------------------------------------------------------------

    def ingest_stream(
        self,
        collection: str,
        documents: Iterable[DocumentLike],
        *,
        batch_size: int = 256,
        delete_ids: Iterable[str] = (),
        max_in_flight: int = 2,
        timeout: Optional[float] = None,
    ) -> Iterator[documents_pb2.IngestAck]:
        """Streams `documents` in batches on one `Ingest` stream and yields each batch's ack once
        it is durable and searchable. Honours backpressure: later batches take the server's
        `next_batch_size`, the sender waits `backoff_ms` when told to, and at most
        `max_in_flight` batches are unacknowledged at once. `delete_ids` go in a last batch."""
        if batch_size < 1 or max_in_flight < 1:
            raise ValueError("batch_size and max_in_flight must be at least 1")
        advice = _Advice(batch_size)
        window = threading.Semaphore(max_in_flight)
        stop = threading.Event()
        deletes = list(delete_ids)

        def requests() -> Iterator[documents_pb2.IngestRequest]:
            source = iter(documents)
            while not stop.is_set():
                size, backoff_ms = advice.take()
                if backoff_ms:
                    time.sleep(backoff_ms / 1000)
                batch = [document_to_proto(d) for d in itertools.islice(source, size)]
                if not batch:
                    break
                window.acquire()
                yield documents_pb2.IngestRequest(collection=collection, documents=batch)
            if deletes and not stop.is_set():
                window.acquire()
                yield documents_pb2.IngestRequest(collection=collection, delete_ids=deletes)

        acks = self._documents.Ingest(requests(), timeout=timeout or self._timeout, metadata=self._metadata)
        try:
            for ack in acks:
                advice.update(ack)
                window.release()
                yield ack
        except grpc.RpcError as error:
            raise SieveError.from_rpc(error) from None
        finally:
            stop.set()
            window.release()
            acks.cancel()

    def ingest(
        self,
        collection: str,
        documents: Iterable[DocumentLike],
        *,
        batch_size: int = 256,
        delete_ids: Iterable[str] = (),
        timeout: Optional[float] = None,
    ) -> IngestResult:
        """Like `ingest_stream`, run to the end: what was accepted, refused and deleted.
        Documents the server refuses one by one (bad vector, oversized text) are listed in
        `errors`; the rest of their batch lands. A stream-level failure raises `SieveError`."""
        result = IngestResult()
        for ack in self.ingest_stream(collection, documents, batch_size=batch_size,
                                      delete_ids=delete_ids, timeout=timeout):
            result.batches += 1
            result.accepted.extend(ack.accepted)
            result.deleted.extend(ack.deleted)
            result.errors.extend((e.id, _status_name(e.error.code), e.error.message) for e in ack.errors)
            result.sequence = ack.sequence
        return result

    def get(
        self, collection: str, ids: Sequence[str], *, include_vectors: bool = False, timeout: Optional[float] = None
    ) -> GetResult:
        """Documents by id, in request order; unknown ids in `missing`."""
        request = documents_pb2.GetRequest(collection=collection, ids=list(ids), include_vectors=include_vectors)
        response = self._call(self._documents.Get, request, timeout)
        return GetResult([Document.from_proto(d) for d in response.documents], list(response.missing))

    def delete(self, collection: str, ids: Sequence[str], *, timeout: Optional[float] = None) -> DeleteResult:
        """Deletes by id, durably; ids that did not exist come back in `missing`."""
        request = documents_pb2.DeleteRequest(collection=collection, ids=list(ids))
        response = self._call(self._documents.Delete, request, timeout)
        return DeleteResult(list(response.deleted), list(response.missing), response.sequence)

    # --- search and rerank -----------------------------------------------------------------

    @staticmethod
    def search_request(
        collection: str,
        query: str = "",
        *,
        vector: Optional[Sequence[float]] = None,
        top_k: int = 10,
        mode: Optional[str] = None,
        filter: Optional[common_pb2.Filter] = None,  # noqa: A002
        rerank: RerankStages = None,
        no_rerank: bool = False,
        candidates: int = 0,
        bm25_k: int = 0,
        dense_k: int = 0,
        fusion: Optional[str] = None,
        rrf_k: Optional[int] = None,
        bm25_weight: Optional[float] = None,
        dense_weight: Optional[float] = None,
        rerank_windows: bool = False,
        backfill: Optional[bool] = None,
        include_text: Optional[bool] = None,
    ) -> search_pb2.SearchRequest:
        """The `SearchRequest` the search methods send (see `search` for the arguments)."""
        if mode not in _MODES:
            raise ValueError(f"mode is one of bm25, dense, hybrid (or None), not {mode!r}")
        if fusion not in _FUSIONS:
            raise ValueError(f"fusion is rrf or linear (or None), not {fusion!r}")
        plan = search_pb2.Plan(
            mode=_MODES[mode],
            bm25_k=bm25_k,
            dense_k=dense_k,
            fusion=_FUSIONS[fusion],
            rerank=stages_arg(rerank),
            no_rerank=no_rerank,
            candidates=candidates,
            rerank_windows=rerank_windows,
        )
        if rrf_k is not None:
            plan.rrf_k = rrf_k
        if bm25_weight is not None:
            plan.bm25_weight = bm25_weight
        if dense_weight is not None:
            plan.dense_weight = dense_weight
        if backfill is not None:
            plan.backfill = backfill
        request = search_pb2.SearchRequest(
            collection=collection, query=query, query_vector=list(vector or []), top_k=top_k, plan=plan
        )
        if filter is not None:
            request.filter.CopyFrom(filter)
        if include_text is not None:
            request.include_text = include_text
        return request

    def search_stages(self, collection: str, query: str = "", *, timeout: Optional[float] = None, **options):
        """Yields each stage's list as soon as the server has it (`Stage`: "fused", then
        "rerank:1", ...), then the closing `SearchDone`. Arguments as for `search`."""
        request = self.search_request(collection, query, **options)
        events = self._search.Search(request, timeout=timeout or self._timeout, metadata=self._metadata)
        try:
            for event in events:
                kind = event.WhichOneof("event")
                if kind == "hits":
                    yield Stage.from_proto(event.hits)
                elif kind == "done":
                    yield SearchDone.from_proto(event.done)
        except grpc.RpcError as error:
            raise SieveError.from_rpc(error) from None
        finally:
            events.cancel()

    def search(self, collection: str, query: str = "", *, timeout: Optional[float] = None, **options) -> SearchResult:
        """Searches `collection`; `.hits` is the answer, `.stages` every stage's list.

        Options: `vector` (dense query; else the collection's embedder embeds `query`),
        `top_k` (10), `mode` ("bm25", "dense", "hybrid"; default: hybrid when possible),
        `filter` (`sieve.filters`), `rerank` (stages as `("model", keep)` or `"model:keep"`;
        default: the server's cascade), `no_rerank`, `candidates` (fused candidates entering the
        cascade), `bm25_k`, `dense_k`, `fusion` ("rrf", "linear"), `rrf_k`, `bm25_weight`,
        `dense_weight`, `rerank_windows`, `backfill` (each stage's list goes on after the hits it
        keeps with the other candidates in first-stage order), `include_text`."""
        stages: List[Stage] = []
        done = None
        for event in self.search_stages(collection, query, timeout=timeout, **options):
            if isinstance(event, Stage):
                stages.append(event)
            else:
                done = event
        if done is None:
            raise SieveError(grpc.StatusCode.INTERNAL, "search stream ended without its done event")
        return SearchResult(stages, done)

    def rerank(
        self,
        query: str,
        texts: Sequence[str],
        *,
        model: str = "",
        top_n: int = 0,
        windows: bool = False,
        timeout: Optional[float] = None,
    ) -> List[RerankResult]:
        """Scores each text for `query` with a loaded cross-encoder (default: the first stage of
        the server's cascade), best first; `top_n` keeps only the best N."""
        request = rerank_pb2.RerankRequest(query=query, texts=list(texts), top_n=top_n, model=model, windows=windows)
        response = self._call(self._rerank.Rerank, request, timeout)
        return [RerankResult(r.index, r.score, texts[r.index]) for r in response.results]


def _status_name(code: int) -> str:
    """The gRPC status name of a numeric code (per-document errors carry numbers)."""
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return f"CODE_{code}"
