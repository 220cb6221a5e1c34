//! `sieve eval` end to end: a 500-document SciFact subset in BEIR layout, ingested through the
//! real server (embedded by all-MiniLM-L6-v2), every pipeline run over the judged queries, and
//! the JSON report and TREC runs checked against the qrels with Sieve's own measures; and
//! `sieve bench vectors` (HNSW recall against exact ground truth) on small generated sets.

use crate::common;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufReader, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use common::{TestServer, gz_lines, shared};
use serde_json::Value;
use sieve_client::cli::{self, Cli};
use sieve_client::eval;

const EMBEDDER: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// A tiny cross-encoder fixture as the default cascade: the test checks the cascade's
/// plumbing, not its quality (that is docs/BENCHMARKS.md's job).
const TINY_CE: &str = "tiny-bert-ce";
const DOCUMENTS: usize = 500;
const QUERIES: usize = 40;

/// Writes a BEIR folder: the first `QUERIES` judged test queries, every document judged for
/// them, then corpus documents from the start up to `DOCUMENTS`. The qrels keep SciFact's
/// header and CRLF endings; the queries file is gzipped, the corpus not.
fn write_subset(dir: &Path) -> (usize, usize) {
    let beir = shared().join("data/beir/scifact");
    let qrels = std::fs::read_to_string(beir.join("qrels/test.tsv")).unwrap();
    let mut lines = qrels.split("\r\n").filter(|l| !l.is_empty());
    let header = lines.next().unwrap();
    let mut queries: Vec<&str> = Vec::new();
    let mut kept = Vec::new();
    for line in lines {
        let query = line.split('\t').next().unwrap();
        if !queries.contains(&query) {
            if queries.len() == QUERIES {
                break;
            }
            queries.push(query);
        }
        kept.push(line);
    }
    let judged: BTreeSet<&str> = kept.iter().map(|l| l.split('\t').nth(1).unwrap()).collect();

    let corpus = gz_lines(&beir.join("corpus.jsonl.gz"));
    let id_of = |line: &str| {
        let value: Value = serde_json::from_str(line).unwrap();
        value["_id"].as_str().unwrap().to_string()
    };
    let mut subset: Vec<&String> =
        corpus.iter().filter(|l| judged.contains(id_of(l).as_str())).collect();
    for line in &corpus {
        if subset.len() == DOCUMENTS {
            break;
        }
        if !judged.contains(id_of(line).as_str()) {
            subset.push(line);
        }
    }
    std::fs::create_dir_all(dir.join("qrels")).unwrap();
    let corpus_text: String = subset.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("corpus.jsonl"), corpus_text).unwrap();
    let qrels_text: String =
        std::iter::once(header).chain(kept.iter().copied()).map(|l| format!("{l}\r\n")).collect();
    std::fs::write(dir.join("qrels/test.tsv"), qrels_text).unwrap();
    let all_queries = std::fs::read(beir.join("queries.jsonl.gz")).unwrap();
    std::fs::write(dir.join("queries.jsonl.gz"), all_queries).unwrap();
    (kept.len(), judged.len())
}

fn start(dir: &Path) -> TestServer {
    let config = dir.join("sieve.toml");
    let models = shared().join("models");
    let tiny = shared().join("fixtures/tiny-bert-ce");
    let mut file = std::fs::File::create(&config).unwrap();
    write!(
        file,
        "models_dir = {models:?}\ndefault_embedder = \"{EMBEDDER}\"\n\n\
         [[models]]\nname = \"{EMBEDDER}\"\n\n\
         [[models]]\nname = \"{TINY_CE}\"\npath = {tiny:?}\nmax_length = 128\n\n\
         [[cascade]]\nmodel = \"{TINY_CE}\"\nkeep = 10\n",
    )
    .unwrap();
    TestServer::start(&dir.join("data"), &["--config", config.to_str().unwrap()])
}

/// Runs `sieve eval --dataset DATASET --out OUT --quiet EXTRA...` in-process.
async fn eval(server: &TestServer, dataset: &Path, out: &Path, extra: &[&str]) -> ExitCode {
    let (dataset, out) = (dataset.to_str().unwrap(), out.to_str().unwrap());
    let args = ["eval", "--dataset", dataset, "--out", out, "--quiet"];
    let argv =
        ["sieve", "--addr", &server.url].into_iter().chain(args).chain(extra.iter().copied());
    cli::run(Cli::parse_from(argv)).await.expect("sieve eval runs")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_reports_every_pipeline_over_every_query() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("scifact-500");
    let (judgments, judged_docs) = write_subset(&dataset);
    assert_eq!(judgments, 50, "judgments of the first {QUERIES} SciFact test queries");
    assert!(judged_docs < DOCUMENTS);
    let server = start(dir.path());
    let out = dir.path().join("report.json");
    let code = eval(&server, &dataset, &out, &[]).await;
    assert_eq!(code, ExitCode::SUCCESS);

    let report = read_json(&out);
    assert_eq!(report["dataset"], "scifact-500");
    assert_eq!(report["collection"], "eval-scifact-500");
    assert_eq!(report["documents"], DOCUMENTS);
    assert_eq!(report["queries"], QUERIES);
    assert_eq!(report["judgments"], judgments);
    let pipelines = report["pipelines"].as_array().unwrap();
    let names: Vec<&str> = pipelines.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["bm25", "dense", "hybrid", "hybrid+rerank"]);

    let qrels_file = std::fs::File::open(dataset.join("qrels/test.tsv")).unwrap();
    let qrels = eval::read_qrels(BufReader::new(qrels_file)).unwrap();
    let mut candidate_sets: HashMap<&str, Vec<BTreeSet<String>>> = HashMap::new();
    for pipeline in pipelines {
        let name = pipeline["name"].as_str().unwrap();
        assert_eq!(pipeline["queries"], QUERIES, "{name}");
        assert_eq!(pipeline["errors"], Value::Array(Vec::new()), "{name}");
        let latency = &pipeline["latency_ms"];
        assert!(latency["p50"].as_f64().unwrap() > 0.0, "{name}: {latency}");
        assert!(latency["p50"].as_f64() <= latency["p99"].as_f64(), "{name}: {latency}");

        // The TREC file is the run in the JSON, and scoring it reproduces the reported means.
        let trec = dir.path().join(pipeline["trec_run_file"].as_str().unwrap());
        let run = eval::read_trec_run(BufReader::new(std::fs::File::open(&trec).unwrap())).unwrap();
        assert_eq!(run.len(), QUERIES, "{name}");
        let from_json: eval::Run = serde_json::from_value(pipeline["run"].clone()).unwrap();
        assert!(from_json == run, "{name}: the run in the JSON differs from {}", trec.display());
        for (query, hits) in &run {
            // BM25 finds only documents sharing a word with the query; the others fill 100.
            let expected = if name == "bm25" { 1..=100 } else { 100..=100 };
            assert!(expected.contains(&hits.len()), "{name} {query}: {} hits", hits.len());
            assert!(hits.windows(2).all(|w| w[0].1 > w[1].1), "{name} {query}: scores decrease");
        }
        let (_, mean) = eval::evaluate(&qrels, &run);
        let metrics = &pipeline["metrics"];
        assert_eq!(metrics["ndcg@10"].as_f64().unwrap(), mean.ndcg_at_10, "{name}");
        assert_eq!(metrics["recall@100"].as_f64().unwrap(), mean.recall_at_100, "{name}");
        assert_eq!(metrics["mrr@10"].as_f64().unwrap(), mean.mrr_at_10, "{name}");
        candidate_sets.insert(
            name,
            run.values().map(|hits| hits.iter().map(|(d, _)| d.clone()).collect()).collect(),
        );
    }
    let ndcg = |i: usize| pipelines[i]["metrics"]["ndcg@10"].as_f64().unwrap();
    // Every relevant document is among the 500, so the real retrievers find most of them.
    assert!(ndcg(0) > 0.6 && ndcg(1) > 0.6 && ndcg(2) > 0.6, "{pipelines:?}");
    // The cascade reorders hybrid's 100 candidates: the same documents per query, the same
    // Recall@100, survivors of the cross-encoder first.
    assert_eq!(candidate_sets["hybrid"], candidate_sets["hybrid+rerank"]);
    assert_eq!(pipelines[2]["metrics"]["recall@100"], pipelines[3]["metrics"]["recall@100"]);
    assert_eq!(pipelines[3]["cascade"]["stages"][0]["model"], TINY_CE);
    assert_eq!(pipelines[3]["cascade"]["candidates"], 100);

    // A second run reuses the collection (no ingest) and honours --max-queries and -p.
    let out = dir.path().join("again.json");
    let cascade = format!("bm25+{TINY_CE}:3");
    let code =
        eval(&server, &dataset, &out, &["--max-queries", "5", "-p", "bm25", "-p", &cascade]).await;
    assert_eq!(code, ExitCode::SUCCESS);
    let again = read_json(&out);
    assert_eq!(again["queries"], 5);
    let client = server.client().await;
    let stats = client.collection("eval-scifact-500").await.unwrap().stats.unwrap();
    assert_eq!(
        (stats.documents, stats.sequence),
        (DOCUMENTS as u64, DOCUMENTS as u64),
        "ingested once"
    );
    let second = &again["pipelines"][1];
    assert_eq!(second["name"], format!("bm25+{TINY_CE}:3"));
    let run: eval::Run = serde_json::from_value(second["run"].clone()).unwrap();
    // bm25's first five queries, reordered: 3 survivors of the cross-encoder, then the rest.
    let bm25: eval::Run = serde_json::from_value(again["pipelines"][0]["run"].clone()).unwrap();
    for (query, hits) in &run {
        let ids: BTreeSet<&String> = hits.iter().map(|(d, _)| d).collect();
        assert_eq!(ids, bm25[query].iter().map(|(d, _)| d).collect(), "query {query}");
    }
}

/// Writes `rows` in the TEXMEX layout `sieve bench vectors` reads: per row an i32 length, then
/// its items as little-endian 4-byte words.
fn write_vecs(path: &Path, rows: &[Vec<[u8; 4]>]) {
    let mut bytes = Vec::new();
    for row in rows {
        bytes.extend_from_slice(&(row.len() as i32).to_le_bytes());
        row.iter().for_each(|item| bytes.extend_from_slice(item));
    }
    std::fs::write(path, bytes).unwrap();
}

/// A `bench/peers/vectors.py`-shaped folder: `base` and `queries` as given, and each query's
/// 100 nearest base rows by cosine similarity (exact), best first.
fn write_vector_set(dir: &Path, base: &[Vec<f32>], queries: &[Vec<f32>]) {
    let cosine = |a: &[f32], b: &[f32]| {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b))
    };
    let truth: Vec<Vec<[u8; 4]>> = queries
        .iter()
        .map(|q| {
            let mut ranked: Vec<(f32, i32)> =
                base.iter().enumerate().map(|(i, v)| (cosine(q, v), i as i32)).collect();
            ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
            ranked.iter().take(100).map(|&(_, i)| i.to_le_bytes()).collect()
        })
        .collect();
    let floats = |rows: &[Vec<f32>]| -> Vec<Vec<[u8; 4]>> {
        rows.iter().map(|v| v.iter().map(|x| x.to_le_bytes()).collect()).collect()
    };
    std::fs::create_dir_all(dir).unwrap();
    write_vecs(&dir.join("base.fvecs"), &floats(base));
    write_vecs(&dir.join("queries.fvecs"), &floats(queries));
    write_vecs(&dir.join("truth.ivecs"), &truth);
}

/// `sieve bench vectors` with its defaults (M 16, ef 100, dense_k 10: the walk at exactly ef).
fn bench_vectors(dir: &Path, collection: &str) -> cli::bench::Command {
    cli::bench::Command::Vectors {
        dir: dir.to_path_buf(),
        collection: collection.to_string(),
        m: 16,
        ef_construction: 100,
        ef_search: 100,
        batch_size: 512,
        dense_k: 10,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_vectors_scores_recall_against_the_exact_ground_truth() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut vector = || (0..16).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<f32>>();
    let base: Vec<Vec<f32>> = (0..3_000).map(|_| vector()).collect();
    let queries: Vec<Vec<f32>> = (0..30).map(|_| vector()).collect();
    // 700 vectors are searched exactly (under the threshold), 3,000 through the HNSW graph.
    let (small, large) = (dir.path().join("small"), dir.path().join("large"));
    write_vector_set(&small, &base[..700], &queries);
    write_vector_set(&large, &base, &queries);
    let server = TestServer::start(&dir.path().join("data"), &["--exact-search-threshold", "1000"]);
    let client = server.client().await;

    let exact = cli::bench::report(&client, bench_vectors(&small, "small")).await.unwrap();
    assert_eq!(exact["vectors"], 700, "{exact:#}");
    assert_eq!(exact["queries"], 30);
    assert_eq!(exact["dimension"], 16);
    assert_eq!(exact["dense_k"], 10);
    assert_eq!(exact["m"], 16);
    assert_eq!(exact["ef_search"], 100);
    assert!(exact["ingest_seconds"].as_f64().unwrap() > 0.0, "{exact:#}");
    // Exact search finds exactly the ground truth: ids, file layouts and scoring agree.
    assert_eq!(exact["recall@10"], 1.0, "{exact:#}");

    // A second run finds every vector in place and only searches.
    let again = cli::bench::report(&client, bench_vectors(&small, "small")).await.unwrap();
    assert_eq!(again["ingest_seconds"], Value::Null, "{again:#}");
    assert_eq!(again["recall@10"], 1.0);

    let graph = cli::bench::report(&client, bench_vectors(&large, "large")).await.unwrap();
    let recall = graph["recall@10"].as_f64().unwrap();
    println!("HNSW recall@10 on 3,000 x 16 at ef 100: {recall}");
    assert!(recall >= 0.9, "the graph walk lost neighbours: {graph:#}");
    let stats = client.collection("large").await.unwrap().stats.unwrap();
    assert_eq!((stats.documents, stats.vectors), (3_000, 3_000));

    // Files that do not agree are refused before anything is sent.
    let torn = dir.path().join("torn");
    std::fs::create_dir_all(&torn).unwrap();
    for file in ["base.fvecs", "queries.fvecs", "truth.ivecs"] {
        std::fs::copy(small.join(file), torn.join(file)).unwrap();
    }
    let bytes = std::fs::read(torn.join("base.fvecs")).unwrap();
    std::fs::write(torn.join("base.fvecs"), &bytes[..bytes.len() - 2]).unwrap();
    let error = cli::bench::report(&client, bench_vectors(&torn, "torn")).await.unwrap_err();
    assert!(error.to_string().ends_with("base.fvecs: truncated"), "{error}");
    assert!(client.collection("torn").await.is_err(), "nothing was created");
}
