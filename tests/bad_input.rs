//! Malformed and extreme requests against the real server: each gets a precise status code
//! and a message naming the field, and the server stays SERVING throughout.

use crate::common;

use std::future::Future;
use std::pin::Pin;

use common::{SERVING, TestServer, dense_config, status_of};
use sieve_client::{Client, proto};
use tonic::Code;

type Call = Pin<Box<dyn Future<Output = tonic::Status> + Send>>;

/// One bad request: what it is, the code it must get, a substring its message must hold.
struct Case {
    name: &'static str,
    code: Code,
    message: &'static str,
    call: Call,
}

fn case(
    name: &'static str,
    code: Code,
    message: &'static str,
    call: impl Future<Output = tonic::Status> + Send + 'static,
) -> Case {
    Case { name, code, message, call: Box::pin(call) }
}

fn search(
    client: &Client,
    request: proto::SearchRequest,
) -> impl Future<Output = tonic::Status> + Send + 'static {
    let client = client.clone();
    async move { status_of(client.search(request).await) }
}

fn create(
    client: &Client,
    name: &str,
    config: proto::CollectionConfig,
) -> impl Future<Output = tonic::Status> + Send + 'static {
    let (client, name) = (client.clone(), name.to_string());
    async move { status_of(client.create_collection(name, config).await) }
}

fn ingest(
    client: &Client,
    request: proto::IngestRequest,
) -> impl Future<Output = tonic::Status> + Send + 'static {
    let client = client.clone();
    async move {
        let mut acks = client.ingest(futures::stream::iter([request])).await.expect("stream opens");
        match acks.message().await {
            Err(status) => status,
            Ok(ack) => panic!("expected an error status, got {ack:?}"),
        }
    }
}

fn rerank(
    client: &Client,
    query: &str,
    texts: Vec<String>,
    model: &str,
) -> impl Future<Output = tonic::Status> + Send + 'static {
    let client = client.clone();
    let request = proto::RerankRequest {
        query: query.into(),
        texts,
        model: model.into(),
        ..Default::default()
    };
    async move { status_of(client.rerank(request).await) }
}

fn with_plan(mut request: proto::SearchRequest, plan: proto::Plan) -> proto::SearchRequest {
    request.plan = Some(plan);
    request
}

fn dense(
    dimension: u32,
    hnsw: Option<proto::HnswParams>,
    embedder: &str,
    distance: i32,
) -> proto::CollectionConfig {
    proto::CollectionConfig {
        dense: Some(proto::DenseConfig { dimension, distance, embedder: embedder.into(), hnsw }),
        ..Default::default()
    }
}

fn nested(depth: usize) -> proto::Filter {
    (1..depth).fold(proto::Filter::equals("k", 1_i64), |inner, _| proto::Filter::and([inner]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_precise_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        dir.path(),
        &["--max-batch-documents", "50", "--max-message-bytes", "200000"],
    );
    let client = server.client().await;
    client.create_collection("vec", dense_config(3, proto::Distance::Cosine)).await.unwrap();
    client.create_collection("words", proto::CollectionConfig::default()).await.unwrap();
    let doc = proto::Document {
        id: "ok".into(),
        text: "fine words".into(),
        vector: vec![1.0, 0.0, 0.0],
        ..Default::default()
    };
    client.upsert("vec", vec![doc.clone()]).await.unwrap();

    let q = |collection: &str, text: &str| proto::SearchRequest::new(collection, text);
    let c = &client;
    let cases = vec![
        case(
            "empty collection name",
            Code::InvalidArgument,
            "name: must not be empty",
            create(c, "", Default::default()),
        ),
        case(
            "invalid collection name",
            Code::InvalidArgument,
            "'bad name!' is not a valid collection name",
            create(c, "bad name!", Default::default()),
        ),
        case(
            "duplicate collection",
            Code::AlreadyExists,
            "collection 'vec' already exists",
            create(c, "vec", Default::default()),
        ),
        case(
            "dimension 0",
            Code::InvalidArgument,
            "config.dense.dimension: must be between 1 and 4096, got 0",
            create(c, "d0", dense(0, None, "", 1)),
        ),
        case(
            "dimension too large",
            Code::InvalidArgument,
            "config.dense.dimension: must be between 1 and 4096, got 100000",
            create(c, "dbig", dense(100_000, None, "", 1)),
        ),
        case(
            "hnsw m 1000",
            Code::InvalidArgument,
            "config.dense.hnsw.m: must be between 2 and 128, got 1000",
            create(
                c,
                "m",
                dense(4, Some(proto::HnswParams { m: 1000, ..Default::default() }), "", 1),
            ),
        ),
        case(
            "unknown distance",
            Code::InvalidArgument,
            "config.dense.distance: unknown value 99",
            create(c, "dist", dense(4, None, "", 99)),
        ),
        case(
            "embedder not available",
            Code::InvalidArgument,
            "config.dense.embedder: model 'org/model' is not loaded by this server (loaded: none)",
            create(c, "emb", dense(4, None, "org/model", 1)),
        ),
        case(
            "unknown analyzer",
            Code::InvalidArgument,
            "config.keyword.analyzer: 'klingon' is not an analyzer",
            create(
                c,
                "an",
                proto::CollectionConfig {
                    keyword: Some(proto::KeywordConfig { analyzer: "klingon".into() }),
                    ..Default::default()
                },
            ),
        ),
        case("get unknown collection", Code::NotFound, "collection 'nope' not found", {
            let c = c.clone();
            async move { status_of(c.collection("nope").await) }
        }),
        case("delete unknown collection", Code::NotFound, "collection 'nope' not found", {
            let c = c.clone();
            async move { status_of(c.delete_collection("nope").await) }
        }),
        case(
            "search unknown collection",
            Code::NotFound,
            "collection 'nope' not found",
            search(c, q("nope", "x")),
        ),
        case(
            "search without collection",
            Code::InvalidArgument,
            "collection: must not be empty",
            search(c, q("", "x")),
        ),
        case(
            "top_k 1,000,000",
            Code::InvalidArgument,
            "top_k: 1000000 exceeds the limit of 1000 (max_top_k)",
            search(c, q("vec", "x").with_top_k(1_000_000)),
        ),
        case(
            "empty query",
            Code::InvalidArgument,
            "query: must not be empty for BM25 search",
            search(c, q("vec", "  ")),
        ),
        case(
            "query too long",
            Code::InvalidArgument,
            "query: 20000 bytes exceeds the limit of 16384 (max_query_bytes)",
            search(c, q("vec", &"a".repeat(20_000))),
        ),
        case(
            "query vector of wrong dimension",
            Code::InvalidArgument,
            "query_vector: has 2 dimensions, the collection has 3",
            search(c, q("vec", "").with_vector(vec![1.0, 2.0])),
        ),
        case(
            "NaN in query vector",
            Code::InvalidArgument,
            "query_vector: component 1 is NaN (must be finite)",
            search(c, q("vec", "").with_vector(vec![1.0, f32::NAN, 0.0])),
        ),
        case(
            "infinite query vector",
            Code::InvalidArgument,
            "query_vector: component 0 is inf (must be finite)",
            search(c, q("vec", "").with_vector(vec![f32::INFINITY, 0.0, 0.0])),
        ),
        case(
            "zero query vector for cosine",
            Code::InvalidArgument,
            "query_vector: is all zeros",
            search(c, q("vec", "").with_vector(vec![0.0; 3])),
        ),
        case(
            "vector on a keyword-only collection",
            Code::InvalidArgument,
            "query_vector: collection 'words' has no dense settings",
            search(c, q("words", "x").with_vector(vec![1.0])),
        ),
        case(
            "hybrid without a vector",
            Code::InvalidArgument,
            "query_vector: required for hybrid search",
            search(c, q("vec", "x").with_mode(proto::Mode::Hybrid)),
        ),
        case(
            "unknown mode",
            Code::InvalidArgument,
            "plan.mode: unknown value 42",
            search(c, with_plan(q("vec", "x"), proto::Plan { mode: 42, ..Default::default() })),
        ),
        case(
            "unknown consistency",
            Code::InvalidArgument,
            "consistency: unknown value 9",
            search(c, proto::SearchRequest { consistency: 9, ..q("vec", "x") }),
        ),
        case(
            "consistency token without AFTER",
            Code::InvalidArgument,
            "consistency_token: only read with CONSISTENCY_AFTER; set consistency to AFTER or \
             leave the token empty",
            search(
                c,
                proto::SearchRequest { consistency_token: "1/4/0:1".into(), ..q("vec", "x") },
            ),
        ),
        case(
            "consistency AFTER on a standalone server",
            Code::FailedPrecondition,
            "consistency: CONSISTENCY_AFTER takes a cluster router's token, and this is a \
             standalone server, where every acknowledged write is already visible (use \
             CONSISTENCY_EVENTUAL or STRONG)",
            search(c, q("vec", "x").after("1/4/0:1")),
        ),
        case(
            "unknown ack level",
            Code::InvalidArgument,
            "ack: unknown value 7",
            ingest(
                c,
                proto::IngestRequest { collection: "vec".into(), ack: 7, ..Default::default() },
            ),
        ),
        case(
            "bm25_k over the limit",
            Code::InvalidArgument,
            "plan.bm25_k: 20000 exceeds the limit of 10000 (max_candidates)",
            search(
                c,
                with_plan(q("vec", "x"), proto::Plan { bm25_k: 20_000, ..Default::default() }),
            ),
        ),
        case(
            "negative weight",
            Code::InvalidArgument,
            "plan.dense_weight: must be a finite number >= 0, got -2",
            search(
                c,
                with_plan(
                    q("vec", "x"),
                    proto::Plan { dense_weight: Some(-2.0), ..Default::default() },
                ),
            ),
        ),
        case(
            "filter with no clause",
            Code::InvalidArgument,
            "filter: no clause set",
            search(c, q("vec", "x").with_filter(proto::Filter::default())),
        ),
        case(
            "range with gte > lte",
            Code::InvalidArgument,
            "filter.range: gte 5 is greater than lte 1",
            search(c, q("vec", "x").with_filter(proto::Filter::range("n", Some(5.0), Some(1.0)))),
        ),
        case(
            "range without bounds",
            Code::InvalidArgument,
            "filter.range: needs gte, lte or both",
            search(c, q("vec", "x").with_filter(proto::Filter::range("n", None, None))),
        ),
        case(
            "equality on a float",
            Code::InvalidArgument,
            "filter.equals.value: float values cannot be matched exactly",
            search(c, q("vec", "x").with_filter(proto::Filter::equals("n", 1.5))),
        ),
        case(
            "empty filter key",
            Code::InvalidArgument,
            "filter.any_of.key: must not be empty",
            search(c, q("vec", "x").with_filter(proto::Filter::any_of("", ["a"]))),
        ),
        case(
            "empty any_of",
            Code::InvalidArgument,
            "filter.any_of.values: must not be empty",
            search(c, q("vec", "x").with_filter(proto::Filter::any_of::<&str>("k", []))),
        ),
        case(
            "filter value unset",
            Code::InvalidArgument,
            "filter.and.clauses[1].equals.value: no value set",
            search(
                c,
                q("vec", "x").with_filter(proto::Filter::and([
                    proto::Filter::equals("a", 1_i64),
                    proto::Filter {
                        clause: Some(proto::filter::Clause::Equals(proto::Equals {
                            key: "b".into(),
                            value: Some(proto::Value::default()),
                        })),
                    },
                ])),
            ),
        ),
        case(
            "filter nested 9 deep",
            Code::InvalidArgument,
            "filter nesting exceeds the limit of 8 levels",
            search(c, q("vec", "x").with_filter(nested(9))),
        ),
        case(
            "ingest into unknown collection",
            Code::NotFound,
            "collection 'nope' not found",
            ingest(
                c,
                proto::IngestRequest {
                    collection: "nope".into(),
                    documents: vec![doc.clone()],
                    delete_ids: vec![],
                    ack: 0,
                },
            ),
        ),
        case(
            "batch over max_batch_documents",
            Code::InvalidArgument,
            "documents: 51 documents in batch 0 exceeds the limit of 50 (max_batch_documents)",
            ingest(
                c,
                proto::IngestRequest {
                    collection: "vec".into(),
                    documents: vec![doc.clone(); 51],
                    delete_ids: vec![],
                    ack: 0,
                },
            ),
        ),
        case(
            "empty delete id in ingest",
            Code::InvalidArgument,
            "delete_ids[1]: must not be empty",
            ingest(
                c,
                proto::IngestRequest {
                    collection: "vec".into(),
                    documents: vec![],
                    delete_ids: vec!["a".into(), String::new()],
                    ack: 0,
                },
            ),
        ),
        case(
            "message over max_message_bytes",
            Code::OutOfRange,
            "limit",
            ingest(
                c,
                proto::IngestRequest {
                    collection: "vec".into(),
                    documents: vec![proto::Document {
                        id: "big".into(),
                        text: "x".repeat(300_000),
                        ..Default::default()
                    }],
                    delete_ids: vec![],
                    ack: 0,
                },
            ),
        ),
        case(
            "rerank stage naming an unloaded model",
            Code::InvalidArgument,
            "plan.rerank[0].model: model 'nope/model' is not loaded by this server (loaded: none)",
            search(c, q("words", "fine").with_rerank([("nope/model", 5)])),
        ),
        case(
            "rerank stage with a NaN threshold",
            Code::InvalidArgument,
            "plan.rerank[0].min_score: must be a finite number (a raw logit), got NaN",
            search(c, {
                let mut request = q("words", "fine").with_rerank([("nope/model", 5)]);
                request.plan.as_mut().unwrap().rerank[0].min_score = Some(f32::NAN);
                request
            }),
        ),
        case(
            "candidates over max_rerank_candidates",
            Code::InvalidArgument,
            "plan.candidates: 5000 exceeds the limit of 1000 (max_rerank_candidates)",
            search(c, q("words", "fine").with_candidates(5000)),
        ),
        case(
            "rerank RPC naming an unloaded model",
            Code::InvalidArgument,
            "model: model 'nope/x' is not loaded by this server (loaded: none)",
            rerank(c, "query", vec!["a text".into()], "nope/x"),
        ),
        case(
            "rerank RPC on a server without cross-encoders",
            Code::FailedPrecondition,
            "this server has no cross-encoder loaded",
            rerank(c, "query", vec!["a text".into()], ""),
        ),
        case(
            "rerank RPC with no texts",
            Code::InvalidArgument,
            "texts: must not be empty",
            rerank(c, "query", vec![], ""),
        ),
        case("get with an empty id", Code::InvalidArgument, "ids[0]: must not be empty", {
            let c = c.clone();
            async move { status_of(c.get("vec", vec![String::new()], false).await) }
        }),
        case(
            "delete with an oversized id",
            Code::InvalidArgument,
            "ids[0]: 600 bytes exceeds the limit of 512 (max_id_bytes)",
            {
                let c = c.clone();
                async move { status_of(c.delete("vec", vec!["x".repeat(600)]).await) }
            },
        ),
        case("get from unknown collection", Code::NotFound, "collection 'nope' not found", {
            let c = c.clone();
            async move { status_of(c.get("nope", vec!["a".into()], false).await) }
        }),
    ];
    let count = cases.len();
    assert!(count >= 40, "{count} cases");
    for Case { name, code, message, call } in cases {
        let status = call.await;
        assert_eq!(status.code(), code, "{name}: {status:?}");
        assert!(
            status.message().contains(message),
            "{name}: message {:?} lacks {message:?}",
            status.message()
        );
        assert_eq!(server.health().await, SERVING, "{name}: server still serving");
    }

    // Nothing was lost or changed by any of it.
    let stats = client.collection("vec").await.unwrap().stats.unwrap();
    assert_eq!((stats.documents, stats.sequence), (1, 1));
    let names: Vec<String> =
        client.list_collections().await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["vec", "words"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_documents_fail_alone_in_their_batch() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &["--max-text-bytes", "1000"]);
    let client = server.client().await;
    client.create_collection("vec", dense_config(3, proto::Distance::Cosine)).await.unwrap();
    let good = |id: &str| proto::Document {
        id: id.into(),
        text: "good".into(),
        vector: vec![0.0, 1.0, 0.0],
        ..Default::default()
    };
    let with = |id: &str, change: &dyn Fn(&mut proto::Document)| {
        let mut doc = good(id);
        change(&mut doc);
        doc
    };
    let documents = vec![
        good("a"),
        with("", &|_| {}),
        with("short", &|d| d.vector = vec![1.0]),
        with("nan", &|d| d.vector[2] = f32::NAN),
        with("long", &|d| d.text = "x".repeat(1001)),
        with("unset", &|d| {
            d.metadata.insert("k".into(), proto::Value::default());
        }),
        good("b"),
        good("a"),
        with("zero", &|d| d.vector = vec![0.0; 3]),
        with(&"i".repeat(513), &|_| {}),
        with("huge", &|d| d.text = "x".repeat(10 << 20)),
    ];
    let ack = client.upsert("vec", documents).await.unwrap();
    assert_eq!(ack.accepted, ["a", "b"]);
    let errors: Vec<(u32, &str)> =
        ack.errors.iter().map(|e| (e.index, e.error.as_ref().unwrap().message.as_str())).collect();
    assert_eq!(
        errors,
        [
            (1, "id: must not be empty"),
            (2, "vector: has 1 dimensions, the collection has 3"),
            (3, "vector: component 2 is NaN (must be finite)"),
            (
                4,
                "text: title, text and metadata strings total 1001 bytes, over the limit of 1000 (max_text_bytes)"
            ),
            (
                5,
                "metadata[\"k\"]: no value set (one of string_value, int_value, float_value, bool_value)"
            ),
            (7, "id: 'a' already appears at position 0 of this batch"),
            (8, "vector: is all zeros, which has no cosine similarity"),
            (9, "id: 513 bytes exceeds the limit of 512 (max_id_bytes)"),
            (
                10,
                "text: title, text and metadata strings total 10485760 bytes, over the limit of 1000 (max_text_bytes)"
            ),
        ]
    );
    assert!(
        ack.errors.iter().all(|e| e.error.as_ref().unwrap().code == Code::InvalidArgument as u32)
    );
    assert_eq!(ack.sequence, 2);
    assert_eq!(client.collection("vec").await.unwrap().stats.unwrap().documents, 2);
}

/// Speaks raw HTTP/2 to send a gRPC body that lies: a frame header announcing `announced`
/// bytes followed by `sent` bytes, then the end of the stream. Returns the grpc-status code and
/// message the server answers with.
async fn raw_grpc(url: &str, path: &str, announced: u32, sent: usize) -> (i32, String) {
    let addr = url.trim_start_matches("http://");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut h2 = h2.ready().await.unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("{url}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = h2.send_request(request, false).unwrap();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&announced.to_be_bytes());
    frame.extend(std::iter::repeat_n(0x0a, sent));
    body.send_data(bytes::Bytes::from(frame), true).unwrap();
    let response = response.await.unwrap();
    let (parts, mut stream) = response.into_parts();
    while let Some(chunk) = stream.data().await {
        chunk.unwrap();
    }
    let trailers = stream.trailers().await.unwrap().unwrap_or_default();
    let field = |name: &str| {
        trailers
            .get(name)
            .or_else(|| parts.headers.get(name))
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    (field("grpc-status").parse().unwrap(), field("grpc-message"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_end_mid_message_get_a_status_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    client.create_collection("c", proto::CollectionConfig::default()).await.unwrap();

    // Announces 1,000 bytes, sends 10, ends: on a client stream and on a unary call.
    let (code, message) = raw_grpc(&server.url, "/sieve.v1.Documents/Ingest", 1000, 10).await;
    assert_eq!(Code::from_i32(code), Code::Internal, "{message}");
    let (code, message) = raw_grpc(&server.url, "/sieve.v1.Search/Search", 1000, 10).await;
    assert_eq!(Code::from_i32(code), Code::Internal, "{message}");
    // Bytes that do not decode as the message.
    let (code, _) = raw_grpc(&server.url, "/sieve.v1.Collections/ListCollections", 3, 3).await;
    assert_eq!(Code::from_i32(code), Code::Internal);

    assert_eq!(server.health().await, SERVING);
    let stats = client.collection("c").await.unwrap().stats.unwrap();
    assert_eq!((stats.documents, stats.sequence), (0, 0));
}
