//! Retrieval quality: BEIR-format test collections (queries and graded relevance judgments),
//! TREC run files, and the measures `sieve eval` reports — nDCG@k, Recall@k and MRR@k — defined
//! as trec_eval defines them (checked against pytrec_eval and ir-measures in the tests).
//!
//! - **nDCG@k**: DCG of the first `k` hits, gain = relevance grade, discount `log2(rank + 1)`,
//!   divided by the DCG of the ideal order of every judged document.
//! - **Recall@k**: relevant documents (grade ≥ 1) in the first `k` hits, over all relevant ones.
//! - **MRR@k**: 1 / rank of the first relevant hit within `k`, else 0.
//!
//! A ranking is scored in the order given. trec_eval re-sorts a run by score and breaks ties by
//! document id (descending); runs written by [`write_trec_run`] hold the scores as served, so a
//! run with tied scores may score slightly differently there.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};

/// Relevance grades: query id → document id → grade (0 = judged not relevant).
pub type Qrels = HashMap<String, HashMap<String, i32>>;

/// Ranked hits per query: query id → (document id, score), best first.
pub type Run = BTreeMap<String, Vec<(String, f64)>>;

/// The three measures of one query, or their means.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Scores {
    /// nDCG@10.
    pub ndcg_at_10: f64,
    /// Recall@100.
    pub recall_at_100: f64,
    /// MRR@10.
    pub mrr_at_10: f64,
}

/// Reads judgments: BEIR `query-id<TAB>corpus-id<TAB>score` with a header line, or TREC
/// `qid 0 docid rel`; CRLF line endings are accepted.
pub fn read_qrels(reader: impl BufRead) -> Result<Qrels, String> {
    let mut qrels = Qrels::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: {e}", number + 1))?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (query, doc, grade) = match fields.as_slice() {
            [] => continue,
            [query, doc, grade] | [query, _, doc, grade] => (query, doc, grade),
            _ => return Err(format!("line {}: expected 3 or 4 fields", number + 1)),
        };
        let Ok(grade) = grade.parse::<i32>() else {
            if number == 0 {
                continue; // the BEIR header
            }
            return Err(format!("line {}: grade {grade:?} is not an integer", number + 1));
        };
        qrels.entry(query.to_string()).or_default().insert(doc.to_string(), grade);
    }
    Ok(qrels)
}

/// Reads a TREC run (`qid Q0 docid rank score tag`), ordered by each line's rank.
pub fn read_trec_run(reader: impl BufRead) -> Result<Run, String> {
    let mut ranked: BTreeMap<String, Vec<(u64, String, f64)>> = BTreeMap::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: {e}", number + 1))?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let [query, _, doc, rank, score, ..] = fields.as_slice() else {
            return Err(format!("line {}: expected `qid Q0 docid rank score tag`", number + 1));
        };
        let rank = rank.parse().map_err(|_| format!("line {}: bad rank {rank:?}", number + 1))?;
        let score =
            score.parse().map_err(|_| format!("line {}: bad score {score:?}", number + 1))?;
        ranked.entry(query.to_string()).or_default().push((rank, doc.to_string(), score));
    }
    Ok(ranked
        .into_iter()
        .map(|(query, mut hits)| {
            hits.sort_by_key(|(rank, ..)| *rank);
            (query, hits.into_iter().map(|(_, doc, score)| (doc, score)).collect())
        })
        .collect())
}

/// Writes a run in TREC format, one line per hit, ranks from 1.
pub fn write_trec_run(mut out: impl Write, run: &Run, tag: &str) -> std::io::Result<()> {
    for (query, hits) in run {
        for (rank, (doc, score)) in hits.iter().enumerate() {
            writeln!(out, "{query} Q0 {doc} {} {score} {tag}", rank + 1)?;
        }
    }
    Ok(())
}

/// nDCG of the first `k` of `ranked`.
pub fn ndcg_at(ranked: &[&str], judged: &HashMap<String, i32>, k: usize) -> f64 {
    let discount = |rank: usize| 1.0 / ((rank + 2) as f64).log2();
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, doc)| f64::from(judged.get(*doc).copied().unwrap_or(0).max(0)) * discount(i))
        .sum();
    let mut ideal: Vec<i32> = judged.values().copied().filter(|&g| g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 =
        ideal.iter().take(k).enumerate().map(|(i, &g)| f64::from(g) * discount(i)).sum();
    if idcg > 0.0 { dcg / idcg } else { 0.0 }
}

/// Share of the relevant documents found in the first `k` of `ranked`.
pub fn recall_at(ranked: &[&str], judged: &HashMap<String, i32>, k: usize) -> f64 {
    let relevant = judged.values().filter(|&&g| g > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    let found = ranked.iter().take(k).filter(|doc| judged.get(**doc).is_some_and(|&g| g > 0));
    found.count() as f64 / relevant as f64
}

/// Reciprocal rank of the first relevant document within the first `k` of `ranked`.
pub fn rr_at(ranked: &[&str], judged: &HashMap<String, i32>, k: usize) -> f64 {
    ranked
        .iter()
        .take(k)
        .position(|doc| judged.get(*doc).is_some_and(|&g| g > 0))
        .map_or(0.0, |i| 1.0 / (i + 1) as f64)
}

/// One query's scores.
pub fn score_query(ranked: &[&str], judged: &HashMap<String, i32>) -> Scores {
    Scores {
        ndcg_at_10: ndcg_at(ranked, judged, 10),
        recall_at_100: recall_at(ranked, judged, 100),
        mrr_at_10: rr_at(ranked, judged, 10),
    }
}

/// Scores every judged query that has a relevant document (a query the run lacks scores 0),
/// and their means.
pub fn evaluate(qrels: &Qrels, run: &Run) -> (BTreeMap<String, Scores>, Scores) {
    let per_query: BTreeMap<String, Scores> = qrels
        .iter()
        .filter(|(_, judged)| judged.values().any(|&g| g > 0))
        .map(|(query, judged)| {
            let ranked: Vec<&str> = run
                .get(query)
                .map(|hits| hits.iter().map(|(doc, _)| doc.as_str()).collect())
                .unwrap_or_default();
            (query.clone(), score_query(&ranked, judged))
        })
        .collect();
    let n = per_query.len().max(1) as f64;
    let mean = Scores {
        ndcg_at_10: per_query.values().map(|s| s.ndcg_at_10).sum::<f64>() / n,
        recall_at_100: per_query.values().map(|s| s.recall_at_100).sum::<f64>() / n,
        mrr_at_10: per_query.values().map(|s| s.mrr_at_10).sum::<f64>() / n,
    };
    (per_query, mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (Qrels, Run) {
        let data = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata");
        let open = |name: &str| {
            std::io::BufReader::new(std::fs::File::open(format!("{data}/{name}")).unwrap())
        };
        (read_qrels(open("metrics.qrels")).unwrap(), read_trec_run(open("metrics.run")).unwrap())
    }

    /// Reference values for testdata/metrics.{run,qrels} (graded 0/1/2, CRLF BEIR qrels), from
    /// pytrec_eval 0.5.11 (ndcg_cut_10, recall_100) and ir-measures 0.4.3 (nDCG@10, R@100,
    /// RR@10), printed by:
    ///   /tmp/peers/bin/python bench/eval/make_metric_fixture.py client/rust/testdata
    /// after `python3 -m venv /tmp/peers && /tmp/peers/bin/pip install pytrec_eval-terrier
    /// ir-measures`.
    const REFERENCE: [(&str, f64, f64, f64); 8] = [
        ("q1", 0.257397, 0.714286, 1.000000),
        ("q2", 0.266889, 0.800000, 0.500000),
        ("q3", 0.135849, 0.700000, 0.200000),
        ("q4", 0.000000, 0.636364, 0.000000),
        ("q5", 0.119051, 0.666667, 0.166667),
        ("q6", 0.160783, 0.636364, 0.500000),
        ("q7", 0.000000, 0.000000, 0.000000),
        ("q8", 0.234139, 0.555556, 0.200000),
    ];

    #[test]
    fn measures_agree_with_pytrec_eval_and_ir_measures() {
        let (qrels, run) = fixture();
        assert_eq!(qrels.values().map(HashMap::len).sum::<usize>(), 97);
        assert_eq!(run.values().map(Vec::len).sum::<usize>(), 1040);
        let (per_query, mean) = evaluate(&qrels, &run);
        assert_eq!(per_query.len(), REFERENCE.len());
        for (query, ndcg, recall, rr) in REFERENCE {
            let scores = per_query[query];
            assert!((scores.ndcg_at_10 - ndcg).abs() < 5e-7, "{query} nDCG@10 {scores:?}");
            assert!((scores.recall_at_100 - recall).abs() < 5e-7, "{query} R@100 {scores:?}");
            assert!((scores.mrr_at_10 - rr).abs() < 5e-7, "{query} RR@10 {scores:?}");
        }
        // ir_measures.calc_aggregate over the same files.
        assert!((mean.ndcg_at_10 - 0.146763).abs() < 5e-7, "{mean:?}");
        assert!((mean.recall_at_100 - 0.588654).abs() < 5e-7, "{mean:?}");
        assert!((mean.mrr_at_10 - 0.320833).abs() < 5e-7, "{mean:?}");
    }

    #[test]
    fn hand_computed_graded_example() {
        let judged: HashMap<String, i32> =
            [("a", 2), ("b", 0), ("c", 1), ("z", 1)].map(|(d, g)| (d.to_string(), g)).into();
        let ranked = ["b", "c", "x", "a"];
        // DCG = 1/log2(3) + 2/log2(5); ideal = 2 + 1/log2(3) + 1/log2(4).
        let dcg = 1.0 / 3f64.log2() + 2.0 / 5f64.log2();
        let ideal = 2.0 + 1.0 / 3f64.log2() + 0.5;
        assert!((ndcg_at(&ranked, &judged, 10) - dcg / ideal).abs() < 1e-12);
        assert!(
            (ndcg_at(&ranked, &judged, 2) - (1.0 / 3f64.log2()) / (2.0 + 1.0 / 3f64.log2())).abs()
                < 1e-12
        );
        assert_eq!(recall_at(&ranked, &judged, 100), 2.0 / 3.0);
        assert_eq!(recall_at(&ranked, &judged, 2), 1.0 / 3.0);
        assert_eq!(rr_at(&ranked, &judged, 10), 0.5);
        assert_eq!(rr_at(&ranked, &judged, 1), 0.0);
    }

    #[test]
    fn judgments_without_relevant_documents_are_not_averaged_and_missing_queries_score_zero() {
        let qrels = read_qrels(
            "query-id\tcorpus-id\tscore\r\nq1\td1\t1\r\nq2\td2\t0\r\nq3 0 d3 2\n".as_bytes(),
        )
        .unwrap();
        assert_eq!(qrels["q3"]["d3"], 2);
        let run: Run = [("q1".to_string(), vec![("d1".to_string(), 1.0)])].into();
        let (per_query, mean) = evaluate(&qrels, &run);
        assert_eq!(per_query.keys().collect::<Vec<_>>(), ["q1", "q3"]);
        assert_eq!(per_query["q3"], Scores::default());
        assert_eq!(mean, Scores { ndcg_at_10: 0.5, recall_at_100: 0.5, mrr_at_10: 0.5 });
        assert_eq!(
            read_qrels("q1\td1\t1\nq1\td2\tx\n".as_bytes()).unwrap_err(),
            "line 2: grade \"x\" is not an integer"
        );
    }

    #[test]
    fn trec_runs_round_trip() {
        let (_, run) = fixture();
        let mut written = Vec::new();
        write_trec_run(&mut written, &run, "sieve").unwrap();
        assert_eq!(read_trec_run(written.as_slice()).unwrap(), run);
        let first = String::from_utf8(written).unwrap().lines().next().unwrap().to_string();
        assert_eq!(first, format!("q1 Q0 {} 1 30 sieve", run["q1"][0].0));
    }
}
