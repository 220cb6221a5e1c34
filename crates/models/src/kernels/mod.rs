//! Sieve's own CPU kernels for the encoder layer: an f32 GEMM over weights prepacked once at
//! load, a bf16 GEMM for linear layers in bf16 ([`bf16`]), and the fused element-wise steps
//! around them (bias + GELU, scaled softmax, residual + LayerNorm). Each has a form for the
//! CPU's instruction set chosen at run time (AVX2 + FMA; AVX512-BF16 for bf16 products) and a
//! portable form.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod bf16;
pub mod int8;
mod portable;

use std::ops::Range;

/// Columns in one packed weight panel (two AVX2 registers of f32).
pub const PANEL: usize = 16;
/// Rows in one GEMM tile.
pub const TILE_ROWS: usize = 6;

/// Which kernels run a model's forward pass; chosen once at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// candle-transformers' BERT and XLM-RoBERTa: the reference path.
    Reference,
    /// Sieve's own encoder layer in portable Rust (any CPU; what the compiler vectorises).
    Portable,
    /// Sieve's own encoder layer with AVX2 + FMA f32 kernels.
    Avx2,
    /// Sieve's own encoder layer with AVX-512 kernels: AVX512-BF16 products for bf16 linear
    /// layers, 16-lane f32 for the rest.
    Avx512,
}

impl Kernels {
    /// The fastest kernels this CPU runs.
    pub fn detect() -> Kernels {
        [Kernels::Avx512, Kernels::Avx2]
            .into_iter()
            .find(|kernels| kernels.is_supported())
            .unwrap_or(Kernels::Portable)
    }

    /// `SIEVE_KERNELS` when set (any name [`Kernels::from_name`] takes), else [`Kernels::detect`].
    pub fn from_env() -> std::result::Result<Kernels, String> {
        match std::env::var("SIEVE_KERNELS") {
            Ok(name) if !name.is_empty() && name != "auto" => Kernels::from_name(&name)
                .ok_or_else(|| format!("SIEVE_KERNELS={name}: {}", Kernels::CHOICES)),
            _ => Ok(Kernels::detect()),
        }
    }

    /// What [`Kernels::from_name`] accepts.
    pub const CHOICES: &'static str = "use auto, reference, portable, avx2 or avx512";

    /// Parses "reference", "portable", "avx2" or "avx512".
    pub fn from_name(name: &str) -> Option<Kernels> {
        match name {
            "reference" | "candle" => Some(Kernels::Reference),
            "portable" => Some(Kernels::Portable),
            "avx2" => Some(Kernels::Avx2),
            "avx512" => Some(Kernels::Avx512),
            _ => None,
        }
    }

    /// "reference", "portable", "avx2" or "avx512".
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Reference => "reference",
            Kernels::Portable => "portable",
            Kernels::Avx2 => "avx2",
            Kernels::Avx512 => "avx512",
        }
    }

    /// Whether they compute linear layers in bf16 (fast with AVX512-BF16; the portable set
    /// emulates it, for checks on any CPU). The reference path has candle's own bf16.
    pub fn run_bf16(self) -> bool {
        matches!(self, Kernels::Portable | Kernels::Avx512 | Kernels::Reference)
    }

    /// Whether they compute linear layers in int8 (fast with AVX512-VNNI; the portable set
    /// computes the same integers, for checks on any CPU).
    pub fn run_int8(self) -> bool {
        matches!(self, Kernels::Portable | Kernels::Avx512)
    }

    /// Whether this CPU can run them.
    pub fn is_supported(self) -> bool {
        match self {
            Kernels::Reference | Kernels::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512 => {
                Kernels::Avx2.is_supported()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bf16")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Kernels::Avx2 | Kernels::Avx512 => false,
        }
    }
}

/// The CPU's model name and the SIMD features the kernels care about, for the start-up log.
pub fn cpu_description() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    #[cfg(target_arch = "x86_64")]
    let features = {
        let mut have = Vec::new();
        macro_rules! probe {
            ($($f:tt),*) => {$(
                if is_x86_feature_detected!($f) { have.push($f); }
            )*};
        }
        probe!("avx2", "fma", "avx512f", "avx512bf16", "avx512vnni");
        have.join(" ")
    };
    #[cfg(not(target_arch = "x86_64"))]
    let features = String::new();
    format!("{model} [{features}]")
}

/// An instruction set the own kernels run with (the [`Kernels`] other than the reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust.
    Portable,
    /// AVX2 + FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 (with AVX512-BF16 for bf16 products).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The instruction set of `kernels`, or `None` for the reference path or an unsupported set.
    pub fn of(kernels: Kernels) -> Option<Isa> {
        match kernels {
            Kernels::Reference => None,
            Kernels::Portable => Some(Isa::Portable),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2 if kernels.is_supported() => Some(Isa::Avx2),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512 if kernels.is_supported() => Some(Isa::Avx512),
            Kernels::Avx2 | Kernels::Avx512 => None,
        }
    }
}

/// A weight matrix `W[n][k]` (PyTorch's `out × in` layout) packed for `x · Wᵀ`: panels of
/// [`PANEL`] output columns, each `k` rows of [`PANEL`] values, the last panel zero-padded.
#[derive(Clone, Debug, Default)]
pub struct Packed {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl Packed {
    /// Packs `w`, `n` rows of `k`.
    pub fn from_rows(w: &[f32], n: usize, k: usize) -> Packed {
        let mut packed = Packed::default();
        packed.pack_rows(Isa::Portable, w, k, n, k);
        packed
    }

    /// Sets the shape and zeroes the panels (the last one's padding must be zero).
    fn reset(&mut self, n: usize, k: usize) {
        self.k = k;
        self.n = n;
        self.data.clear();
        self.data.resize(n.div_ceil(PANEL) * k * PANEL, 0.0);
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * self.k * PANEL..(p + 1) * self.k * PANEL]
    }
}

/// `c[i][j] = Σ a[i][kk] · b[j][kk] (+ bias[j])` for rows `0..m` and the columns of `panels`.
///
/// `a` holds `m` rows of `b.k()` values at stride `lda`, `c` rows at stride `ldc`; only the
/// columns of the given panels are written.
///
/// # Safety
/// `a` must be readable for `(m - 1) * lda + k` values, `c` writable for the touched columns of
/// `m` rows at stride `ldc`, and no other thread may touch those columns of `c` meanwhile.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_raw(
    isa: Isa,
    a: *const f32,
    lda: usize,
    m: usize,
    b: &Packed,
    panels: Range<usize>,
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
) {
    let k = b.k;
    let tile_rows = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::TILE_ROWS_F32,
        _ => TILE_ROWS,
    };
    for_each_tile(m, b.n, PANEL, tile_rows, panels, |Block { panel, rows, col0, cols }| {
        let bias = bias.map(|bias| &bias[col0..col0 + cols]);
        // SAFETY: rows end at m and col0 + cols <= n, within the caller's promise.
        let (a_tile, c_tile) = unsafe { (a.add(rows.start * lda), c.add(rows.start * ldc + col0)) };
        let tile = Tile { a: a_tile, lda, b: b.panel(panel), k, c: c_tile, ldc, cols, bias };
        // SAFETY: as above; the AVX2 and AVX-512 sets are only chosen when the CPU has them.
        unsafe {
            match isa {
                Isa::Portable => portable::tile(rows.len(), &tile),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => avx2::tile(rows.len(), &tile),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => avx512::tile(rows.len(), &tile),
            }
        }
    });
}

/// One tile of a GEMM's output: rows `rows` of panel `panel`, whose columns start at `col0` and
/// of which `cols` are inside the matrix.
pub(crate) struct Block {
    pub(crate) panel: usize,
    pub(crate) rows: Range<usize>,
    pub(crate) col0: usize,
    pub(crate) cols: usize,
}

/// Calls `tile` for every tile of rows `0..m` and the given panels (`width` columns each, the
/// matrix `n` wide), panel by panel, up to `tile_rows` rows a tile.
pub(crate) fn for_each_tile(
    m: usize,
    n: usize,
    width: usize,
    tile_rows: usize,
    panels: Range<usize>,
    mut tile: impl FnMut(Block),
) {
    for panel in panels {
        let col0 = panel * width;
        let cols = width.min(n - col0);
        let mut row = 0;
        while row < m {
            let end = m.min(row + tile_rows);
            tile(Block { panel, rows: row..end, col0, cols });
            row = end;
        }
    }
}

/// One GEMM tile: up to [`TILE_ROWS`] rows of `a` against one packed panel.
pub(crate) struct Tile<'a> {
    a: *const f32,
    lda: usize,
    b: &'a [f32],
    k: usize,
    c: *mut f32,
    ldc: usize,
    /// Valid columns of the panel (the last may be short).
    cols: usize,
    bias: Option<&'a [f32]>,
}

/// A weight matrix packed for one of the GEMMs ([`Packed`] in f32, [`bf16::PackedBf16`]): what
/// the drivers below need to split and run `c = a · Wᵀ (+ bias)`.
pub trait Weights: Default + Sync {
    /// Rows of one tile of its portable kernel: row blocks are multiples of it.
    const TILE_ROWS: usize;
    /// Depth (input width).
    fn k(&self) -> usize;
    /// Output columns.
    fn n(&self) -> usize;
    /// Number of panels.
    fn panels(&self) -> usize;
    /// Repacks in place from `src[col * ld + kk]`: rows of a strided matrix are output columns
    /// (attention's keys).
    fn pack_rows(&mut self, isa: Isa, src: &[f32], ld: usize, n: usize, k: usize);
    /// Repacks in place from `src[kk * ld + col]`: columns of a strided matrix are output
    /// columns (attention's values).
    fn pack_columns(&mut self, isa: Isa, src: &[f32], ld: usize, k: usize, n: usize);
    /// `c[i][j] = Σ a[i][kk] · W[j][kk] (+ bias[j])` for rows `0..m` and the columns of
    /// `panels`.
    ///
    /// # Safety
    /// As [`gemm_raw`].
    #[allow(clippy::too_many_arguments)]
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
    );
}

impl Weights for Packed {
    const TILE_ROWS: usize = TILE_ROWS;

    fn k(&self) -> usize {
        self.k
    }

    fn n(&self) -> usize {
        self.n
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(PANEL)
    }

    fn pack_rows(&mut self, _isa: Isa, src: &[f32], ld: usize, n: usize, k: usize) {
        self.reset(n, k);
        if k == 0 {
            return;
        }
        for (p, panel) in self.data.chunks_exact_mut(k * PANEL).enumerate() {
            // The panel's source rows, then one contiguous panel row per depth index.
            let mut rows: [&[f32]; PANEL] = [&[]; PANEL];
            let cols = PANEL.min(n - p * PANEL);
            for (j, row) in rows.iter_mut().enumerate().take(cols) {
                let col = p * PANEL + j;
                *row = &src[col * ld..col * ld + k];
            }
            for (kk, out) in panel.chunks_exact_mut(PANEL).enumerate() {
                for (slot, row) in out.iter_mut().zip(&rows[..cols]) {
                    *slot = row[kk];
                }
            }
        }
    }

    /// Each panel row is one contiguous copy.
    fn pack_columns(&mut self, _isa: Isa, src: &[f32], ld: usize, k: usize, n: usize) {
        self.reset(n, k);
        if k == 0 {
            return;
        }
        for (p, panel) in self.data.chunks_exact_mut(k * PANEL).enumerate() {
            let (col0, cols) = (p * PANEL, PANEL.min(n - p * PANEL));
            for (kk, row) in panel.chunks_exact_mut(PANEL).enumerate() {
                row[..cols].copy_from_slice(&src[kk * ld + col0..kk * ld + col0 + cols]);
            }
        }
    }

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
        // SAFETY: forwarded from the caller.
        unsafe { gemm_raw(isa, a, lda, m, self, panels, bias, c, ldc) }
    }
}

/// `c = a · bᵀ (+ bias)` for all of `b`'s columns, on this thread.
pub fn gemm<W: Weights>(
    isa: Isa,
    a: &[f32],
    m: usize,
    b: &W,
    bias: Option<&[f32]>,
    c: &mut [f32],
    ldc: usize,
) {
    if m == 0 {
        return;
    }
    let (k, n) = (b.k(), b.n());
    assert!(a.len() >= m * k && c.len() >= (m - 1) * ldc + n && ldc >= n);
    // SAFETY: the bounds were checked above; `c` is borrowed mutably.
    unsafe { b.multiply(isa, a.as_ptr(), k, m, 0..b.panels(), bias, c.as_mut_ptr(), ldc) }
}

/// A pointer that may cross threads: parallel tasks write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct Shared<T>(pub(crate) *mut T);
// SAFETY: every user writes disjoint regions and joins before the buffer is read.
unsafe impl<T> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The pointer (a method, so closures capture the wrapper and not its field).
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// `c = a · bᵀ (+ bias)` over the rayon pool: row blocks, and column groups when rows are few
/// (a short query still uses every core).
pub fn par_gemm<W: Weights>(
    isa: Isa,
    a: &[f32],
    m: usize,
    b: &W,
    bias: Option<&[f32]>,
    c: &mut [f32],
) {
    if m == 0 {
        return;
    }
    let (k, n) = (b.k(), b.n());
    assert!(a.len() >= m * k && c.len() >= m * n);
    let (a_ptr, c_ptr) = (Shared(a.as_ptr() as *mut f32), Shared(c.as_mut_ptr()));
    split(m, b.panels(), W::TILE_ROWS, |rows, panels| {
        // SAFETY: bounds checked above; tasks write disjoint (rows, panels) regions of `c`.
        unsafe {
            b.multiply(
                isa,
                a_ptr.get().add(rows.start * k),
                k,
                rows.len(),
                panels,
                bias,
                c_ptr.get().add(rows.start * n),
                n,
            )
        }
    });
}

/// Runs `task(rows, panels)` over the rayon pool for every block of a GEMM of `m` rows and
/// `panels` panels: row blocks (multiples of `tile_rows`), and column groups when rows are few,
/// so a short GEMM still uses every core and reads each panel from memory once.
fn split(
    m: usize,
    panels: usize,
    tile_rows: usize,
    task: impl Fn(Range<usize>, Range<usize>) + Sync,
) {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads().max(1);
    let row_block = if m <= FEW_ROWS {
        m
    } else {
        ROW_BLOCK.min(m.div_ceil(threads).next_multiple_of(tile_rows))
    };
    let row_blocks = m.div_ceil(row_block);
    let groups = (threads * 2).div_ceil(row_blocks).clamp(1, panels.max(1));
    let per_group = panels.div_ceil(groups);
    (0..row_blocks * groups).into_par_iter().for_each(|t| {
        let (block, group) = (t / groups, t % groups);
        let rows = block * row_block..m.min((block + 1) * row_block);
        let panels = group * per_group..panels.min((group + 1) * per_group);
        if !panels.is_empty() {
            task(rows, panels);
        }
    });
}

/// Rows per parallel task of a linear layer: enough work to amortise the hand-off, few enough
/// that the block of activations stays in L2 while every panel passes over it.
pub(crate) const ROW_BLOCK: usize = 96;

/// Up to this many rows a GEMM splits by columns only.
const FEW_ROWS: usize = 48;

/// Hidden activation of the feed-forward block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x · Φ(x)` with the exact normal CDF (BERT's "gelu").
    GeluErf,
    /// The tanh approximation ("gelu_new", "gelu_pytorch_tanh").
    GeluTanh,
    /// `max(x, 0)`.
    Relu,
}

impl Activation {
    /// Applies in place.
    pub fn apply(self, isa: Isa, x: &mut [f32]) {
        match isa {
            Isa::Portable => portable::activate(self, x),
            // SAFETY: the AVX2 and AVX-512 sets are only chosen when the CPU has them.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::activate(self, x) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx512::activate(self, x) },
        }
    }
}

/// `x = softmax(x · scale)` in place.
pub fn softmax(isa: Isa, x: &mut [f32], scale: f32) {
    match isa {
        Isa::Portable => portable::softmax(x, scale),
        // SAFETY: the AVX2 and AVX-512 sets are only chosen when the CPU has them.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::softmax(x, scale) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::softmax(x, scale) },
    }
}

/// `x = LayerNorm(x + residual) · gamma + beta` in place, one row.
pub fn add_layer_norm(
    isa: Isa,
    x: &mut [f32],
    residual: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    match isa {
        Isa::Portable => portable::add_layer_norm(x, residual, gamma, beta, eps),
        // SAFETY: the AVX2 and AVX-512 sets are only chosen when the CPU has them.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::add_layer_norm(x, residual, gamma, beta, eps) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::add_layer_norm(x, residual, gamma, beta, eps) },
    }
}

#[cfg(test)]
mod tests;
