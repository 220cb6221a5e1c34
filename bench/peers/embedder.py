"""Bi-encoder embedding in PyTorch (sentence-transformers `encode`), on the same checkpoint, the
same documents and the same batch size as `sieve bench ingest --embedder ...`, so the two
figures form a ratio measured on one machine.

    /tmp/peers/bin/pip install torch sentence-transformers
    /tmp/peers/bin/python bench/peers/embedder.py \
        --model ../shared/models/sentence-transformers--all-MiniLM-L6-v2 \
        --corpus ../shared/data/beir/scifact/corpus.jsonl.gz --docs 1000 --batch-size 32 --threads 2

Document i is corpus line i mod |corpus|, embedded as `title + " " + text` (trimmed), exactly as
the server builds the text it embeds at ingest; one warm-up batch comes first. Also times one
short query embedded alone (the search path). Prints JSON: docs/s for float32 and bfloat16
autocast, query latency, and the first document's vector prefix for comparison with Sieve.
"""

import argparse
import json
import statistics
import time

# The same corpus reader as the cross-encoder peer (this folder is on sys.path when run).
from cross_encoder import read_jsonl


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--query", default="0-dimensional biomaterials show inductive properties.")
    parser.add_argument("--query-repeats", type=int, default=50)
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    lines = read_jsonl(args.corpus)
    texts = [
        f"{d.get('title', '')} {d.get('text', '')}".strip()
        for d in (lines[i % len(lines)] for i in range(args.docs))
    ]
    model = SentenceTransformer(args.model, device="cpu")
    model.to(torch.float32)
    report = {
        "torch": torch.__version__,
        "threads": args.threads,
        "docs": args.docs,
        "batch_size": args.batch_size,
        "max_seq_length": model.max_seq_length,
    }
    for label, autocast in (("float32", False), ("bfloat16_autocast", True)):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            model.encode(texts[: args.batch_size], batch_size=args.batch_size)
            started = time.perf_counter()
            vectors = model.encode(
                texts, batch_size=args.batch_size, normalize_embeddings=True
            )
            seconds = time.perf_counter() - started
            model.encode([args.query])
            query_ms = []
            for _ in range(args.query_repeats):
                t = time.perf_counter()
                model.encode([args.query])
                query_ms.append((time.perf_counter() - t) * 1000)
        report[label] = {
            "seconds": seconds,
            "docs_per_sec": args.docs / seconds,
            "query_ms_p50": statistics.median(query_ms),
            "first_vector_prefix": [float(v) for v in vectors[0][:8]],
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
