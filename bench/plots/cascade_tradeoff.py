"""The latency/quality trade-off of a rerank cascade's candidate count, from Sieve's own runs.

Quality: `sieve eval` with a pipeline that reranks the first stage's top M and keeps all M
(`-p bm25 -p bm25+MODEL:200 --candidates 200 --top-k 200`, `--out report.json`) holds the
cross-encoder's score of every candidate. A cascade over the top N < M returns those N ordered by
the same scores, then the rest of the first stage, so its ranking is rebuilt exactly from the two
runs and scored here (nDCG@10, trec_eval's definition) for each N up to M.
Keep values: a stage keeping K < 10 returns its K survivors, then the candidates it cut and
the rest of the first stage in first-stage order (as `sieve eval` lists a cascade's run).
Latency: one `sieve bench search --mode MODE --rerank MODEL:10 --candidates N` JSON per first
stage and N, given as MODE:N=path.

    /tmp/peers/bin/python bench/plots/cascade_tradeoff.py --report /tmp/eval200/scifact-200.json \
        --qrels ../shared/data/beir/scifact/qrels/test.tsv \
        --latency bm25:10=/tmp/lat/bm25-10.json ... hybrid:200=/tmp/lat/hybrid-200.json \
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
    parser.add_argument("--latency", nargs="*", default=[], help="[FIRST:]N=bench-search.json")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    report = json.load(open(args.report))
    pipelines = {p["name"]: p for p in report["pipelines"]}
    first = pipelines[args.first]["run"]
    # The widest "FIRST+MODEL:M" pipeline that kept every candidate it reranked.
    full_size, full = max(
        ((int(name.rsplit(":", 1)[1]), p) for name, p in pipelines.items()
        if name.startswith(args.first + "+") and name.rsplit(":", 1)[-1].isdigit()),
        key=lambda sized: sized[0],
    )
    ce = {q: {d: s for d, s in hits} for q, hits in full["run"].items()}
    qrels = read_qrels(args.qrels)
    judged = [q for q in qrels if any(g > 0 for g in qrels[q].values())]

    # latency[first stage][N] = p50 ms, from `[FIRST:]N=bench-search.json` arguments.
    latency = {}
    for item in args.latency:
        key, path = item.split("=", 1)
        stage, _, n = key.rpartition(":")
        latency.setdefault(stage or args.first, {})[int(n)] = json.load(open(path))["latency_ms"]["p50"]

    def quality(n, keep):
        """Mean nDCG@10 of the first stage's top n reranked, keeping the best `keep`: the
        survivors by cross-encoder score, then the cut candidates and the rest in first-stage
        order (how `sieve eval` lists a cascade's run)."""
        scores = []
        for q in judged:
            ranked = [d for d, _ in first.get(q, [])]
            survivors = sorted(ranked[:n], key=lambda d: -ce[q][d])[:keep]
            kept = set(survivors)
            scores.append(ndcg10(survivors + [d for d in ranked if d not in kept], qrels[q]))
        return sum(scores) / len(scores)

    sizes = tuple(n for n in (0, 10, 20, 30, 50, 100, 200) if n <= full_size)
    keeps = (10, 5, 3, 1)
    table = {keep: [quality(n, keep) for n in sizes] for keep in keeps}
    own = latency.get(args.first, {})
    print(f"{'candidates':>10} " + " ".join(f"{'keep ' + str(k):>8}" for k in keeps)
          + " " + " ".join(f"{stage + ' p50 ms':>16}" for stage in latency))
    for i, n in enumerate(sorted(set(sizes) | {n for l in latency.values() for n in l})):
        cells = [f"{table[k][sizes.index(n)]:>8.4f}" if n in sizes else f"{'':>8}" for k in keeps]
        ms = [f"{latency[stage][n]:>16,.0f}" if n in latency[stage] else f"{'':>16}" for stage in latency]
        print(f"{n:>10} " + " ".join(cells) + " " + " ".join(ms))
    print(f"(reported by sieve eval for {full['name']}: {full['metrics']['ndcg@10']:.4f})")

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    for keep, style in zip(keeps, ("o-", "s--", "^--", "v:")):
        left.plot(sizes, table[keep], style, label=f"keep {keep}")
    left.set_xlabel(f"candidates reranked ({args.first} top N; 0 = no rerank)")
    left.set_ylabel("SciFact test nDCG@10")
    left.set_title("quality by candidates and keep", fontsize=9)
    left.legend(fontsize=8)
    left.grid(True, alpha=0.3)
    for stage, marker in zip(latency, ("o-", "s-", "^-")):
        points = sorted(latency[stage].items())
        right.plot([n for n, _ in points], [ms / 1000 for _, ms in points], marker,
                   label=f"{stage} first stage")
    right.set_xlabel("candidates reranked")
    right.set_ylabel("p50 seconds per query (2 CPU cores, one at a time)")
    right.set_title("latency by candidates (idle machine)", fontsize=9)
    if latency:
        right.legend(fontsize=8)
    right.grid(True, alpha=0.3)
    fig.suptitle("SciFact, first stage top N → sieve-ce-minilm-l6-scifact, through Sieve's API",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
