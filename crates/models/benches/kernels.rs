//! The CPU kernels alone, on each instruction set this CPU has: the GEMM at MiniLM's and
//! BGE-large's linear shapes (one 96-row block on one thread, and 8,192 rows over the rayon
//! pool) in f32 and, where the CPU has AVX512-BF16 and VNNI, in bf16 and int8 products; softmax over a 256-key
//! attention row, exact GELU over an FFN row block. Criterion
//! reports time; GFLOP/s = 2·m·n·k / time (printed once per shape), next to the machine's
//! FMA peak (2 threads × 8 lanes × 2 FLOP × FMA issue rate; measured 38 GFLOP/s per core on
//! the AVX2 machine of 2026-12, see docs/BENCHMARKS.md).
//!
//!     cargo bench -p sieve-models --bench kernels

use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sieve_models::kernels::bf16::PackedBf16;
use sieve_models::kernels::int8::PackedI8;
use sieve_models::kernels::{Activation, Isa, Packed, Weights, gemm, par_gemm, softmax};
use sieve_models::{Kernels, cpu_description};

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn sets() -> Vec<(Kernels, Isa)> {
    [Kernels::Portable, Kernels::Avx2, Kernels::Avx512]
        .into_iter()
        .filter_map(|k| Isa::of(k).map(|isa| (k, isa)))
        .collect()
}

fn kernels(c: &mut Criterion) {
    eprintln!("CPU: {}", cpu_description());
    // (name, n, k): MiniLM (hidden 384, FFN 1536) and BGE-large (1024, 4096).
    let shapes = [
        ("minilm qkv/out 384x384", 384, 384),
        ("minilm ffn-up 1536x384", 1536, 384),
        ("minilm ffn-down 384x1536", 384, 1536),
        ("bge-large ffn-up 4096x1024", 4096, 1024),
    ];
    for (kernels, isa) in sets() {
        bench_gemm(c, kernels.name(), isa, &shapes, Packed::from_rows);

        let mut group = c.benchmark_group(format!("elementwise-{}", kernels.name()));
        let mut row = values(256, 4);
        group.throughput(Throughput::Elements(256));
        group.bench_function("softmax 256 keys", |b| {
            b.iter(|| {
                row.copy_from_slice(&values(256, 4));
                softmax(isa, &mut row, 0.177)
            })
        });
        let mut block = values(96 * 1536, 5);
        group.throughput(Throughput::Elements(block.len() as u64));
        group.bench_function("gelu-erf 96x1536", |b| {
            b.iter(|| Activation::GeluErf.apply(isa, &mut block))
        });
        group.finish();
    }
    let Some(isa) = Isa::of(Kernels::Avx512) else {
        eprintln!("no AVX512-BF16 + VNNI on this CPU: the bf16 and int8 GEMMs are not measured");
        return;
    };
    bench_gemm(c, "bf16-avx512", isa, &shapes, PackedBf16::from_rows);
    bench_gemm(c, "int8-avx512", isa, &shapes, PackedI8::from_rows);
}

/// One group of GEMM benchmarks on `isa`: each shape's weights packed by `pack`, one 96-row
/// block on this thread and 8,192 rows over the rayon pool.
fn bench_gemm<W: Weights>(
    c: &mut Criterion,
    set: &str,
    isa: Isa,
    shapes: &[(&str, usize, usize)],
    pack: fn(&[f32], usize, usize) -> W,
) {
    let mut group = c.benchmark_group(format!("gemm-{set}"));
    group.sample_size(10);
    for &(name, n, k) in shapes {
        let w = pack(&values(n * k, 1), n, k);
        let bias = values(n, 2);
        for m in [96, 8192] {
            let a = values(m * k, 3);
            let mut out = vec![0f32; m * n];
            let flops = 2 * m * n * k;
            group.throughput(Throughput::Elements(flops as u64));
            let run = |out: &mut [f32]| {
                if m == 96 {
                    gemm(isa, &a, m, &w, Some(&bias), out, n)
                } else {
                    par_gemm(isa, &a, m, &w, Some(&bias), out)
                }
            };
            report(set, name, m, flops, &run, &mut out);
            group.bench_function(format!("{name} m={m}"), |b| b.iter(|| run(&mut out)));
        }
    }
    group.finish();
}

/// Prints the GFLOP/s of `run` (timed over about half a second) once, beside criterion's times.
fn report(
    set: &str,
    name: &str,
    m: usize,
    flops: usize,
    run: &dyn Fn(&mut [f32]),
    out: &mut [f32],
) {
    let started = Instant::now();
    run(out);
    let once = started.elapsed().as_secs_f64();
    let reps = (0.5 / once).ceil() as usize;
    let started = Instant::now();
    for _ in 0..reps {
        run(out);
    }
    let seconds = started.elapsed().as_secs_f64() / reps as f64;
    eprintln!(
        "{set} {name} m={m} ({}): {:.1} GFLOP/s",
        if m == 96 { "1 thread" } else { "rayon pool" },
        flops as f64 / seconds / 1e9
    );
}

criterion_group!(benches, kernels);
criterion_main!(benches);
