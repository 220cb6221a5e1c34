//! The cascade on real checkpoints: the SciFact cross-encoder, then the XLM-R fixture (its
//! rules with fake scorers are the crate's unit tests).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sieve_models::{BatchPolicy, BatchedModel, CrossEncoder, Model, Precision};
use sieve_rerank::{Candidate, Cascade, Run, Stage};

fn shared() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    assert!(
        dir.join("models").is_dir(),
        "{} is missing: these tests need the shared models",
        dir.display()
    );
    dir
}

fn load(name: &str, dir: PathBuf, max_length: Option<usize>) -> CrossEncoder {
    let model = Model::load(name, &dir, max_length, Precision::F32).unwrap();
    CrossEncoder::new(Arc::new(BatchedModel::new(model, BatchPolicy::default()).unwrap())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stage_ranks_the_survivors_of_the_last() {
    let scifact = load(
        "sieve/sieve-ce-minilm-l6-scifact",
        shared().join("models/sieve--sieve-ce-minilm-l6-scifact"),
        None,
    );
    let xlmr = load("tiny-xlmr-ce", shared().join("fixtures/tiny-xlmr-ce"), Some(128));
    let texts: Vec<String> = [
        "Vitamin D deficiency is common in people with limited sun exposure.",
        "The capital of France is Paris.",
        "Low serum vitamin D is associated with higher fracture risk in older adults.",
        "Bees communicate the direction of flowers with a waggle dance.",
        "Supplementation with vitamin D reduced falls in a randomised trial.",
        "Glaciers carve U-shaped valleys.",
    ]
    .map(String::from)
    .to_vec();
    let query = "vitamin D deficiency and bone health";
    let cascade = Cascade::new(
        vec![
            Stage { model: Arc::new(scifact.clone()), keep: 4, min_score: None },
            Stage { model: Arc::new(xlmr.clone()), keep: 2, min_score: None },
        ],
        6,
    )
    .unwrap();
    let mut seen = Vec::new();
    let candidates: Vec<Candidate> =
        texts.iter().map(|t| Candidate { passage: t.clone() }).collect();
    let run = Run { query, top_k: 2, windows: false, backfill: false, cache: None };
    let outcomes = cascade.run(&run, &candidates, |o, _| seen.push(o.stage)).await.unwrap();
    assert_eq!(seen, vec![1, 2], "stages reported in order");

    // Stage 1 equals the model's own ranking of all six.
    let direct = scifact
        .local()
        .expect("loaded here")
        .model()
        .score_pairs(query, &texts.iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap();
    let mut order: Vec<usize> = (0..6).collect();
    order.sort_by(|&a, &b| direct[b].total_cmp(&direct[a]));
    let first: Vec<usize> = outcomes[0].kept.iter().map(|k| k.0).collect();
    assert_eq!(first, order[..4]);
    assert_eq!(outcomes[0].scored, 6);
    for &(index, score) in &outcomes[0].kept {
        assert!((score - direct[index]).abs() < 1e-4);
    }

    // Stage 2 scores only those four, with its own model.
    let survivors: Vec<&str> = first.iter().map(|&i| texts[i].as_str()).collect();
    let second = xlmr.local().expect("loaded here").model().score_pairs(query, &survivors).unwrap();
    let mut order2: Vec<usize> = (0..4).collect();
    order2.sort_by(|&a, &b| second[b].total_cmp(&second[a]));
    let expected2: Vec<usize> = order2[..2].iter().map(|&j| first[j]).collect();
    assert_eq!(outcomes[1].kept.iter().map(|k| k.0).collect::<Vec<_>>(), expected2);
    assert_eq!(outcomes[1].scored, 4);
    assert_eq!(outcomes[1].model, "tiny-xlmr-ce");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedder_cannot_become_a_stage() {
    // The cross-encoder role is its type (the cascade's own rules: the crate's unit tests).
    let dir = shared().join("models/sentence-transformers--all-MiniLM-L6-v2");
    let embedder = Model::load("all-minilm", &dir, None, Precision::F32).unwrap();
    let batched = Arc::new(BatchedModel::new(embedder, BatchPolicy::default()).unwrap());
    let not_ce = CrossEncoder::new(batched).err().unwrap();
    assert_eq!(
        not_ce.to_string(),
        "model 'all-minilm' is an embedder (BertModel), not a cross-encoder"
    );
}
