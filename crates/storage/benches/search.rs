//! First-stage retrieval through the storage API:
//! - HNSW: top-10 of 100,000 clustered 384-d vectors (100 centres on the sphere, noise
//!   2/sqrt(384) per axis, normalised: the mixture of bench/peers/vectors.py), M 16,
//!   ef_construction 100, ef_search 100; the graph is built once before timing (minutes on 2 cores).
//! - BM25: top-100 on SciFact's 5,183 abstracts (`../shared/data/beir/scifact`) for its
//!   1,109 queries, cycled.
//!
//!     cargo bench -p sieve-storage --bench search

use std::io::BufRead;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sieve_storage::{
    Analyzer, CollectionConfig, DenseConfig, Distance, Document, HnswParams, Store, StoreOptions,
    WriteBatch,
};

const DIM: usize = 384;

/// A standard normal sample (Box-Muller).
fn normal(rng: &mut StdRng) -> f32 {
    let (u, v): (f32, f32) = (rng.random_range(f32::EPSILON..1.0), rng.random());
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

fn clustered(rng: &mut StdRng, centres: &[Vec<f32>]) -> Vec<f32> {
    let centre = &centres[rng.random_range(0..centres.len())];
    let spread = 2.0 / (DIM as f32).sqrt();
    normalised(centre.iter().map(|c| c + normal(rng) * spread).collect())
}

fn hnsw(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let config = CollectionConfig {
        dense: Some(DenseConfig {
            dimension: DIM,
            distance: Distance::Cosine,
            embedder: None,
            hnsw: HnswParams { m: 16, ef_construction: 100, ef_search: 100 },
        }),
        analyzer: Analyzer::English,
    };
    let collection = store.create_collection("vectors", config).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let centres: Vec<Vec<f32>> =
        (0..100).map(|_| normalised((0..DIM).map(|_| normal(&mut rng)).collect())).collect();
    for start in (0..100_000).step_by(1000) {
        let upserts = (start..start + 1000)
            .map(|i| Document {
                id: i.to_string(),
                vector: Some(clustered(&mut rng, &centres)),
                ..Document::default()
            })
            .collect();
        let outcome = collection.write(&WriteBatch { upserts, deletes: Vec::new() }).unwrap();
        assert!(outcome.rejected.is_empty());
    }
    let queries: Vec<Vec<f32>> = (0..1000).map(|_| clustered(&mut rng, &centres)).collect();
    let mut next = 0;
    c.bench_function("hnsw top-10 of 100k x 384", |b| {
        b.iter(|| {
            next = (next + 1) % queries.len();
            collection.search_dense(&queries[next], 10, None).unwrap()
        })
    });
}

fn bm25(c: &mut Criterion) {
    let beir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/beir/scifact");
    assert!(beir.is_dir(), "{} is missing: this bench reads SciFact", beir.display());
    let lines = |name: &str| -> Vec<serde_json::Value> {
        let file = std::fs::File::open(beir.join(name)).unwrap();
        std::io::BufReader::new(flate2::read::GzDecoder::new(file))
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let collection = store.create_collection("scifact", CollectionConfig::default()).unwrap();
    let text = |v: &serde_json::Value, key: &str| v[key].as_str().unwrap_or_default().to_string();
    let docs: Vec<Document> = lines("corpus.jsonl.gz")
        .iter()
        .map(|d| Document {
            id: text(d, "_id"),
            title: text(d, "title"),
            text: text(d, "text"),
            ..Document::default()
        })
        .collect();
    for chunk in docs.chunks(1000) {
        collection.write(&WriteBatch { upserts: chunk.to_vec(), deletes: Vec::new() }).unwrap();
    }
    let queries: Vec<String> = lines("queries.jsonl.gz").iter().map(|q| text(q, "text")).collect();
    let mut next = 0;
    c.bench_function("bm25 top-100 of scifact", |b| {
        b.iter(|| {
            next = (next + 1) % queries.len();
            collection.search_bm25(&queries[next], 100, None).unwrap()
        })
    });
}

criterion_group!(benches, bm25, hnsw);
criterion_main!(benches);
