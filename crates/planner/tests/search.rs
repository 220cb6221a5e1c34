//! Planner behaviour on a real collection: modes, fusion of both retrievers, payload fetch.

use std::sync::Arc;

use sieve_models::Registry;
use sieve_planner::{Fusion, Hit, Mode, Plan, Planner, Query, SearchError, Summary};
use sieve_storage::{
    CollectionConfig, DenseConfig, Distance, Document, HnswParams, Store, StoreOptions, WriteBatch,
};

fn doc(id: &str, text: &str, vector: [f32; 3]) -> Document {
    Document {
        id: id.into(),
        title: String::new(),
        text: text.into(),
        vector: Some(vector.to_vec()),
        ..Default::default()
    }
}

/// Runs a search without models and returns the answer (the last list) and the summary.
async fn search(
    collection: &Arc<sieve_storage::Collection>,
    query: &Query,
) -> Result<(Vec<Hit>, Summary), SearchError> {
    let planner = Planner::new(Arc::new(Registry::default()), Vec::new());
    let mut last = Vec::new();
    let summary =
        planner.search(Arc::clone(collection), query.clone(), |list| last = list.hits).await?;
    Ok((last, summary))
}

fn corpus(store: &Store) -> Arc<sieve_storage::Collection> {
    let dense = DenseConfig {
        dimension: 3,
        distance: Distance::Dot,
        embedder: None,
        hnsw: HnswParams::default(),
    };
    let c = store
        .create_collection("c", CollectionConfig { dense: Some(dense), ..Default::default() })
        .unwrap();
    let docs = vec![
        doc("kw", "zebra zebra zebra", [0.0, 0.0, 0.1]),
        doc("both", "zebra", [0.9, 0.0, 0.0]),
        doc("vec", "nothing relevant", [1.0, 0.0, 0.0]),
        doc("none", "unrelated words", [0.0, 1.0, 0.0]),
    ];
    c.write(&WriteBatch { upserts: docs, deletes: vec![] }).unwrap();
    c
}

#[tokio::test]
async fn hybrid_fuses_both_retrievers_with_their_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let c = corpus(&store);
    let query = Query {
        text: "zebra".into(),
        vector: Some(vec![1.0, 0.0, 0.0]),
        top_k: Some(3),
        ..Query::default()
    };
    let (hits, summary) = search(&c, &query).await.unwrap();
    assert_eq!(summary.mode, Mode::Hybrid);
    assert_eq!(
        (summary.bm25_candidates, summary.dense_candidates, summary.fused_candidates),
        (2, 4, 4)
    );
    let ids: Vec<&str> = hits.iter().map(|h| &*h.id).collect();
    // both: bm25 rank 2, dense rank 2 → 2/62; vec: dense 1 → 1/61; kw: bm25 1, dense 3 → 1/61 + 1/63.
    assert_eq!(ids, vec!["kw", "both", "vec"]);
    let kw = &hits[0];
    assert_eq!((kw.fused.rank, hits[2].fused.rank), (1, 3));
    assert!((kw.score - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-12);
    assert_eq!(kw.bm25.unwrap().rank, 1);
    assert_eq!(kw.dense.unwrap().rank, 3);
    assert!((kw.dense.unwrap().score - 0.0).abs() < 1e-6);
    let both = &hits[1];
    assert!((both.score - 2.0 / 62.0).abs() < 1e-12);
    assert_eq!((both.bm25.unwrap().rank, both.dense.unwrap().rank), (2, 2));
    assert!((both.dense.unwrap().score - 0.9).abs() < 1e-6);
    assert_eq!(hits[2].bm25, None);
    assert_eq!(both.text, "zebra");
}

#[tokio::test]
async fn weights_and_linear_fusion_change_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let c = corpus(&store);
    let plan = Plan { bm25_weight: Some(0.0), ..Plan::default() };
    let query =
        Query { text: "zebra".into(), vector: Some(vec![1.0, 0.0, 0.0]), plan, ..Query::default() };
    let ids: Vec<String> =
        search(&c, &query).await.unwrap().0.iter().map(|h| h.id.to_string()).collect();
    assert_eq!(&ids[..2], ["vec", "both"], "with BM25 weighted 0 the dense order wins");

    let plan = Plan { fusion: Fusion::Linear, ..Plan::default() };
    let query = Query {
        text: "zebra".into(),
        vector: Some(vec![1.0, 0.0, 0.0]),
        plan,
        omit_text: true,
        ..Query::default()
    };
    let (hits, _) = search(&c, &query).await.unwrap();
    let scored: Vec<(&str, f64)> = hits.iter().map(|h| (&*h.id, h.score)).collect();
    // BM25 normalises to kw 1, both 0; dense (range 0..1) to vec 1, both 0.9, kw 0, none 0.
    // kw and vec tie at 1.0 and are ordered by id.
    assert_eq!(scored.len(), 4);
    let expected = [("kw", 1.0), ("vec", 1.0), ("both", 0.9), ("none", 0.0)];
    for ((id, score), (want_id, want)) in scored.iter().zip(expected) {
        assert_eq!(*id, want_id);
        assert!((score - want).abs() < 1e-6, "{id}: {score}");
    }
    assert!(hits.iter().all(|h| h.text.is_empty()));
}

#[tokio::test]
async fn modes_resolve_and_refuse_what_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let c = corpus(&store);
    let text_only = Query { text: "zebra".into(), ..Query::default() };
    assert_eq!(text_only.resolve_mode(&*c).unwrap(), Mode::Bm25);
    let vector_only = Query { vector: Some(vec![1.0, 0.0, 0.0]), ..Query::default() };
    assert_eq!(vector_only.resolve_mode(&*c).unwrap(), Mode::Dense);
    let hybrid_without_vector = Query {
        text: "zebra".into(),
        plan: Plan { mode: Some(Mode::Hybrid), ..Plan::default() },
        ..Query::default()
    };
    let err = search(&c, &hybrid_without_vector).await.unwrap_err();
    assert!(matches!(err, SearchError::InvalidArgument(_)));
    assert_eq!(
        err.to_string(),
        "query_vector: required for hybrid search (collection 'c' has no built-in embedder)"
    );
    let empty = Query::default();
    assert_eq!(
        search(&c, &empty).await.unwrap_err().to_string(),
        "query: must not be empty for BM25 search"
    );
    let bad_weight = Query {
        text: "zebra".into(),
        plan: Plan { dense_weight: Some(-1.0), ..Plan::default() },
        ..Query::default()
    };
    assert_eq!(
        search(&c, &bad_weight).await.unwrap_err().to_string(),
        "plan.dense_weight: must be a finite number >= 0, got -1"
    );
}

/// Every check runs before any model is asked: a bad weight on a collection whose embedder is
/// not loaded is the weight's error, not the model's.
#[tokio::test]
async fn requests_are_checked_before_the_query_is_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let dense = DenseConfig {
        dimension: 3,
        distance: Distance::Cosine,
        embedder: Some("org/not-loaded".into()),
        hnsw: HnswParams::default(),
    };
    let c = store
        .create_collection("e", CollectionConfig { dense: Some(dense), ..Default::default() })
        .unwrap();
    let mut query = Query {
        text: "zebra".into(),
        plan: Plan { bm25_weight: Some(f32::NAN), ..Plan::default() },
        ..Query::default()
    };
    assert_eq!(
        search(&c, &query).await.unwrap_err().to_string(),
        "plan.bm25_weight: must be a finite number >= 0, got NaN"
    );
    // With the weight fixed, the missing model is what stops it.
    query.plan.bm25_weight = None;
    let err = search(&c, &query).await.unwrap_err();
    assert!(matches!(err, SearchError::Model(_)), "{err:?}");
}
