//! int8 linear layers: weights quantized once at load, symmetric per output channel
//! (`w ≈ scale_j · q`, `q` in -127..=127), packed four depth values to a word, the shape
//! AVX512-VNNI's `vpdpbusd` multiplies (four u8 × s8 products summed into each i32 lane);
//! activations quantized per row (per token) as a GEMM reads them, asymmetric over the row's
//! range widened to include zero (`x ≈ scale_i · (u - zero_i)`, `u` in 0..=255), the unsigned
//! bytes `vpdpbusd` takes. The zero point is taken back out exactly with the weights' column
//! sums (`Σ_k q[j][k]`, computed at load):
//!
//! `c[i][j] = scale_i · scale_j · (Σ_k u[i][k] · q[j][k] - zero_i · Σ_k q[j][k]) + bias[j]`
//!
//! The integer sums are exact on every instruction set (no product or sum saturates: four
//! products fit 17 bits and a depth of 16,000 fits 31), so the portable form returns the very
//! same values and the accuracy gates of the int8 path run on any CPU.

use std::cell::RefCell;
use std::ops::Range;

use super::{Block, Isa, Weights, for_each_tile};

/// Columns in one packed int8 panel (two AVX-512 registers of i32 sums).
pub const PANEL_I8: usize = 32;
/// Rows in one int8 GEMM tile (24 accumulators of the 32 AVX-512 registers).
pub const TILE_ROWS_I8: usize = 12;
/// Depth values per word.
const QUAD: usize = 4;

/// A weight matrix `W[n][k]` quantized to int8 per output column and packed for `x · Wᵀ`:
/// panels of [`PANEL_I8`] columns; in each, one word per (depth quad, column) holding
/// `q[col][4t..4t + 4]` in its four bytes, lowest depth in the low byte (zero past `k`); the
/// last panel zero-padded.
#[derive(Clone, Debug, Default)]
pub struct PackedI8 {
    k: usize,
    n: usize,
    pub(super) data: Vec<u32>,
    /// Per column, padded to whole panels with zeros.
    pub(super) scales: Vec<f32>,
    /// Per column: `Σ_k q[col][k]`, padded like `scales`.
    pub(super) sums: Vec<i32>,
}

impl PackedI8 {
    /// Quantizes and packs `w`, `n` rows of `k`.
    pub fn from_rows(w: &[f32], n: usize, k: usize) -> PackedI8 {
        assert_eq!(w.len(), n * k, "a weight of {n} rows of {k}");
        let mut packed = PackedI8::default();
        packed.pack_rows(Isa::Portable, w, k, n, k);
        packed
    }

    /// The scale of output column `j` (`w[j][k] ≈ scale · q`).
    pub fn scale(&self, j: usize) -> f32 {
        self.scales[j]
    }

    fn reset(&mut self, n: usize, k: usize) {
        self.k = k;
        self.n = n;
        let columns = n.div_ceil(PANEL_I8) * PANEL_I8;
        self.data.clear();
        self.data.resize(columns * k.div_ceil(QUAD), 0);
        self.scales.clear();
        self.scales.resize(columns, 0.0);
        self.sums.clear();
        self.sums.resize(columns, 0);
    }

    /// Depth quads.
    fn quads(&self) -> usize {
        self.k.div_ceil(QUAD)
    }

    fn panel(&self, p: usize) -> &[u32] {
        let size = self.quads() * PANEL_I8;
        &self.data[p * size..(p + 1) * size]
    }

    /// Quantizes output column `col` from its `k` values.
    fn set_column(&mut self, col: usize, values: &[f32], words: &mut [u32]) {
        let (scale, sum) = quantize_weights(values, words);
        self.scales[col] = scale;
        self.sums[col] = sum;
        let (p, j) = (col / PANEL_I8, col % PANEL_I8);
        let size = self.quads() * PANEL_I8;
        let panel = &mut self.data[p * size..(p + 1) * size];
        for (out, &word) in panel.chunks_exact_mut(PANEL_I8).zip(words.iter()) {
            out[j] = word;
        }
    }
}

/// Quantizes one weight column symmetrically to signed bytes, four a word (zero-padded);
/// returns its scale and the sum of its quantized values.
fn quantize_weights(values: &[f32], words: &mut [u32]) -> (f32, i32) {
    let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    let (scale, inverse) = if max > 0.0 { (max / 127.0, 127.0 / max) } else { (0.0, 0.0) };
    let mut sum = 0;
    words.fill(0);
    for (kk, &v) in values.iter().enumerate() {
        let q = (v * inverse).round_ties_even().clamp(-127.0, 127.0) as i32;
        sum += q;
        words[kk / QUAD] |= (q as u8 as u32) << (8 * (kk % QUAD));
    }
    (scale, sum)
}

impl Weights for PackedI8 {
    const TILE_ROWS: usize = TILE_ROWS_I8;

    fn k(&self) -> usize {
        self.k
    }

    fn n(&self) -> usize {
        self.n
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(PANEL_I8)
    }

    fn pack_rows(&mut self, _isa: Isa, src: &[f32], ld: usize, n: usize, k: usize) {
        self.reset(n, k);
        let mut words = vec![0u32; self.quads()];
        for col in 0..n {
            self.set_column(col, &src[col * ld..col * ld + k], &mut words);
        }
    }

    /// Each column gathered, then quantized as a row.
    fn pack_columns(&mut self, _isa: Isa, src: &[f32], ld: usize, k: usize, n: usize) {
        self.reset(n, k);
        let (mut words, mut column) = (vec![0u32; self.quads()], vec![0f32; k]);
        for col in 0..n {
            column.iter_mut().enumerate().for_each(|(kk, v)| *v = src[kk * ld + col]);
            self.set_column(col, &column, &mut words);
        }
    }

    /// Each task quantizes its rows of `a` first (one scale per row), then runs the tiles.
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
        let quads = self.quads();
        ROWS.with_borrow_mut(|rows_i8| {
            // SAFETY: forwarded from the caller.
            unsafe { quantize_rows(isa, a, lda, m, self.k, rows_i8) };
            for_each_tile(
                m,
                self.n,
                PANEL_I8,
                TILE_ROWS_I8,
                panels,
                |Block { panel, rows, col0, cols }| {
                    // SAFETY: rows end at m and col0 + cols <= n, within the caller's promise.
                    let c_tile = unsafe { c.add(rows.start * ldc + col0) };
                    let tile = TileI8 {
                        a: rows_i8.bytes[rows.start * quads..].as_ptr(),
                        lda: quads,
                        row_scales: &rows_i8.scales[rows.clone()],
                        row_zeros: &rows_i8.zeros[rows.clone()],
                        b: self.panel(panel),
                        quads,
                        scales: &self.scales[col0..col0 + PANEL_I8],
                        sums: &self.sums[col0..col0 + PANEL_I8],
                        c: c_tile,
                        ldc,
                        cols,
                        bias: bias.map(|bias| &bias[col0..col0 + cols]),
                    };
                    // SAFETY: as above; the AVX-512 set is only chosen when the CPU has VNNI.
                    unsafe {
                        match isa {
                            #[cfg(target_arch = "x86_64")]
                            Isa::Avx512 => super::avx512::tile_i8(rows.len(), &tile),
                            _ => tile_i8(rows.len(), &tile),
                        }
                    }
                },
            );
        });
    }
}

/// One int8 GEMM tile: up to [`TILE_ROWS_I8`] rows of quantized activations against one
/// packed panel.
pub(crate) struct TileI8<'a> {
    /// Rows of `quads` words of unsigned bytes (steps plus the row's zero point).
    pub(crate) a: *const u32,
    pub(crate) lda: usize,
    /// The scale and zero point of each of the tile's rows.
    pub(crate) row_scales: &'a [f32],
    pub(crate) row_zeros: &'a [i32],
    pub(crate) b: &'a [u32],
    pub(crate) quads: usize,
    /// The panel's column scales and sums (all [`PANEL_I8`], zero past the matrix).
    pub(crate) scales: &'a [f32],
    pub(crate) sums: &'a [i32],
    pub(crate) c: *mut f32,
    pub(crate) ldc: usize,
    /// Valid columns of the panel (the last may be short).
    pub(crate) cols: usize,
    pub(crate) bias: Option<&'a [f32]>,
}

/// Activation rows quantized for one task: bytes (`quads` words a row), scales, zero points.
#[derive(Default)]
pub(super) struct Rows {
    pub(super) bytes: Vec<u32>,
    pub(super) scales: Vec<f32>,
    pub(super) zeros: Vec<i32>,
}

thread_local! {
    /// The quantized activations of the rows a task multiplies.
    static ROWS: RefCell<Rows> = RefCell::new(Rows::default());
}

/// Quantizes `m` rows of `k` values (stride `lda`) into `out`.
///
/// # Safety
/// `a` must be readable for `(m - 1) * lda + k` values.
pub(super) unsafe fn quantize_rows(
    isa: Isa,
    a: *const f32,
    lda: usize,
    m: usize,
    k: usize,
    out: &mut Rows,
) {
    let quads = k.div_ceil(QUAD);
    out.bytes.clear();
    out.bytes.resize(m * quads, 0);
    out.scales.clear();
    out.zeros.clear();
    for (i, row_out) in out.bytes.chunks_exact_mut(quads.max(1)).enumerate().take(m) {
        // SAFETY: row i holds k values, within the caller's promise.
        let row = unsafe { std::slice::from_raw_parts(a.add(i * lda), k) };
        let (scale, zero) = match isa {
            // SAFETY: the AVX-512 set is only chosen when the CPU has it.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { super::avx512::quantize_row(row, row_out) },
            _ => quantize_row(row, row_out),
        };
        out.scales.push(scale);
        out.zeros.push(zero);
    }
}

/// The scale, its inverse and the zero point of a row whose values span `low..=high`, widened
/// to include zero: 255 steps over the range, zero exactly representable (all zero for a zero
/// row, whose bytes are then all zero).
#[inline]
pub(super) fn row_range(low: f32, high: f32) -> (f32, f32, i32) {
    let (low, high) = (low.min(0.0), high.max(0.0));
    if high - low > 0.0 {
        let scale = (high - low) / 255.0;
        let zero = (-low / scale).round_ties_even().clamp(0.0, 255.0) as i32;
        (scale, 1.0 / scale, zero)
    } else {
        (0.0, 0.0, 0)
    }
}

/// One activation row to unsigned bytes (`round(x / scale) + zero`, to nearest even, clamped
/// to 0..=255), four a word, the padding past the row's end the zero point; returns the row's
/// scale and zero point.
pub(super) fn quantize_row(row: &[f32], out: &mut [u32]) -> (f32, i32) {
    let (low, high) =
        row.iter().fold((f32::MAX, f32::MIN), |(low, high), &v| (low.min(v), high.max(v)));
    let (scale, inverse, zero) = row_range(low, high);
    quantize_with(row, inverse, zero, out);
    (scale, zero)
}

/// `row · inverse + zero` to unsigned bytes, four a word (the last word padded with `zero`).
pub(super) fn quantize_with(row: &[f32], inverse: f32, zero: i32, out: &mut [u32]) {
    let byte = |v: f32| ((v * inverse).round_ties_even() as i32 + zero).clamp(0, 255) as u32;
    for (kk, &v) in row.iter().enumerate() {
        let word = &mut out[kk / QUAD];
        if kk % QUAD == 0 {
            *word = zero as u32 * 0x0101_0101;
        }
        let shift = 8 * (kk % QUAD);
        *word = (*word & !(0xff << shift)) | byte(v) << shift;
    }
}

/// The unsigned bytes of a word times the signed bytes of another, summed (one `vpdpbusd` lane).
#[inline(always)]
fn dot_bytes(a: u32, b: u32) -> i32 {
    (0..QUAD).map(|t| ((a >> (8 * t)) & 0xff) as i32 * ((b >> (8 * t)) as u8 as i8) as i32).sum()
}

/// One int8 tile in plain Rust: the same integer sums as `vpdpbusd`, the same epilogue.
///
/// # Safety
/// The tile's pointers must be valid as [`PackedI8::multiply`](Weights::multiply) requires.
unsafe fn tile_i8(rows: usize, t: &TileI8) {
    let mut acc = [[0i32; PANEL_I8]; TILE_ROWS_I8];
    for q in 0..t.quads {
        let b = &t.b[q * PANEL_I8..(q + 1) * PANEL_I8];
        for (r, acc) in acc.iter_mut().enumerate().take(rows) {
            // SAFETY: r < rows and q < quads, within the caller's bounds.
            let a = unsafe { *t.a.add(r * t.lda + q) };
            for (sum, &b) in acc.iter_mut().zip(b) {
                *sum += dot_bytes(a, b);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate().take(rows) {
        // SAFETY: the row's first `cols` columns are the tile's to write.
        let out = unsafe { std::slice::from_raw_parts_mut(t.c.add(r * t.ldc), t.cols) };
        for (j, o) in out.iter_mut().enumerate() {
            let scale = t.row_scales[r] * t.scales[j];
            let sum = acc[j] - t.row_zeros[r] * t.sums[j];
            *o = sum as f32 * scale + t.bias.map_or(0.0, |b| b[j]);
        }
    }
}
