"""BM25 with bm25s on a BEIR folder: the keyword peer of Sieve's `bm25` pipeline. Same corpus,
same test queries, top-100 per query, quality from pytrec_eval, speed per query in one process.

    /tmp/peers/bin/pip install bm25s PyStemmer pytrec_eval-terrier
    /tmp/peers/bin/python bench/peers/bm25.py --dataset ../shared/data/beir/scifact

Runs twice: Lucene's defaults (k1 1.2, b 0.75, what tantivy uses) and k1 0.9 / b 0.4 (Anserini's
BEIR setting). Indexed text = title + " " + text, English stopwords and Snowball stemming.
Latency is one query at a time (`retrieve` on a single query, n_threads=1), as a service answers.
"""

import argparse
import gzip
import json
import statistics
import time
from pathlib import Path


def read_jsonl(path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def first_existing(folder, name):
    for candidate in (folder / f"{name}.jsonl.gz", folder / f"{name}.jsonl"):
        if candidate.exists():
            return candidate
    raise SystemExit(f"{folder}: no {name}.jsonl[.gz]")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", required=True, type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", type=Path, help="write the k1 1.2 / b 0.75 run here (TREC)")
    args = parser.parse_args()

    import bm25s
    import pytrec_eval
    import Stemmer

    corpus = read_jsonl(first_existing(args.dataset, "corpus"))
    ids = [str(d["_id"]) for d in corpus]
    texts = [f"{d.get('title', '')} {d.get('text', '')}".strip() for d in corpus]
    qrels = {}
    with open(args.dataset / "qrels" / f"{args.split}.tsv", newline="") as f:
        for n, line in enumerate(f.read().splitlines()):
            fields = line.split("\t")
            if n == 0 and not fields[2].strip().lstrip("-").isdigit():
                continue
            qrels.setdefault(fields[0], {})[fields[1]] = int(fields[2])
    queries = [q for q in read_jsonl(first_existing(args.dataset, "queries")) if str(q["_id"]) in qrels]

    stemmer = Stemmer.Stemmer("english")
    report = {"bm25s": bm25s.__version__, "documents": len(ids), "queries": len(queries)}
    for k1, b in ((1.2, 0.75), (0.9, 0.4)):
        started = time.perf_counter()
        tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
        index = bm25s.BM25(k1=k1, b=b)
        index.index(tokens, show_progress=False)
        index_seconds = time.perf_counter() - started
        run, latencies = {}, []
        for q in queries:
            t = time.perf_counter()
            q_tokens = bm25s.tokenize([q["text"]], stopwords="en", stemmer=stemmer, show_progress=False)
            docs, scores = index.retrieve(q_tokens, k=100, show_progress=False, n_threads=1)
            latencies.append(time.perf_counter() - t)
            run[str(q["_id"])] = {ids[d]: float(s) for d, s in zip(docs[0], scores[0])}
        evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "recip_rank"})
        per_query = evaluator.evaluate(run)
        mean = lambda key: statistics.fmean(m[key] for m in per_query.values())
        latencies.sort()
        pct = lambda p: 1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))]
        report[f"k1={k1},b={b}"] = {
            "ndcg@10": mean("ndcg_cut_10"),
            "recall@100": mean("recall_100"),
            "index_seconds": index_seconds,
            "latency_ms": {"p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99)},
            "qps_one_thread": len(queries) / sum(latencies),
        }
        if args.out and (k1, b) == (1.2, 0.75):
            with open(args.out, "w") as f:
                for qid, hits in run.items():
                    ranked = sorted(hits.items(), key=lambda x: -x[1])
                    for rank, (doc, score) in enumerate(ranked, 1):
                        f.write(f"{qid} Q0 {doc} {rank} {score} bm25s\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
