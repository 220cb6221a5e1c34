//! `--demo`: creates a `demo` collection, ingests the bundled sample corpus and runs a few
//! searches, all through the server's own gRPC API, then leaves the server running.

use std::net::SocketAddr;

use sieve_client::{Client, proto};

/// The sample corpus: short passages on varied subjects, written for Sieve, one JSON object per line.
const CORPUS: &str = include_str!("../demo/corpus.jsonl");

pub async fn run(addr: SocketAddr) {
    if let Err(e) = demo(addr).await {
        eprintln!("demo failed: {e:#}");
    }
}

async fn demo(addr: SocketAddr) -> anyhow::Result<()> {
    let client = Client::connect(format!("http://{addr}")).await?;
    match client.create_collection("demo", proto::CollectionConfig::default()).await {
        Ok(_) => println!(
            "\ncreated collection 'demo' (BM25; no vectors: this build has no built-in embedder)"
        ),
        Err(sieve_client::Error::Status(s)) if s.code() == tonic::Code::AlreadyExists => {
            println!("\ncollection 'demo' exists; re-ingesting (same ids = upsert)")
        }
        Err(e) => return Err(e.into()),
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

    let searches = [
        ("how do bees find flowers", None),
        ("volcano eruption", None),
        ("ancient trade routes", Some(proto::Filter::equals("topic", "history"))),
    ];
    for (query, filter) in searches {
        let mut request = proto::SearchRequest::new("demo", query).with_top_k(3);
        if let Some(filter) = &filter {
            request = request.with_filter(filter.clone());
        }
        let answer = client.search(request).await?;
        let shown_filter = if filter.is_some() { "  [filter topic = history]" } else { "" };
        println!("\nsearch: {query:?}{shown_filter}");
        for (rank, hit) in answer.hits().iter().enumerate() {
            println!(
                "  {}. {:<10} {:.4}  {}",
                rank + 1,
                hit.id,
                hit.bm25.map_or(0.0, |b| b.score),
                hit.title
            );
        }
    }
    println!(
        "\nThe server keeps running on {addr}. Try, in another terminal:\n  \
         cargo run --release --bin sieve -- search -c demo \"northern lights\"\n  \
         cargo run --release --bin sieve -- search -c demo \"rivers\" --filter 'year>=1900' --json\n\
         Stop it with Ctrl-C (it writes its indexes and flushes sled before exiting)."
    );
    Ok(())
}
