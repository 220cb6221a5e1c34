"""Python client for the Sieve retrieval engine.

    import sieve
    from sieve import filters as f

    with sieve.Client("127.0.0.1:7700", api_key="...") as client:
        client.create_collection("papers")                       # the server's default embedder
        client.ingest("papers", [{"id": "1", "text": "..."}, ...], batch_size=256)
        result = client.search("papers", "graph neural networks", top_k=5,
                               filter=f.range("year", gte=2020), rerank=["cross-encoder/ms-marco-MiniLM-L-6-v2:5"])
        for hit in result.hits:
            print(hit.id, hit.score, hit.fused.rank, [s.rank for s in hit.stages])

The generated stubs are in `sieve.v1` (`sieve.v1.search_pb2`, ...), for anything the wrapper
does not cover.
"""

from sieve.client import Client, SieveError
from sieve.types import (
    DeleteResult,
    Document,
    GetResult,
    Hit,
    IngestResult,
    RerankResult,
    RetrieverRank,
    SearchDone,
    SearchResult,
    Stage,
    StageScore,
)

__all__ = [
    "Client",
    "DeleteResult",
    "Document",
    "GetResult",
    "Hit",
    "IngestResult",
    "RerankResult",
    "RetrieverRank",
    "SearchDone",
    "SearchResult",
    "SieveError",
    "Stage",
    "StageScore",
]
