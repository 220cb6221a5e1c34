//! AVX-512 forms of the bf16 linear layers: a 12 × 32 register-tiled `vdpbf16ps` micro-kernel
//! (24 accumulators, each step two bf16 products per f32 lane) and the f32 → bf16 rounding of
//! activation rows with `vcvtne2ps2bf16`.
//!
//! Every function here requires AVX512F and AVX512-BF16; callers check once at load.

use std::arch::x86_64::*;

use super::bf16::{PANEL_BF16, TileBf16};

/// One bf16 GEMM tile of `rows` rows.
///
/// # Safety
/// AVX512F and AVX512-BF16 must be present, and the tile's pointers valid as
/// [`super::bf16::gemm_bf16_raw`] requires.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn tile_bf16(rows: usize, t: &TileBf16) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match rows {
            12 => tile_rows::<12>(t),
            11 => tile_rows::<11>(t),
            10 => tile_rows::<10>(t),
            9 => tile_rows::<9>(t),
            8 => tile_rows::<8>(t),
            7 => tile_rows::<7>(t),
            6 => tile_rows::<6>(t),
            5 => tile_rows::<5>(t),
            4 => tile_rows::<4>(t),
            3 => tile_rows::<3>(t),
            2 => tile_rows::<2>(t),
            1 => tile_rows::<1>(t),
            _ => unreachable!("a bf16 tile has 1 to 12 rows"),
        }
    }
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
