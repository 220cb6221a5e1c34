//! Every kernel against a scalar f64 reference, on each instruction set this CPU has, with
//! shapes whose rows, columns and depth are not multiples of the tiles (and N = 1, the
//! classifier). A CPU without AVX2 says so and checks the portable set alone.

use super::*;

/// Deterministic values in [-1, 1) (a 64-bit LCG; no dependency for tests).
struct Values(u64);

impl Values {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn take(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

fn instruction_sets() -> Vec<Isa> {
    let mut sets = vec![Isa::Portable];
    match Isa::of(Kernels::Avx2) {
        Some(isa) => sets.push(isa),
        None => eprintln!(
            "this CPU has no AVX2 + FMA ({}): only the portable kernels are checked",
            cpu_description()
        ),
    }
    if let Some(isa) = Isa::of(Kernels::Avx512) {
        sets.push(isa);
    }
    sets
}

/// The instruction sets whose bf16 GEMM runs here: the portable emulation always, AVX-512 where
/// the CPU has AVX512-BF16 (else said, and only the emulation is checked).
fn bf16_sets() -> Vec<Isa> {
    let mut sets = vec![Isa::Portable];
    match Isa::of(Kernels::Avx512) {
        Some(isa) => sets.push(isa),
        None => eprintln!(
            "this CPU has no AVX512-BF16 ({}): only the portable bf16 kernels are checked",
            cpu_description()
        ),
    }
    sets
}

/// Runs `a · Wᵀ (+ bias)` for `m` rows by `gemm` (into rows wider than `n`, whose extra
/// columns must stay untouched) and by `par_gemm`, checks every value of both against
/// `expected(i, j)` = (value, tolerance), and returns the `gemm` output, `m` rows of `n`.
fn check_gemm<W: Weights>(
    isa: Isa,
    a: &[f32],
    m: usize,
    packed: &W,
    bias: Option<&[f32]>,
    expected: impl Fn(usize, usize) -> (f64, f64),
) -> Vec<f32> {
    let (n, k) = (packed.n(), packed.k());
    let ldc = n + 3;
    let mut c = vec![9.0f32; m * ldc];
    gemm(isa, a, m, packed, bias, &mut c, ldc);
    let mut parallel = vec![0f32; m * n];
    par_gemm(isa, a, m, packed, bias, &mut parallel);
    for i in 0..m {
        for j in 0..n {
            let (want, tolerance) = expected(i, j);
            for (got, how) in [(c[i * ldc + j], "gemm"), (parallel[i * n + j], "par")] {
                assert!(
                    (got as f64 - want).abs() <= tolerance,
                    "{isa:?} {how} m={m} n={n} k={k} bias={} at ({i},{j}): {got} vs {want}",
                    bias.is_some()
                );
            }
        }
        assert!(c[i * ldc + n..(i + 1) * ldc].iter().all(|&v| v == 9.0), "{isa:?}");
    }
    c.chunks_exact(ldc).flat_map(|row| &row[..n]).copied().collect()
}

/// (m, n, k) around the 12 × 32 tiles of the bf16 and int8 GEMMs: one row, one column, odd
/// depths, exact tiles, one past them, the MiniLM FFN, many row blocks.
const WIDE_TILE_SHAPES: [(usize, usize, usize); 9] = [
    (1, 1, 1),
    (1, 384, 1),
    (5, 7, 3),
    (12, 32, 384),
    (13, 33, 33),
    (13, 1, 384),
    (25, 1536, 384),
    (97, 40, 101),
    (250, 48, 32),
];

/// erf in f64 by its Taylor series (exact to ~1e-12 for |x| < 5; ±1 beyond to 2e-12).
fn erf64(x: f64) -> f64 {
    if x.abs() > 5.0 {
        return x.signum();
    }
    let (mut term, mut sum) = (x, x);
    for n in 1..200 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn gemm_matches_f64_on_every_shape_and_tail() {
    let mut values = Values(7);
    let shapes = [
        (1, 1, 1),
        (1, 384, 1),
        (5, 7, 3),
        (6, 16, 384),
        (7, 17, 33),
        (13, 1, 384),
        (33, 1536, 384),
        (97, 40, 100),
        (250, 48, 32),
    ];
    for isa in instruction_sets() {
        for &(m, n, k) in &shapes {
            let a = values.take(m * k);
            let w = values.take(n * k);
            let bias = values.take(n);
            let packed = Packed::from_rows(&w, n, k);
            for with_bias in [false, true] {
                let bias = with_bias.then_some(bias.as_slice());
                check_gemm(isa, &a, m, &packed, bias, |i, j| {
                    let products = (0..k).map(|kk| a[i * k + kk] as f64 * w[j * k + kk] as f64);
                    let expected = products.sum::<f64>() + bias.map_or(0.0, |b| b[j] as f64);
                    (expected, 1e-5 * (k as f64).sqrt() + 1e-6)
                });
            }
        }
    }
}

#[test]
fn strided_packing_reads_keys_by_row_and_values_by_column() {
    // A 3 × 5 matrix at stride 5: keys take rows 0..3, columns 1..3 as their k; values take
    // columns 1..3 as output columns over rows 0..3.
    let src: Vec<f32> = (0..15).map(|v| v as f32).collect();
    let mut keys = Packed::default();
    keys.pack_rows(Isa::Portable, &src[1..], 5, 3, 2);
    assert_eq!((keys.n(), keys.k, keys.panels()), (3, 2, 1));
    assert_eq!(&keys.panel(0)[..3], &[1.0, 6.0, 11.0]);
    assert_eq!(&keys.panel(0)[PANEL..PANEL + 3], &[2.0, 7.0, 12.0]);
    assert!(keys.panel(0)[3..PANEL].iter().all(|&v| v == 0.0), "padding is zero");
    let mut values = Packed::default();
    values.pack_columns(Isa::Portable, &src[1..], 5, 3, 2);
    assert_eq!((values.n(), values.k), (2, 3));
    assert_eq!(&values.panel(0)[..2], &[1.0, 2.0]);
    assert_eq!(&values.panel(0)[2 * PANEL..2 * PANEL + 2], &[11.0, 12.0]);
}

#[test]
fn activations_match_f64() {
    let xs: Vec<f32> = (-1200..=1200).map(|i| i as f32 / 100.0).collect();
    for isa in instruction_sets() {
        for activation in [Activation::GeluErf, Activation::GeluTanh, Activation::Relu] {
            // An odd length exercises the vector tail.
            let mut got = xs[..2399].to_vec();
            activation.apply(isa, &mut got);
            for (&x, &y) in xs.iter().zip(&got) {
                let x64 = x as f64;
                let expected = match activation {
                    Activation::GeluErf => 0.5 * x64 * (1.0 + erf64(x64 / 2f64.sqrt())),
                    Activation::GeluTanh => {
                        let inner = (2.0 / std::f64::consts::PI).sqrt()
                            * (x64 + 0.044715 * x64 * x64 * x64);
                        0.5 * x64 * (1.0 + inner.tanh())
                    }
                    Activation::Relu => x64.max(0.0),
                };
                let tolerance = 2e-6 * (1.0 + x64.abs());
                assert!(
                    (y as f64 - expected).abs() <= tolerance,
                    "{isa:?} {activation:?}({x}) = {y}, expected {expected}"
                );
            }
        }
    }
}

#[test]
fn softmax_matches_f64() {
    let mut values = Values(11);
    for isa in instruction_sets() {
        for len in [1, 7, 8, 9, 240, 511] {
            let row: Vec<f32> = values.take(len).iter().map(|v| v * 30.0).collect();
            let scale = 0.176_776_7;
            let mut got = row.clone();
            softmax(isa, &mut got, scale);
            let top = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let exps: Vec<f64> =
                row.iter().map(|&v| ((v as f64 - top) * scale as f64).exp()).collect();
            let total: f64 = exps.iter().sum();
            for (g, e) in got.iter().zip(&exps) {
                assert!(
                    (*g as f64 - e / total).abs() <= 1e-6,
                    "{isa:?} len {len}: {g} vs {}",
                    e / total
                );
            }
        }
    }
}

#[test]
fn layer_norm_matches_f64() {
    let mut values = Values(13);
    for isa in instruction_sets() {
        for (len, with_residual) in [(32, true), (384, true), (1023, false), (5, true)] {
            let x: Vec<f32> = values.take(len).iter().map(|v| v * 4.0 + 1.5).collect();
            let residual = if with_residual { values.take(len) } else { Vec::new() };
            let (gamma, beta) = (values.take(len), values.take(len));
            let mut got = x.clone();
            add_layer_norm(isa, &mut got, &residual, &gamma, &beta, 1e-12);
            let summed: Vec<f64> = (0..len)
                .map(|i| x[i] as f64 + residual.get(i).map_or(0.0, |&r| r as f64))
                .collect();
            let mean = summed.iter().sum::<f64>() / len as f64;
            let variance = summed.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / len as f64;
            for i in 0..len {
                let expected = (summed[i] - mean) / (variance + 1e-12).sqrt() * gamma[i] as f64
                    + beta[i] as f64;
                assert!(
                    (got[i] as f64 - expected).abs() <= 2e-5,
                    "{isa:?} len {len} at {i}: {} vs {expected}",
                    got[i]
                );
            }
        }
    }
}

#[test]
fn kernel_names_round_trip_and_detection_is_supported() {
    for kernels in [Kernels::Reference, Kernels::Portable, Kernels::Avx2, Kernels::Avx512] {
        assert_eq!(Kernels::from_name(kernels.name()), Some(kernels));
    }
    assert_eq!(Kernels::from_name("avx512bf16"), None);
    assert!(Kernels::detect().is_supported());
    assert_ne!(Isa::of(Kernels::detect()), None, "detection picks one of Sieve's own sets");
    assert_eq!(Isa::of(Kernels::Reference), None);
}

#[test]
fn bf16_rounding_is_to_nearest_with_ties_to_even() {
    use bf16::{from_bf16, to_bf16};
    assert_eq!(to_bf16(1.0), 0x3f80);
    assert_eq!(to_bf16(-2.5), 0xc020);
    // 1 + 2^-8 lies halfway between 1 (even) and 1 + 2^-7: it rounds to 1.
    assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
    // 1 + 3·2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
    assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
    assert_eq!(to_bf16(1.0 + 1.0 / 256.0 + 1.0 / 65536.0), 0x3f81, "above half rounds up");
    assert_eq!(from_bf16(to_bf16(3.140625)), 3.140625, "a bf16 value is kept exactly");
    assert_eq!(to_bf16(f32::INFINITY), 0x7f80);
    assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
    // The AVX-512 rounding of a row (32 at a time, then the tail) gives the same words.
    let mut values = Values(17);
    for isa in bf16_sets() {
        for len in [1, 2, 31, 32, 33, 70, 384] {
            let row: Vec<f32> = values.take(len).iter().map(|v| v * 1e3).collect();
            let a = row.clone();
            let packed = bf16::PackedBf16::from_rows(&a, 1, len);
            let mut c = [0f32];
            // A 1 × len · (len × 1)ᵀ product of the row with itself: bf16 squares, summed.
            gemm(isa, &row, 1, &packed, None, &mut c, 1);
            let expected: f64 = row.iter().map(|&v| (from_bf16(to_bf16(v)) as f64).powi(2)).sum();
            assert!(
                (c[0] as f64 - expected).abs() <= 1e-6 * expected,
                "{isa:?} len {len}: {} vs {expected}",
                c[0]
            );
        }
    }
}

#[test]
fn bf16_gemm_matches_f64_of_the_rounded_operands_on_every_shape_and_tail() {
    use bf16::{PackedBf16, from_bf16, to_bf16};
    let round = |v: f32| from_bf16(to_bf16(v)) as f64;
    let mut values = Values(19);
    for isa in bf16_sets() {
        for &(m, n, k) in &WIDE_TILE_SHAPES {
            let a = values.take(m * k);
            let w = values.take(n * k);
            let bias = values.take(n);
            let packed = PackedBf16::from_rows(&w, n, k);
            assert_eq!((packed.n(), packed.k()), (n, k));
            for with_bias in [false, true] {
                let bias = with_bias.then_some(bias.as_slice());
                check_gemm(isa, &a, m, &packed, bias, |i, j| {
                    let products = (0..k).map(|kk| round(a[i * k + kk]) * round(w[j * k + kk]));
                    let magnitude: f64 = products.clone().map(f64::abs).sum();
                    let expected = products.sum::<f64>() + bias.map_or(0.0, |b| b[j] as f64);
                    // f32 sums of exact bf16 products: error ~ depth · 2^-24 · Σ|products|.
                    (expected, 1e-6 * (k as f64) * magnitude.max(1.0) * 0.1 + 1e-6)
                });
            }
        }
    }
}

#[test]
fn bf16_strided_packing_equals_packing_the_gathered_matrix() {
    use bf16::PackedBf16;
    let mut values = Values(23);
    // A 37 × 70 source at stride 70: keys take rows 0..37, columns 3..3+k; values take columns
    // 3..3+n over rows 0..k. Odd depths exercise the zero-padded last pair.
    let src = values.take(37 * 70);
    for (n, k) in [(37, 32), (37, 33), (5, 1), (33, 7)] {
        let gathered: Vec<f32> = (0..n)
            .flat_map(|col| (0..k).map(move |kk| (col, kk)))
            .map(|(c, kk)| src[c * 70 + 3 + kk])
            .collect();
        for isa in bf16_sets() {
            let mut keys = PackedBf16::default();
            keys.pack_rows(isa, &src[3..], 70, n, k);
            let expected = PackedBf16::from_rows(&gathered, n, k);
            assert_eq!((keys.n(), keys.k()), (n, k));
            assert_eq!(keys.data, expected.data, "{isa:?} keys n={n} k={k}");
            let (k_rows, n_cols) = (k.min(37), n.min(60));
            let gathered: Vec<f32> = (0..n_cols)
                .flat_map(|col| (0..k_rows).map(move |kk| (col, kk)))
                .map(|(c, kk)| src[kk * 70 + 3 + c])
                .collect();
            let mut columns = PackedBf16::default();
            columns.pack_columns(isa, &src[3..], 70, k_rows, n_cols);
            assert_eq!(
                columns.data,
                PackedBf16::from_rows(&gathered, n_cols, k_rows).data,
                "values"
            );
        }
    }
}

/// An activation row as the int8 GEMM quantizes it: its scale, zero point and steps.
fn quantized_row(row: &[f32]) -> (f64, i32, Vec<i32>) {
    let low = row.iter().fold(0f32, |m, &v| m.min(v));
    let high = row.iter().fold(0f32, |m, &v| m.max(v));
    if high - low == 0.0 {
        return (0.0, 0, vec![0; row.len()]);
    }
    let scale = (high - low) / 255.0;
    let zero = (-low / scale).round_ties_even() as i32;
    let steps = row
        .iter()
        .map(|&v| ((v * (1.0 / scale)).round_ties_even() as i32 + zero).clamp(0, 255) - zero)
        .collect();
    (scale as f64, zero, steps)
}

#[test]
fn int8_gemm_matches_f64_of_the_quantized_operands_on_every_shape_and_tail() {
    use int8::PackedI8;
    let mut values = Values(29);
    for isa in bf16_sets() {
        for &(m, n, k) in &WIDE_TILE_SHAPES {
            let mut a = values.take(m * k);
            // A zero row (scale 0), a row with one large outlier, a row of positives only (as
            // after GELU, mostly).
            a[..k].fill(0.0);
            if m > 2 {
                a[2 * k] = 40.0;
                a[k..2 * k].iter_mut().for_each(|v| *v = v.abs());
            }
            let w = values.take(n * k);
            let bias = values.take(n);
            let packed = PackedI8::from_rows(&w, n, k);
            assert_eq!((packed.n(), packed.k()), (n, k));
            // What the kernel multiplies: rows quantized over their range, weight columns
            // symmetrically to ±127.
            let rows: Vec<_> = a.chunks_exact(k).map(quantized_row).collect();
            let columns: Vec<(f64, Vec<f64>)> = w
                .chunks_exact(k)
                .map(|v| {
                    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
                    let q = v.iter().map(|x| (x * (127.0 / max)).round_ties_even() as f64);
                    ((max / 127.0) as f64, q.collect())
                })
                .collect();
            for (j, (scale, _)) in columns.iter().enumerate() {
                assert_eq!(packed.scale(j) as f64, *scale, "column scale {j}");
            }
            for with_bias in [false, true] {
                let bias = with_bias.then_some(bias.as_slice());
                let c = check_gemm(isa, &a, m, &packed, bias, |i, j| {
                    let ((row_scale, _, p), (column_scale, q)) = (&rows[i], &columns[j]);
                    let sum: f64 = p.iter().zip(q).map(|(&p, q)| p as f64 * q).sum();
                    let expected =
                        sum * row_scale * column_scale + bias.map_or(0.0, |b| b[j] as f64);
                    // Exact integer sums; the f32 epilogue rounds a few times.
                    (expected, 4e-7 * sum.abs() * row_scale * column_scale + 1e-6)
                });
                // And the quantization itself stays within half a step of each operand.
                for (i, (row_scale, _, _)) in rows.iter().enumerate() {
                    for (j, (column_scale, _)) in columns.iter().enumerate() {
                        let exact: f64 = (0..k)
                            .map(|kk| a[i * k + kk] as f64 * w[j * k + kk] as f64)
                            .sum::<f64>()
                            + bias.map_or(0.0, |b| b[j] as f64);
                        let range = row_scale * 255.0;
                        let step = (k as f64)
                            * (range * column_scale + column_scale * 127.0 * row_scale)
                            / 2.0;
                        let error = (c[i * n + j] as f64 - exact).abs();
                        assert!(error <= step + 1e-5 * exact.abs() + 1e-6, "{error} > {step}");
                    }
                }
                // The zero row is the bias alone.
                for j in 0..n {
                    assert_eq!(c[j], bias.map_or(0.0, |b| b[j]), "{isa:?} zero row");
                }
            }
        }
    }
}

#[test]
fn int8_activations_quantize_alike_on_every_instruction_set() {
    let mut values = Values(31);
    for k in [1, 3, 4, 15, 16, 17, 33, 384, 385] {
        for shift in [0.0, 0.5, 1.5] {
            let row: Vec<f32> = values.take(k).iter().map(|v| v * 3.0 + shift).collect();
            let mut portable = vec![0u32; k.div_ceil(4)];
            let (scale, zero) = int8::quantize_row(&row, &mut portable);
            let (expected_scale, expected_zero, steps) = quantized_row(&row);
            assert_eq!((scale as f64, zero), (expected_scale, expected_zero), "k={k}");
            // Bytes are steps + zero in 0..=255; padding is the zero point (a zero).
            for (kk, byte) in portable.iter().flat_map(|w| w.to_le_bytes()).enumerate() {
                match steps.get(kk) {
                    Some(&p) => assert_eq!(byte as i32, p + zero, "k={k} at {kk}"),
                    None => assert_eq!(byte as i32, zero, "padding at {kk} of {k}"),
                }
            }
            for isa in bf16_sets() {
                let mut rows = int8::Rows::default();
                // SAFETY: one row of k values.
                unsafe { int8::quantize_rows(isa, row.as_ptr(), k, 1, k, &mut rows) };
                assert_eq!(rows.bytes, portable, "{isa:?} k={k}");
                assert_eq!((rows.scales, rows.zeros), (vec![scale], vec![zero]), "{isa:?}");
            }
        }
    }
}
