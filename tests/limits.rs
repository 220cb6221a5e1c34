//! Load shedding and deadlines against the real server: over the concurrency limits a call is
//! refused at once with RESOURCE_EXHAUSTED naming the limit, a search past its deadline stops
//! with DEADLINE_EXCEEDED, an idle ingest stream gives its slot back, and the server keeps
//! serving throughout.

use crate::common;

use std::time::Duration;

use common::{SERVING, TestServer};
use futures::StreamExt as _;
use sieve_client::proto;
use sieve_client::proto::documents_client::DocumentsClient;
use sieve_client::proto::search_client::SearchClient;
use tonic::Code;
use tonic::transport::Channel;

async fn channel(server: &TestServer) -> Channel {
    Channel::from_shared(server.url.clone()).unwrap().connect().await.unwrap()
}

fn words(n: usize) -> Vec<proto::Document> {
    (0..n)
        .map(|i| proto::Document {
            id: format!("d{i}"),
            text: format!("limits and deadlines w{i}"),
            ..Default::default()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_and_ingest_streams_over_their_limits_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        dir.path(),
        &["--max-concurrent-searches", "1", "--max-ingest-streams", "1"],
    );
    let client = server.client().await;
    client.create_collection("c", proto::CollectionConfig::default()).await.unwrap();
    client.upsert("c", words(20)).await.unwrap();

    // An open SearchStream holds the one search slot until it ends.
    let (hold, held) = tokio::sync::mpsc::channel::<proto::SearchRequest>(1);
    let mut search = SearchClient::new(channel(&server).await);
    let open = search
        .search_stream(tokio_stream::wrappers::ReceiverStream::new(held))
        .await
        .unwrap()
        .into_inner();
    let refused = client.search(proto::SearchRequest::new("c", "limits")).await;
    let status = common::status_of(refused);
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "1 searches are already running, the limit (max_concurrent_searches); retry with backoff"
    );
    drop(hold);
    drop(open);
    // The slot comes back once the server sees the stream end.
    let mut answered = None;
    for _ in 0..100 {
        match client.search(proto::SearchRequest::new("c", "w3")).await {
            Ok(response) => {
                answered = Some(response);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert_eq!(answered.expect("the slot is released").hits()[0].id, "d3");

    // Likewise one ingest stream.
    let (keep, kept) = tokio::sync::mpsc::channel::<proto::IngestRequest>(1);
    let mut documents = DocumentsClient::new(channel(&server).await);
    let first = documents.ingest(tokio_stream::wrappers::ReceiverStream::new(kept)).await.unwrap();
    let status = common::status_of(client.upsert("c", words(1)).await);
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("(max_ingest_streams)"), "{}", status.message());
    // The open stream still works.
    keep.send(proto::IngestRequest {
        collection: "c".into(),
        documents: words(2),
        delete_ids: vec![],
        ack: 0,
    })
    .await
    .unwrap();
    let ack = first.into_inner().next().await.unwrap().unwrap();
    assert_eq!(ack.accepted, ["d0", "d1"]);
    assert_eq!(server.health().await, SERVING);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_past_its_deadline_stops_and_idle_ingest_streams_close() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &["--ingest-idle-timeout-secs", "1"]);
    let client = server.client().await;
    client.create_collection("c", proto::CollectionConfig::default()).await.unwrap();
    client.upsert("c", words(50)).await.unwrap();

    // The client's grpc-timeout, sent without the client enforcing it itself.
    let mut search = SearchClient::new(channel(&server).await);
    let mut request = tonic::Request::new(proto::SearchRequest::new("c", "limits"));
    request.metadata_mut().insert("grpc-timeout", "1n".parse().unwrap());
    // Either tonic's timeout layer stops the call before the answer stream opens (CANCELLED),
    // or the stream opens and the search itself stops (DEADLINE_EXCEEDED); never a hit.
    let status = match search.search(request).await {
        Err(status) => status,
        Ok(response) => response.into_inner().message().await.unwrap_err(),
    };
    match status.code() {
        Code::DeadlineExceeded => assert_eq!(
            status.message(),
            "the search passed its deadline and was stopped (grpc-timeout, capped by request_timeout_secs)"
        ),
        Code::Cancelled => assert_eq!(status.message(), "Timeout expired"),
        other => panic!("expected the deadline to stop the search, got {other:?}: {status:?}"),
    }
    let mut request = tonic::Request::new(proto::SearchRequest::new("c", "limits"));
    request.metadata_mut().insert("grpc-timeout", "soon".parse().unwrap());
    let status = search.search(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "grpc-timeout: 'soon' is not a gRPC timeout");
    // A generous deadline changes nothing.
    let mut request = tonic::Request::new(proto::SearchRequest::new("c", "w7"));
    request.metadata_mut().insert("grpc-timeout", "10S".parse().unwrap());
    let events: Vec<_> = search.search(request).await.unwrap().into_inner().collect().await;
    assert!(events.iter().all(Result::is_ok), "{events:?}");

    // A stream that never sends is closed after the idle timeout; what it acked stays.
    let (tx, rx) = tokio::sync::mpsc::channel::<proto::IngestRequest>(1);
    let mut documents = DocumentsClient::new(channel(&server).await);
    let mut acks = documents
        .ingest(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(proto::IngestRequest {
        collection: "c".into(),
        documents: words(60),
        delete_ids: vec![],
        ack: 0,
    })
    .await
    .unwrap();
    assert_eq!(acks.message().await.unwrap().unwrap().accepted.len(), 60);
    let status = acks.message().await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(
        status.message(),
        "no batch for 1 s (ingest_idle_timeout_secs): the ingest stream is closed; everything acknowledged is durable"
    );
    assert_eq!(client.collection("c").await.unwrap().stats.unwrap().documents, 60);
    assert_eq!(server.health().await, SERVING);
}

/// The acks carry backpressure advice, and `sieve ingest` follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_suggest_batch_sizes_and_the_cli_follows_them() {
    use clap::Parser as _;
    use sieve_client::cli::{self, Cli};

    // A long target: every batch is fast, so the advice grows by the most allowed (x2), up
    // to max_batch_documents.
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        dir.path(),
        &["--ingest-target-batch-ms", "600000", "--max-batch-documents", "150"],
    );
    let client = server.client().await;
    client.create_collection("c", proto::CollectionConfig::default()).await.unwrap();
    let ack = client.upsert("c", words(40)).await.unwrap();
    assert_eq!((ack.next_batch_size, ack.backoff_ms), (80, 0));
    let ack = client.upsert("c", words(100)).await.unwrap();
    assert_eq!((ack.next_batch_size, ack.backoff_ms), (150, 0));
    drop(server);

    // A zero target: every batch is too slow, so the advice halves each time.
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &["--ingest-target-batch-ms", "0"]);
    let client = server.client().await;
    client.create_collection("c", proto::CollectionConfig::default()).await.unwrap();
    let ack = client.upsert("c", words(100)).await.unwrap();
    assert_eq!(ack.next_batch_size, 50);
    let ack = client.upsert("c", words(1)).await.unwrap();
    assert_eq!(ack.next_batch_size, 1, "never below one document");

    // The CLI shrinks its batches as told and still delivers every document.
    let file = dir.path().join("docs.jsonl");
    let lines: String = (0..300)
        .map(|i| format!("{{\"_id\": \"f{i}\", \"text\": \"shrinking batches {i}\"}}\n"))
        .collect();
    std::fs::write(&file, lines).unwrap();
    let argv =
        ["sieve", "--addr", &server.url, "ingest", "-c", "c", "--batch-size", "100", "--quiet"];
    let code =
        cli::run(Cli::parse_from(argv.into_iter().chain([file.to_str().unwrap()]))).await.unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let stats = client.collection("c").await.unwrap().stats.unwrap();
    assert_eq!(stats.documents, 400, "the 100 d-documents and the 300 of the file");
    assert_eq!(stats.sequence, 401, "100 + 1 + 300 upserts");
}
