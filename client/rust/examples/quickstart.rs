//! The Rust client end to end, in the same shape as the Python and TypeScript SDKs: create a
//! collection, stream documents in (following the server's batch-size advice), search with a
//! cascade and read every stage, rerank loose texts, snapshot, delete.
//!
//!     cargo run --release --bin sieve-server -- --demo --models-dir ../shared/models   # another shell
//!     cargo run --release -p sieve-client --example quickstart [http://127.0.0.1:7700]
//!
//! Against the demo server (embedder + the SciFact cross-encoder); with `SIEVE_API_KEY` set it
//! sends that key.

use futures::StreamExt as _;
use sieve_client::{Client, ConnectOptions, proto};

const CROSS_ENCODER: &str = "sieve/sieve-ce-minilm-l6-scifact";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args().nth(1).unwrap_or_else(|| "http://127.0.0.1:7700".into());
    let options =
        ConnectOptions { api_key: std::env::var("SIEVE_API_KEY").ok(), ..Default::default() };
    let client = Client::connect_with(&address, &options).await?;

    // A collection embedded by the server's default embedder (an empty config asks for it).
    let name = "quickstart";
    if client.collection(name).await.is_ok() {
        client.delete_collection(name).await?;
    }
    client.create_collection(name, proto::CollectionConfig::default()).await?;

    // Ingest: one stream, a batch per request, an ack per batch once it is durable.
    let passages = [
        ("bees", "Honeybees perform a waggle dance to tell nest mates where flowers are.", 1967),
        ("ants", "Ants lay pheromone trails that the colony reinforces on shorter paths.", 1989),
        ("owls", "Owls hunt at night, locating prey by sound with asymmetric ears.", 2001),
        ("moss", "Moss grows on the shaded side of trees where moisture lingers.", 1995),
    ];
    let documents: Vec<proto::Document> = passages
        .iter()
        .map(|(id, text, year)| proto::Document {
            id: id.to_string(),
            text: text.to_string(),
            metadata: [("year".to_string(), proto::Value::from(*year as i64))].into(),
            ..Default::default()
        })
        .collect();
    let batches = documents.chunks(2).map(|chunk| proto::IngestRequest {
        collection: name.into(),
        documents: chunk.to_vec(),
        ..Default::default()
    });
    let mut acks = client.ingest(futures::stream::iter(batches.collect::<Vec<_>>())).await?;
    while let Some(ack) = acks.message().await? {
        println!(
            "batch {}: {} accepted, sequence {}, next batch size {}",
            ack.batch,
            ack.accepted.len(),
            ack.sequence,
            ack.next_batch_size
        );
    }

    // Search: hybrid (the server embeds the query), 4 candidates into the cross-encoder.
    let request = proto::SearchRequest::new(name, "how do bees find flowers")
        .with_top_k(2)
        .with_candidates(4)
        .with_rerank([(CROSS_ENCODER, 2)]);
    let mut events = client.search_events(request).await?;
    while let Some(event) = events.next().await {
        match event?.event {
            Some(proto::search_event::Event::Hits(stage)) => {
                let ids: Vec<&str> = stage.hits.iter().map(|h| h.id.as_str()).collect();
                println!("{}: {ids:?}", stage.stage);
            }
            Some(proto::search_event::Event::Done(done)) => {
                let total =
                    done.timings.iter().find(|t| t.phase == "total").map_or(0, |t| t.micros);
                println!("done: {} hits in {total} µs", done.returned);
            }
            None => {}
        }
    }

    // Rerank texts without a collection.
    let scored = client
        .rerank(proto::RerankRequest {
            query: "vitamin D and bones".into(),
            texts: vec![
                "Glaciers carve valleys.".into(),
                "Vitamin D deficiency weakens bone.".into(),
            ],
            model: CROSS_ENCODER.into(),
            ..Default::default()
        })
        .await?;
    println!("best text: #{} ({:.2})", scored.results[0].index, scored.results[0].score);

    // Snapshot, delete a document, clean up.
    let snapshot = client.create_snapshot(name).await?;
    println!("snapshot {} holds {} documents", snapshot.name, snapshot.documents);
    client.delete_snapshot(&snapshot.name).await?;
    let deleted = client.delete(name, vec!["moss".into()]).await?;
    println!("deleted {:?}", deleted.deleted);
    client.delete_collection(name).await?;
    Ok(())
}
