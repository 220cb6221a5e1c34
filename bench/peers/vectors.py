"""Clustered synthetic vectors with exact ground truth, for HNSW recall and speed at scale.

    /tmp/peers/bin/python bench/peers/vectors.py --count 100000 --out /tmp/vec100k

Writes, in the TEXMEX formats that ANN benchmarks use:
  base.fvecs     COUNT unit vectors of DIM floats (int32 dim, then the floats, per vector)
  queries.fvecs  QUERIES unit vectors drawn from the same mixture (not in the base)
  truth.ivecs    for each query, the ids (0-based positions in base) of its 100 nearest base
                 vectors by cosine similarity, best first (exact, by brute force)
Mixture: CLUSTERS centres uniform on the sphere; each vector = its centre + Gaussian noise of
scale SPREAD / sqrt(DIM), normalised: real embeddings are clustered, not uniform, and uniform
random vectors make HNSW look worse than it is on real data. Deterministic for a given seed.
"""

import argparse
from pathlib import Path

import numpy as np


def write_fvecs(path, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    header = np.full((x.shape[0], 1), x.shape[1], dtype=np.int32).view(np.float32)
    np.hstack([header, x]).tofile(path)


def write_ivecs(path, x):
    x = np.ascontiguousarray(x, dtype=np.int32)
    np.hstack([np.full((x.shape[0], 1), x.shape[1], dtype=np.int32), x]).tofile(path)


def read_fvecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    dim = raw[0]
    return raw.reshape(-1, dim + 1)[:, 1:].view(np.float32)


def read_ivecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    return raw.reshape(-1, raw[0] + 1)[:, 1:]


def mixture(rng, count, centres, spread):
    dim = centres.shape[1]
    labels = rng.integers(0, len(centres), size=count)
    x = centres[labels] + rng.standard_normal((count, dim), dtype=np.float32) * (spread / np.sqrt(dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--spread", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((args.clusters, args.dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    base = np.vstack([
        mixture(rng, min(100_000, args.count - start), centres, args.spread)
        for start in range(0, args.count, 100_000)
    ]).astype(np.float32)
    queries = mixture(rng, args.queries, centres, args.spread).astype(np.float32)

    k = 100
    best_scores = np.full((args.queries, k), -np.inf, dtype=np.float32)
    best_ids = np.zeros((args.queries, k), dtype=np.int64)
    for start in range(0, args.count, 100_000):
        block = base[start:start + 100_000]
        scores = queries @ block.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        merged_scores = np.hstack([best_scores, np.take_along_axis(scores, top, axis=1)])
        merged_ids = np.hstack([best_ids, top + start])
        order = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(merged_scores, order, axis=1)
        best_ids = np.take_along_axis(merged_ids, order, axis=1)

    args.out.mkdir(parents=True, exist_ok=True)
    write_fvecs(args.out / "base.fvecs", base)
    write_fvecs(args.out / "queries.fvecs", queries)
    write_ivecs(args.out / "truth.ivecs", best_ids)
    print(f"{args.out}: {args.count} base, {args.queries} queries, {args.dim}-d, "
          f"{args.clusters} clusters; top-1 similarity mean {best_scores[:, 0].mean():.3f}, "
          f"10th {best_scores[:, 9].mean():.3f}")


if __name__ == "__main__":
    main()
