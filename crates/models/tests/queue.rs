//! The batching queue in front of a model: shared batches give the scores each call gets
//! alone, callers that leave free their entries, a full queue refuses more, long passages can
//! be scored as windows.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sieve_models::{
    BatchPolicy, BatchedModel, CrossEncoder, Embedder, Model, ModelError, Precision,
};

/// A cross-encoder behind its queue.
fn cross_encoder(model: Model, policy: BatchPolicy) -> CrossEncoder {
    CrossEncoder::new(Arc::new(BatchedModel::new(model, policy).unwrap())).unwrap()
}

fn shared() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    assert!(
        dir.join("fixtures").is_dir(),
        "{} is missing: these tests need the shared fixtures",
        dir.display()
    );
    dir
}

fn tiny_bert() -> Model {
    Model::load("tiny-bert-ce", &shared().join("fixtures/tiny-bert-ce"), Some(128), Precision::F32)
        .unwrap()
}

fn passages(call: usize) -> Vec<String> {
    (0..5)
        .map(|i| {
            format!(
                "passage {i} of call {call}: {}",
                "words about retrieval ".repeat(i * 3 + call % 4)
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_share_batches_and_get_their_own_scores() {
    // The real SciFact cross-encoder: slow enough that concurrent calls meet in the queue.
    let dir = shared().join("models/sieve--sieve-ce-minilm-l6-scifact");
    let load = || Model::load("scifact-ce", &dir, None, Precision::F32).unwrap();
    let alone = load();
    let expected: Vec<Vec<f32>> = (0..16)
        .map(|call| {
            let ps = passages(call);
            alone
                .score_pairs(
                    &format!("query {call}"),
                    &ps.iter().map(String::as_str).collect::<Vec<_>>(),
                )
                .unwrap()
        })
        .collect();
    let policy =
        BatchPolicy { max_batch_tokens: 8192, max_batch_requests: 128, queue_capacity: 1000 };
    let batched = cross_encoder(load(), policy);
    // Keep the worker busy (16 long pairs, about a second) so the calls below meet in the queue.
    let blocker = {
        let model = batched.clone();
        let long = vec!["prion protein in lymphoid tissue ".repeat(60); 16];
        tokio::spawn(async move { model.score("prion", long, false).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let calls: Vec<_> = (0..16)
        .map(|call| {
            let model = batched.clone();
            tokio::spawn(async move {
                model.score(&format!("query {call}"), passages(call), false).await.unwrap()
            })
        })
        .collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap());
    }
    for (call, (got, want)) in results.iter().zip(&expected).enumerate() {
        assert_eq!(got.scores.len(), 5);
        for (g, w) in got.scores.iter().zip(want) {
            // Padding to another batch length may change the summation order in the last bits.
            assert!((g - w).abs() <= 1e-4, "call {call}: {g} vs alone {w}");
        }
    }
    blocker.await.unwrap();
    let stats = batched.local().expect("loaded here").stats();
    assert_eq!(stats.inputs.load(Ordering::Relaxed), 96);
    let batches = stats.batches.load(Ordering::Relaxed);
    assert!(batches <= 3, "the 16 calls shared batches: {batches} forward passes in all");
    assert_eq!(stats.queued.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_leaves_frees_its_entries() {
    let dir = shared().join("models/sieve--sieve-ce-minilm-l6-scifact");
    let model = Model::load("scifact-ce", &dir, None, Precision::F32).unwrap();
    // Two pairs per forward pass: 200 long pairs take seconds even on the fastest kernels (~60
    // pairs/s in f32 on AVX-512), the caller leaves after 300 ms.
    let policy =
        BatchPolicy { max_batch_tokens: 4096, max_batch_requests: 2, queue_capacity: 1000 };
    let batched = cross_encoder(model, policy);
    let long =
        "Prion protein accumulates in lymphoid tissue during the incubation period. ".repeat(30);
    let passages = vec![long; 200];
    let outcome = tokio::time::timeout(
        Duration::from_millis(300),
        batched.score("abnormal prion", passages, false),
    )
    .await;
    assert!(outcome.is_err(), "the call cannot finish 200 long pairs in 300 ms");
    let stats = batched.local().expect("loaded here").stats();
    for _ in 0..200 {
        if stats.queued.load(Ordering::Acquire) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(stats.queued.load(Ordering::Acquire), 0, "nothing left waiting");
    let (ran, cancelled) =
        (stats.inputs.load(Ordering::Relaxed), stats.cancelled.load(Ordering::Relaxed));
    assert_eq!(ran + cancelled, 200);
    assert!(cancelled >= 100, "most entries were dropped unrun: {ran} ran, {cancelled} cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_and_says_why() {
    let policy = BatchPolicy { max_batch_tokens: 4096, max_batch_requests: 8, queue_capacity: 4 };
    let batched = Arc::new(BatchedModel::new(tiny_bert(), policy).unwrap());
    let err = CrossEncoder::new(Arc::clone(&batched))
        .unwrap()
        .score("q", passages(0).into_iter().chain(passages(1)).collect(), false)
        .await
        .unwrap_err();
    assert!(matches!(err, ModelError::Overloaded(_)));
    assert_eq!(
        err.to_string(),
        "model 'tiny-bert-ce' is overloaded: 0 inputs waiting, 10 more would pass its queue_capacity of 4"
    );
    assert_eq!(
        batched.stats().queued.load(Ordering::Relaxed),
        0,
        "a refused call leaves no count behind"
    );
    let embed = Embedder::new(batched).err().unwrap();
    assert_eq!(
        embed.to_string(),
        "model 'tiny-bert-ce' is a cross-encoder (BertForSequenceClassification), not an embedder"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_passages_score_as_their_best_window() {
    let model = Model::load(
        "tiny-bert-ce",
        &shared().join("fixtures/tiny-bert-ce"),
        Some(32),
        Precision::F32,
    )
    .unwrap();
    let passage =
        "the quick brown fox jumps over the lazy dog and then the berlin population grows "
            .repeat(4);
    let windows =
        model.tokenizer().encode_pair_windows("how many people live in berlin", &passage).unwrap();
    assert!(windows.len() >= 3, "{} windows", windows.len());
    assert!(windows.iter().all(|w| w.len() <= 32));
    let sieve_models::Outputs::Scores(each) =
        model.forward(&windows.iter().collect::<Vec<_>>()).unwrap()
    else {
        panic!("scores");
    };
    let best = each.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let truncated = model.score_pairs("how many people live in berlin", &[&passage]).unwrap()[0];
    let batched = cross_encoder(model, BatchPolicy::default());
    let windowed =
        batched.score("how many people live in berlin", vec![passage.clone()], true).await.unwrap();
    assert!(
        (windowed.scores[0] - best).abs() <= 1e-5,
        "{} vs best window {best}",
        windowed.scores[0]
    );
    let cut = batched.score("how many people live in berlin", vec![passage], false).await.unwrap();
    assert!((cut.scores[0] - truncated).abs() <= 1e-5);
    assert!((each[0] - truncated).abs() <= 1e-5, "the first window is the truncated pair");
}
