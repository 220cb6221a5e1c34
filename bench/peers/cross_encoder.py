"""Cross-encoder scoring in PyTorch (sentence-transformers CrossEncoder), on the same checkpoint
and the same (query, passage) requests as `sieve bench rerank`, so the two figures form a ratio
measured on one machine.

    /tmp/peers/bin/pip install torch sentence-transformers
    /tmp/peers/bin/python bench/peers/cross_encoder.py \
        --model ../shared/models/sieve--sieve-ce-minilm-l6-scifact \
        --corpus ../shared/data/beir/scifact/corpus.jsonl.gz \
        --queries ../shared/data/beir/scifact/queries.jsonl.gz \
        --requests 10 --passages 20 --threads 2

Request i scores query i mod |queries| against passages (i * passages + j) mod |corpus|,
j < passages, passage = title + " " + text, exactly as `sieve bench rerank` builds them; two
warm-up requests (0 and 1) come first. Prints JSON: pairs/s for float32 and for bfloat16
autocast, and the first request's scores so they can be compared with Sieve's Rerank answer.
"""

import argparse
import gzip
import json
import resource
import time


def read_jsonl(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--passages", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["float32", "bfloat16_autocast"],
        choices=["float32", "bfloat16_autocast"],
        help="which runs to time (bf16 autocast is slow on CPUs without AVX512-BF16)",
    )
    args = parser.parse_args()

    import torch
    from sentence_transformers import CrossEncoder

    torch.set_num_threads(args.threads)
    texts = [f"{d.get('title', '')} {d.get('text', '')}".strip() for d in read_jsonl(args.corpus)]
    queries = [q["text"] for q in read_jsonl(args.queries)]

    def request(i):
        q = queries[i % len(queries)]
        return [(q, texts[(i * args.passages + j) % len(texts)]) for j in range(args.passages)]

    model = CrossEncoder(args.model, max_length=args.max_length, device="cpu")
    # The checkpoint stores float16 weights; compute in float32 as Sieve does.
    model.model.to(torch.float32)
    report = {
        "torch": torch.__version__,
        "dtype": str(next(model.model.parameters()).dtype),
        "threads": args.threads,
        "requests": args.requests,
        "passages_per_request": args.passages,
        "max_length": args.max_length,
    }
    for label, autocast in (("float32", False), ("bfloat16_autocast", True)):
        if label not in args.precisions:
            continue
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            first = [float(s) for s in model.predict(request(0), batch_size=args.passages)]
            model.predict(request(1), batch_size=args.passages)
            started = time.perf_counter()
            for i in range(2, args.requests + 2):
                model.predict(request(i), batch_size=args.passages)
            seconds = time.perf_counter() - started
        pairs = args.requests * args.passages
        report[label] = {
            "seconds": seconds,
            "pairs_per_sec": pairs / seconds,
            "ms_per_100_pairs": seconds * 1000 * 100 / pairs,
            "first_request_scores": first,
        }
    report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
