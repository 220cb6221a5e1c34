"""The latency/quality trade-off of a rerank cascade's candidate count, from Sieve's own runs.

Quality: `sieve eval` with a pipeline that reranks the first stage's top 100 and keeps all 100
(`-p bm25 -p bm25+MODEL:100`, `--out report.json`) holds the cross-encoder's score of every
candidate. A cascade over the top N < 100 returns those N ordered by the same scores, then the
rest of the first stage, so its ranking is rebuilt exactly from the two runs and scored here
(nDCG@10, trec_eval's definition) for each N.
Latency: one `sieve bench search --mode bm25 --rerank MODEL:10 --candidates N` JSON per N,
given as N=path.

    /tmp/peers/bin/python bench/plots/cascade_tradeoff.py --report /tmp/eval/scifact.json \
        --qrels ../shared/data/beir/scifact/qrels/test.tsv \
        --latency 10=/tmp/lat10.json 20=/tmp/lat20.json 50=/tmp/lat50.json 100=/tmp/lat100.json \
        --out docs/cascade-tradeoff.png
"""

import argparse
import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_qrels(path):
    qrels = {}
    with open(path, newline="") as f:
        for n, line in enumerate(f.read().splitlines()):
            fields = line.split()
            if not fields:
                continue
            if n == 0 and not fields[-1].lstrip("-").isdigit():
                continue
            query, doc, grade = fields[0], fields[-2], int(fields[-1])
            qrels.setdefault(query, {})[doc] = grade
    return qrels


def ndcg10(ranked, judged):
    dcg = sum(max(judged.get(d, 0), 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--report", required=True)
    parser.add_argument("--qrels", required=True)
    parser.add_argument("--first", default="bm25", help="the first-stage pipeline in the report")
    parser.add_argument("--latency", nargs="*", default=[], help="N=bench-search.json")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    report = json.load(open(args.report))
    pipelines = {p["name"]: p for p in report["pipelines"]}
    first = pipelines[args.first]["run"]
    full = next(p for name, p in pipelines.items()
                if name.startswith(args.first + "+") and name.endswith(":100"))
    ce = {q: {d: s for d, s in hits} for q, hits in full["run"].items()}
    qrels = read_qrels(args.qrels)
    judged = [q for q in qrels if any(g > 0 for g in qrels[q].values())]

    latency = {}
    for item in args.latency:
        n, path = item.split("=", 1)
        latency[int(n)] = json.load(open(path))["latency_ms"]["p50"]

    rows = []
    for n in (0, 10, 20, 30, 50, 100):
        scores = []
        for q in judged:
            ranked = [d for d, _ in first.get(q, [])]
            head = sorted(ranked[:n], key=lambda d: -ce[q][d])
            scores.append(ndcg10(head + ranked[n:], qrels[q]))
        rows.append((n, sum(scores) / len(scores), latency.get(n)))
    print(f"{'candidates':>10} {'nDCG@10':>8} {'p50 ms':>9}")
    for n, quality, ms in rows:
        print(f"{n:>10} {quality:>8.4f} {ms if ms is not None else float('nan'):>9.1f}")
    print(f"(reported by sieve eval for {full['name']}: {full['metrics']['ndcg@10']:.4f})")

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    points = [(ms, q, n) for n, q, ms in rows if ms is not None]
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", color="#1f77b4")
        for ms, q, n in points:
            ax.annotate(f"{n}" if n else "no rerank", (ms, q), textcoords="offset points",
                        xytext=(6, -12))
        ax.set_xscale("log")
        ax.set_xlabel("p50 latency per query, ms (log scale; 2 CPU cores, one query at a time)")
    else:
        ax.plot([r[0] for r in rows], [r[1] for r in rows], "o-")
        ax.set_xlabel("candidates reranked")
    ax.set_ylabel("SciFact test nDCG@10")
    what = "quality and latency" if points else "quality"
    ax.set_title(f"SciFact, {args.first} top-N → cross-encoder: candidates reranked vs {what}",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
