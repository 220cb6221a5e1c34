//! `sieve bench`: load generators over the real gRPC API, reporting throughput and latency
//! percentiles (HDR histogram) as JSON.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Client, jsonl, proto};
use anyhow::Context as _;
use futures::StreamExt;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::collections::{AnalyzerArg, DistanceArg, config};
use super::ingest::open;
use super::search::{CascadeArgs, ModeArg};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Stream documents (texts from a corpus file, cycled; random unit vectors) and time the acks.
    Ingest {
        /// Collection (created as dense cosine with --dimension if missing).
        #[arg(short, long)]
        collection: String,
        /// JSON-lines corpus supplying ids, titles and texts.
        #[arg(long)]
        corpus: PathBuf,
        /// Documents to send.
        #[arg(long, default_value_t = 10_000)]
        docs: usize,
        /// Vector dimension of the random vectors; 0 sends no vectors.
        #[arg(long, default_value_t = 384)]
        dimension: usize,
        /// Send no vectors and let this server-side embedder make them (creates the
        /// collection with it).
        #[arg(long)]
        embedder: Option<String>,
        /// Documents per batch.
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
        /// Seed of the random vectors.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// What each ack waits for (cluster mode; a standalone server's acks are all visible).
        #[arg(long, value_enum, default_value_t = AckArg::Visible)]
        ack: AckArg,
        /// Send the next batch only once the previous one is acked, so that ms_per_batch is
        /// each ack's latency (default: batches pipelined, ms between consecutive acks).
        #[arg(long)]
        sequential: bool,
    },
    /// Standalone against cluster side by side: the same ingest (VISIBLE and DURABLE acks, one
    /// batch at a time) and the same hybrid searches (no rerank) on a standalone server and on a
    /// cluster's router (`--addr`), with the router's added latency. Fresh collections
    /// `bench-cluster-*` on both.
    Cluster {
        /// The standalone server to compare with.
        #[arg(long)]
        standalone: String,
        /// JSON-lines corpus supplying ids, titles and texts.
        #[arg(long)]
        corpus: PathBuf,
        /// JSON-lines queries, or a BEIR folder.
        #[arg(long)]
        queries: PathBuf,
        /// Documents ingested per run.
        #[arg(long, default_value_t = 5_000)]
        docs: usize,
        /// Vector dimension of the random vectors.
        #[arg(long, default_value_t = 384)]
        dimension: usize,
        /// Documents per batch.
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
        /// Measured searches per server.
        #[arg(long, default_value_t = 1000)]
        requests: usize,
    },
    /// Send Rerank requests (query + passages from a corpus) and time them: pairs/s.
    Rerank {
        /// JSON-lines corpus supplying passages (title + text).
        #[arg(long)]
        corpus: PathBuf,
        /// JSON-lines queries ({"text": ...}).
        #[arg(long)]
        queries: PathBuf,
        /// Cross-encoder (default: the server's).
        #[arg(long)]
        model: Option<String>,
        /// Measured requests (after 2 warm-up requests).
        #[arg(long, default_value_t = 10)]
        requests: usize,
        /// Passages per request.
        #[arg(long, default_value_t = 20)]
        passages: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
    },
    /// HNSW at scale: ingest the vectors of bench/peers/vectors.py (base.fvecs), search with
    /// its queries one at a time through the dense pipeline, and report recall@10 against its
    /// exact ground truth (truth.ivecs) with latency; the same work as bench/peers/hnsw.py.
    Vectors {
        /// Folder holding base.fvecs, queries.fvecs and truth.ivecs.
        #[arg(long)]
        dir: PathBuf,
        /// Collection (created as dense cosine with these HNSW settings if missing; reused,
        /// without ingest, if it already holds every base vector).
        #[arg(short, long)]
        collection: String,
        /// HNSW links per node.
        #[arg(long, default_value_t = 16)]
        m: u32,
        /// HNSW build candidate list.
        #[arg(long, default_value_t = 100)]
        ef_construction: u32,
        /// HNSW search candidate list.
        #[arg(long, default_value_t = 100)]
        ef_search: u32,
        /// Documents per ingest batch.
        #[arg(long, default_value_t = 512)]
        batch_size: usize,
        /// Candidates the dense retriever fetches per query (the plan's dense_k). The graph walk
        /// keeps max(ef_search, 1.2 x dense_k + 8) candidates, so 10 walks at exactly ef_search,
        /// as the peers do; the server's default, 100, walks at 128.
        #[arg(long, default_value_t = 10)]
        dense_k: u32,
    },
    /// Several clients at once mixing ingest batches, searches (with a cascade) and deletes for
    /// a fixed time: throughput, latency and errors per operation.
    Load(super::load::Args),
    /// Send searches and time them.
    Search {
        /// Collection.
        #[arg(short, long)]
        collection: String,
        /// JSON-lines queries ({"text": ...}, BEIR queries format), or a BEIR folder (its
        /// queries.jsonl[.gz]).
        #[arg(long)]
        queries: PathBuf,
        /// Measured requests.
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        /// Measure for this many seconds instead of a number of requests.
        #[arg(long, conflicts_with = "requests")]
        duration: Option<f64>,
        /// Unmeasured requests sent first.
        #[arg(long, default_value_t = 50)]
        warmup: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Retrievers. Dense and hybrid send a random unit query vector unless the collection
        /// has a built-in embedder, which then embeds the query text.
        #[arg(long, value_enum, default_value_t = ModeArg::Hybrid)]
        mode: ModeArg,
        #[command(flatten)]
        cascade: CascadeArgs,
        /// Hits per search.
        #[arg(long, default_value_t = 10)]
        top_k: u32,
        /// Seed of the random query vectors.
        #[arg(long, default_value_t = 2)]
        seed: u64,
    },
}

/// `--ack`: what an ingest ack waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AckArg {
    /// Durable and searchable.
    Visible,
    /// Durable (cluster mode: on a quorum of the log's servers).
    Durable,
}

impl AckArg {
    fn level(self) -> proto::AckLevel {
        match self {
            AckArg::Visible => proto::AckLevel::Visible,
            AckArg::Durable => proto::AckLevel::Durable,
        }
    }
}

/// Vectors in the TEXMEX `.fvecs` layout: per vector an i32 dimension, then its f32s.
fn read_fvecs(path: &Path) -> anyhow::Result<Vec<Vec<f32>>> {
    read_vecs(path, f32::from_le_bytes)
}

/// `.ivecs`: the same layout with i32 items.
fn read_ivecs(path: &Path) -> anyhow::Result<Vec<Vec<i32>>> {
    read_vecs(path, i32::from_le_bytes)
}

fn read_vecs<T>(path: &Path, item: impl Fn([u8; 4]) -> T) -> anyhow::Result<Vec<Vec<T>>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let word = |at: usize| -> [u8; 4] { bytes[at..at + 4].try_into().expect("4 bytes") };
    let mut vectors = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        anyhow::ensure!(at + 4 <= bytes.len(), "{}: truncated", path.display());
        let dim = i32::from_le_bytes(word(at));
        anyhow::ensure!(dim > 0, "{}: dimension {dim} at byte {at}", path.display());
        let end = at + 4 + 4 * dim as usize;
        anyhow::ensure!(end <= bytes.len(), "{}: truncated", path.display());
        vectors.push((at + 4..end).step_by(4).map(|i| item(word(i))).collect());
        at = end;
    }
    Ok(vectors)
}

pub(super) fn unit_vector(rng: &mut StdRng, dimension: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..dimension).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
    v.into_iter().map(|x| x / norm).collect()
}

/// Passages (`title text`) of a JSON-lines corpus, at least one.
pub(super) fn corpus_passages(corpus: &Path) -> anyhow::Result<Vec<String>> {
    let texts: Vec<String> = read_jsonl(corpus)?
        .iter()
        .map(|line| {
            let doc = jsonl::parse_document(line).map_err(anyhow::Error::msg)?;
            Ok(format!("{} {}", doc.title, doc.text).trim().to_string())
        })
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(!texts.is_empty(), "{} holds no documents", corpus.display());
    Ok(texts)
}

pub(super) fn read_jsonl(path: &Path) -> anyhow::Result<Vec<String>> {
    use std::io::BufRead;
    let lines: Vec<String> = open(path)?.lines().collect::<Result<_, _>>()?;
    Ok(lines.into_iter().filter(|l| !l.trim().is_empty()).collect())
}

/// The `text` of every query in a JSON-lines file.
fn query_texts(path: &Path) -> anyhow::Result<Vec<String>> {
    let path = &if path.is_dir() {
        ["queries.jsonl.gz", "queries.jsonl"]
            .into_iter()
            .map(|name| path.join(name))
            .find(|p| p.is_file())
            .ok_or_else(|| anyhow::anyhow!("{}: no queries.jsonl[.gz]", path.display()))?
    } else {
        path.to_path_buf()
    };
    let texts: Vec<String> = read_jsonl(path)?
        .iter()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)?;
            Ok(value.get("text").and_then(|t| t.as_str()).unwrap_or_default().to_string())
        })
        .collect::<anyhow::Result<_>>()
        .with_context(|| format!("reading queries from {}", path.display()))?;
    anyhow::ensure!(!texts.is_empty(), "{} holds no queries", path.display());
    Ok(texts)
}

/// How long until a STRONG search of `collection` answers (every acknowledged write applied
/// by the serving replicas), asking again while the shards answer that they are behind (at
/// most 5 minutes).
async fn catch_up(client: &Client, collection: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let request = proto::SearchRequest::new(collection, "catch up")
            .with_mode(proto::Mode::Bm25)
            .with_top_k(1)
            .strong();
        match client.search(request).await {
            Ok(_) => return Ok(started.elapsed()),
            Err(crate::Error::Status(status))
                if status.code() == tonic::Code::Unavailable
                    && started.elapsed() < Duration::from_secs(300) => {}
            Err(e) => return Err(e).context("a STRONG search while the shards catch up"),
        }
    }
}

pub(super) fn percentiles(histogram: &Histogram<u64>) -> serde_json::Value {
    let ms = |micros: u64| micros as f64 / 1000.0;
    json!({
        "p50": ms(histogram.value_at_quantile(0.50)),
        "p95": ms(histogram.value_at_quantile(0.95)),
        "p99": ms(histogram.value_at_quantile(0.99)),
        "max": ms(histogram.max()),
        "mean": histogram.mean() / 1000.0,
    })
}

/// Latencies in microseconds, from 1 µs to 10 minutes, 3 significant digits.
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

pub(super) fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    histogram.saturating_record(elapsed.as_micros() as u64);
}

pub async fn run(client: &Client, command: Command) -> anyhow::Result<()> {
    if let Command::Load(args) = command {
        return super::load::run(client, args).await;
    }
    let report = report(client, command).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Runs a benchmark and returns its JSON report (what `sieve bench` prints). `Load` streams its
/// own report (see `--out`) and is refused here.
pub async fn report(client: &Client, command: Command) -> anyhow::Result<serde_json::Value> {
    let report = match command {
        Command::Load(_) => anyhow::bail!("bench load writes its own report: run it with `run`"),
        Command::Cluster { standalone, corpus, queries, docs, dimension, batch_size, requests } => {
            let reference = Client::connect(&standalone)
                .await
                .with_context(|| format!("connecting to the standalone server {standalone}"))?;
            let mut runs = serde_json::Map::new();
            for (name, target, ack) in [
                ("standalone", &reference, AckArg::Visible),
                ("cluster_visible", client, AckArg::Visible),
                ("cluster_durable", client, AckArg::Durable),
            ] {
                let collection = format!("bench-cluster-{}", name.replace('_', "-"));
                let _ = target.delete_collection(&collection).await;
                let started = Instant::now();
                let ingest = Command::Ingest {
                    collection: collection.clone(),
                    corpus: corpus.clone(),
                    docs,
                    dimension,
                    embedder: None,
                    batch_size,
                    seed: 1,
                    ack,
                    sequential: true,
                };
                let mut measured = Box::pin(report(target, ingest)).await?;
                if ack == AckArg::Durable {
                    // DURABLE acks do not wait for the shards: how long after the last ack
                    // until a STRONG read (every acknowledged write applied) answers.
                    let acked = Instant::now();
                    let lag = catch_up(target, &collection).await?;
                    let applied = started.elapsed().as_secs_f64();
                    measured["apply_lag_after_last_ack_ms"] = json!(lag.as_secs_f64() * 1000.0);
                    measured["caught_up_after_ms"] = json!(
                        acked.duration_since(started).as_secs_f64() * 1000.0
                            + lag.as_secs_f64() * 1000.0
                    );
                    measured["applied_docs_per_sec"] = json!(docs as f64 / applied);
                }
                runs.insert(format!("ingest_{name}"), measured);
            }
            let mut p50 = Vec::new();
            for (name, target, collection) in [
                ("standalone", &reference, "bench-cluster-standalone"),
                ("cluster", client, "bench-cluster-cluster-visible"),
            ] {
                let search = Command::Search {
                    collection: collection.to_string(),
                    queries: queries.clone(),
                    requests,
                    duration: None,
                    warmup: 50,
                    concurrency: 1,
                    mode: ModeArg::Hybrid,
                    cascade: CascadeArgs { rerank: Vec::new(), no_rerank: true, candidates: None },
                    top_k: 10,
                    seed: 2,
                };
                let measured = Box::pin(report(target, search)).await?;
                p50.push(measured["latency_ms"]["p50"].as_f64().unwrap_or(f64::NAN));
                runs.insert(format!("search_{name}"), measured);
            }
            runs.insert("router_added_p50_ms".into(), json!(p50[1] - p50[0]));
            serde_json::Value::Object(runs)
        }
        Command::Ingest {
            collection,
            corpus,
            docs,
            dimension,
            embedder,
            batch_size,
            seed,
            ack,
            sequential,
        } => {
            anyhow::ensure!(batch_size > 0, "--batch-size must be at least 1");
            let lines = read_jsonl(&corpus)?;
            anyhow::ensure!(!lines.is_empty(), "{} holds no documents", corpus.display());
            if client.collection(&collection).await.is_err() {
                let dense = (dimension > 0 && embedder.is_none()).then_some(dimension as u32);
                let keyword_only = dense.is_none() && embedder.is_none();
                let settings = config(
                    dense,
                    embedder.clone(),
                    keyword_only,
                    DistanceArg::Cosine,
                    AnalyzerArg::English,
                    proto::HnswParams::default(),
                );
                client.create_collection(&collection, settings).await?;
            }
            let mut rng = StdRng::seed_from_u64(seed);
            let mut documents = Vec::with_capacity(docs);
            for i in 0..docs {
                let mut doc = jsonl::parse_document(&lines[i % lines.len()])
                    .map_err(|e| anyhow::anyhow!("{}: {e}", corpus.display()))?;
                let pass = i / lines.len();
                if pass > 0 {
                    doc.id = format!("{}#{pass}", doc.id);
                }
                doc.vector =
                    if dimension > 0 { unit_vector(&mut rng, dimension) } else { Vec::new() };
                documents.push(doc);
            }
            let batches: Vec<proto::IngestRequest> = documents
                .chunks(batch_size)
                .map(|chunk| proto::IngestRequest {
                    collection: collection.clone(),
                    documents: chunk.to_vec(),
                    ack: ack.level() as i32,
                    ..Default::default()
                })
                .collect();
            let count = batches.len();
            let started = Instant::now();
            let mut batch_time = histogram();
            let (mut accepted, mut rejected, mut visible, mut last) = (0, 0, 0, started);
            let mut count_ack = |ack: proto::IngestAck| {
                let now = Instant::now();
                record(&mut batch_time, now.duration_since(last));
                last = now;
                accepted += ack.accepted.len();
                rejected += ack.errors.len();
                visible += usize::from(ack.visible);
            };
            if sequential {
                // One batch in flight: the time between acks is each ack's latency.
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                let mut acks =
                    client.ingest(tokio_stream::wrappers::ReceiverStream::new(rx)).await?;
                for batch in batches {
                    tx.send(batch).await.context("the ingest stream closed")?;
                    let ack = acks.message().await?.context("the ingest stream closed")?;
                    count_ack(ack);
                }
            } else {
                // Batches are pipelined, so the time between consecutive acks is the server's
                // time per batch in steady state.
                let mut acks = client.ingest(futures::stream::iter(batches)).await?;
                while let Some(ack) = acks.message().await? {
                    count_ack(ack);
                }
            }
            let seconds = started.elapsed().as_secs_f64();
            anyhow::ensure!(
                batch_time.len() == count as u64,
                "{} acks for {count} batches",
                batch_time.len()
            );
            json!({
                "collection": collection, "documents": docs, "dimension": dimension, "embedder": embedder,
                "batch_size": batch_size, "ack": format!("{ack:?}").to_lowercase(), "sequential": sequential,
                "visible_acks": visible,
                "accepted": accepted, "rejected": rejected, "seconds": seconds,
                "docs_per_sec": accepted as f64 / seconds, "ms_per_batch": percentiles(&batch_time),
            })
        }
        Command::Rerank { corpus, queries, model, requests, passages, concurrency } => {
            anyhow::ensure!(
                concurrency > 0 && passages > 0,
                "--concurrency and --passages must be at least 1"
            );
            let texts = corpus_passages(&corpus)?;
            let query_texts = query_texts(&queries)?;
            let make = |i: usize| proto::RerankRequest {
                query: query_texts[i % query_texts.len()].clone(),
                texts: (0..passages)
                    .map(|j| texts[(i * passages + j) % texts.len()].clone())
                    .collect(),
                top_n: 0,
                model: model.clone().unwrap_or_default(),
                windows: false,
            };
            for i in 0..2 {
                client.rerank(make(i)).await?;
            }
            let started = Instant::now();
            let outcomes: Vec<(Duration, Option<proto::RerankResponse>)> =
                futures::stream::iter((2..requests + 2).map(make))
                    .map(|request| {
                        let client = client.clone();
                        async move {
                            let t = Instant::now();
                            let response = client.rerank(request).await.ok();
                            (t.elapsed(), response)
                        }
                    })
                    .buffer_unordered(concurrency)
                    .collect()
                    .await;
            let seconds = started.elapsed().as_secs_f64();
            let mut latency = histogram();
            let (mut queue, mut compute) = (histogram(), histogram());
            for (elapsed, response) in &outcomes {
                record(&mut latency, *elapsed);
                if let Some(r) = response {
                    record(&mut queue, Duration::from_micros(r.queue_micros));
                    record(&mut compute, Duration::from_micros(r.compute_micros));
                }
            }
            let errors = outcomes.iter().filter(|(_, r)| r.is_none()).count();
            let model_name = outcomes
                .iter()
                .find_map(|(_, r)| r.as_ref().map(|r| r.model.clone()))
                .unwrap_or_default();
            let pairs = (requests - errors) * passages;
            json!({
                "model": model_name, "requests": requests, "passages_per_request": passages, "concurrency": concurrency,
                "errors": errors, "seconds": seconds, "pairs_per_sec": pairs as f64 / seconds,
                "ms_per_100_pairs": seconds * 1000.0 * 100.0 / pairs.max(1) as f64,
                "latency_ms": percentiles(&latency), "queue_ms": percentiles(&queue), "compute_ms": percentiles(&compute),
            })
        }
        Command::Vectors {
            dir,
            collection,
            m,
            ef_construction,
            ef_search,
            batch_size,
            dense_k,
        } => {
            anyhow::ensure!(batch_size > 0, "--batch-size must be at least 1");
            let base = read_fvecs(&dir.join("base.fvecs"))?;
            let queries = read_fvecs(&dir.join("queries.fvecs"))?;
            let truth = read_ivecs(&dir.join("truth.ivecs"))?;
            anyhow::ensure!(
                !base.is_empty() && queries.len() == truth.len(),
                "{}: base, queries and truth disagree",
                dir.display()
            );
            let dimension = base[0].len() as u32;
            let existing = client.collection(&collection).await.ok();
            let documents = existing.as_ref().and_then(|c| c.stats).map_or(0, |s| s.documents);
            let mut ingest_seconds = None;
            if documents != base.len() as u64 {
                if existing.is_none() {
                    let hnsw = proto::HnswParams { m, ef_construction, ef_search };
                    let settings = config(
                        Some(dimension),
                        None,
                        false,
                        DistanceArg::Cosine,
                        AnalyzerArg::English,
                        hnsw,
                    );
                    client.create_collection(&collection, settings).await?;
                }
                let batches: Vec<proto::IngestRequest> = base
                    .chunks(batch_size)
                    .enumerate()
                    .map(|(b, chunk)| proto::IngestRequest {
                        collection: collection.clone(),
                        documents: chunk
                            .iter()
                            .enumerate()
                            .map(|(i, v)| proto::Document {
                                id: (b * batch_size + i).to_string(),
                                vector: v.clone(),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect();
                let started = Instant::now();
                let mut acks = client.ingest(futures::stream::iter(batches)).await?;
                let mut rejected = 0;
                while let Some(ack) = acks.message().await? {
                    rejected += ack.errors.len();
                }
                anyhow::ensure!(rejected == 0, "{rejected} vectors were rejected");
                ingest_seconds = Some(started.elapsed().as_secs_f64());
            }
            let hnsw = client
                .collection(&collection)
                .await?
                .config
                .and_then(|c| c.dense)
                .and_then(|d| d.hnsw)
                .unwrap_or_default();
            let mut latency = histogram();
            let mut recall = 0.0;
            let started = Instant::now();
            for (query, truth) in queries.iter().zip(&truth) {
                let mut request = proto::SearchRequest::new(&collection, "")
                    .with_vector(query.clone())
                    .with_top_k(10)
                    .with_mode(proto::Mode::Dense);
                request.plan.get_or_insert_with(Default::default).dense_k = dense_k;
                let t = Instant::now();
                let response = client.search(request).await?;
                record(&mut latency, t.elapsed());
                let expected: Vec<String> = truth.iter().take(10).map(|i| i.to_string()).collect();
                let found = response.hits().iter().filter(|h| expected.contains(&h.id)).count();
                recall += found as f64 / 10.0;
            }
            let seconds = started.elapsed().as_secs_f64();
            json!({
                "collection": collection, "vectors": base.len(), "dimension": dimension, "queries": queries.len(),
                "m": hnsw.m, "ef_construction": hnsw.ef_construction, "ef_search": hnsw.ef_search,
                "dense_k": dense_k, "ingest_seconds": ingest_seconds,
                "ingest_docs_per_sec": ingest_seconds.map(|s| base.len() as f64 / s),
                "recall@10": recall / queries.len() as f64,
                "qps_one_client": queries.len() as f64 / seconds, "latency_ms": percentiles(&latency),
            })
        }
        Command::Search {
            collection,
            queries,
            requests,
            duration,
            warmup,
            concurrency,
            mode,
            cascade,
            top_k,
            seed,
        } => {
            anyhow::ensure!(concurrency > 0, "--concurrency must be at least 1");
            let texts = query_texts(&queries)?;
            let dense = client.collection(&collection).await?.config.and_then(|c| c.dense);
            let dimension = dense.as_ref().map_or(0, |d| d.dimension as usize);
            let server_embeds = dense.as_ref().is_some_and(|d| !d.embedder.is_empty());
            let mut staged = proto::Plan::default();
            cascade.apply(&mut staged)?;
            let (mode, needs_vector) = match mode {
                ModeArg::Bm25 => (proto::Mode::Bm25, false),
                ModeArg::Dense => (proto::Mode::Dense, true),
                ModeArg::Hybrid => (proto::Mode::Hybrid, true),
            };
            anyhow::ensure!(
                !needs_vector || dimension > 0,
                "collection '{collection}' has no vectors; use --mode bm25"
            );
            let send_vector = needs_vector && !server_embeds;
            let collection_name = collection.clone();
            let mut rng = StdRng::seed_from_u64(seed);
            let mut make = move |i: usize| {
                let mut request =
                    proto::SearchRequest::new(&collection_name, &texts[i % texts.len()])
                        .with_top_k(top_k)
                        .with_mode(mode);
                request.include_text = Some(false);
                if send_vector {
                    request.query_vector = unit_vector(&mut rng, dimension);
                }
                let mode = request.plan.as_ref().map_or(0, |p| p.mode);
                request.plan = Some(proto::Plan { mode, ..staged.clone() });
                request
            };
            for i in 0..warmup {
                client.search(make(i)).await?;
            }
            // A fixed count, or as many as fit in --duration (requests already in flight finish).
            let limit = if duration.is_some() { usize::MAX } else { requests };
            let deadline = duration.map(|s| Instant::now() + Duration::from_secs_f64(s));
            let started = Instant::now();
            let outcomes: Vec<(Duration, bool)> =
                futures::stream::iter(warmup..warmup.saturating_add(limit))
                    .take_while(|_| std::future::ready(deadline.is_none_or(|d| Instant::now() < d)))
                    .map(&mut make)
                    .map(|request| {
                        let client = client.clone();
                        async move {
                            let t = Instant::now();
                            let ok = client.search(request).await.is_ok();
                            (t.elapsed(), ok)
                        }
                    })
                    .buffer_unordered(concurrency)
                    .collect()
                    .await;
            let requests = outcomes.len();
            let seconds = started.elapsed().as_secs_f64();
            let mut latency = histogram();
            for (elapsed, _) in &outcomes {
                record(&mut latency, *elapsed);
            }
            let errors = outcomes.iter().filter(|(_, ok)| !ok).count();
            json!({
                "collection": collection, "mode": mode.as_str_name(), "server_embeds_query": server_embeds,
                "rerank": cascade.rerank, "no_rerank": cascade.no_rerank, "candidates": cascade.candidates, "requests": requests, "concurrency": concurrency,
                "top_k": top_k, "errors": errors, "seconds": seconds, "qps": requests as f64 / seconds,
                "latency_ms": percentiles(&latency),
            })
        }
    };
    Ok(report)
}
