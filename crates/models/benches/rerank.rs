//! One rerank batch: a SciFact query against 32 SciFact abstracts (title + text, cut at 256
//! tokens: 8,192 padded tokens, the default batch budget) through
//! `sieve--sieve-ce-minilm-l6-scifact` (MiniLM-L6, the shape of ms-marco-MiniLM-L-6-v2) in f32,
//! tokenization included; and the forward pass alone on the pre-tokenized batch. Also one
//! all-MiniLM-L6-v2 embedding batch of the same 32 abstracts, and one short query. Each on the
//! reference (candle) path, on the kernels this CPU picks in f32, and in the precision it picks
//! by default (bf16 on AVX512-BF16), named in the benchmark id.
//!
//!     cargo bench -p sieve-models --bench rerank

use std::io::BufRead;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use sieve_models::{Architecture, Kernels, Model, Precision};

fn shared() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    assert!(
        dir.join("models").is_dir(),
        "{} is missing: this bench needs its models",
        dir.display()
    );
    dir
}

fn passages(n: usize) -> Vec<String> {
    let file = std::fs::File::open(shared().join("data/beir/scifact/corpus.jsonl.gz")).unwrap();
    std::io::BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .take(n)
        .map(|line| {
            let doc: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            format!("{} {}", doc["title"].as_str().unwrap(), doc["text"].as_str().unwrap())
        })
        .collect()
}

fn rerank(c: &mut Criterion) {
    eprintln!("CPU: {}", sieve_models::cpu_description());
    let texts = passages(32);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let query = "0-dimensional biomaterials show inductive properties.";
    let fastest = Kernels::detect();
    let mut runs = vec![(Kernels::Reference, Precision::F32), (fastest, Precision::F32)];
    let precision = Precision::fastest(fastest, Architecture::BertCrossEncoder);
    if precision != Precision::F32 {
        runs.push((fastest, precision));
    }
    for (kernels, precision) in runs {
        let load = |name: &str, folder: &str| {
            let dir = shared().join("models").join(folder);
            Model::load_with_kernels(name, &dir, None, precision, kernels).unwrap()
        };
        let model = load("sieve/sieve-ce-minilm-l6-scifact", "sieve--sieve-ce-minilm-l6-scifact");
        let id = format!("{}-{}", kernels.name(), precision.name());
        let mut group = c.benchmark_group(format!("rerank-{id}"));
        group.sample_size(10);
        group.bench_function("scifact-ce 32 pairs x 256 tokens", |b| {
            b.iter(|| model.score_pairs(query, &refs).unwrap())
        });
        let encoded: Vec<_> =
            refs.iter().map(|p| model.tokenizer().encode_pair(query, p).unwrap()).collect();
        let batch: Vec<_> = encoded.iter().collect();
        group.bench_function("scifact-ce forward only", |b| {
            b.iter(|| model.forward(&batch).unwrap())
        });
        group.finish();

        let embedder = load(
            "sentence-transformers/all-MiniLM-L6-v2",
            "sentence-transformers--all-MiniLM-L6-v2",
        );
        let mut group = c.benchmark_group(format!("embed-{id}"));
        group.sample_size(10);
        group.bench_function("all-minilm 32 abstracts", |b| {
            b.iter(|| embedder.embed_texts(&refs).unwrap())
        });
        group.bench_function("all-minilm 1 query", |b| {
            b.iter(|| embedder.embed_texts(&[query]).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, rerank);
criterion_main!(benches);
