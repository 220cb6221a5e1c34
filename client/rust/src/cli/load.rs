//! `sieve bench load`: several clients at once, each mixing ingest batches, searches (with the
//! server's cascade or the one given) and deletes for a fixed time; per-operation throughput,
//! latency percentiles and errors by status code, as JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::bench::{corpus_passages, histogram, percentiles, record, unit_vector};
use super::search::CascadeArgs;
use crate::{Client, Error, proto};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Collection (created with keyword search and --dimension client vectors if missing).
    #[arg(short, long)]
    collection: String,
    /// Clients running at once, each one request at a time.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Relative weights of ingest, search and delete, as `I:S:D`.
    #[arg(long, default_value = "2:7:1")]
    mix: String,
    /// Documents per ingest batch.
    #[arg(long, default_value_t = 20)]
    batch_size: usize,
    /// Documents ingested before the clocks start, so searches find something.
    #[arg(long, default_value_t = 1000)]
    initial: usize,
    /// Vector dimension (random unit vectors on documents and queries).
    #[arg(long, default_value_t = 64)]
    dimension: usize,
    /// JSON-lines corpus for texts (title + text, cycled); without it, generated sentences.
    #[arg(long)]
    corpus: Option<PathBuf>,
    #[command(flatten)]
    cascade: CascadeArgs,
    /// Also write the JSON report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed of texts, vectors and the operation mix.
    #[arg(long, default_value_t = 3)]
    seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Ingest,
    Search,
    Delete,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Ingest => "ingest",
            Op::Search => "search",
            Op::Delete => "delete",
        }
    }
}

/// What one client measured.
struct Tally {
    latency: BTreeMap<Op, Histogram<u64>>,
    errors: BTreeMap<(Op, String), usize>,
    documents: usize,
}

impl Tally {
    fn new() -> Self {
        let latency = [Op::Ingest, Op::Search, Op::Delete].map(|op| (op, histogram())).into();
        Tally { latency, errors: BTreeMap::new(), documents: 0 }
    }

    fn merge(&mut self, other: Tally) {
        for (op, h) in other.latency {
            self.latency.get_mut(&op).expect("every op").add(h).expect("same bounds");
        }
        for (key, n) in other.errors {
            *self.errors.entry(key).or_default() += n;
        }
        self.documents += other.documents;
    }
}

/// Texts to index and to search for.
struct Texts(Vec<String>);

impl Texts {
    fn load(corpus: Option<&PathBuf>) -> anyhow::Result<Texts> {
        let Some(path) = corpus else {
            let words = ["ranking", "vectors", "latency", "shards", "graphs", "tokens", "queries"];
            let texts = (0..500)
                .map(|i| {
                    let pick = |k: usize| words[(i * 7 + k * 3) % words.len()];
                    format!("{} {} and {} in document group {}", pick(0), pick(1), pick(2), i % 50)
                })
                .collect();
            return Ok(Texts(texts));
        };
        Ok(Texts(corpus_passages(path)?))
    }

    fn pick(&self, rng: &mut StdRng) -> &str {
        &self.0[rng.random_range(0..self.0.len())]
    }

    /// A query: a few words from one text.
    fn query(&self, rng: &mut StdRng) -> String {
        let words: Vec<&str> = self.pick(rng).split_whitespace().collect();
        let start = rng.random_range(0..words.len().max(1));
        words.iter().skip(start).take(6).copied().collect::<Vec<_>>().join(" ")
    }
}

fn parse_mix(mix: &str) -> anyhow::Result<[u32; 3]> {
    let parts: Vec<u32> = mix
        .split(':')
        .map(|p| p.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--mix {mix}: expected three whole numbers I:S:D"))?;
    let weights: [u32; 3] =
        parts.try_into().map_err(|_| anyhow::anyhow!("--mix {mix}: expected I:S:D"))?;
    anyhow::ensure!(weights.iter().sum::<u32>() > 0, "--mix {mix}: all weights are zero");
    Ok(weights)
}

/// Everything the clients share.
struct Work {
    client: Client,
    collection: String,
    texts: Texts,
    plan: proto::Plan,
    weights: [u32; 3],
    batch_size: usize,
    dimension: usize,
}

impl Work {
    fn document(&self, id: String, rng: &mut StdRng) -> proto::Document {
        proto::Document {
            id,
            text: self.texts.pick(rng).to_string(),
            vector: unit_vector(rng, self.dimension),
            ..Default::default()
        }
    }

    /// One client: runs operations until `until`, one at a time.
    async fn client(self: Arc<Self>, number: usize, seed: u64, until: Instant) -> Tally {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut tally = Tally::new();
        let mut mine: Vec<String> = Vec::new();
        let mut next = 0usize;
        let total: u32 = self.weights.iter().sum();
        while Instant::now() < until {
            let roll = rng.random_range(0..total);
            let op = if roll < self.weights[0] {
                Op::Ingest
            } else if roll < self.weights[0] + self.weights[1] {
                Op::Search
            } else {
                Op::Delete
            };
            let started = Instant::now();
            let outcome: Result<(), Error> = match op {
                Op::Ingest => {
                    let docs: Vec<proto::Document> = (0..self.batch_size)
                        .map(|_| {
                            next += 1;
                            self.document(format!("load-{number}-{next}"), &mut rng)
                        })
                        .collect();
                    let ids: Vec<String> = docs.iter().map(|d| d.id.clone()).collect();
                    self.client.upsert(&self.collection, docs).await.map(|ack| {
                        tally.documents += ack.accepted.len();
                        mine.extend(ids);
                    })
                }
                Op::Search => {
                    let mut request =
                        proto::SearchRequest::new(&self.collection, self.texts.query(&mut rng))
                            .with_vector(unit_vector(&mut rng, self.dimension))
                            .with_top_k(10);
                    request.plan = Some(self.plan.clone());
                    self.client.search(request).await.map(|_| ())
                }
                Op::Delete => {
                    let n = mine.len().min(5);
                    let ids: Vec<String> = mine.drain(..n).collect();
                    if ids.is_empty() {
                        continue;
                    }
                    self.client.delete(&self.collection, ids).await.map(|_| ())
                }
            };
            match outcome {
                Ok(()) => record(tally.latency.get_mut(&op).expect("every op"), started.elapsed()),
                Err(e) => {
                    let code = match &e {
                        Error::Status(status) => {
                            format!("{:?}: {}", status.code(), status.message())
                        }
                        other => other.to_string(),
                    };
                    *tally.errors.entry((op, code)).or_default() += 1;
                }
            }
        }
        tally
    }
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(
        args.batch_size > 0 && args.dimension > 0,
        "--batch-size and --dimension must be at least 1"
    );
    let weights = parse_mix(&args.mix)?;
    let mut plan = proto::Plan::default();
    args.cascade.apply(&mut plan)?;
    if client.collection(&args.collection).await.is_err() {
        let config = proto::CollectionConfig {
            dense: Some(proto::DenseConfig {
                dimension: args.dimension as u32,
                distance: proto::Distance::Cosine as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        client.create_collection(&args.collection, config).await?;
    }
    let work = Arc::new(Work {
        client: client.clone(),
        collection: args.collection.clone(),
        texts: Texts::load(args.corpus.as_ref())?,
        plan,
        weights,
        batch_size: args.batch_size,
        dimension: args.dimension,
    });
    let mut rng = StdRng::seed_from_u64(args.seed);
    for start in (0..args.initial).step_by(500) {
        let docs = (start..(start + 500).min(args.initial))
            .map(|i| work.document(format!("seed-{i}"), &mut rng))
            .collect();
        client.upsert(&args.collection, docs).await.context("seeding the collection")?;
    }

    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.duration);
    let clients: Vec<_> = (0..args.clients)
        .map(|n| tokio::spawn(Arc::clone(&work).client(n, args.seed + 1 + n as u64, until)))
        .collect();
    let mut total = Tally::new();
    for client in clients {
        total.merge(client.await.context("a load client panicked")?);
    }
    let seconds = started.elapsed().as_secs_f64();

    let mut operations = serde_json::Map::new();
    for (op, latency) in &total.latency {
        let errors: usize = total.errors.iter().filter(|((o, _), _)| o == op).map(|(_, n)| n).sum();
        operations.insert(
            op.name().to_string(),
            json!({
                "ok": latency.len(), "errors": errors, "per_sec": latency.len() as f64 / seconds,
                "latency_ms": percentiles(latency),
            }),
        );
    }
    let errors: usize = total.errors.values().sum();
    let error_list: Vec<serde_json::Value> = total
        .errors
        .iter()
        .map(|((op, what), n)| json!({"operation": op.name(), "error": what, "count": n}))
        .collect();
    let report = json!({
        "collection": args.collection, "clients": args.clients, "seconds": seconds, "mix": args.mix,
        "batch_size": args.batch_size, "documents_ingested": total.documents,
        "operations": operations, "errors": errors, "error_kinds": error_list,
    });
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(path) = &args.out {
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
