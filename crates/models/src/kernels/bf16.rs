//! bf16 linear layers: weights rounded once at load to bfloat16 and packed in pairs along the
//! depth, the shape AVX512-BF16's `vdpbf16ps` multiplies (two bf16 products summed into each
//! f32 lane); activations are rounded to bf16 row by row as a GEMM reads them, and every sum,
//! the bias and the output stay f32 (as PyTorch's bf16 autocast).
//!
//! The portable form computes the same products of bf16-rounded values in f32 on any CPU: the
//! accuracy gates of the bf16 path run everywhere, the speed needs the AVX-512 form.

use std::cell::RefCell;
use std::ops::Range;

use super::{Block, Isa, Weights, for_each_tile};

/// Columns in one packed bf16 panel (two AVX-512 registers of f32 sums).
pub const PANEL_BF16: usize = 32;
/// Rows in one bf16 GEMM tile (24 accumulators of the 32 AVX-512 registers).
pub const TILE_ROWS_BF16: usize = 12;

/// f32 → bf16 bits, rounded to nearest, ties to even (the rounding of `vcvtne2ps2bf16`).
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// bf16 bits → f32 (exact).
#[inline(always)]
pub fn from_bf16(x: u16) -> f32 {
    f32::from_bits((x as u32) << 16)
}

/// Two bf16 values in one word: `lo` in the low half (the even depth index).
#[inline(always)]
fn pair(lo: f32, hi: f32) -> u32 {
    to_bf16(lo) as u32 | (to_bf16(hi) as u32) << 16
}

/// A weight matrix `W[n][k]` rounded to bf16 and packed for `x · Wᵀ`: panels of
/// [`PANEL_BF16`] output columns; in each, one word per (depth pair, column) holding
/// `W[col][2q]` and `W[col][2q + 1]` (zero past `k`); the last panel zero-padded.
#[derive(Clone, Debug, Default)]
pub struct PackedBf16 {
    k: usize,
    n: usize,
    pub(super) data: Vec<u32>,
}

impl PackedBf16 {
    /// Packs `w`, `n` rows of `k`.
    pub fn from_rows(w: &[f32], n: usize, k: usize) -> PackedBf16 {
        assert_eq!(w.len(), n * k, "a weight of {n} rows of {k}");
        let mut packed = PackedBf16::default();
        packed.pack_rows(Isa::Portable, w, k, n, k);
        packed
    }

    /// Sets the shape and zeroes the panels (padding must be zero).
    fn reset(&mut self, n: usize, k: usize) {
        self.k = k;
        self.n = n;
        self.data.clear();
        self.data.resize(n.div_ceil(PANEL_BF16) * k.div_ceil(2) * PANEL_BF16, 0);
    }

    /// Depth pairs.
    fn pairs(&self) -> usize {
        self.k.div_ceil(2)
    }

    fn panel(&self, p: usize) -> &[u32] {
        let size = self.pairs() * PANEL_BF16;
        &self.data[p * size..(p + 1) * size]
    }
}

impl Weights for PackedBf16 {
    const TILE_ROWS: usize = TILE_ROWS_BF16;

    fn k(&self) -> usize {
        self.k
    }

    fn n(&self) -> usize {
        self.n
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(PANEL_BF16)
    }

    /// Each row is rounded to pairs at once (vectorised on `isa`), then spread over its panel
    /// column.
    fn pack_rows(&mut self, isa: Isa, src: &[f32], ld: usize, n: usize, k: usize) {
        self.reset(n, k);
        let pairs = self.pairs();
        let mut words = vec![0u32; pairs];
        for col in 0..n {
            let (p, j) = (col / PANEL_BF16, col % PANEL_BF16);
            round_row_on(isa, &src[col * ld..col * ld + k], &mut words);
            let panel = &mut self.data[p * pairs * PANEL_BF16..(p + 1) * pairs * PANEL_BF16];
            for (out, &word) in panel.chunks_exact_mut(PANEL_BF16).zip(&words) {
                out[j] = word;
            }
        }
    }

    /// Two source rows per panel row, each rounded at once.
    fn pack_columns(&mut self, isa: Isa, src: &[f32], ld: usize, k: usize, n: usize) {
        self.reset(n, k);
        if k == 0 {
            return;
        }
        let pairs = self.pairs();
        let (mut even, mut odd) = ([0u16; PANEL_BF16], [0u16; PANEL_BF16]);
        for (p, panel) in self.data.chunks_exact_mut(pairs * PANEL_BF16).enumerate() {
            let (col0, cols) = (p * PANEL_BF16, PANEL_BF16.min(n - p * PANEL_BF16));
            for (q, out) in panel.chunks_exact_mut(PANEL_BF16).enumerate() {
                round_on(isa, &src[2 * q * ld + col0..2 * q * ld + col0 + cols], &mut even[..cols]);
                if 2 * q + 1 < k {
                    let odd_row = (2 * q + 1) * ld + col0;
                    round_on(isa, &src[odd_row..odd_row + cols], &mut odd[..cols]);
                } else {
                    odd = [0; PANEL_BF16];
                }
                for ((slot, &lo), &hi) in out.iter_mut().zip(&even[..cols]).zip(&odd[..cols]) {
                    *slot = lo as u32 | (hi as u32) << 16;
                }
            }
        }
    }

    /// bf16 products and f32 sums: each task rounds its rows of `a` to bf16 pairs first.
    unsafe fn multiply(
        &self,
        isa: Isa,
        a: *const f32,
        lda: usize,
        m: usize,
        panels: Range<usize>,
        bias: Option<&[f32]>,
        c: *mut f32,
        ldc: usize,
    ) {
        let pairs = self.pairs();
        ROWS.with_borrow_mut(|rows_bf16| {
            // SAFETY: forwarded from the caller.
            unsafe { round_rows(isa, a, lda, m, self.k, rows_bf16) };
            for_each_tile(
                m,
                self.n,
                PANEL_BF16,
                TILE_ROWS_BF16,
                panels,
                |Block { panel, rows, col0, cols }| {
                    // SAFETY: rows end at m and col0 + cols <= n, within the caller's promise.
                    let c_tile = unsafe { c.add(rows.start * ldc + col0) };
                    let tile = TileBf16 {
                        a: rows_bf16[rows.start * pairs..].as_ptr(),
                        lda: pairs,
                        b: self.panel(panel),
                        pairs,
                        c: c_tile,
                        ldc,
                        cols,
                        bias: bias.map(|bias| &bias[col0..col0 + cols]),
                    };
                    // SAFETY: as above; the AVX-512 set is only chosen when the CPU has it.
                    unsafe {
                        match isa {
                            #[cfg(target_arch = "x86_64")]
                            Isa::Avx512 => super::avx512::tile_bf16(rows.len(), &tile),
                            _ => tile_bf16(rows.len(), &tile),
                        }
                    }
                },
            );
        });
    }
}

/// One bf16 GEMM tile: up to [`TILE_ROWS_BF16`] rows of activations (bf16 pairs) against one
/// packed panel.
pub(crate) struct TileBf16<'a> {
    /// Rows of `pairs` words.
    pub(crate) a: *const u32,
    pub(crate) lda: usize,
    pub(crate) b: &'a [u32],
    pub(crate) pairs: usize,
    pub(crate) c: *mut f32,
    pub(crate) ldc: usize,
    /// Valid columns of the panel (the last may be short).
    pub(crate) cols: usize,
    pub(crate) bias: Option<&'a [f32]>,
}

thread_local! {
    /// Activations of the rows a task multiplies, as bf16 pairs.
    static ROWS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Rounds `m` rows of `k` values (stride `lda`) to bf16 pairs, `k.div_ceil(2)` words a row.
///
/// # Safety
/// `a` must be readable for `(m - 1) * lda + k` values.
unsafe fn round_rows(isa: Isa, a: *const f32, lda: usize, m: usize, k: usize, out: &mut Vec<u32>) {
    let pairs = k.div_ceil(2);
    out.clear();
    out.resize(m * pairs, 0);
    for (i, row_out) in out.chunks_exact_mut(pairs.max(1)).enumerate().take(m) {
        // SAFETY: row i holds k values, within the caller's promise.
        let row = unsafe { std::slice::from_raw_parts(a.add(i * lda), k) };
        round_row_on(isa, row, row_out);
    }
}

/// One row to bf16 pairs on `isa`.
fn round_row_on(isa: Isa, row: &[f32], out: &mut [u32]) {
    match isa {
        // SAFETY: the AVX-512 set is only chosen when the CPU has AVX512-BF16.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { super::avx512::round_row(row, out) },
        _ => round_row(row, out),
    }
}

/// Values to bf16 bits on `isa` (`out` as long as `values`).
fn round_on(isa: Isa, values: &[f32], out: &mut [u16]) {
    match isa {
        // SAFETY: the AVX-512 set is only chosen when the CPU has AVX512-BF16.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { super::avx512::round(values, out) },
        _ => out.iter_mut().zip(values).for_each(|(o, &v)| *o = to_bf16(v)),
    }
}

/// One row to bf16 pairs, in plain Rust.
pub(super) fn round_row(row: &[f32], out: &mut [u32]) {
    let mut pairs = row.chunks_exact(2);
    for (word, two) in out.iter_mut().zip(&mut pairs) {
        *word = pair(two[0], two[1]);
    }
    if let [last] = pairs.remainder() {
        out[row.len() / 2] = pair(*last, 0.0);
    }
}

/// One bf16 tile in plain Rust: the bf16 values widened, products summed in f32.
///
/// # Safety
/// The tile's pointers must be valid as [`PackedBf16::multiply`](Weights::multiply) requires.
unsafe fn tile_bf16(rows: usize, t: &TileBf16) {
    let mut acc = [[0f32; PANEL_BF16]; TILE_ROWS_BF16];
    for q in 0..t.pairs {
        let b = &t.b[q * PANEL_BF16..(q + 1) * PANEL_BF16];
        for (r, acc) in acc.iter_mut().enumerate().take(rows) {
            // SAFETY: r < rows and q < pairs, within the caller's bounds.
            let a = unsafe { *t.a.add(r * t.lda + q) };
            let (a_lo, a_hi) = (from_bf16(a as u16), from_bf16((a >> 16) as u16));
            for j in 0..PANEL_BF16 {
                let (b_lo, b_hi) = (from_bf16(b[j] as u16), from_bf16((b[j] >> 16) as u16));
                acc[j] += a_lo * b_lo + a_hi * b_hi;
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
