//! Storage behaviour through the public API: upserts and deletes reach both indexes, graphs
//! rebuild, indexes survive reopen and are rebuilt from sled when lost, filters run inside
//! both retrievers.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sieve_storage::{
    Collection, CollectionConfig, DenseConfig, Distance, Document, Filter, HnswParams, Store,
    StoreOptions, Value, WriteBatch,
};

const DIM: usize = 16;

fn options(exact_search_threshold: usize) -> StoreOptions {
    StoreOptions { exact_search_threshold, ..StoreOptions::default() }
}

fn dense_config(distance: Distance) -> CollectionConfig {
    CollectionConfig {
        dense: Some(DenseConfig {
            dimension: DIM,
            distance,
            embedder: None,
            hnsw: HnswParams::default(),
        }),
        ..CollectionConfig::default()
    }
}

fn random_vector(rng: &mut StdRng) -> Vec<f32> {
    (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Document `i`: a unique word `uniq{i}`, a shared word, a bucket for filters, a random vector.
fn doc(i: usize, rng: &mut StdRng) -> Document {
    Document {
        id: format!("doc-{i}"),
        title: format!("Title {i}"),
        text: format!("shared words about retrieval uniq{i}"),
        metadata: [
            ("bucket".to_string(), Value::Int((i % 100) as i64)),
            (
                "parity".to_string(),
                Value::String(if i.is_multiple_of(2) { "even" } else { "odd" }.into()),
            ),
        ]
        .into(),
        vector: Some(random_vector(rng)),
    }
}

fn fill(collection: &Collection, n: usize, seed: u64) -> Vec<Document> {
    let mut rng = StdRng::seed_from_u64(seed);
    let docs: Vec<Document> = (0..n).map(|i| doc(i, &mut rng)).collect();
    for chunk in docs.chunks(500) {
        let outcome =
            collection.write(&WriteBatch { upserts: chunk.to_vec(), deletes: vec![] }).unwrap();
        assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
        assert_eq!(outcome.accepted.len(), chunk.len());
    }
    docs
}

fn ids(candidates: &[sieve_storage::Candidate]) -> Vec<String> {
    candidates.iter().map(|c| c.id.to_string()).collect()
}

fn open(dir: &Path, exact_search_threshold: usize) -> Store {
    Store::open(dir, options(exact_search_threshold)).unwrap()
}

#[test]
fn upsert_replaces_text_and_vector_in_both_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 0);
    let c = store.create_collection("c", dense_config(Distance::Cosine)).unwrap();
    let docs = fill(&c, 300, 1);

    let mut replacement = docs[42].clone();
    replacement.text = "completely different zeppelin".into();
    replacement.vector = docs[7].vector.iter().map(|v| v.iter().map(|x| -x).collect()).next();
    let outcome =
        c.write(&WriteBatch { upserts: vec![replacement.clone()], deletes: vec![] }).unwrap();
    assert_eq!(outcome.accepted, vec!["doc-42"]);
    assert_eq!(outcome.sequence, 301);

    assert!(c.search_bm25("uniq42", 10, None).unwrap().is_empty(), "old text is gone from BM25");
    assert_eq!(ids(&c.search_bm25("zeppelin", 10, None).unwrap()), vec!["doc-42"]);
    let old_vector = docs[42].vector.clone().unwrap();
    assert_ne!(
        ids(&c.search_dense(&old_vector, 1, None).unwrap()),
        vec!["doc-42"],
        "old vector is a tombstone"
    );
    let new_vector = replacement.vector.clone().unwrap();
    let top = c.search_dense(&new_vector, 1, None).unwrap();
    assert_eq!(ids(&top), vec!["doc-42"]);
    assert!((top[0].score - 1.0).abs() < 1e-5, "cosine with itself is 1, got {}", top[0].score);
    assert_eq!(c.get("doc-42").unwrap().unwrap(), replacement);
    let stats = c.stats();
    assert_eq!((stats.documents, stats.vectors, stats.tombstones), (300, 300, 1));
}

#[test]
fn delete_removes_from_both_indexes_and_sled() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 0);
    let c = store.create_collection("c", dense_config(Distance::L2)).unwrap();
    let docs = fill(&c, 200, 2);
    let outcome = c
        .write(&WriteBatch {
            upserts: vec![],
            deletes: vec!["doc-5".into(), "doc-5".into(), "nope".into()],
        })
        .unwrap();
    assert_eq!(outcome.deleted, vec!["doc-5"]);
    assert_eq!(outcome.sequence, 201);
    assert!(c.search_bm25("uniq5", 10, None).unwrap().is_empty());
    let v = docs[5].vector.clone().unwrap();
    let nearest = c.search_dense(&v, 200, None).unwrap();
    assert_eq!(nearest.len(), 199);
    assert!(!ids(&nearest).contains(&"doc-5".to_string()));
    assert_eq!(c.get("doc-5").unwrap(), None);
    let counts = c.index_counts();
    assert_eq!(
        (counts.sled, counts.bm25, counts.graph_live, counts.sled_vectors),
        (199, 199, 199, 199)
    );
}

#[test]
fn upsert_then_delete_in_one_batch_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 0);
    let c = store.create_collection("c", dense_config(Distance::Dot)).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let batch = WriteBatch {
        upserts: vec![doc(1, &mut rng), doc(1, &mut rng)],
        deletes: vec!["doc-1".into()],
    };
    let outcome = c.write(&batch).unwrap();
    assert_eq!(outcome.accepted, vec!["doc-1"]);
    assert_eq!(outcome.rejected[0].index, 1);
    assert_eq!(
        outcome.rejected[0].reason,
        "id: 'doc-1' already appears at position 0 of this batch"
    );
    assert_eq!(outcome.deleted, vec!["doc-1"]);
    assert_eq!(outcome.sequence, 2);
    assert_eq!(c.stats().documents, 0);
    assert!(c.search_bm25("uniq1", 10, None).unwrap().is_empty());
}

#[test]
fn bad_documents_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 0);
    let c = store.create_collection("c", dense_config(Distance::Cosine)).unwrap();
    let mut rng = StdRng::seed_from_u64(4);
    let good = doc(1, &mut rng);
    let mut short = doc(2, &mut rng);
    short.vector = Some(vec![1.0; 3]);
    let mut nan = doc(3, &mut rng);
    nan.vector.as_mut().unwrap()[4] = f32::NAN;
    let mut zero = doc(4, &mut rng);
    zero.vector = Some(vec![0.0; DIM]);
    let unnamed = Document { id: String::new(), ..good.clone() };
    let batch = WriteBatch { upserts: vec![short, good, nan, zero, unnamed], deletes: vec![] };
    let outcome = c.write(&batch).unwrap();
    assert_eq!(outcome.accepted, vec!["doc-1"]);
    let reasons: Vec<(usize, &str)> =
        outcome.rejected.iter().map(|r| (r.index, r.reason.as_str())).collect();
    assert_eq!(
        reasons,
        vec![
            (0, "vector: has 3 dimensions, the collection has 16"),
            (2, "vector: component 4 is NaN (must be finite)"),
            (3, "vector: is all zeros, which has no cosine similarity"),
            (4, "id: must not be empty"),
        ]
    );
    assert_eq!(c.stats().documents, 1);
}

#[test]
fn tombstone_heavy_graph_is_rebuilt_and_answers_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 0);
    let c = store.create_collection("c", dense_config(Distance::Cosine)).unwrap();
    let docs = fill(&c, 1000, 5);
    // 150 replacements: 13 % tombstones, under the 20 % threshold.
    let mut rng = StdRng::seed_from_u64(6);
    let replaced: Vec<Document> = docs[..150]
        .iter()
        .map(|d| Document { vector: Some(random_vector(&mut rng)), ..d.clone() })
        .collect();
    c.write(&WriteBatch { upserts: replaced.clone(), deletes: vec![] }).unwrap();
    assert_eq!(c.stats().tombstones, 150);
    // 150 more: 300 of 1300 points would be dead, so the graph is rebuilt.
    let deletes = (500..650).map(|i| format!("doc-{i}")).collect();
    c.write(&WriteBatch { upserts: vec![], deletes }).unwrap();
    let stats = c.stats();
    assert_eq!((stats.documents, stats.vectors, stats.tombstones), (850, 850, 0));
    for d in replaced.iter().take(50).chain(&docs[650..700]) {
        let top = c.search_dense(d.vector.as_ref().unwrap(), 1, None).unwrap();
        assert_eq!(top[0].id.as_ref(), d.id, "own vector ranks first");
    }
    let counts = c.index_counts();
    assert_eq!((counts.sled, counts.bm25, counts.graph_live), (850, 850, 850));
}

#[test]
fn reopened_collection_answers_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let queries: Vec<Vec<f32>> = {
        let mut rng = StdRng::seed_from_u64(8);
        (0..20).map(|_| random_vector(&mut rng)).collect()
    };
    let answers = |c: &Collection| {
        let dense: Vec<Vec<String>> =
            queries.iter().map(|q| ids(&c.search_dense(q, 10, None).unwrap())).collect();
        let bm25 = ids(&c.search_bm25("uniq17 uniq400 retrieval", 20, None).unwrap());
        (dense, bm25)
    };
    let before = {
        let store = open(dir.path(), 0);
        let c = store.create_collection("c", dense_config(Distance::Cosine)).unwrap();
        fill(&c, 1200, 7);
        let before = answers(&c);
        store.close().unwrap();
        before
    };
    let store = open(dir.path(), 0);
    let c = store.collection("c").unwrap();
    assert_eq!(c.stats().sequence, 1200);
    assert_eq!(answers(&c), before);
    assert_eq!(&before.1[..2], ["doc-17", "doc-400"]);
}

#[test]
fn unclean_stop_replays_the_op_log() {
    let dir = tempfile::tempdir().unwrap();
    let docs = {
        let store = open(dir.path(), 0);
        let c = store.create_collection("c", dense_config(Distance::Cosine)).unwrap();
        let docs = fill(&c, 600, 9);
        // No close(): the graph dump on disk is the empty one from creation.
        drop(c);
        drop(store);
        docs
    };
    let store = open(dir.path(), 0);
    let c = store.collection("c").unwrap();
    let counts = c.index_counts();
    assert_eq!((counts.sled, counts.bm25, counts.graph_live), (600, 600, 600));
    for d in docs.iter().step_by(37) {
        assert_eq!(
            c.search_dense(d.vector.as_ref().unwrap(), 1, None).unwrap()[0].id.as_ref(),
            d.id
        );
    }
}

#[test]
fn lost_or_corrupt_derived_indexes_are_rebuilt_from_sled() {
    let dir = tempfile::tempdir().unwrap();
    let docs = {
        let store = open(dir.path(), 0);
        let c = store.create_collection("c", dense_config(Distance::Cosine)).unwrap();
        let docs = fill(&c, 700, 10);
        store.close().unwrap();
        docs
    };
    let collection_dir = dir.path().join("collections/1");
    std::fs::remove_dir_all(collection_dir.join("bm25")).unwrap();
    std::fs::write(collection_dir.join("hnsw/graph.hnsw.graph"), b"garbage").unwrap();

    let store = open(dir.path(), 0);
    let c = store.collection("c").unwrap();
    let counts = c.index_counts();
    assert_eq!((counts.sled, counts.bm25, counts.graph_live), (700, 700, 700));
    assert_eq!(ids(&c.search_bm25("uniq321", 5, None).unwrap()), vec!["doc-321"]);
    assert_eq!(
        c.search_dense(docs[321].vector.as_ref().unwrap(), 1, None).unwrap()[0].id.as_ref(),
        "doc-321"
    );
}

#[test]
fn selective_filter_still_fills_top_k_in_both_retrievers() {
    let dir = tempfile::tempdir().unwrap();
    // Threshold 100: 5,000 vectors go through the HNSW graph, not brute force.
    let store = open(dir.path(), 100);
    let c = store.create_collection("c", dense_config(Distance::Cosine)).unwrap();
    let docs = fill(&c, 5000, 11);
    // bucket 37 holds 1 % of the documents (50).
    let filter = Filter::Equals { key: "bucket".into(), value: Value::Int(37) };
    let in_bucket = |id: &str| id.trim_start_matches("doc-").parse::<usize>().unwrap() % 100 == 37;

    let bm25 = c.search_bm25("retrieval", 10, Some(&filter)).unwrap();
    assert_eq!(bm25.len(), 10);
    assert!(bm25.iter().all(|h| in_bucket(&h.id)));

    let mut rng = StdRng::seed_from_u64(12);
    for _ in 0..5 {
        let query = random_vector(&mut rng);
        let dense = c.search_dense(&query, 10, Some(&filter)).unwrap();
        assert_eq!(dense.len(), 10);
        assert!(dense.iter().all(|h| in_bucket(&h.id)));
        // Best first, and truly the best 10 of the 50 in the bucket.
        let exact = {
            let all = c.search_dense(&query, 5000, None).unwrap();
            all.into_iter()
                .filter(|h| in_bucket(&h.id))
                .take(10)
                .map(|h| h.id.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&dense), exact);
    }

    // Half the documents pass: the graph walk over-fetches and filters, then fills top_k.
    let even = Filter::Equals { key: "parity".into(), value: Value::String("even".into()) };
    let mut rng = StdRng::seed_from_u64(13);
    for _ in 0..5 {
        let hits = c.search_dense(&random_vector(&mut rng), 20, Some(&even)).unwrap();
        assert_eq!(hits.len(), 20);
        assert!(
            hits.iter().all(|h| h.id.trim_start_matches("doc-").parse::<usize>().unwrap() % 2 == 0)
        );
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "best first");
    }
    let own = c.search_dense(docs[1234].vector.as_ref().unwrap(), 1, Some(&even)).unwrap();
    assert_eq!(own[0].id.as_ref(), "doc-1234");

    let conjunction = Filter::And(vec![
        Filter::Range { key: "bucket".into(), gte: Some(10.0), lte: Some(11.0) },
        Filter::AnyOf { key: "parity".into(), values: vec![Value::String("odd".into())] },
    ]);
    let hits = c.search_bm25("shared", 100, Some(&conjunction)).unwrap();
    assert_eq!(hits.len(), 50, "bucket 11 is the odd one of 10..=11: 50 documents");
    assert!(
        hits.iter().all(|h| h.id.trim_start_matches("doc-").parse::<usize>().unwrap() % 100 == 11)
    );
}

#[test]
fn collections_are_created_listed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), 0);
        store.create_collection("kept", CollectionConfig::default()).unwrap();
        let gone = store.create_collection("gone", dense_config(Distance::L2)).unwrap();
        fill(&gone, 10, 13);
        assert!(matches!(
            store.create_collection("kept", CollectionConfig::default()),
            Err(sieve_storage::Error::CollectionExists(_))
        ));
        assert!(matches!(
            store.create_collection("bad name", CollectionConfig::default()),
            Err(sieve_storage::Error::InvalidArgument(_))
        ));
        store.delete_collection("gone").unwrap();
        assert!(matches!(
            store.collection("gone"),
            Err(sieve_storage::Error::CollectionNotFound(_))
        ));
        store.close().unwrap();
    }
    let store = open(dir.path(), 0);
    let names: Vec<String> = store.collections().iter().map(|c| c.name().to_string()).collect();
    assert_eq!(names, vec!["kept"]);
    assert!(!dir.path().join("collections/2").exists(), "the deleted collection's files are gone");
    let again = store.create_collection("gone", CollectionConfig::default()).unwrap();
    assert_eq!(again.stats().documents, 0, "a new collection of the same name starts empty");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn open_error(dir: &Path) -> String {
    match Store::open(dir, options(0)) {
        Ok(_) => panic!("the store opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_lost_or_foreign_sled_is_refused_and_the_indexes_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), 0);
        let c = store.create_collection("c", dense_config(Distance::Cosine)).unwrap();
        fill(&c, 50, 1);
        store.close().unwrap();
    }
    let sled_dir = dir.path().join("sled");
    let lost = dir.path().join("sled.lost");
    std::fs::rename(&sled_dir, &lost).unwrap();
    let message = open_error(dir.path());
    assert!(message.contains("holds no store record"), "{message}");
    assert!(message.contains("Refusing to start"), "{message}");
    assert!(dir.path().join("collections/1/bm25").is_dir(), "the indexes are kept");

    // Without the marker either, the collection directories tell the loss.
    std::fs::remove_dir_all(&sled_dir).unwrap();
    std::fs::remove_file(dir.path().join("sieve-store.json")).unwrap();
    let message = open_error(dir.path());
    assert!(message.contains("is empty, but"), "{message}");

    // Another store's sled.
    std::fs::remove_dir_all(&sled_dir).unwrap();
    let other = tempfile::tempdir().unwrap();
    open(other.path(), 0).close().unwrap();
    copy_dir(&other.path().join("sled"), &sled_dir);
    std::fs::write(dir.path().join("sieve-store.json"), b"{\"store_id\": 1, \"created_ms\": 0}")
        .unwrap();
    let message = open_error(dir.path());
    assert!(message.contains("belongs to another store"), "{message}");

    // The right sled back: everything is there; a lost marker is rewritten.
    std::fs::remove_dir_all(&sled_dir).unwrap();
    std::fs::remove_file(dir.path().join("sieve-store.json")).unwrap();
    std::fs::rename(&lost, &sled_dir).unwrap();
    let store = open(dir.path(), 0);
    assert_eq!(store.collection("c").unwrap().stats().documents, 50);
    assert!(dir.path().join("sieve-store.json").is_file());
}

#[test]
fn an_index_ahead_of_sled_means_lost_writes_and_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let old_sled = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), 0);
        let c = store.create_collection("c", dense_config(Distance::Cosine)).unwrap();
        fill(&c, 20, 1);
        store.close().unwrap();
    }
    copy_dir(&dir.path().join("sled"), old_sled.path());
    {
        let store = open(dir.path(), 0);
        let c = store.collection("c").unwrap();
        let mut rng = StdRng::seed_from_u64(5);
        let more: Vec<Document> = (20..30).map(|i| doc(i, &mut rng)).collect();
        c.write(&WriteBatch { upserts: more, deletes: vec![] }).unwrap();
        store.close().unwrap();
    }
    // sled goes back to sequence 20 while BM25 and HNSW hold sequence 30.
    std::fs::remove_dir_all(dir.path().join("sled")).unwrap();
    copy_dir(old_sled.path(), &dir.path().join("sled"));
    let message = open_error(dir.path());
    assert!(
        message.contains("collection 'c': its BM25 index is at sequence 30 but sled is at 20"),
        "{message}"
    );
}

/// A snapshot that lost its end (a crash while copying it, a partial download) or holds a
/// garbled line is refused, and the half-restored collection is removed again; an intact one
/// restores every document with its vector.
#[test]
fn damaged_snapshots_are_refused_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 10_000);
    let collection = store.create_collection("src", dense_config(Distance::Cosine)).unwrap();
    let docs = fill(&collection, 2500, 5);
    let info = sieve_storage::snapshot::create(&store, "src").unwrap();
    assert_eq!((info.sequence, info.documents), (2500, 2500));
    let path = sieve_storage::snapshot::dir(&store).join(&info.name);
    let intact = std::fs::read_to_string(&path).unwrap();

    let lines: Vec<&str> = intact.lines().collect();
    assert_eq!(lines.len(), 2502, "header, 2,500 documents, end marker");
    let damaged = [
        ("truncated", lines[..1800].join("\n")),
        ("no end marker", lines[..2501].join("\n")),
        ("garbled", {
            let mut garbled = lines.clone();
            garbled[700] = &lines[700][..30];
            garbled.join("\n")
        }),
    ];
    for (what, text) in damaged {
        std::fs::write(&path, text).unwrap();
        let Err(error) = sieve_storage::snapshot::restore(&store, &info.name, "copy") else {
            panic!("{what}: restored")
        };
        assert!(matches!(error, sieve_storage::Error::Corrupt(_)), "{what}: {error}");
        assert!(error.to_string().contains(&info.name), "{what}: {error}");
        assert!(store.collection("copy").is_err(), "{what}: the partial restore is gone");
    }
    std::fs::write(&path, &intact).unwrap();
    let copy = sieve_storage::snapshot::restore(&store, &info.name, "copy").unwrap();
    assert_eq!(copy.stats().documents, 2500);
    for doc in [&docs[0], &docs[1234], &docs[2499]] {
        assert_eq!(copy.get(&doc.id).unwrap().as_ref(), Some(doc));
    }
}

/// Text with a skewed vocabulary so term statistics differ between subsets, plus ties: every
/// tenth document repeats an earlier one's words under another id.
fn varied_doc(i: usize, rng: &mut StdRng) -> Document {
    const WORDS: [&str; 12] = [
        "protein",
        "cell",
        "gene",
        "tumour",
        "signal",
        "receptor",
        "binding",
        "mouse",
        "human",
        "expression",
        "pathway",
        "growth",
    ];
    let source = if i % 10 == 9 { i - 1 } else { i };
    let mut text_rng = StdRng::seed_from_u64(source as u64);
    let len = text_rng.random_range(3..40);
    let text: Vec<&str> = (0..len)
        .map(|_| WORDS[(text_rng.random_range(0.0f64..1.0).powi(2) * 12.0) as usize])
        .collect();
    Document {
        id: format!("v{i:04}"),
        text: text.join(" "),
        metadata: [("bucket".to_string(), Value::Int((i % 3) as i64))].into(),
        vector: Some(random_vector(rng)),
        ..Document::default()
    }
}

/// Merges per-part lists as a cluster's router does: by score, best first, then by id.
fn merge(parts: Vec<Vec<sieve_storage::Candidate>>, k: usize) -> Vec<(String, f32)> {
    let mut all: Vec<(String, f32)> =
        parts.into_iter().flatten().map(|c| (c.id.to_string(), c.score)).collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

#[test]
fn a_corpus_split_over_parts_ranks_as_one_collection_with_summed_bm25_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), usize::MAX);
    let whole = store.create_collection("whole", dense_config(Distance::Cosine)).unwrap();
    let parts: Vec<std::sync::Arc<Collection>> = (0..3)
        .map(|p| store.create_collection(&format!("part{p}"), dense_config(Distance::Cosine)))
        .collect::<Result<_, _>>()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let docs: Vec<Document> = (0..600).map(|i| varied_doc(i, &mut rng)).collect();
    // Written in several batches so the whole collection has several tantivy segments.
    for chunk in docs.chunks(100) {
        whole.write(&WriteBatch { upserts: chunk.to_vec(), deletes: vec![] }).unwrap();
    }
    for (p, part) in parts.iter().enumerate() {
        let mine: Vec<Document> = docs.iter().skip(p).step_by(3).cloned().collect();
        part.write(&WriteBatch { upserts: mine, deletes: vec![] }).unwrap();
    }
    let bucket = Filter::Equals { key: "bucket".into(), value: Value::Int(1) };
    for query in ["protein binding", "growth growth pathway", "mouse receptor signal gene"] {
        let mut global = parts[0].bm25_stats(query).unwrap();
        for part in &parts[1..] {
            global.add(&part.bm25_stats(query).unwrap()).unwrap();
        }
        assert_eq!(global, whole.bm25_stats(query).unwrap(), "{query}");
        for (k, filter) in [(10, None), (100, None), (10, Some(&bucket)), (100, Some(&bucket))] {
            let one: Vec<(String, f32)> = whole
                .search_bm25(query, k, filter)
                .unwrap()
                .into_iter()
                .map(|c| (c.id.to_string(), c.score))
                .collect();
            let split = merge(
                parts
                    .iter()
                    .map(|p| p.search_bm25_with_stats(query, k, filter, &global).unwrap())
                    .collect(),
                k,
            );
            assert_eq!(one.len(), k, "{query}");
            // Identical ids and bit-identical scores, ties included.
            assert_eq!(split, one, "{query} top {k} filtered {}", filter.is_some());
        }
    }
    let probe = random_vector(&mut rng);
    for (k, filter) in [(10, None), (100, Some(&bucket))] {
        let one: Vec<(String, f32)> = whole
            .search_dense(&probe, k, filter)
            .unwrap()
            .into_iter()
            .map(|c| (c.id.to_string(), c.score))
            .collect();
        let split =
            merge(parts.iter().map(|p| p.search_dense(&probe, k, filter).unwrap()).collect(), k);
        assert_eq!(split, one);
    }
    store.close().unwrap();
}

#[test]
fn bm25_ties_order_by_external_id_whatever_the_write_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), usize::MAX);
    let c = store.create_collection("c", CollectionConfig::default()).unwrap();
    // Identical texts written in reverse id order, one batch (one segment) per document.
    for id in ["e", "d", "c", "b", "a"] {
        let doc = Document { id: id.into(), text: "same words".into(), ..Document::default() };
        c.write(&WriteBatch { upserts: vec![doc], deletes: vec![] }).unwrap();
    }
    let top = c.search_bm25("words", 3, None).unwrap();
    assert_eq!(ids(&top), vec!["a", "b", "c"]);
    assert!(top.iter().all(|t| t.score == top[0].score));
    // The three-term statistics of a query with a repeated term, as tantivy counts them.
    let stats = c.bm25_stats("words same words").unwrap();
    assert_eq!((stats.documents, stats.tokens, stats.doc_freqs), (5, 10, vec![5, 5, 5]));
    store.close().unwrap();
}

#[test]
fn logged_batches_apply_once_in_order_with_their_position() {
    use sieve_storage::{LogPosition, Logged, OutOfOrder};
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), usize::MAX);
    let a = store.create_collection("a", CollectionConfig::default()).unwrap();
    let b = store.create_collection("b", CollectionConfig::default()).unwrap();
    let batch = |id: &str| WriteBatch {
        upserts: vec![Document {
            id: id.into(),
            text: format!("text of {id}"),
            ..Document::default()
        }],
        deletes: vec![],
    };
    let at = |partition, seq| LogPosition { partition, seq };
    // Partition 0 feeds both collections, one sequence for all of them.
    assert!(matches!(a.write_logged(&batch("a1"), at(0, 1)).unwrap(), Logged::Applied(_)));
    assert!(matches!(b.write_logged(&batch("b1"), at(0, 2)).unwrap(), Logged::Applied(_)));
    // A redelivered message is skipped and writes nothing.
    assert_eq!(
        a.write_logged(&batch("a-dup"), at(0, 1)).unwrap(),
        Logged::Refused(OutOfOrder::Duplicate { applied: 2 })
    );
    assert_eq!(a.get("a-dup").unwrap(), None);
    // A message past the next one is a gap: refused until the missing one is applied.
    assert_eq!(
        a.write_logged(&batch("a4"), at(0, 4)).unwrap(),
        Logged::Refused(OutOfOrder::Gap { applied: 2 })
    );
    assert_eq!(a.get("a4").unwrap(), None);
    // A batch whose every document is rejected still moves the position.
    let empty_id = WriteBatch { upserts: vec![Document::default()], deletes: vec![] };
    match a.write_logged(&empty_id, at(0, 3)).unwrap() {
        Logged::Applied(outcome) => assert_eq!(outcome.rejected.len(), 1),
        refused => panic!("{refused:?}"),
    }
    assert!(matches!(a.write_logged(&batch("a4"), at(0, 4)).unwrap(), Logged::Applied(_)));
    // Another partition counts on its own; a deleted collection's message is skipped in place.
    assert!(matches!(b.write_logged(&batch("b2"), at(5, 1)).unwrap(), Logged::Applied(_)));
    assert_eq!(store.skip_logged(at(5, 2)).unwrap(), Logged::Applied(()));
    assert_eq!(
        store.skip_logged(at(5, 2)).unwrap(),
        Logged::Refused(OutOfOrder::Duplicate { applied: 2 })
    );
    assert_eq!(store.log_positions().unwrap(), [(0, 4), (5, 2)].into());
    assert_eq!((a.stats().documents, b.stats().documents), (2, 2));
    // Positions and documents survive a reopen together.
    drop((a, b));
    store.close().unwrap();
    drop(store);
    let store = open(dir.path(), usize::MAX);
    assert_eq!(store.log_positions().unwrap(), [(0, 4), (5, 2)].into());
    assert!(store.collection("a").unwrap().get("a4").unwrap().is_some());
    store.close().unwrap();
}

/// A data directory another open store holds is refused (after the bounded wait for a lock
/// a just-closed store may still hold), with an error that names the lock; once the holder
/// closes, it opens.
#[test]
fn a_data_directory_in_use_is_refused_until_its_holder_closes() {
    let dir = tempfile::tempdir().unwrap();
    let holder = open(dir.path(), usize::MAX);
    holder.create_collection("c", CollectionConfig::default()).unwrap();
    let error = Store::open(dir.path(), options(usize::MAX)).err().expect("refused");
    assert!(error.to_string().contains("could not acquire lock"), "{error}");
    holder.close().unwrap();
    drop(holder);
    let store = open(dir.path(), usize::MAX);
    assert_eq!(store.collections().len(), 1);
    store.close().unwrap();
}

/// A partition snapshot holds every collection of a shard's partition store at one stream
/// position; restored into a new store it gives the same documents, vectors, settings and
/// position, and the next message applies there. A damaged file is refused; a store that
/// holds anything is not overwritten.
#[test]
fn a_partition_snapshot_restores_every_collection_at_its_stream_position() {
    use sieve_storage::snapshot::{read_partition_info, restore_partition, write_partition};
    use sieve_storage::{LogPosition, Logged};
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("source"), usize::MAX);
    let dense = store.create_collection("dense", dense_config(Distance::Dot)).unwrap();
    let words = store.create_collection("words", CollectionConfig::default()).unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    let docs: Vec<Document> = (0..1200).map(|i| doc(i, &mut rng)).collect();
    let at = |seq| LogPosition { partition: 4, seq };
    for (n, chunk) in docs.chunks(300).enumerate() {
        let batch = WriteBatch { upserts: chunk.to_vec(), deletes: vec![] };
        assert!(matches!(
            dense.write_logged(&batch, at(2 * n as u64 + 1)).unwrap(),
            Logged::Applied(_)
        ));
        let mut plain = batch.clone();
        plain.upserts.iter_mut().for_each(|d| d.vector = None);
        assert!(matches!(
            words.write_logged(&plain, at(2 * n as u64 + 2)).unwrap(),
            Logged::Applied(_)
        ));
    }
    let deletes = WriteBatch { upserts: vec![], deletes: vec!["doc-7".into(), "doc-8".into()] };
    assert!(matches!(dense.write_logged(&deletes, at(9)).unwrap(), Logged::Applied(_)));

    let path = dir.path().join("p4.partition-snapshot");
    let info = write_partition(&store, 4, &path).unwrap();
    assert_eq!(
        (info.partition, info.stream_seq, info.collections, info.documents),
        (4, 9, 2, 1198 + 1200)
    );
    assert_eq!(read_partition_info(&path).unwrap(), info);

    let intact = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = intact.lines().collect();
    assert_eq!(lines.len(), 1 + (1 + 1198 + 1) + (1 + 1200 + 1) + 1);
    for (what, text) in [
        ("truncated", lines[..1500].join("\n")),
        ("no end marker", lines[..lines.len() - 1].join("\n")),
        ("garbled", {
            let mut garbled = lines.clone();
            garbled[1700] = &lines[1700][..20];
            garbled.join("\n")
        }),
    ] {
        let damaged = dir.path().join(format!("{what}.partition-snapshot"));
        std::fs::write(&damaged, text).unwrap();
        let target = open(&dir.path().join(what), usize::MAX);
        let error = restore_partition(&target, &damaged).unwrap_err();
        assert!(matches!(error, sieve_storage::Error::Corrupt(_)), "{what}: {error}");
        assert_eq!(target.log_position(4).unwrap(), 0, "{what}: no position is taken");
    }

    let target = open(&dir.path().join("restored"), usize::MAX);
    assert_eq!(restore_partition(&target, &path).unwrap(), info);
    assert_eq!(target.log_position(4).unwrap(), 9);
    let (dense2, words2) =
        (target.collection("dense").unwrap(), target.collection("words").unwrap());
    assert_eq!(dense2.config(), dense.config());
    assert_eq!((dense2.stats().documents, words2.stats().documents), (1198, 1200));
    assert_eq!(dense2.get("doc-7").unwrap(), None);
    for doc in [&docs[0], &docs[600], &docs[1199]] {
        assert_eq!(dense2.get(&doc.id).unwrap().as_ref(), Some(doc));
    }
    let query = docs[600].vector.clone().unwrap();
    let ids = |c: &Collection| -> Vec<(std::sync::Arc<str>, f32)> {
        c.search_dense(&query, 10, None).unwrap().into_iter().map(|h| (h.id, h.score)).collect()
    };
    assert_eq!(ids(&dense2), ids(&dense));
    // The stream goes on from the snapshot's position.
    let next = WriteBatch { upserts: vec![docs[7].clone()], deletes: vec![] };
    assert!(matches!(dense2.write_logged(&next, at(10)).unwrap(), Logged::Applied(_)));
    // A store that holds anything is not restored over.
    let error = restore_partition(&target, &path).unwrap_err();
    assert!(error.to_string().contains("into a new store only"), "{error}");
    target.close().unwrap();
    store.close().unwrap();
}

#[test]
fn compacting_bm25_merges_small_segments_and_scores_stay_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 0);
    let c = store.create_collection("c", dense_config(Distance::Cosine)).unwrap();
    fill(&c, 1200, 7); // three writes: three commits, three segments
    assert_eq!(c.bm25_segments(), 3);
    let scored = |c: &Collection| -> Vec<(String, u32)> {
        c.search_bm25("uniq17 shared retrieval uniq400", 50, None)
            .unwrap()
            .iter()
            .map(|h| (h.id.to_string(), h.score.to_bits()))
            .collect()
    };
    let before = scored(&c);
    assert!(c.compact_bm25().unwrap());
    assert_eq!(c.bm25_segments(), 1);
    assert_eq!(scored(&c), before);
    assert!(!c.compact_bm25().unwrap(), "one segment: nothing left to merge");
    // Writes go on after it, and the merged index survives a reopen.
    let outcome = c.write(&WriteBatch { upserts: vec![], deletes: vec!["doc-17".into()] }).unwrap();
    assert_eq!(outcome.deleted, ["doc-17"]);
    store.close().unwrap();
    drop((c, store));
    let store = open(dir.path(), 0);
    let c = store.collection("c").unwrap();
    assert_eq!(c.stats().sequence, 1201);
    assert_eq!(&ids(&c.search_bm25("uniq17 uniq400", 5, None).unwrap())[..], ["doc-400"]);
}
