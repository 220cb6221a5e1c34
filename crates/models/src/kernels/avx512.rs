//! AVX-512 forms: the bf16 linear layers' 12 × 32 register-tiled `vdpbf16ps` micro-kernel (24
//! accumulators, each step two bf16 products per f32 lane) and the f32 → bf16 rounding of
//! activation rows with `vcvtne2ps2bf16`; the f32 GEMM (attention, f32 layers) as a 12 × 16
//! tile of one register per row; exp / erf / tanh 16 lanes wide, so softmax and GELU run at
//! twice the AVX2 width.
//!
//! Every function here requires AVX512F and AVX512-BF16 (and the AVX2 + FMA that every such CPU
//! has); callers check once at load.

use std::arch::x86_64::*;

use super::bf16::{PANEL_BF16, TileBf16};
use super::int8::{self, PANEL_I8, TileI8};
use super::portable::{self, ERF_A, ERF_P, GELU_CUBIC, SQRT_2_OVER_PI};
use super::{Activation, PANEL, Tile};

/// `$tile::<R>($t)` for `R = $rows` (1 to 12): the micro-kernels keep their accumulators in
/// registers, so each row count is its own monomorphised function.
macro_rules! by_rows {
    ($tile:ident, $rows:expr, $t:expr, $what:literal) => {
        match $rows {
            12 => $tile::<12>($t),
            11 => $tile::<11>($t),
            10 => $tile::<10>($t),
            9 => $tile::<9>($t),
            8 => $tile::<8>($t),
            7 => $tile::<7>($t),
            6 => $tile::<6>($t),
            5 => $tile::<5>($t),
            4 => $tile::<4>($t),
            3 => $tile::<3>($t),
            2 => $tile::<2>($t),
            1 => $tile::<1>($t),
            _ => unreachable!($what),
        }
    };
}

/// Rows of the f32 tile.
pub(super) const TILE_ROWS_F32: usize = 12;

/// One f32 GEMM tile of `rows` rows (up to [`TILE_ROWS_F32`]) against a 16-column panel.
///
/// # Safety
/// AVX512F must be present, and the tile's pointers valid as [`super::gemm_raw`] requires.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn tile(rows: usize, t: &Tile) {
    // SAFETY: forwarded from the caller.
    unsafe { by_rows!(tile_f32, rows, t, "an f32 tile has 1 to 12 rows") }
}

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile_f32<const R: usize>(t: &Tile) {
    let mut acc = [_mm512_setzero_ps(); R];
    let b = t.b.as_ptr();
    // SAFETY: the panel holds k × PANEL values; the rows of `a` hold k values each.
    unsafe {
        for kk in 0..t.k {
            let b = _mm512_loadu_ps(b.add(kk * PANEL));
            for (r, acc) in acc.iter_mut().enumerate() {
                let a = _mm512_set1_ps(*t.a.add(r * t.lda + kk));
                *acc = _mm512_fmadd_ps(a, b, *acc);
            }
        }
        let (mask, _) = masks(t.cols);
        if let Some(bias) = t.bias {
            let bias = _mm512_maskz_loadu_ps(mask, bias.as_ptr());
            for a in &mut acc {
                *a = _mm512_add_ps(*a, bias);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            _mm512_mask_storeu_ps(t.c.add(r * t.ldc), mask, *a);
        }
    }
}

/// e^x, 16 lanes, as [`super::avx2`]'s: Cody–Waite reduction by ln 2 and a degree-6
/// polynomial, inputs clamped to [-87.3, 88.3]; the power of two applied by `vscalefps`.
#[target_feature(enable = "avx512f")]
#[inline]
fn exp(x: __m512) -> __m512 {
    let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3)), _mm512_set1_ps(88.3));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let y = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0)));
    _mm512_scalef_ps(y, n)
}

/// erf, 16 lanes, by the Abramowitz & Stegun formula of [`portable::erf`].
#[target_feature(enable = "avx512f")]
#[inline]
fn erf(x: __m512) -> __m512 {
    let sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN));
    let ax = _mm512_abs_ps(x);
    let one = _mm512_set1_ps(1.0);
    let t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(ERF_P), ax, one));
    let mut poly = _mm512_set1_ps(ERF_A[4]);
    for c in [ERF_A[3], ERF_A[2], ERF_A[1], ERF_A[0]] {
        poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(c));
    }
    poly = _mm512_mul_ps(poly, t);
    let e = exp(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), ax), ax));
    let magnitude = _mm512_fnmadd_ps(poly, e, one);
    _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(magnitude), sign))
}

/// tanh, 16 lanes: `1 - 2 / (e^{2x} + 1)`.
#[target_feature(enable = "avx512f")]
#[inline]
fn tanh(x: __m512) -> __m512 {
    let one = _mm512_set1_ps(1.0);
    let e = exp(_mm512_add_ps(x, x));
    _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0), _mm512_add_ps(e, one)))
}

/// Applies `f` to `x` in place, 16 lanes at a time (the tail masked).
#[target_feature(enable = "avx512f")]
#[inline]
fn map(x: &mut [f32], f: impl Fn(__m512) -> __m512) {
    let mut chunks = x.chunks_exact_mut(16);
    for chunk in &mut chunks {
        // SAFETY: the chunk holds 16 values.
        unsafe { _mm512_storeu_ps(chunk.as_mut_ptr(), f(_mm512_loadu_ps(chunk.as_ptr()))) };
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let (mask, _) = masks(tail.len());
        // SAFETY: the mask covers the tail's values only.
        unsafe {
            let v = f(_mm512_maskz_loadu_ps(mask, tail.as_ptr()));
            _mm512_mask_storeu_ps(tail.as_mut_ptr(), mask, v);
        }
    }
}

/// # Safety
/// AVX512F must be present.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn activate(activation: Activation, x: &mut [f32]) {
    let half = _mm512_set1_ps(0.5);
    match activation {
        Activation::GeluErf => map(x, |v| {
            let e = erf(_mm512_mul_ps(v, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2)));
            _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(_mm512_set1_ps(1.0), e))
        }),
        Activation::GeluTanh => map(x, |v| {
            let cube = _mm512_mul_ps(_mm512_mul_ps(v, v), v);
            let inner = _mm512_mul_ps(
                _mm512_set1_ps(SQRT_2_OVER_PI),
                _mm512_fmadd_ps(_mm512_set1_ps(GELU_CUBIC), cube, v),
            );
            _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(_mm512_set1_ps(1.0), tanh(inner)))
        }),
        Activation::Relu => map(x, |v| _mm512_max_ps(v, _mm512_setzero_ps())),
    }
}

/// `x = softmax(x · scale)`: the maximum, then exp and the sum in one pass, then the scaling.
///
/// # Safety
/// AVX512F must be present.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn softmax(x: &mut [f32], scale: f32) {
    let mut top = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut chunks = x.chunks_exact(16);
    for chunk in &mut chunks {
        // SAFETY: the chunk holds 16 values.
        top = _mm512_max_ps(top, unsafe { _mm512_loadu_ps(chunk.as_ptr()) });
    }
    let top = _mm512_reduce_max_ps(top).max(portable::max(chunks.remainder()));
    let (top, factor) = (_mm512_set1_ps(top), _mm512_set1_ps(scale));
    let mut total = _mm512_setzero_ps();
    let mut chunks = x.chunks_exact_mut(16);
    for chunk in &mut chunks {
        // SAFETY: the chunk holds 16 values.
        unsafe {
            let e = exp(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(chunk.as_ptr()), top), factor));
            total = _mm512_add_ps(total, e);
            _mm512_storeu_ps(chunk.as_mut_ptr(), e);
        }
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let (mask, _) = masks(tail.len());
        // SAFETY: the mask covers the tail's values only; the other lanes are not summed.
        unsafe {
            let v = _mm512_maskz_loadu_ps(mask, tail.as_ptr());
            let e = exp(_mm512_mul_ps(_mm512_sub_ps(v, top), factor));
            total = _mm512_mask_add_ps(total, mask, total, e);
            _mm512_mask_storeu_ps(tail.as_mut_ptr(), mask, e);
        }
    }
    let sum = _mm512_reduce_add_ps(total);
    let inverse = _mm512_set1_ps(1.0 / sum);
    map(x, |v| _mm512_mul_ps(v, inverse));
}

/// # Safety
/// AVX512F must be present.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn add_layer_norm(
    x: &mut [f32],
    residual: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    // The portable body, recompiled here with AVX-512 vectors.
    portable::add_layer_norm(x, residual, gamma, beta, eps)
}

/// One bf16 GEMM tile of `rows` rows.
///
/// # Safety
/// AVX512F and AVX512-BF16 must be present, and the tile's pointers valid as
/// [`super::Weights::multiply`] requires.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn tile_bf16(rows: usize, t: &TileBf16) {
    // SAFETY: forwarded from the caller.
    unsafe { by_rows!(tile_rows, rows, t, "a bf16 tile has 1 to 12 rows") }
}

#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn tile_rows<const R: usize>(t: &TileBf16) {
    let mut lo = [_mm512_setzero_ps(); R];
    let mut hi = [_mm512_setzero_ps(); R];
    let b = t.b.as_ptr();
    // SAFETY: the panel holds pairs × PANEL_BF16 words; each row of `a` holds `pairs` words.
    unsafe {
        for q in 0..t.pairs {
            let b_lo: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(b.add(q * PANEL_BF16).cast()));
            let b_hi: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(b.add(q * PANEL_BF16 + 16).cast()));
            for r in 0..R {
                let a: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*t.a.add(r * t.lda + q) as i32));
                lo[r] = _mm512_dpbf16_ps(lo[r], a, b_lo);
                hi[r] = _mm512_dpbf16_ps(hi[r], a, b_hi);
            }
        }
        // Lanes of the last panel past the matrix's width are neither read nor written.
        let (mask_lo, mask_hi) = masks(t.cols);
        if let Some(bias) = t.bias {
            let bias_lo = _mm512_maskz_loadu_ps(mask_lo, bias.as_ptr());
            let bias_hi = _mm512_maskz_loadu_ps(mask_hi, bias.as_ptr().wrapping_add(16));
            for r in 0..R {
                lo[r] = _mm512_add_ps(lo[r], bias_lo);
                hi[r] = _mm512_add_ps(hi[r], bias_hi);
            }
        }
        for r in 0..R {
            let out = t.c.add(r * t.ldc);
            _mm512_mask_storeu_ps(out, mask_lo, lo[r]);
            _mm512_mask_storeu_ps(out.wrapping_add(16), mask_hi, hi[r]);
        }
    }
}

/// Lane masks of a panel's two halves when its first `cols` columns are valid.
fn masks(cols: usize) -> (__mmask16, __mmask16) {
    let lanes = |n: usize| if n >= 16 { 0xffff } else { ((1u32 << n) - 1) as __mmask16 };
    (lanes(cols), lanes(cols.saturating_sub(16)))
}

/// Rounds one row to bf16 pairs (`out` holds `row.len().div_ceil(2)` words), 32 values at a time.
///
/// # Safety
/// AVX512F and AVX512-BF16 must be present.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn round_row(row: &[f32], out: &mut [u32]) {
    let mut chunks = row.chunks_exact(32);
    let mut done = 0;
    for chunk in &mut chunks {
        // SAFETY: the chunk holds 32 values; `out` holds 16 words from done / 2.
        unsafe {
            let low = _mm512_loadu_ps(chunk.as_ptr());
            let high = _mm512_loadu_ps(chunk.as_ptr().add(16));
            // The second operand goes to the lower half.
            let words: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(high, low));
            _mm512_storeu_si512(out.as_mut_ptr().add(done / 2).cast(), words);
        }
        done += 32;
    }
    super::bf16::round_row(chunks.remainder(), &mut out[done / 2..]);
}

/// Values to bf16 bits (`out` as long as `values`), 16 at a time.
///
/// # Safety
/// AVX512F and AVX512-BF16 must be present.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn round(values: &[f32], out: &mut [u16]) {
    let mut chunks = values.chunks_exact(16);
    let mut done = 0;
    for chunk in &mut chunks {
        // SAFETY: the chunk holds 16 values; `out` holds 16 from `done`.
        unsafe {
            let bits: __m256i =
                std::mem::transmute(_mm512_cvtneps_pbh(_mm512_loadu_ps(chunk.as_ptr())));
            _mm256_storeu_si256(out.as_mut_ptr().add(done).cast(), bits);
        }
        done += 16;
    }
    for (o, &v) in out[done..].iter_mut().zip(chunks.remainder()) {
        *o = super::bf16::to_bf16(v);
    }
}

/// One int8 GEMM tile of `rows` rows (up to 12) against a 32-column panel: `vpdpbusd` sums
/// four u8 × s8 products into each i32 lane; the epilogue takes the zero point back out, scales
/// by row and column and adds the bias.
///
/// # Safety
/// AVX512F and AVX512-VNNI must be present, and the tile's pointers valid as
/// [`super::Weights::multiply`] requires.
#[target_feature(enable = "avx512f,avx512vnni")]
pub(super) unsafe fn tile_i8(rows: usize, t: &TileI8) {
    // SAFETY: forwarded from the caller.
    unsafe { by_rows!(tile_i8_rows, rows, t, "an int8 tile has 1 to 12 rows") }
}

#[target_feature(enable = "avx512f,avx512vnni")]
#[inline]
unsafe fn tile_i8_rows<const R: usize>(t: &TileI8) {
    let mut lo = [_mm512_setzero_si512(); R];
    let mut hi = [_mm512_setzero_si512(); R];
    let b = t.b.as_ptr();
    // SAFETY: the panel holds quads × PANEL_I8 words; each row of `a` holds `quads` words; the
    // scales and compensations hold PANEL_I8 values.
    unsafe {
        for q in 0..t.quads {
            let b_lo = _mm512_loadu_si512(b.add(q * PANEL_I8).cast());
            let b_hi = _mm512_loadu_si512(b.add(q * PANEL_I8 + 16).cast());
            for r in 0..R {
                let a = _mm512_set1_epi32(*t.a.add(r * t.lda + q) as i32);
                lo[r] = _mm512_dpbusd_epi32(lo[r], a, b_lo);
                hi[r] = _mm512_dpbusd_epi32(hi[r], a, b_hi);
            }
        }
        let (mask_lo, mask_hi) = masks(t.cols);
        let scales_lo = _mm512_loadu_ps(t.scales.as_ptr());
        let scales_hi = _mm512_loadu_ps(t.scales.as_ptr().add(16));
        let sums_lo = _mm512_loadu_si512(t.sums.as_ptr().cast());
        let sums_hi = _mm512_loadu_si512(t.sums.as_ptr().add(16).cast());
        let (bias_lo, bias_hi) = match t.bias {
            Some(bias) => (
                _mm512_maskz_loadu_ps(mask_lo, bias.as_ptr()),
                _mm512_maskz_loadu_ps(mask_hi, bias.as_ptr().wrapping_add(16)),
            ),
            None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
        };
        for r in 0..R {
            let (row_scale, zero) =
                (_mm512_set1_ps(t.row_scales[r]), _mm512_set1_epi32(t.row_zeros[r]));
            let out = t.c.add(r * t.ldc);
            for (acc, column_sums, scales, bias, mask, offset) in [
                (lo[r], sums_lo, scales_lo, bias_lo, mask_lo, 0),
                (hi[r], sums_hi, scales_hi, bias_hi, mask_hi, 16),
            ] {
                let zero_sums = _mm512_mullo_epi32(zero, column_sums);
                let sums = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, zero_sums));
                let value = _mm512_mul_ps(sums, _mm512_mul_ps(row_scale, scales));
                _mm512_mask_storeu_ps(out.wrapping_add(offset), mask, _mm512_add_ps(value, bias));
            }
        }
    }
}

/// One activation row to unsigned bytes as [`super::int8::quantize_row`], 16 values at a time;
/// returns the row's scale and zero point.
///
/// # Safety
/// AVX512F must be present.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn quantize_row(row: &[f32], out: &mut [u32]) -> (f32, i32) {
    let mut chunks = row.chunks_exact(16);
    let (mut low, mut high) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    for chunk in &mut chunks {
        // SAFETY: the chunk holds 16 values.
        let v = unsafe { _mm512_loadu_ps(chunk.as_ptr()) };
        (low, high) = (_mm512_min_ps(low, v), _mm512_max_ps(high, v));
    }
    let tail = chunks.remainder();
    let (mask, _) = masks(tail.len());
    // SAFETY: the mask covers the tail's values only (the others read as zero, inside the
    // range that always includes zero).
    let v = unsafe { _mm512_maskz_loadu_ps(mask, tail.as_ptr()) };
    (low, high) = (_mm512_min_ps(low, v), _mm512_max_ps(high, v));
    let (scale, inverse, zero) =
        int8::row_range(_mm512_reduce_min_ps(low), _mm512_reduce_max_ps(high));
    let (factor, zeros) = (_mm512_set1_ps(inverse), _mm512_set1_epi32(zero));
    let (floor, ceiling) = (_mm512_setzero_si512(), _mm512_set1_epi32(255));
    let mut done = 0;
    for chunk in row.chunks_exact(16) {
        // SAFETY: the chunk holds 16 values; `out` holds 4 words from done / 4. The default
        // rounding (MXCSR) is to nearest even, as the portable form's.
        unsafe {
            let steps = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(chunk.as_ptr()), factor));
            let bytes =
                _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(steps, zeros), floor), ceiling);
            _mm_storeu_si128(out.as_mut_ptr().add(done / 4).cast(), _mm512_cvtepi32_epi8(bytes));
        }
        done += 16;
    }
    int8::quantize_with(tail, inverse, zero, &mut out[done / 4..]);
    (scale, zero)
}
