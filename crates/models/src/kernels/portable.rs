//! The kernels in plain Rust: the fallback on CPUs without AVX2, the bodies the AVX2 module
//! recompiles with wider vectors where the compiler vectorises them well, and the scalar
//! definitions of erf and exp the vector forms follow.

use super::{Activation, PANEL, TILE_ROWS, Tile};

/// Lanes of the partial sums in reductions: independent chains the compiler turns into vectors.
const LANES: usize = 8;

/// One GEMM tile of `rows` rows.
///
/// # Safety
/// The tile's pointers must be valid as [`super::gemm_raw`] requires.
#[inline(always)]
pub(super) unsafe fn tile(rows: usize, t: &Tile) {
    let mut acc = [[0f32; PANEL]; TILE_ROWS];
    for kk in 0..t.k {
        let b = &t.b[kk * PANEL..(kk + 1) * PANEL];
        for (r, acc) in acc.iter_mut().enumerate().take(rows) {
            // SAFETY: r < rows and kk < k, within the caller's bounds.
            let a = unsafe { *t.a.add(r * t.lda + kk) };
            for j in 0..PANEL {
                acc[j] += a * b[j];
            }
        }
    }
    for (r, acc) in acc.iter().enumerate().take(rows) {
        // SAFETY: the row's first `cols` columns are the tile's to write.
        let out = unsafe { std::slice::from_raw_parts_mut(t.c.add(r * t.ldc), t.cols) };
        match t.bias {
            Some(bias) => out.iter_mut().zip(acc).zip(bias).for_each(|((o, a), b)| *o = a + b),
            None => out.copy_from_slice(&acc[..t.cols]),
        }
    }
}

/// erf by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7).
pub(super) fn erf(x: f32) -> f32 {
    let ax = x.abs();
    let t = 1.0 / (1.0 + ERF_P * ax);
    let poly = t * (ERF_A[0] + t * (ERF_A[1] + t * (ERF_A[2] + t * (ERF_A[3] + t * ERF_A[4]))));
    (1.0 - poly * (-ax * ax).exp()).copysign(x)
}

pub(super) const ERF_P: f32 = 0.327_591_1;
pub(super) const ERF_A: [f32; 5] =
    [0.254_829_6, -0.284_496_74, 1.421_413_8, -1.453_152_1, 1.061_405_4];
pub(super) const SQRT_2_OVER_PI: f32 = 0.797_884_6;
pub(super) const GELU_CUBIC: f32 = 0.044_715;

#[inline(always)]
pub(super) fn activate(activation: Activation, x: &mut [f32]) {
    match activation {
        Activation::GeluErf => x
            .iter_mut()
            .for_each(|v| *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2))),
        Activation::GeluTanh => x.iter_mut().for_each(|v| {
            *v = 0.5 * *v * (1.0 + (SQRT_2_OVER_PI * (*v + GELU_CUBIC * *v * *v * *v)).tanh())
        }),
        Activation::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
    }
}

#[inline(always)]
pub(super) fn max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (l, v) in lanes.iter_mut().zip(chunk) {
            *l = l.max(*v);
        }
    }
    tail.iter().chain(&lanes).fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

#[inline(always)]
pub(super) fn sum(x: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (l, v) in lanes.iter_mut().zip(chunk) {
            *l += v;
        }
    }
    lanes.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

#[inline(always)]
pub(super) fn scale(x: &mut [f32], factor: f32) {
    x.iter_mut().for_each(|v| *v *= factor);
}

pub(super) fn softmax(x: &mut [f32], scale_by: f32) {
    let top = max(x);
    x.iter_mut().for_each(|v| *v = ((*v - top) * scale_by).exp());
    let total = sum(x);
    scale(x, 1.0 / total);
}

/// `x = LayerNorm(x + residual)`; an empty `residual` adds nothing.
#[inline(always)]
pub(super) fn add_layer_norm(
    x: &mut [f32],
    residual: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    if !residual.is_empty() {
        x.iter_mut().zip(residual).for_each(|(v, r)| *v += r);
    }
    let mean = sum(x) / x.len() as f32;
    x.iter_mut().for_each(|v| *v -= mean);
    let mut lanes = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for chunk in chunks {
        for (l, v) in lanes.iter_mut().zip(chunk) {
            *l += v * v;
        }
    }
    let variance = (lanes.iter().sum::<f32>() + tail) / x.len() as f32;
    let inverse = 1.0 / (variance + eps).sqrt();
    x.iter_mut().zip(gamma).zip(beta).for_each(|((v, g), b)| *v = *v * inverse * g + b);
}
