"""HNSW peers on the vectors of bench/peers/vectors.py: hnswlib and faiss-cpu at the same M,
ef_construction and ef_search as Sieve's collection settings; recall@10 against the exact
ground truth, build time, and queries/s one query at a time.

    /tmp/peers/bin/pip install hnswlib faiss-cpu numpy
    /tmp/peers/bin/python bench/peers/hnsw.py --vectors /tmp/vec100k --m 16 --ef-construction 100 --ef-search 100 --threads 2

Builds use --threads threads; searches run one query per call on one thread, as a server
answers single requests. Several --ef-search values search the same graph once each (a sweep:
`--ef-search 100 128 248 488` matches `sieve bench vectors --dense-k 10/100/200/400`). Prints JSON:
per engine, the build time and one entry per ef_search.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from vectors import read_fvecs, read_ivecs


def recall_at_10(found, truth):
    return float(np.mean([len(set(f[:10]) & set(t[:10])) / 10 for f, t in zip(found, truth)]))


def timed_queries(search, queries):
    found, latencies = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(search(q))
        latencies.append(time.perf_counter() - t)
    latencies = np.sort(np.array(latencies)) * 1000
    return found, {
        "qps": len(queries) / (latencies.sum() / 1000),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vectors", type=Path, required=True)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=100)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[100])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    base = read_fvecs(args.vectors / "base.fvecs")
    queries = read_fvecs(args.vectors / "queries.fvecs")
    truth = read_ivecs(args.vectors / "truth.ivecs")
    report = {"vectors": len(base), "queries": len(queries), "dim": base.shape[1], "m": args.m,
              "ef_construction": args.ef_construction, "ef_search": args.ef_search}

    import hnswlib
    index = hnswlib.Index(space="ip", dim=base.shape[1])
    t = time.perf_counter()
    index.init_index(max_elements=len(base), M=args.m, ef_construction=args.ef_construction, random_seed=1)
    index.add_items(base, np.arange(len(base)), num_threads=args.threads)
    build = time.perf_counter() - t
    index.set_num_threads(1)
    report["hnswlib"] = {"build_seconds": build, "searches": []}
    for ef in args.ef_search:
        index.set_ef(ef)
        found, speed = timed_queries(lambda q: index.knn_query(q, k=10)[0][0], queries)
        report["hnswlib"]["searches"].append({"ef_search": ef, "recall@10": recall_at_10(found, truth), **speed})

    import faiss
    faiss.omp_set_num_threads(args.threads)
    index = faiss.IndexHNSWFlat(base.shape[1], args.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = args.ef_construction
    t = time.perf_counter()
    index.add(base)
    build = time.perf_counter() - t
    faiss.omp_set_num_threads(1)
    report["faiss_hnsw"] = {"build_seconds": build, "searches": []}
    for ef in args.ef_search:
        index.hnsw.efSearch = ef
        found, speed = timed_queries(lambda q: index.search(q[None, :], 10)[1][0], queries)
        report["faiss_hnsw"]["searches"].append({"ef_search": ef, "recall@10": recall_at_10(found, truth), **speed})
    report["faiss_version"] = faiss.__version__
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
