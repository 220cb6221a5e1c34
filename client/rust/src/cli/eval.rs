//! `sieve eval --dataset DIR`: ingests a BEIR-format test collection, runs every test query
//! through `Search` for each pipeline, and reports nDCG@10, Recall@100 and MRR@10 with latency
//! percentiles and throughput; `--out` writes the report as JSON and each run in TREC format.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::eval::{self, Qrels, Run, Scores};
use crate::{Client, Error, proto};
use anyhow::Context as _;
use futures::StreamExt;
use serde_json::json;

use super::bench::{histogram, percentiles, read_jsonl, record};
use super::ingest;
use super::search::parse_stages;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// BEIR-format folder: corpus.jsonl[.gz], queries.jsonl[.gz], qrels/<split>.tsv.
    #[arg(long)]
    dataset: PathBuf,
    /// Collection to use: reused when it exists (documents missing from it are ingested),
    /// created with the server's default embedder otherwise (default: eval-<folder name>).
    #[arg(short, long)]
    collection: Option<String>,
    /// Delete and re-create the collection first.
    #[arg(long)]
    recreate: bool,
    /// Judgments to score against: qrels/<split>.tsv.
    #[arg(long, default_value = "test")]
    split: String,
    /// Pipeline, repeatable: MODE (bm25, dense, hybrid), MODE+rerank (the server's cascade) or
    /// MODE+MODEL:KEEP[,MODEL:KEEP...] (that cascade). Default: bm25, dense, hybrid and
    /// hybrid+rerank, less those the collection or server cannot run.
    #[arg(short, long = "pipeline", value_name = "PIPELINE")]
    pipelines: Vec<String>,
    /// Fused candidates entering a cascade.
    #[arg(long, default_value_t = 100)]
    candidates: u32,
    /// Hits per query.
    #[arg(long, default_value_t = 100)]
    top_k: u32,
    /// Searches in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Only the first N queries of the split (in queries-file order).
    #[arg(long)]
    max_queries: Option<usize>,
    /// Write the report here as JSON; each pipeline's run goes beside it as
    /// <stem>.<pipeline>.trec.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Documents per ingest batch.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Hide the progress bars.
    #[arg(long)]
    quiet: bool,
}

/// A first stage and an optional cascade, as named on the command line.
#[derive(Clone, Debug, PartialEq)]
struct Pipeline {
    name: String,
    mode: proto::Mode,
    /// `None`: no reranking; empty: the server's default cascade.
    cascade: Option<Vec<proto::RerankStage>>,
}

fn parse_pipeline(spec: &str) -> anyhow::Result<Pipeline> {
    let (mode, rest) = match spec.split_once('+') {
        Some((mode, rest)) => (mode, Some(rest)),
        None => (spec, None),
    };
    let mode = match mode {
        "bm25" => proto::Mode::Bm25,
        "dense" => proto::Mode::Dense,
        "hybrid" => proto::Mode::Hybrid,
        other => anyhow::bail!("pipeline {spec}: unknown mode {other:?} (bm25, dense, hybrid)"),
    };
    let cascade = match rest {
        None => None,
        Some("rerank") => Some(Vec::new()),
        Some(stages) => {
            let stages: Vec<String> = stages.split(',').map(str::to_string).collect();
            Some(parse_stages(&stages).with_context(|| format!("pipeline {spec}"))?)
        }
    };
    Ok(Pipeline { name: spec.to_string(), mode, cascade })
}

/// The test collection as read from disk.
struct Dataset {
    name: String,
    corpus: PathBuf,
    documents: u64,
    /// (id, text) of the split's queries, in file order.
    queries: Vec<(String, String)>,
    qrels: Qrels,
}

/// `name.jsonl.gz` or `name.jsonl`, whichever exists.
fn jsonl_path(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    [format!("{name}.jsonl.gz"), format!("{name}.jsonl")]
        .into_iter()
        .map(|file| dir.join(file))
        .find(|path| path.is_file())
        .ok_or_else(|| anyhow::anyhow!("{}: no {name}.jsonl or {name}.jsonl.gz", dir.display()))
}

fn load(dir: &Path, split: &str, max_queries: Option<usize>) -> anyhow::Result<Dataset> {
    let corpus = jsonl_path(dir, "corpus")?;
    let qrels_path = dir.join("qrels").join(format!("{split}.tsv"));
    let qrels_file = std::fs::File::open(&qrels_path)
        .with_context(|| format!("opening {}", qrels_path.display()))?;
    let mut qrels = eval::read_qrels(std::io::BufReader::new(qrels_file))
        .map_err(|e| anyhow::anyhow!("{}: {e}", qrels_path.display()))?;
    let queries_path = jsonl_path(dir, "queries")?;
    let mut queries = Vec::new();
    for line in read_jsonl(&queries_path)? {
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}: not JSON", queries_path.display()))?;
        let id = match value.get("_id").or_else(|| value.get("id")) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => anyhow::bail!("{}: a query without `_id`", queries_path.display()),
        };
        if qrels.contains_key(&id) {
            let text = value.get("text").and_then(|t| t.as_str()).unwrap_or_default();
            queries.push((id, text.to_string()));
        }
    }
    if let Some(n) = max_queries {
        queries.truncate(n);
    }
    let asked: std::collections::HashSet<&str> =
        queries.iter().map(|(id, _)| id.as_str()).collect();
    let unknown: Vec<&String> = qrels.keys().filter(|q| !asked.contains(q.as_str())).collect();
    anyhow::ensure!(
        max_queries.is_some() || unknown.is_empty(),
        "{}: {} judged queries are missing from {} (e.g. {})",
        qrels_path.display(),
        unknown.len(),
        queries_path.display(),
        unknown[0]
    );
    qrels.retain(|query, _| asked.contains(query.as_str()));
    anyhow::ensure!(!queries.is_empty(), "{}: no judged queries", dir.display());
    let documents = ingest::count_lines(&corpus)?;
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "dataset".into());
    Ok(Dataset { name, corpus, documents, queries, qrels })
}

/// A collection name from a folder name: letters, digits, '_' and '-'.
fn collection_name(dataset: &str) -> String {
    let clean: String = dataset
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' })
        .take(59)
        .collect();
    format!("eval-{clean}")
}

/// Reuses, repairs or creates the collection; returns it.
async fn prepare(
    client: &Client,
    dataset: &Dataset,
    name: &str,
    args: &Args,
) -> anyhow::Result<proto::Collection> {
    let existing = match client.collection(name).await {
        Ok(collection) => Some(collection),
        Err(Error::Status(s)) if s.code() == tonic::Code::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let existing = match existing {
        Some(_) if args.recreate => {
            client.delete_collection(name).await?;
            None
        }
        other => other,
    };
    let documents = existing.as_ref().and_then(|c| c.stats).map_or(0, |s| s.documents);
    if existing.is_none() {
        client.create_collection(name, proto::CollectionConfig::default()).await?;
    }
    if documents == dataset.documents {
        eprintln!("reusing collection '{name}' ({documents} documents)");
    } else {
        eprintln!(
            "ingesting {} documents from {} into '{name}'",
            dataset.documents,
            dataset.corpus.display()
        );
        let outcome =
            ingest::stream_file(client, &dataset.corpus, name, args.batch_size, args.quiet).await?;
        outcome.print(name);
        if let Some(error) = outcome.failure {
            return Err(anyhow::Error::from(error).context("ingest stopped"));
        }
        anyhow::ensure!(outcome.failed() == 0, "{} documents did not land", outcome.failed());
    }
    Ok(client.collection(name).await?)
}

/// The ranking a search produced: the last stage's hits, then those each earlier stage ranked
/// but a later one cut, in that stage's order (a cascade ranks what it eliminated below what
/// survived). Scores are lowered where needed so they strictly decrease down the list: a score
/// that would not sort below the hit above it becomes the next float below that hit's. Tools
/// that re-sort by score (trec_eval) then see exactly this order.
fn ranking(response: &proto::SearchResponse, limit: usize) -> Vec<(String, f64)> {
    let mut seen = std::collections::HashSet::new();
    let mut ranked: Vec<(String, f64)> = Vec::new();
    for stage in response.stages.iter().rev() {
        for hit in &stage.hits {
            if ranked.len() == limit || !seen.insert(hit.id.as_str()) {
                continue;
            }
            let mut score = f64::from(hit.score);
            if let Some((_, above)) = ranked.last()
                && score >= *above
            {
                score = above.next_down();
            }
            ranked.push((hit.id.clone(), score));
        }
    }
    ranked
}

/// One pipeline's outcome over every query.
struct Measured {
    pipeline: Pipeline,
    run: Run,
    scores: Scores,
    latency: hdrhistogram::Histogram<u64>,
    seconds: f64,
    errors: Vec<(String, String)>,
}

async fn measure(
    client: &Client,
    collection: &str,
    dataset: &Dataset,
    pipeline: Pipeline,
    args: &Args,
) -> anyhow::Result<Measured> {
    let progress = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(dataset.queries.len() as u64)
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>24} {bar:30} {pos}/{len} queries {per_sec}  eta {eta}",
        )
        .expect("valid template"),
    );
    progress.set_prefix(pipeline.name.clone());
    let requests = dataset.queries.iter().map(|(id, text)| {
        let mut request = proto::SearchRequest::new(collection, text)
            .with_top_k(args.top_k)
            .with_mode(pipeline.mode);
        request.include_text = Some(false);
        let plan = request.plan.get_or_insert_with(Default::default);
        match &pipeline.cascade {
            None => plan.no_rerank = true,
            Some(stages) => {
                plan.rerank = stages.clone();
                plan.candidates = args.candidates;
            }
        }
        (id.clone(), request)
    });
    let started = Instant::now();
    let outcomes: Vec<(String, Duration, Result<proto::SearchResponse, Error>)> =
        futures::stream::iter(requests)
            .map(|(id, request)| {
                let (client, progress) = (client.clone(), progress.clone());
                async move {
                    let t = Instant::now();
                    let response = client.search(request).await;
                    progress.inc(1);
                    (id, t.elapsed(), response)
                }
            })
            .buffer_unordered(args.concurrency)
            .collect()
            .await;
    let seconds = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    let mut latency = histogram();
    let (mut run, mut errors) = (Run::new(), Vec::new());
    for (id, elapsed, response) in outcomes {
        match response {
            Ok(response) => {
                record(&mut latency, elapsed);
                run.insert(id, ranking(&response, args.top_k as usize));
            }
            Err(e) => errors.push((id, e.to_string())),
        }
    }
    let (_, scores) = eval::evaluate(&dataset.qrels, &run);
    Ok(Measured { pipeline, run, scores, latency, seconds, errors })
}

/// The pipelines to run: as asked, else every default the collection and server support.
fn pipelines(
    args: &Args,
    collection: &proto::Collection,
    info: &proto::GetInfoResponse,
) -> anyhow::Result<Vec<Pipeline>> {
    let dense = collection.config.as_ref().and_then(|c| c.dense.as_ref());
    let embeds = dense.is_some_and(|d| !d.embedder.is_empty());
    if !args.pipelines.is_empty() {
        let asked: Vec<Pipeline> =
            args.pipelines.iter().map(|p| parse_pipeline(p)).collect::<anyhow::Result<_>>()?;
        for p in &asked {
            anyhow::ensure!(
                p.mode == proto::Mode::Bm25 || embeds,
                "pipeline {}: collection '{}' has no built-in embedder, so the server cannot embed the queries",
                p.name,
                collection.name
            );
            anyhow::ensure!(
                p.cascade
                    .as_ref()
                    .is_none_or(|c| !c.is_empty() || !info.default_cascade.is_empty()),
                "pipeline {}: the server has no default cascade; name the stages (MODE+MODEL:KEEP)",
                p.name
            );
        }
        return Ok(asked);
    }
    let mut chosen = vec!["bm25"];
    if embeds {
        chosen.extend(["dense", "hybrid"]);
    } else {
        eprintln!(
            "leaving out dense and hybrid: collection '{}' has no built-in embedder",
            collection.name
        );
    }
    if info.default_cascade.is_empty() {
        eprintln!("leaving out +rerank: the server has no default cascade");
    } else {
        chosen.push(if embeds { "hybrid+rerank" } else { "bm25+rerank" });
    }
    chosen.into_iter().map(parse_pipeline).collect()
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    for spec in &args.pipelines {
        parse_pipeline(spec)?;
    }
    let dataset = load(&args.dataset, &args.split, args.max_queries)?;
    let name = args.collection.clone().unwrap_or_else(|| collection_name(&dataset.name));
    let info = client.info().await?;
    let collection = prepare(client, &dataset, &name, &args).await?;
    let pipelines = pipelines(&args, &collection, &info)?;
    eprintln!(
        "{} {} queries, {} judgments, against '{name}' ({} documents)",
        dataset.queries.len(),
        args.split,
        dataset.qrels.values().map(HashMap::len).sum::<usize>(),
        collection.stats.map_or(0, |s| s.documents),
    );

    let mut measured = Vec::new();
    for pipeline in pipelines {
        let result = measure(client, &name, &dataset, pipeline, &args).await?;
        print_row(&result, measured.is_empty());
        measured.push(result);
    }
    let failed: usize = measured.iter().map(|m| m.errors.len()).sum();
    for m in &measured {
        for (query, error) in m.errors.iter().take(5) {
            eprintln!("{}: query {query} failed: {error}", m.pipeline.name);
        }
    }
    if let Some(out) = &args.out {
        write_report(out, &dataset, &name, &info, &args, &measured)?;
        eprintln!("wrote {}", out.display());
    }
    Ok(if failed == 0 { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE })
}

fn print_row(m: &Measured, header: bool) {
    if header {
        println!(
            "{:<40} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8} {:>6}",
            "PIPELINE", "nDCG@10", "R@100", "MRR@10", "p50 ms", "p95 ms", "p99 ms", "q/s", "errors"
        );
    }
    let ms = |q: f64| m.latency.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{:<40} {:>8.4} {:>8.4} {:>8.4} {:>9.2} {:>9.2} {:>9.2} {:>8.1} {:>6}",
        m.pipeline.name,
        m.scores.ndcg_at_10,
        m.scores.recall_at_100,
        m.scores.mrr_at_10,
        ms(0.50),
        ms(0.95),
        ms(0.99),
        m.run.len() as f64 / m.seconds.max(1e-9),
        m.errors.len()
    );
}

/// `report.json` → `report.<pipeline>.trec`, the pipeline name made file-safe.
fn trec_path(out: &Path, pipeline: &str) -> PathBuf {
    let safe: String = pipeline
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "+-_.".contains(c) { c } else { '_' })
        .collect();
    let stem = out.file_stem().map_or_else(|| "eval".into(), |s| s.to_string_lossy().into_owned());
    out.with_file_name(format!("{stem}.{safe}.trec"))
}

fn write_report(
    out: &Path,
    dataset: &Dataset,
    collection: &str,
    info: &proto::GetInfoResponse,
    args: &Args,
    measured: &[Measured],
) -> anyhow::Result<()> {
    let mut pipelines = Vec::new();
    for m in measured {
        let trec = trec_path(out, &m.pipeline.name);
        let file =
            std::fs::File::create(&trec).with_context(|| format!("writing {}", trec.display()))?;
        let mut writer = std::io::BufWriter::new(file);
        eval::write_trec_run(&mut writer, &m.run, "sieve")?;
        std::io::Write::flush(&mut writer)?;
        let cascade = m.pipeline.cascade.as_ref().map(|stages| {
            let stages = if stages.is_empty() {
                info.default_cascade
                    .iter()
                    .map(|s| json!({"model": s.model, "keep": s.keep}))
                    .collect::<Vec<_>>()
            } else {
                stages.iter().map(|s| json!({"model": s.model, "keep": s.keep})).collect()
            };
            json!({"stages": stages, "candidates": args.candidates})
        });
        pipelines.push(json!({
            "name": m.pipeline.name,
            "mode": m.pipeline.mode.as_str_name(),
            "cascade": cascade,
            "metrics": {
                "ndcg@10": m.scores.ndcg_at_10,
                "recall@100": m.scores.recall_at_100,
                "mrr@10": m.scores.mrr_at_10,
            },
            "queries": m.run.len(),
            "errors": m.errors.iter().map(|(q, e)| json!({"query": q, "error": e})).collect::<Vec<_>>(),
            "seconds": m.seconds,
            "qps": m.run.len() as f64 / m.seconds.max(1e-9),
            "latency_ms": percentiles(&m.latency),
            "trec_run_file": trec.file_name().map(|n| n.to_string_lossy().into_owned()),
            "run": m.run,
        }));
    }
    let report = json!({
        "dataset": dataset.name,
        "split": args.split,
        "collection": collection,
        "documents": dataset.documents,
        "queries": dataset.queries.len(),
        "judgments": dataset.qrels.values().map(HashMap::len).sum::<usize>(),
        "top_k": args.top_k,
        "concurrency": args.concurrency,
        "server": {"version": info.version, "build": info.build},
        "pipelines": pipelines,
    });
    std::fs::write(out, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines_parse() {
        assert_eq!(
            parse_pipeline("bm25").unwrap(),
            Pipeline { name: "bm25".into(), mode: proto::Mode::Bm25, cascade: None }
        );
        assert_eq!(parse_pipeline("hybrid+rerank").unwrap().cascade, Some(Vec::new()));
        let p = parse_pipeline("dense+org/ce:20,tiny:5@-1.5").unwrap();
        assert_eq!(p.mode, proto::Mode::Dense);
        assert_eq!(
            p.cascade.unwrap(),
            [
                proto::RerankStage { model: "org/ce".into(), keep: 20, min_score: None },
                proto::RerankStage { model: "tiny".into(), keep: 5, min_score: Some(-1.5) }
            ]
        );
        assert_eq!(
            parse_pipeline("bm25+ce:5@high").unwrap_err().root_cause().to_string(),
            "--rerank ce:5@high: MIN must be a number (a raw logit)"
        );
        assert_eq!(
            parse_pipeline("splade").unwrap_err().to_string(),
            "pipeline splade: unknown mode \"splade\" (bm25, dense, hybrid)"
        );
        assert!(parse_pipeline("bm25+ce").is_err());
    }

    fn stage(name: &str, hits: &[(&str, f32)]) -> proto::StageHits {
        proto::StageHits {
            stage: name.into(),
            hits: hits
                .iter()
                .map(|&(id, score)| proto::Hit { id: id.into(), score, ..Default::default() })
                .collect(),
            model: String::new(),
        }
    }

    #[test]
    fn cascades_rank_survivors_first_and_scores_strictly_decrease() {
        let response = proto::SearchResponse {
            stages: vec![
                stage("fused", &[("a", 0.05), ("b", 0.04), ("c", 0.04), ("d", 0.03)]),
                stage("rerank:1", &[("c", 3.0), ("a", -1.0), ("b", -2.0)]),
                stage("rerank:2", &[("a", 7.0), ("c", 7.0)]),
            ],
            done: None,
        };
        let ranked = ranking(&response, 100);
        let ids: Vec<&str> = ranked.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "b", "d"]);
        assert_eq!(ranked[0].1, 7.0);
        assert_eq!(ranked[1].1, 7f64.next_down());
        assert_eq!(ranked[2].1, -2.0);
        assert_eq!(ranked[3].1, (-2f64).next_down());
        assert!(ranked.windows(2).all(|w| w[0].1 > w[1].1));
        assert_eq!(ranking(&response, 2).len(), 2);
    }

    #[test]
    fn trec_files_sit_beside_the_report() {
        assert_eq!(
            trec_path(Path::new("/tmp/out/scifact.json"), "hybrid+org/ce:20"),
            Path::new("/tmp/out/scifact.hybrid+org_ce_20.trec")
        );
        assert_eq!(collection_name("sci fact"), "eval-sci-fact");
    }
}
