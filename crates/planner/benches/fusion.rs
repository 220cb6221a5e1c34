//! RRF and linear fusion of two 1,000-hit lists that share half their documents (the shape of
//! a hybrid first stage with bm25_k = dense_k = 1000).
//!
//!     cargo bench -p sieve-planner --bench fusion

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use sieve_planner::{Ranking, linear_fusion, reciprocal_rank_fusion};

fn lists() -> Vec<Ranking> {
    let list = |offset: usize, scale: f32| Ranking {
        weight: 1.0,
        entries: (0..1000)
            .map(|i| (Arc::from(format!("doc-{}", offset + i * 7 % 1000)), scale / (i + 1) as f32))
            .collect(),
    };
    vec![list(0, 30.0), list(500, 1.0)]
}

fn fusion(c: &mut Criterion) {
    let lists = lists();
    let fused = reciprocal_rank_fusion(&lists, 60.0);
    assert_eq!(fused.len(), 1500, "half the documents are shared");
    c.bench_function("rrf 2 x 1000", |b| b.iter(|| reciprocal_rank_fusion(&lists, 60.0)));
    c.bench_function("linear 2 x 1000", |b| b.iter(|| linear_fusion(&lists)));
}

criterion_group!(benches, fusion);
criterion_main!(benches);
