//! End to end with real models: a collection embedded by the server's all-MiniLM-L6-v2 over 300
//! SciFact documents, a two-stage rerank cascade streamed stage by stage and checked against
//! the Rerank RPC, concurrent Rerank calls, cancellation, and start-up with a missing model.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{TestServer, gz_lines, shared, status_of};
use futures::StreamExt;
use sieve_client::{Client, proto};

const EMBEDDER: &str = "sentence-transformers/all-MiniLM-L6-v2";
const SCIFACT_CE: &str = "sieve/sieve-ce-minilm-l6-scifact";
const XLMR: &str = "tiny-xlmr-ce";

/// The server with the embedder, the SciFact cross-encoder and the XLM-R fixture; the SciFact
/// model cuts small batches so a search can be cancelled between them.
fn start(dir: &Path) -> TestServer {
    let config = dir.join("sieve.toml");
    let models = shared().join("models");
    let xlmr = shared().join("fixtures/tiny-xlmr-ce");
    std::fs::write(
        &config,
        format!(
            "models_dir = {models:?}\ndefault_embedder = \"{EMBEDDER}\"\n\n\
             [[models]]\nname = \"{EMBEDDER}\"\n\n\
             [[models]]\nname = \"{SCIFACT_CE}\"\nmax_batch_requests = 4\n\n\
             [[models]]\nname = \"{XLMR}\"\npath = {xlmr:?}\nmax_length = 128\n",
        ),
    )
    .unwrap();
    let data = dir.join("data");
    TestServer::start(&data, &["--config", config.to_str().unwrap()])
}

/// A server with only the tiny XLM-R cross-encoder fixture (fast), and extra flags.
fn start_with_xlmr(dir: &Path, extra: &[&str]) -> TestServer {
    let config = dir.join("sieve.toml");
    let xlmr = shared().join("fixtures/tiny-xlmr-ce");
    let toml = format!("[[models]]\nname = \"{XLMR}\"\npath = {xlmr:?}\nmax_length = 128\n");
    std::fs::write(&config, toml).unwrap();
    TestServer::start(&dir.join("data"), &[&["--config", config.to_str().unwrap()], extra].concat())
}

/// 300 SciFact documents: those judged relevant to the first test queries, then the corpus
/// from its start; and the first test query with its relevant document.
fn scifact_subset() -> (Vec<proto::Document>, (String, String)) {
    let beir = shared().join("data/beir/scifact");
    let qrels = std::fs::read_to_string(beir.join("qrels/test.tsv")).unwrap();
    let judged: Vec<(String, String)> = qrels
        .lines()
        .skip(1)
        .map(|line| {
            let mut fields = line.trim_end_matches('\r').split('\t');
            (fields.next().unwrap().to_string(), fields.next().unwrap().to_string())
        })
        .collect();
    let wanted: Vec<&String> = judged.iter().take(20).map(|(_, doc)| doc).collect();
    let corpus: Vec<proto::Document> = gz_lines(&beir.join("corpus.jsonl.gz"))
        .iter()
        .map(|line| sieve_client::jsonl::parse_document(line).unwrap())
        .collect();
    let mut subset: Vec<proto::Document> =
        corpus.iter().filter(|d| wanted.contains(&&d.id)).cloned().collect();
    for doc in &corpus {
        if subset.len() == 300 {
            break;
        }
        if !wanted.contains(&&doc.id) {
            subset.push(doc.clone());
        }
    }
    let (query_id, relevant) = judged[0].clone();
    let query = gz_lines(&beir.join("queries.jsonl.gz"))
        .iter()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|q| q["_id"] == query_id.as_str())
        .map(|q| q["text"].as_str().unwrap().to_string())
        .unwrap();
    (subset, (query, relevant))
}

async fn rerank(
    client: &Client,
    query: &str,
    texts: Vec<String>,
    model: &str,
) -> proto::RerankResponse {
    let request = proto::RerankRequest {
        query: query.into(),
        texts,
        top_n: 0,
        model: model.into(),
        windows: false,
    };
    client.rerank(request).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_collection_and_a_two_stage_cascade() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let client = server.client().await;
    let created =
        client.create_collection("scifact", proto::CollectionConfig::default()).await.unwrap();
    let dense = created.config.unwrap().dense.expect("the default embedder makes it dense");
    assert_eq!((dense.embedder.as_str(), dense.dimension), (EMBEDDER, 384));

    let (documents, (query, relevant)) = scifact_subset();
    assert_eq!(documents.len(), 300);
    for chunk in documents.chunks(100) {
        let ack = client.upsert("scifact", chunk.to_vec()).await.unwrap();
        assert_eq!((ack.accepted.len(), ack.errors.len()), (100, 0));
    }
    let stats = client.collection("scifact").await.unwrap().stats.unwrap();
    assert_eq!(
        (stats.documents, stats.vectors),
        (300, 300),
        "every document was embedded at ingest"
    );

    // Dense retrieval with the server embedding the query.
    let dense_only =
        proto::SearchRequest::new("scifact", &query).with_mode(proto::Mode::Dense).with_top_k(10);
    let answer = client.search(dense_only).await.unwrap();
    let position = answer.hits().iter().position(|h| h.id == relevant);
    assert!(position.is_some(), "{relevant} (relevant to {query:?}) is in the dense top 10");
    let done = answer.done.unwrap();
    assert_eq!(done.models[0].step, "embed");
    assert_eq!(done.models[0].model, EMBEDDER);

    // A stage cannot keep more than it receives.
    let too_many = proto::SearchRequest::new("scifact", &query)
        .with_candidates(30)
        .with_rerank([(SCIFACT_CE, 40)]);
    let status = status_of(client.search(too_many).await);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("rerank[0].keep: 40 is more than the 30 candidates entering the cascade"),
        "{}",
        status.message()
    );
    let narrowing = proto::SearchRequest::new("scifact", &query)
        .with_candidates(30)
        .with_rerank([(SCIFACT_CE, 10), (XLMR, 20)]);
    let status = status_of(client.search(narrowing).await);
    assert!(
        status
            .message()
            .contains("rerank[1].keep: 20 is more than the 10 the previous stage keeps"),
        "{}",
        status.message()
    );

    // Hybrid, then the SciFact cross-encoder keeps 20 of 30 and the XLM-R stage keeps 5.
    let request = proto::SearchRequest::new("scifact", &query)
        .with_candidates(30)
        .with_rerank([(SCIFACT_CE, 20), (XLMR, 5)]);
    let mut events = client.search_events(request).await.unwrap();
    let mut stages = Vec::new();
    let mut done = None;
    while let Some(event) = events.message().await.unwrap() {
        match event.event.unwrap() {
            proto::search_event::Event::Hits(stage) => stages.push(stage),
            proto::search_event::Event::Done(d) => done = Some(d),
        }
    }
    let names: Vec<(&str, &str, usize)> =
        stages.iter().map(|s| (s.stage.as_str(), s.model.as_str(), s.hits.len())).collect();
    assert_eq!(names, [("fused", "", 30), ("rerank:1", SCIFACT_CE, 20), ("rerank:2", XLMR, 5)]);
    let done = done.expect("done closes the stream");
    let steps: Vec<(&str, u32, u32)> =
        done.models.iter().map(|m| (m.step.as_str(), m.inputs, m.kept)).collect();
    assert_eq!(steps, [("embed", 1, 0), ("rerank:1", 30, 20), ("rerank:2", 20, 5)]);
    assert!(done.timings.iter().any(|t| t.phase == "rerank" && t.micros > 0));

    // Each stage's order and scores are what the Rerank RPC gives for the same texts.
    let ids: Vec<String> = stages[0].hits.iter().map(|h| h.id.clone()).collect();
    let got = client.get("scifact", ids.clone(), false).await.unwrap();
    let passage = |id: &str| {
        let doc = got.documents.iter().find(|d| d.id == id).unwrap();
        sieve_rerank::passage(&doc.title, &doc.text)
    };
    let mut entering = ids;
    for (stage, model) in [(1, SCIFACT_CE), (2, XLMR)] {
        let texts: Vec<String> = entering.iter().map(|id| passage(id)).collect();
        let direct = rerank(&client, &query, texts, model).await;
        let hits = &stages[stage].hits;
        for (rank, (hit, result)) in hits.iter().zip(&direct.results).enumerate() {
            assert_eq!(hit.id, entering[result.index as usize], "stage {stage}, rank {}", rank + 1);
            let placement = hit.stages.last().unwrap();
            assert_eq!((placement.stage, placement.rank), (stage as u32, rank as u32 + 1));
            assert!(
                (placement.score - result.score).abs() < 1e-4,
                "stage {stage}: {} vs {}",
                placement.score,
                result.score
            );
            assert_eq!(hit.stages.len(), stage, "a hit carries every stage it went through");
        }
        entering = hits.iter().map(|h| h.id.clone()).collect();
    }
    let final_hit = &stages[2].hits[0];
    assert!(final_hit.fused.is_some() && final_hit.stages[0].model == SCIFACT_CE);

    // Keep few, backfill: the cross-encoder keeps 3 of the 30 (the same 3 as above, in the
    // same order), then the other 27 follow in fused order up to top_k, with fused scores.
    let request = proto::SearchRequest::new("scifact", &query)
        .with_candidates(30)
        .with_rerank([(SCIFACT_CE, 3)])
        .with_top_k(10)
        .with_backfill();
    let response = client.search(request).await.unwrap();
    // The 30 (query, passage) pairs were scored by the cascade above: all from the score cache,
    // with the same scores.
    let step = &response.done.as_ref().unwrap().models[1];
    assert_eq!((step.step.as_str(), step.inputs, step.cached), ("rerank:1", 30, 30));
    assert_eq!(response.stages[1].hits[0].score, stages[1].hits[0].score);
    let (fused, last) = (&response.stages[0].hits, &response.stages[1].hits);
    assert_eq!(last.len(), 10);
    let kept: Vec<&str> = last[..3].iter().map(|h| h.id.as_str()).collect();
    let reranked: Vec<&str> = stages[1].hits[..3].iter().map(|h| h.id.as_str()).collect();
    assert_eq!(kept, reranked);
    assert!(last[..3].iter().all(|h| !h.backfilled && h.stages.len() == 1));
    let rest: Vec<(&str, f32)> = fused
        .iter()
        .filter(|h| !kept.contains(&h.id.as_str()))
        .take(7)
        .map(|h| (h.id.as_str(), h.score))
        .collect();
    let backfilled: Vec<(&str, f32)> = last[3..].iter().map(|h| (h.id.as_str(), h.score)).collect();
    assert_eq!(backfilled, rest, "the rest in fused order, with fused scores");
    assert!(last[3..].iter().all(|h| h.backfilled && h.stages.is_empty()));
    // Without backfill the same cascade answers only what it keeps; without the score cache
    // the model scores all 30 again, to the same scores.
    let mut request = proto::SearchRequest::new("scifact", &query)
        .with_candidates(30)
        .with_rerank([(SCIFACT_CE, 3)])
        .with_top_k(10);
    request.plan.as_mut().unwrap().no_score_cache = true;
    let uncached = client.search(request).await.unwrap();
    assert_eq!(uncached.hits().len(), 3);
    assert_eq!(uncached.done.as_ref().unwrap().models[1].cached, 0);
    let scores =
        |hits: &[proto::Hit]| hits.iter().map(|h| (h.id.clone(), h.score)).collect::<Vec<_>>();
    assert_eq!(scores(uncached.hits()), scores(&last[..3]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rerank_calls_get_their_own_scores() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let client = server.client().await;
    let call = |i: usize| {
        let texts: Vec<String> = (0..6)
            .map(|j| format!("Passage {j} about prion protein in tissue sample {i}."))
            .collect();
        (format!("prion protein claim number {i}"), texts)
    };
    let mut alone = Vec::new();
    for i in 0..16 {
        let (query, texts) = call(i);
        alone.push(rerank(&client, &query, texts, SCIFACT_CE).await);
    }
    let together: Vec<_> = (0..16)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let (query, texts) = call(i);
                rerank(&client, &query, texts, SCIFACT_CE).await
            })
        })
        .collect();
    for (i, handle) in together.into_iter().enumerate() {
        let concurrent = handle.await.unwrap();
        assert_eq!(concurrent.results.len(), 6);
        for (a, b) in concurrent.results.iter().zip(&alone[i].results) {
            assert_eq!(a.index, b.index, "call {i}: same order");
            assert!((a.score - b.score).abs() < 1e-4, "call {i}: {} vs {}", a.score, b.score);
        }
    }
    let empty = status_of(
        client.rerank(proto::RerankRequest { query: "q".into(), ..Default::default() }).await,
    );
    assert_eq!(
        (empty.code(), empty.message()),
        (tonic::Code::InvalidArgument, "texts: must not be empty")
    );
    let unknown = status_of(
        client
            .rerank(proto::RerankRequest {
                query: "q".into(),
                texts: vec!["t".into()],
                model: "org/none".into(),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument);
    assert!(
        unknown
            .message()
            .starts_with("model: model 'org/none' is not loaded by this server (loaded: "),
        "{}",
        unknown.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_rerank_frees_its_queue_entries() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let client = server.client().await;
    client
        .create_collection(
            "c",
            proto::CollectionConfig { keyword_only: true, ..Default::default() },
        )
        .await
        .unwrap();
    let long = "Abnormal prion protein accumulates in appendix and lymphoid tissue. ".repeat(25);
    let documents: Vec<proto::Document> = (0..60)
        .map(|i| proto::Document {
            id: format!("d{i}"),
            text: format!("prion {i} {long}"),
            ..Default::default()
        })
        .collect();
    client.upsert("c", documents).await.unwrap();
    // 60 long pairs, 4 per forward pass: many seconds of work. Leave after the fused list.
    let request = proto::SearchRequest::new("c", "prion protein")
        .with_candidates(60)
        .with_rerank([(SCIFACT_CE, 10)]);
    let mut events = client.search_events(request).await.unwrap();
    let first = events.message().await.unwrap().unwrap();
    assert!(
        matches!(first.event, Some(proto::search_event::Event::Hits(ref s)) if s.stage == "fused")
    );
    let model_stats = |info: proto::GetInfoResponse| {
        info.models.into_iter().find(|m| m.name == SCIFACT_CE).unwrap()
    };
    let mut stats = model_stats(client.info().await.unwrap());
    for _ in 0..200 {
        if stats.queued > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        stats = model_stats(client.info().await.unwrap());
    }
    assert!(stats.queued > 0, "the search's pairs are waiting: {stats:?}");
    drop(events);

    for _ in 0..300 {
        if stats.queued == 0 && stats.cancelled > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        stats = model_stats(client.info().await.unwrap());
    }
    assert_eq!(stats.queued, 0, "nothing of the abandoned search still waits");
    assert!(stats.cancelled >= 40, "most of its 60 pairs were dropped unrun: {stats:?}");
    assert_eq!(stats.inputs + stats.cancelled, 60);
}

#[test]
fn a_missing_model_stops_start_up_and_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sieve-server"))
        .args(["--listen", "127.0.0.1:0", "--models", "org/absent", "--models-dir"])
        .arg(dir.path().join("models"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected_dir = dir.path().join("models/org--absent");
    assert!(stderr.contains(&format!("no checkpoint at {}", expected_dir.display())), "{stderr}");
    assert!(stderr.contains("git clone https://huggingface.co/org/absent"), "{stderr}");
}

/// The kernels this CPU runs best, as the server names them, and the precision it then picks.
fn detected_kernels() -> (&'static str, &'static str) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bf16")
            && is_x86_feature_detected!("avx512vnni")
        {
            return ("avx512", "bf16");
        }
        eprintln!("no AVX512-BF16 + VNNI here: the default precision is f32 (bf16 is not checked)");
        return ("avx2", "f32");
    }
    ("portable", "f32")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernels_are_chosen_per_model_reported_and_give_the_same_scores() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sieve.toml");
    let tiny = |name: &str| shared().join("fixtures").join(name);
    std::fs::write(
        &config,
        format!(
            "[[models]]\nname = \"fast/{XLMR}\"\npath = {:?}\nmax_length = 128\n\
             dtype = \"f32\"\n\n\
             [[models]]\nname = \"reference/{XLMR}\"\npath = {:?}\nmax_length = 128\n\
             kernels = \"reference\"\n\n\
             [[models]]\nname = \"portable/{XLMR}\"\npath = {:?}\nmax_length = 128\n\
             kernels = \"portable\"\ndtype = \"f32\"\n\n\
             [[models]]\nname = \"auto/{XLMR}\"\npath = {:?}\nmax_length = 128\n",
            tiny(XLMR),
            tiny(XLMR),
            tiny(XLMR),
            tiny(XLMR)
        ),
    )
    .unwrap();
    let server =
        TestServer::start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    let client = server.client().await;
    let info = client.info().await.unwrap();
    let kernels: Vec<(&str, &str, &str)> = info
        .models
        .iter()
        .map(|m| (m.name.as_str(), m.kernels.as_str(), m.precision.as_str()))
        .collect();
    // Unset, kernels and precision are the fastest this CPU runs (bf16 on AVX512-BF16).
    let (detected, fastest) = detected_kernels();
    assert_eq!(
        kernels,
        [
            (format!("auto/{XLMR}").as_str(), detected, fastest),
            (format!("fast/{XLMR}").as_str(), detected, "f32"),
            (format!("portable/{XLMR}").as_str(), "portable", "f32"),
            (format!("reference/{XLMR}").as_str(), "reference", "f32"),
        ]
    );
    let texts = ["Sieve reranks candidates.", "A kitchen sieve.", "Zwölf Boxkämpfer jagen Viktor."];
    let mut all = Vec::new();
    for prefix in ["fast", "portable", "auto", "reference"] {
        let request = proto::RerankRequest {
            model: format!("{prefix}/{XLMR}"),
            query: "what does sieve do?".into(),
            texts: texts.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        };
        let response = client.rerank(request).await.unwrap();
        let mut scores: Vec<(u32, f32)> =
            response.results.iter().map(|r| (r.index, r.score)).collect();
        scores.sort_by_key(|&(index, _)| index);
        all.push(scores);
    }
    // f32 kernels agree with the reference to 1e-4; bf16 within what rounding this fixture's
    // large random weights to bf16 implies (0.1, see the models crate's reference tests).
    for (other, prefix) in all[..3].iter().zip(["fast", "portable", "auto"]) {
        let tolerance = if prefix == "auto" && fastest == "bf16" { 0.1 } else { 1e-4 };
        for ((i, a), (j, b)) in other.iter().zip(&all[3]) {
            assert_eq!(i, j);
            assert!((a - b).abs() < tolerance, "{prefix} text {i}: {a} vs the reference's {b}");
        }
    }
    drop(server);

    // A name no kernel set has stops start-up and lists the choices.
    std::fs::write(
        &config,
        format!("[[models]]\nname = \"{XLMR}\"\npath = {:?}\nkernels = \"avx9000\"\n", tiny(XLMR)),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sieve-server"))
        .args(["--listen", "127.0.0.1:0", "--config", config.to_str().unwrap(), "--data-dir"])
        .arg(dir.path().join("data2"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("has kernels 'avx9000' (use auto, reference, portable, avx2 or avx512)"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_of_searches_with_a_cascade_answers_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let client = server.client().await;
    client.create_collection("c", proto::CollectionConfig::default()).await.unwrap();
    let docs: Vec<proto::Document> = [
        "Vitamin D deficiency weakens bones.",
        "Bees dance to share directions.",
        "Glaciers carve valleys.",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| proto::Document {
        id: format!("d{i}"),
        text: t.to_string(),
        ..Default::default()
    })
    .collect();
    client.upsert("c", docs).await.unwrap();
    let requests = vec![
        proto::SearchRequest::new("c", "vitamin D and bones")
            .with_rerank([(SCIFACT_CE, 2)])
            .with_top_k(2),
        proto::SearchRequest::new("c", "bees").with_rerank([("org/none", 1)]),
    ];
    let results: Vec<proto::SearchResult> = client
        .search_stream(futures::stream::iter(requests))
        .await
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await;
    let Some(proto::search_result::Outcome::Response(first)) = &results[0].outcome else {
        panic!("{:?}", results[0])
    };
    assert_eq!(first.stages.len(), 2);
    assert_eq!(first.hits()[0].id, "d0");
    let Some(proto::search_result::Outcome::Error(error)) = &results[1].outcome else {
        panic!("{:?}", results[1])
    };
    assert_eq!(error.code, tonic::Code::InvalidArgument as u32);
    assert!(
        error.message.starts_with("plan.rerank[0].model: model 'org/none' is not loaded"),
        "{}",
        error.message
    );
}

/// `/metrics` on its own port: per-RPC counts and latency by final status (streams included),
/// ingest documents and bytes, cascade stage and model batch histograms, model queues,
/// collection sizes and each derived index's lag behind sled's op-log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_with_every_named_series() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_xlmr(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let client = server.client().await;
    client.create_collection("m", common::dense_config(4, proto::Distance::Cosine)).await.unwrap();
    let doc = |id: &str, text: &str, vector: Vec<f32>| proto::Document {
        id: id.into(),
        text: text.into(),
        vector,
        ..Default::default()
    };
    let topics = [
        "bees", "glaciers", "vitamins", "rivers", "stars", "ants", "tides", "bones", "moss", "owls",
    ];
    let mut batch: Vec<proto::Document> = topics
        .iter()
        .enumerate()
        .map(|(i, topic)| {
            let vector = (0..4).map(|d| if d == i % 4 { 1.0 } else { 0.1 * i as f32 }).collect();
            doc(&format!("d{i}"), &format!("a passage about {topic}"), vector)
        })
        .collect();
    batch.push(doc("bad", "wrong dimension", vec![1.0]));
    let request_bytes = prost::Message::encoded_len(&proto::IngestRequest {
        collection: "m".into(),
        documents: batch.clone(),
        ..Default::default()
    });
    let ack = client.upsert("m", batch).await.unwrap();
    assert_eq!((ack.accepted.len(), ack.errors.len()), (10, 1));
    client
        .upsert("m", vec![doc("d0", "bees dance again", vec![0.0, 0.0, 0.0, 1.0])])
        .await
        .unwrap();
    let search = proto::SearchRequest::new("m", "bees")
        .with_vector(vec![1.0, 0.0, 0.0, 0.0])
        .with_candidates(3)
        .with_rerank([(XLMR, 2)]);
    assert_eq!(client.search(search).await.unwrap().hits().len(), 2);
    status_of(client.search(proto::SearchRequest::new("nope", "x")).await);
    assert_eq!(client.delete("m", vec!["d1".into()]).await.unwrap().deleted, ["d1"]);

    let samples = server.scrape();
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let mut labels: Vec<(String, String)> =
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        labels.sort();
        *samples.get(&(name.to_string(), labels.clone())).unwrap_or_else(|| {
            panic!("no sample {name}{labels:?}; scraped: {:#?}", samples.keys().collect::<Vec<_>>())
        })
    };
    let rpc = |method: &str, code: &str| {
        value("sieve_grpc_requests_total", &[("method", method), ("code", code)])
    };
    assert_eq!(rpc("sieve.v1.Collections/CreateCollection", "OK"), 1.0);
    assert_eq!(rpc("sieve.v1.Documents/Ingest", "OK"), 2.0);
    assert_eq!(rpc("sieve.v1.Search/Search", "OK"), 1.0);
    assert_eq!(rpc("sieve.v1.Search/Search", "NOT_FOUND"), 1.0);
    assert_eq!(rpc("sieve.v1.Documents/Delete", "OK"), 1.0);
    let latency = [("method", "sieve.v1.Search/Search"), ("code", "OK")];
    assert_eq!(value("sieve_grpc_request_duration_seconds_count", &latency), 1.0);
    assert!(value("sieve_grpc_request_duration_seconds_sum", &latency) > 0.0);

    let m = [("collection", "m")];
    assert_eq!(value("sieve_ingest_documents_total", &m), 11.0);
    assert_eq!(value("sieve_ingest_rejected_documents_total", &m), 1.0);
    assert_eq!(value("sieve_ingest_deleted_documents_total", &m), 1.0);
    assert!(value("sieve_ingest_bytes_total", &m) > request_bytes as f64);

    assert_eq!(value("sieve_search_phase_seconds_count", &[("phase", "total")]), 1.0);
    assert_eq!(value("sieve_search_phase_seconds_count", &[("phase", "rerank")]), 1.0);
    let stage = [("stage", "rerank:1"), ("model", XLMR)];
    assert_eq!(value("sieve_rerank_stage_seconds_count", &stage), 1.0);
    let model = [("model", XLMR)];
    assert_eq!(value("sieve_rerank_score_cache_hits_total", &model), 0.0);
    assert_eq!(value("sieve_rerank_score_cache_misses_total", &model), 3.0);
    assert_eq!(value("sieve_model_batch_inputs_sum", &model), 3.0);
    assert!(value("sieve_model_batch_tokens_sum", &model) >= 3.0);
    assert!(value("sieve_model_batch_seconds_count", &model) >= 1.0);
    assert_eq!(value("sieve_model_inputs_total", &model), 3.0);
    assert_eq!(value("sieve_model_queue_inputs", &model), 0.0);
    assert_eq!(value("sieve_model_cancelled_inputs_total", &model), 0.0);

    // 9 live; d0's first vector and d1's stay in the graph as tombstones (2 of 11 points, under
    // the 0.2 rebuild ratio); 12 ops, none in a graph dump yet (one is written every 50,000).
    assert_eq!(value("sieve_collection_documents", &m), 9.0);
    assert_eq!(value("sieve_collection_vectors", &m), 9.0);
    assert_eq!(value("sieve_collection_tombstones", &m), 2.0);
    assert_eq!(value("sieve_collection_tombstone_ratio", &m), 2.0 / 11.0);
    assert_eq!(value("sieve_collection_sequence", &m), 12.0);
    assert_eq!(value("sieve_index_lag_operations", &[("collection", "m"), ("index", "bm25")]), 0.0);
    assert_eq!(
        value("sieve_index_lag_operations", &[("collection", "m"), ("index", "hnsw")]),
        12.0
    );
}

/// OTLP traces: a search with a cascade reaches a (fake) collector as a `search` span under the
/// caller's `traceparent`, with children for the first stage (`bm25`, `dense`, `fusion`,
/// `fetch`), `rerank` and one `rerank_stage` naming its model; spans are flushed on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_an_otlp_collector_with_a_span_per_phase_and_stage() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::trace::v1::Span;

    type Spans = std::sync::Arc<std::sync::Mutex<Vec<Span>>>;
    struct Collector(Spans);
    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let spans = request
                .into_inner()
                .resource_spans
                .into_iter()
                .flat_map(|r| r.scope_spans)
                .flat_map(|s| s.spans);
            self.0.lock().unwrap().extend(spans);
            Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
        }
    }
    let received = Spans::default();
    let incoming =
        tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let collector_addr = incoming.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(std::sync::Arc::clone(&received))))
            .serve_with_incoming(incoming),
    );

    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://{collector_addr}");
    let mut server = start_with_xlmr(dir.path(), &["--otlp-endpoint", &endpoint]);
    let client = server.client().await;
    client.create_collection("t", common::dense_config(4, proto::Distance::Cosine)).await.unwrap();
    let docs = (0..6)
        .map(|i| proto::Document {
            id: format!("d{i}"),
            text: format!("passage number {i} about tracing"),
            vector: (0..4).map(|d| if d == i % 4 { 1.0 } else { 0.2 }).collect(),
            ..Default::default()
        })
        .collect();
    client.upsert("t", docs).await.unwrap();

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut search = proto::search_client::SearchClient::connect(server.url.clone()).await.unwrap();
    let mut request = tonic::Request::new(
        proto::SearchRequest::new("t", "tracing")
            .with_vector(vec![1.0, 0.2, 0.2, 0.2])
            .with_candidates(4)
            .with_rerank([(XLMR, 2)]),
    );
    request
        .metadata_mut()
        .insert("traceparent", format!("00-{trace_id}-{caller_span}-01").parse().unwrap());
    let mut events = search.search(request).await.unwrap().into_inner();
    let mut stages = 0;
    while let Some(event) = events.message().await.unwrap() {
        stages += usize::from(matches!(event.event, Some(proto::search_event::Event::Hits(_))));
    }
    assert_eq!(stages, 2, "fused and one rerank stage");
    assert!(server.terminate().success(), "SIGTERM flushes the spans and exits cleanly");

    let spans = received.lock().unwrap().clone();
    let named = |name: &str| -> &Span {
        spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!("no `{name}` span; got {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>())
        })
    };
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let root = named("search");
    assert_eq!(hex(&root.trace_id), trace_id, "the caller's trace");
    assert_eq!(hex(&root.parent_span_id), caller_span, "a child of the caller's span");
    let child_of = |child: &Span, parent: &Span| {
        assert_eq!(child.trace_id, root.trace_id, "{} is in the trace", child.name);
        assert_eq!(child.parent_span_id, parent.span_id, "{} is under {}", child.name, parent.name);
    };
    let first = named("first_stage");
    child_of(first, root);
    for phase in ["bm25", "dense", "fusion", "fetch"] {
        child_of(named(phase), first);
    }
    let rerank = named("rerank");
    child_of(rerank, root);
    let stage = named("rerank_stage");
    child_of(stage, rerank);
    let attribute = |span: &Span, key: &str| -> String {
        let value = span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.clone());
        format!("{:?}", value.and_then(|v| v.value).expect("attribute set"))
    };
    assert!(attribute(stage, "model").contains(XLMR), "{}", attribute(stage, "model"));
    assert!(attribute(stage, "candidates").contains('4'), "{}", attribute(stage, "candidates"));
    assert!(attribute(root, "collection").contains("\"t\""), "{}", attribute(root, "collection"));
}
