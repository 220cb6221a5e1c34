//! AVX2 + FMA forms: a 6 × 16 register-tiled GEMM micro-kernel (12 accumulators), and
//! vectorised exp / erf / tanh so softmax and GELU never call scalar libm.
//!
//! Every function here requires AVX2 and FMA; callers check once at load.

use std::arch::x86_64::*;

use super::portable::{self, ERF_A, ERF_P, GELU_CUBIC, SQRT_2_OVER_PI};
use super::{Activation, PANEL, Tile};

/// One GEMM tile of `rows` rows.
///
/// # Safety
/// AVX2 and FMA must be present, and the tile's pointers valid as [`super::gemm_raw`] requires.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn tile(rows: usize, t: &Tile) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match rows {
            6 => tile_rows::<6>(t),
            5 => tile_rows::<5>(t),
            4 => tile_rows::<4>(t),
            3 => tile_rows::<3>(t),
            2 => tile_rows::<2>(t),
            1 => tile_rows::<1>(t),
            _ => unreachable!("a tile has 1 to 6 rows"),
        }
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile_rows<const R: usize>(t: &Tile) {
    let mut lo = [_mm256_setzero_ps(); R];
    let mut hi = [_mm256_setzero_ps(); R];
    let b = t.b.as_ptr();
    // SAFETY: the panel holds k × PANEL values; the rows of `a` hold k values each.
    unsafe {
        for kk in 0..t.k {
            let b_lo = _mm256_loadu_ps(b.add(kk * PANEL));
            let b_hi = _mm256_loadu_ps(b.add(kk * PANEL + 8));
            for r in 0..R {
                let a = _mm256_broadcast_ss(&*t.a.add(r * t.lda + kk));
                lo[r] = _mm256_fmadd_ps(a, b_lo, lo[r]);
                hi[r] = _mm256_fmadd_ps(a, b_hi, hi[r]);
            }
        }
        if let Some(bias) = t.bias
            && t.cols == PANEL
        {
            let (bias_lo, bias_hi) =
                (_mm256_loadu_ps(bias.as_ptr()), _mm256_loadu_ps(bias.as_ptr().add(8)));
            for r in 0..R {
                lo[r] = _mm256_add_ps(lo[r], bias_lo);
                hi[r] = _mm256_add_ps(hi[r], bias_hi);
            }
        }
        for r in 0..R {
            let out = t.c.add(r * t.ldc);
            if t.cols == PANEL {
                _mm256_storeu_ps(out, lo[r]);
                _mm256_storeu_ps(out.add(8), hi[r]);
            } else {
                // The last panel of a matrix whose width is not a multiple of 16.
                let mut row = [0f32; PANEL];
                _mm256_storeu_ps(row.as_mut_ptr(), lo[r]);
                _mm256_storeu_ps(row.as_mut_ptr().add(8), hi[r]);
                let out = std::slice::from_raw_parts_mut(out, t.cols);
                match t.bias {
                    Some(bias) => {
                        out.iter_mut().zip(row).zip(bias).for_each(|((o, v), b)| *o = v + b)
                    }
                    None => out.copy_from_slice(&row[..t.cols]),
                }
            }
        }
    }
}

/// e^x, 8 lanes: Cody–Waite reduction by ln 2 and Cephes' degree-6 polynomial (relative error
/// ~1e-7); inputs are clamped to [-87.3, 88.3], so the result never overflows or goes subnormal.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn exp(x: __m256) -> __m256 {
    let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3)), _mm256_set1_ps(88.3));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let y = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
    let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    )));
    _mm256_mul_ps(y, scale)
}

/// erf, 8 lanes, by the same Abramowitz & Stegun formula as [`portable::erf`].
#[target_feature(enable = "avx2,fma")]
#[inline]
fn erf(x: __m256) -> __m256 {
    let sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0));
    let ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0), x);
    let one = _mm256_set1_ps(1.0);
    let t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(ERF_P), ax, one));
    let mut poly = _mm256_set1_ps(ERF_A[4]);
    for c in [ERF_A[3], ERF_A[2], ERF_A[1], ERF_A[0]] {
        poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(c));
    }
    poly = _mm256_mul_ps(poly, t);
    let e = exp(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), ax), ax));
    _mm256_or_ps(_mm256_fnmadd_ps(poly, e, one), sign)
}

/// tanh, 8 lanes: `1 - 2 / (e^{2x} + 1)`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn tanh(x: __m256) -> __m256 {
    let one = _mm256_set1_ps(1.0);
    let e = exp(_mm256_add_ps(x, x));
    _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0), _mm256_add_ps(e, one)))
}

/// Applies `f` to `x` in place, 8 lanes at a time (the tail through a padded copy).
#[target_feature(enable = "avx2,fma")]
#[inline]
fn map(x: &mut [f32], f: impl Fn(__m256) -> __m256) {
    let mut chunks = x.chunks_exact_mut(8);
    for chunk in &mut chunks {
        // SAFETY: the chunk holds 8 values.
        unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), f(_mm256_loadu_ps(chunk.as_ptr()))) };
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let mut lane = [0f32; 8];
        lane[..tail.len()].copy_from_slice(tail);
        // SAFETY: `lane` holds 8 values.
        unsafe { _mm256_storeu_ps(lane.as_mut_ptr(), f(_mm256_loadu_ps(lane.as_ptr()))) };
        let n = tail.len();
        tail.copy_from_slice(&lane[..n]);
    }
}

/// # Safety
/// AVX2 and FMA must be present.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn activate(activation: Activation, x: &mut [f32]) {
    let half = _mm256_set1_ps(0.5);
    match activation {
        Activation::GeluErf => map(x, |v| {
            let e = erf(_mm256_mul_ps(v, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2)));
            _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(_mm256_set1_ps(1.0), e))
        }),
        Activation::GeluTanh => map(x, |v| {
            let cube = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
            let inner = _mm256_mul_ps(
                _mm256_set1_ps(SQRT_2_OVER_PI),
                _mm256_fmadd_ps(_mm256_set1_ps(GELU_CUBIC), cube, v),
            );
            _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(_mm256_set1_ps(1.0), tanh(inner)))
        }),
        Activation::Relu => map(x, |v| _mm256_max_ps(v, _mm256_setzero_ps())),
    }
}

/// # Safety
/// AVX2 and FMA must be present.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn softmax(x: &mut [f32], scale: f32) {
    let top = portable::max(x);
    let (top, factor) = (_mm256_set1_ps(top), _mm256_set1_ps(scale));
    map(x, |v| exp(_mm256_mul_ps(_mm256_sub_ps(v, top), factor)));
    let total = portable::sum(x);
    portable::scale(x, 1.0 / total);
}

/// # Safety
/// AVX2 and FMA must be present.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn add_layer_norm(
    x: &mut [f32],
    residual: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    // The portable body, recompiled here with AVX2 vectors.
    portable::add_layer_norm(x, residual, gamma, beta, eps)
}
