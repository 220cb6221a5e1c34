//! `--demo`: (re)creates a `demo` collection, ingests the bundled sample corpus and runs a few
//! searches — hybrid, filtered, and through a rerank cascade when the models are at hand — all
//! through the server's own gRPC API, then leaves the server running.

use std::net::SocketAddr;

use sieve_client::{Client, proto};

use crate::config::{Config, ModelEntry};

/// The sample corpus: short passages on varied subjects, written for Sieve, one JSON object per line.
const CORPUS: &str = include_str!("../demo/corpus.jsonl");

/// The bi-encoder the demo embeds with.
pub const EMBEDDER: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// The cross-encoder the demo reranks with (trained on SciFact: on this general corpus its
/// reordering is illustrative, not a quality claim).
pub const RERANKER: &str = "sieve/sieve-ce-minilm-l6-scifact";

/// Adds the demo's models to the configuration when their folders are in the models dir, and
/// says plainly what the demo will do without the ones that are not. Returns the reranker to
/// use, if any.
pub fn prepare(config: &mut Config) -> Option<String> {
    let mut available = Vec::new();
    for name in [EMBEDDER, RERANKER] {
        let configured = config.models.0.iter().any(|m| m.name == name);
        let dir = sieve_models::model_dir(name, &config.models_dir);
        if configured {
            available.push(name);
        } else if dir.join("config.json").is_file() {
            config.models.0.push(ModelEntry::named(name));
            available.push(name);
        } else {
            eprintln!(
                "demo: model {name} not found at {} — the demo runs without it. Get it with \
                 `git clone https://huggingface.co/{name} {}`, point --models-dir at a folder that \
                 has it (this project's CI keeps it in ../shared/models), or build with --features hub.",
                dir.display(),
                dir.display()
            );
        }
    }
    if available.contains(&EMBEDDER) && config.default_embedder.is_empty() {
        config.default_embedder = EMBEDDER.to_string();
    }
    available.contains(&RERANKER).then(|| RERANKER.to_string())
}

pub async fn run(addr: SocketAddr, reranker: Option<String>) {
    if let Err(e) = demo(addr, reranker).await {
        eprintln!("demo failed: {e:#}");
    }
}

async fn demo(addr: SocketAddr, reranker: Option<String>) -> anyhow::Result<()> {
    let client = Client::connect(format!("http://{addr}")).await?;
    match client.delete_collection("demo").await {
        Ok(()) => println!("\nreplaced the collection 'demo'"),
        Err(sieve_client::Error::Status(s)) if s.code() == tonic::Code::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let created = client.create_collection("demo", proto::CollectionConfig::default()).await?;
    let embedder = created.config.and_then(|c| c.dense).map(|d| d.embedder).unwrap_or_default();
    if embedder.is_empty() {
        println!("created collection 'demo': BM25 only (no embedder loaded)");
    } else {
        println!(
            "created collection 'demo': BM25 + dense vectors from {embedder}, embedded by the server"
        );
    }
    let documents: Vec<proto::Document> = CORPUS
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(sieve_client::jsonl::parse_document)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("demo corpus: {e}"))?;
    let count = documents.len();
    let ack = client.upsert("demo", documents).await?;
    anyhow::ensure!(ack.errors.is_empty(), "demo corpus rejected: {:?}", ack.errors);
    println!("ingested {count} documents (durable at sequence {})", ack.sequence);

    let mut searches = vec![
        (
            "how do bees find flowers",
            proto::SearchRequest::new("demo", "how do bees find flowers").with_top_k(3),
        ),
        ("volcano eruption", proto::SearchRequest::new("demo", "volcano eruption").with_top_k(3)),
        (
            "ancient trade routes  [filter topic = history]",
            proto::SearchRequest::new("demo", "ancient trade routes")
                .with_filter(proto::Filter::equals("topic", "history"))
                .with_top_k(3),
        ),
    ];
    if let Some(model) = &reranker {
        searches.push((
            "Honeybees communicate the location of food.  [20 candidates -> rerank, keep 3]",
            proto::SearchRequest::new("demo", "Honeybees communicate the location of food.")
                .with_candidates(20)
                .with_rerank([(model.as_str(), 3)]),
        ));
    }
    for (label, request) in searches {
        let answer = client.search(request).await?;
        let done = answer.done.clone().unwrap_or_default();
        let mode = proto::Mode::try_from(done.mode)
            .map_or("?", |m| m.as_str_name())
            .trim_start_matches("MODE_")
            .to_lowercase();
        let total = done.timings.iter().find(|t| t.phase == "total").map_or(0, |t| t.micros);
        println!(
            "\nsearch: {label:?}  ({mode}, {} stage(s), {:.1} ms)",
            answer.stages.len(),
            total as f64 / 1000.0
        );
        println!(
            "  {:<4} {:<15} {:>6} {:>6} {:>6} {:>8}  title",
            "rank", "id", "bm25", "dense", "fused", "rerank"
        );
        let rank = |r: Option<u32>| r.map_or("-".to_string(), |r| format!("#{r}"));
        for (i, hit) in answer.hits().iter().enumerate() {
            let rerank = hit.stages.last().map_or("-".to_string(), |s| format!("{:.2}", s.score));
            println!(
                "  {:<4} {:<15} {:>6} {:>6} {:>6} {:>8}  {}",
                i + 1,
                hit.id,
                rank(hit.bm25.map(|p| p.rank)),
                rank(hit.dense.map(|p| p.rank)),
                rank(hit.fused.map(|p| p.rank)),
                rerank,
                hit.title
            );
        }
    }
    if reranker.is_some() {
        println!(
            "\n(The reranker was trained on SciFact, scientific claims: on this general corpus its order is illustrative.)"
        );
    }
    println!(
        "\nThe server keeps running on {addr}. Try, in another terminal:\n  \
         cargo run --release --bin sieve -- search -c demo \"northern lights\"\n  \
         cargo run --release --bin sieve -- search -c demo \"rivers\" --filter 'year>=1900' --json\n  \
         cargo run --release --bin sieve -- info\n\
         Stop it with Ctrl-C (it writes its indexes and flushes sled before exiting)."
    );
    Ok(())
}
