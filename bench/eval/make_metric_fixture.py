"""Writes the fixed run and graded qrels that Sieve's metric test scores
(client/rust/testdata/metrics.{run,qrels}), then scores them with pytrec_eval and ir-measures,
the reference implementations. The printed numbers are pasted into the test.

    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install pytrec_eval-terrier ir-measures
    /tmp/peers/bin/python bench/eval/make_metric_fixture.py client/rust/testdata
"""

import random
import sys
from pathlib import Path

import ir_measures
import pytrec_eval
from ir_measures import RR, R, nDCG

out = Path(sys.argv[1])
rng = random.Random(20261122)

run, qrels = {}, {}
for q in range(1, 9):
    qid = f"q{q}"
    docs = [f"d{rng.randrange(10_000):04d}" for _ in range(400)]
    docs = list(dict.fromkeys(docs))[:130]  # distinct, in order
    # Strictly decreasing scores: trec_eval sorts by score and breaks ties by id, so ties
    # would make the order ambiguous.
    run[qid] = {d: round(30.0 - i * 0.173, 3) for i, d in enumerate(docs)}
    judged = {}
    if q == 7:
        pass  # relevant documents all outside the run
    else:
        # Some near the top, so the cut-offs at 10 matter; some past 100, so the cut at 100 does.
        for d in rng.sample(docs[:15], 5) + rng.sample(docs[15:], 7):
            judged[d] = rng.choice([0, 1, 1, 2])
    # Relevant documents the run never retrieved.
    for _ in range(rng.randrange(0, 4) + (2 if q == 7 else 0)):
        judged[f"x{rng.randrange(10_000):04d}"] = rng.choice([1, 2])
    qrels[qid] = judged

with open(out / "metrics.run", "w") as f:
    for qid, docs in run.items():
        for rank, (d, s) in enumerate(sorted(docs.items(), key=lambda x: -x[1]), 1):
            f.write(f"{qid} Q0 {d} {rank} {s} fixture\n")
with open(out / "metrics.qrels", "w", newline="") as f:
    f.write("query-id\tcorpus-id\tscore\r\n")  # BEIR layout: header and CRLF
    for qid, judged in qrels.items():
        for d, rel in judged.items():
            f.write(f"{qid}\t{d}\t{rel}\r\n")

evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"})
per_query = evaluator.evaluate(run)
print("pytrec_eval", pytrec_eval.__version__ if hasattr(pytrec_eval, "__version__") else "")
for qid in sorted(per_query):
    m = per_query[qid]
    print(f"  {qid}: ndcg_cut_10={m['ndcg_cut_10']:.6f} recall_100={m['recall_100']:.6f}")
print("ir_measures", ir_measures.__version__)
measures = [nDCG @ 10, R @ 100, RR @ 10]
for m in ir_measures.iter_calc(measures, qrels, run):
    print(f"  {m.query_id}: {m.measure}={m.value:.6f}")
for measure, value in ir_measures.calc_aggregate(measures, qrels, run).items():
    print(f"mean {measure}={value:.6f}")
