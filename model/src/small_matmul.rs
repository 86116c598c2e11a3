//! `x · Wᵀ` for the few rows of a decode step, on burn-flex, without re-packing the weight.
//!
//! A decode step multiplies a handful of rows by every weight of the model. burn-flex hands that to
//! `gemm`, which packs (copies and transposes) the whole `[out, in]` weight on every call: at batch 8
//! on SmolLM2-135M most of a decode step's matmul time is packing, not arithmetic (BENCHMARKS.md). With
//! W in HF's `[out, in]` layout each output is a dot product of two contiguous rows, so this kernel
//! streams each weight row once from memory and reuses it for every input row from cache.
//!
//! It runs only where it was measured to win: burn-flex, f32, contiguous operands, at most
//! [`MAX_ROWS`] rows, a weight of at least [`MIN_WEIGHT_ELEMENTS`] elements, and an x86-64 CPU with
//! AVX2 and FMA. Anything else (autodiff tensors in the learner, CUDA, other CPUs) returns `None`
//! and the caller takes burn's matmul. Where the CPU has AVX-512F, a 16-lane kernel runs instead of
//! the 8-lane one: twice the arithmetic per instruction, registers enough for four input rows per
//! weight load, and a prefetch of the next block's weight rows while the current one computes, so
//! the stream from memory overlaps the arithmetic (BENCHMARKS.md, session 11).
//!
//! From [`LANES_MIN_ROWS`] rows on CPUs with AVX-512F the kernel turns around: the input rows go in
//! the lanes of the registers and each weight element is broadcast into all of them, so the weight
//! still streams once, in its `[out, in]` layout, with no horizontal sums (`avx512::rows_in_lanes`).
//! gemm, which packs the whole weight on every call, reached 160-180 GFLOP/s at 64 rows even on an
//! `[in, out]` copy (which session 12's actors kept of every layer weight); this kernel 230-246
//! (BENCHMARKS.md, session 13). Weights too small for this module (the tiny default model's) keep
//! that copy in an actor ([`InOutWeight`]): in cache, gemm packs it cheaply.
//!
//! Each kernel accumulates an output element in the same order whatever the row count, the row's
//! position and the thread count, so within one kernel's range of row counts (AVX2: 2 to
//! [`MAX_ROWS`]; AVX-512: 2 to 4, and [`LANES_MIN_ROWS`] to [`MAX_ROWS`]) a row's result does not
//! depend on what it is batched with. The kernels sum in different orders, so across those ranges
//! a row's last bits can change (as they did with gemm on session 12's `[in, out]` copies).

use std::any::Any;

use burn::backend::flex::FlexTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};

/// The fewest rows this module takes. A single row takes its `gemv` only where the CPU has
/// AVX-512F: burn-flex then runs gemm's AVX-512 gemv, which streams slower (SmolLM2 decode at batch
/// 1, one thread: 21.2 ms per step, against 16.5 with gemm's AVX2 gemv and 17.3 with `gemv`).
/// Without AVX-512 a single row takes burn's matmul (gemm's AVX2 gemv), which streams about 1.5x
/// faster than the AVX2 kernel here (LM head at one row: 5.5 against 8.5 ms).
pub const MIN_ROWS: usize = 1;
/// Row counts above this take burn's matmul (gemm): prefill, mostly. At 64 rows the lanes kernel
/// still beat gemm by a third (session 13); larger decode batches have not been measured.
pub const MAX_ROWS: usize = 64;
/// Smaller weights take burn's matmul: the tiny default model's layers are per-op overhead bound,
/// and its rollouts do not depend on this module.
pub const MIN_WEIGHT_ELEMENTS: usize = 1 << 18;

/// `x [m, k] · w[n, k]ᵀ -> [m, n]`, or `None` where this kernel does not apply (see the module docs).
pub fn matmul_wt<B: Backend>(x: &Tensor<B, 2>, w: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    let [m, k] = x.dims();
    let [n, k_w] = w.dims();
    if !(MIN_ROWS..=MAX_ROWS).contains(&m)
        || (m == 1 && !avx512_available())
        || k != k_w
        || n * k < MIN_WEIGHT_ELEMENTS
        || !simd_available()
    {
        return None;
    }
    let (w_flex, x_flex) = (as_flex(w)?, as_flex(x)?);
    let (w_data, x_data) = (f32_contiguous(&w_flex)?, f32_contiguous(&x_flex)?);
    let mut out = vec![0.0f32; m * n];
    matmul_wt_slices(x_data, w_data, &mut out, m, n, k);
    Some(Tensor::from_data(TensorData::new(out, [m, n]), &x.device()))
}

/// From this many rows the AVX-512 kernel puts the rows in its lanes (`avx512::rows_in_lanes`);
/// fewer take the kernel that reads each weight row as vectors.
pub const LANES_MIN_ROWS: usize = 5;

/// Row counts above this take [`matmul_in_out`] where the weight has an `[in, out]` copy: an
/// actor's weights smaller than [`MIN_WEIGHT_ELEMENTS`], which this module's kernels do not take
/// (see [`crate::transformer::Transformer::with_decode_weights`]).
pub const IN_OUT_MIN_ROWS: usize = 4;

/// A small linear weight transposed to `[in, out]` (contiguous, burn-flex): see
/// [`crate::transformer::Transformer::with_decode_weights`].
#[derive(Clone, Debug)]
pub struct InOutWeight(FlexTensor);

impl InOutWeight {
    /// `w` (`[out, in]`) transposed into a new buffer; `None` unless `w` is an f32 burn-flex tensor.
    pub fn of<B: Backend>(w: &Tensor<B, 2>) -> Option<Self> {
        let w = as_flex(w)?;
        if w.dtype() != DType::F32 {
            return None;
        }
        let t = Tensor::<crate::backend::Cpu, 2>::from_primitive(TensorPrimitive::Float(w));
        let [out, inp] = t.dims();
        let data: Vec<f32> = t.transpose().into_data().into_vec().ok()?;
        Some(Self(FlexTensor::from_data(TensorData::new(
            data,
            [inp, out],
        ))))
    }
}

/// `x [m, k] · w_in_out [k, n]` by burn-flex's matmul, for more than [`IN_OUT_MIN_ROWS`] rows of
/// a burn-flex f32 `x`; `None` otherwise (the caller takes the `[out, in]` path).
pub fn matmul_in_out<B: Backend>(x: &Tensor<B, 2>, w: &InOutWeight) -> Option<Tensor<B, 2>> {
    let [m, k] = x.dims();
    if m <= IN_OUT_MIN_ROWS || w.0.layout().shape()[0] != k {
        return None;
    }
    let x = as_flex(x)?;
    if x.dtype() != DType::F32 {
        return None;
    }
    let y: Box<dyn Any> = Box::new(crate::fused_grad::flex_matmul(x, w.0.clone()));
    let y = y.downcast::<B::FloatTensorPrimitive>().ok()?;
    Some(Tensor::from_primitive(TensorPrimitive::Float(*y)))
}

/// The tensor as a burn-flex tensor (sharing its buffer), if it is one: `None` on other backends,
/// for autodiff tensors and for quantized values.
pub(crate) fn as_flex<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Option<FlexTensor> {
    let TensorPrimitive::Float(p) = t.clone().into_primitive() else {
        return None;
    };
    let p: Box<dyn Any> = Box::new(p);
    p.downcast::<FlexTensor>().ok().map(|t| *t)
}

pub(crate) fn f32_contiguous(t: &FlexTensor) -> Option<&[f32]> {
    if t.dtype() != DType::F32 || !t.is_contiguous() {
        return None;
    }
    t.as_slice::<f32>()
}

pub(crate) fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The SIMD kernels this module has, widest last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    /// 8 lanes: four weight rows against two input rows at a time.
    Avx2,
    /// 16 lanes: four weight rows against four input rows at a time.
    Avx512,
}

impl Kernel {
    /// The widest kernel this CPU runs (`simd_available()` must hold).
    fn best() -> Kernel {
        if avx512_available() {
            Kernel::Avx512
        } else {
            Kernel::Avx2
        }
    }
}

/// `out[m, n] = x[m, k] · w[n, k]ᵀ` on slices, with the widest kernel this CPU runs.
/// Panics if the slices do not have the stated sizes, `m` exceeds [`MAX_ROWS`] or the CPU lacks
/// AVX2/FMA (`matmul_wt` checks all three).
fn matmul_wt_slices(x: &[f32], w: &[f32], out: &mut [f32], m: usize, n: usize, k: usize) {
    matmul_wt_slices_with(Kernel::best(), x, w, out, m, n, k);
}

/// [`matmul_wt_slices`] with a given kernel, split over output columns across rayon's threads.
fn matmul_wt_slices_with(
    kernel: Kernel,
    x: &[f32],
    w: &[f32],
    out: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
) {
    assert!(m <= MAX_ROWS, "at most MAX_ROWS rows");
    assert_eq!(x.len(), m * k, "x is not [m, k]");
    assert_eq!(w.len(), n * k, "w is not [n, k]");
    assert_eq!(out.len(), m * n, "out is not [m, n]");
    let supported = match kernel {
        Kernel::Avx2 => simd_available(),
        Kernel::Avx512 => simd_available() && avx512_available(),
    };
    assert!(supported, "this CPU cannot run the {kernel:?} kernel");
    let threads = rayon::current_num_threads().max(1);
    // Column blocks of at least 64 weight rows, so a thread's share is worth its scheduling.
    let per_thread = n.div_ceil(threads).max(64).next_multiple_of(COLS);
    if per_thread >= n {
        columns(kernel, x, w, out, m, k, 0, n);
        return;
    }
    let blocks: Vec<(usize, Vec<f32>)> = {
        use rayon::prelude::*;
        (0..n)
            .step_by(per_thread)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|start| {
                let end = (start + per_thread).min(n);
                let mut block = vec![0.0f32; m * (end - start)];
                columns(kernel, x, w, &mut block, m, k, start, end);
                (start, block)
            })
            .collect()
    };
    for (start, block) in blocks {
        let width = block.len() / m;
        for r in 0..m {
            out[r * n + start..r * n + start + width]
                .copy_from_slice(&block[r * width..(r + 1) * width]);
        }
    }
}

/// Weight rows per block: four rows and two input rows keep 8 accumulators, 4 weight vectors and an
/// input vector in the 16 AVX2 registers.
const COLS: usize = 4;

/// Output columns `start..end` into `out` (`[m, end - start]`).
#[allow(clippy::too_many_arguments)]
fn columns(
    kernel: Kernel,
    x: &[f32],
    w: &[f32],
    out: &mut [f32],
    m: usize,
    k: usize,
    start: usize,
    end: usize,
) {
    #[cfg(target_arch = "x86_64")]
    match kernel {
        // SAFETY: `matmul_wt_slices_with` checked that the CPU runs `kernel`.
        Kernel::Avx512 if m == 1 => unsafe { avx512::gemv(x, w, out, k, start, end) },
        // SAFETY: as above.
        Kernel::Avx512 if m >= LANES_MIN_ROWS => unsafe {
            avx512::rows_in_lanes(x, w, out, m, k, start, end)
        },
        // SAFETY: as above.
        Kernel::Avx512 => unsafe { avx512::columns(x, w, out, m, k, start, end) },
        // SAFETY: as above.
        Kernel::Avx2 => unsafe { avx2::columns(x, w, out, m, k, start, end) },
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no {kernel:?} kernel off x86-64")
}

/// Whether the 16-lane kernel runs (x86-64 with AVX-512F): twice the lanes of the AVX2 kernel and
/// twice the registers, so four input rows share each weight load.
pub(crate) fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{COLS, MAX_ROWS};

    /// Depth of one tile, in floats, for `m` input rows: a block's four weight rows are walked a
    /// tile at a time, and each tile serves every input row before the next is read (as in the
    /// AVX2 kernel). The accumulators carry across tiles, so the depth changes no result. Measured
    /// on SmolLM2 (BENCHMARKS.md, session 11): 128 is best at batch 8 and 1024 at batch 32 (decode
    /// step 92.5 -> 85.1 ms against one depth of 256 for both; batch 8 32.9 -> 30.5 ms, means of two).
    fn tile(m: usize) -> usize {
        if m <= 8 { 128 } else { 1024 }
    }

    /// How many blocks of four weight rows ahead the kernel prefetches.
    const PREFETCH_BLOCKS: usize = 1;

    /// See `super::columns`. Safety: the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn columns(
        x: &[f32],
        w: &[f32],
        out: &mut [f32],
        m: usize,
        k: usize,
        start: usize,
        end: usize,
    ) {
        debug_assert!(m <= MAX_ROWS);
        let width = end - start;
        let lanes = k / 16 * 16;
        let mut acc = [[_mm512_setzero_ps(); COLS]; MAX_ROWS];
        let mut j = start;
        while j < end {
            let cols = (end - j).min(COLS);
            let w_row = |row: usize| &w[row * k..(row + 1) * k];
            // Short blocks repeat their last weight row; the repeats are computed and dropped.
            let w_rows = [0, 1, 2, 3].map(|c| w_row(j + c.min(cols - 1)));
            // The weight rows PREFETCH_BLOCKS blocks ahead (the last row past the end): the first
            // input rows' pass over each tile fetches them a line per step, so the stream from
            // memory overlaps the arithmetic (a bulk prefetch per tile measured slower).
            let ahead = [0, 1, 2, 3].map(|c| w_row((j + PREFETCH_BLOCKS * COLS + c).min(end - 1)));
            for a in acc.iter_mut().take(m) {
                *a = [_mm512_setzero_ps(); COLS];
            }
            let mut i0 = 0;
            while i0 < lanes {
                let i1 = (i0 + tile(m)).min(lanes);
                let mut r = 0;
                while r + 4 <= m {
                    let rows = [
                        &x[r * k..],
                        &x[(r + 1) * k..],
                        &x[(r + 2) * k..],
                        &x[(r + 3) * k..],
                    ];
                    let quad: &mut [[__m512; COLS]; 4] =
                        (&mut acc[r..r + 4]).try_into().expect("four rows");
                    let prefetch = (r == 0).then_some(ahead);
                    // SAFETY: i1 <= lanes <= k, the length of every row slice.
                    unsafe { tile4(rows, w_rows, prefetch, i0, i1, quad) };
                    r += 4;
                }
                while r < m {
                    let prefetch = (r == 0).then_some(ahead);
                    // SAFETY: as above.
                    unsafe { tile1(&x[r * k..], w_rows, prefetch, i0, i1, &mut acc[r]) };
                    r += 1;
                }
                i0 = i1;
            }
            for (r, a) in acc.iter().enumerate().take(m) {
                let x_row = &x[r * k..(r + 1) * k];
                for c in 0..cols {
                    let mut s = _mm512_reduce_add_ps(a[c]);
                    for t in lanes..k {
                        s += x_row[t] * w_rows[c][t];
                    }
                    out[r * width + (j - start + c)] = s;
                }
            }
            j += cols;
        }
    }

    /// Rows per lane group of [`rows_in_lanes`]: one 16-lane register holds one depth index of 16
    /// input rows.
    const LANE_ROWS: usize = 16;
    /// Output columns gathered per block before they are written out row by row: writing each
    /// tile's few columns straight into the `[m, n]` output touches `m` lines `n` floats apart, which
    /// at SmolLM2's widths fall into a handful of L1 sets (the LM head, 64 rows: 55 against 246
    /// GFLOP/s with the gather).
    const OUT_BLOCK: usize = 96;

    /// `m` input rows (at least `super::LANES_MIN_ROWS`, at most `MAX_ROWS`) with the rows in the
    /// lanes: the input is transposed once into `[k, lanes]`, and each weight element, read from
    /// its `[out, in]` row, is broadcast and multiplied into every row at once, so the weight streams
    /// from memory once per call, in its own layout, with no packing (gemm packs every weight on
    /// every call; on an `[in, out]` copy it reached 160-180 GFLOP/s at 64 rows, this kernel
    /// 230-246, measured in BENCHMARKS.md). Each output is one FMA chain over the depth in order,
    /// so a row's result does not depend on the other rows, their number or its position.
    /// Safety: the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn rows_in_lanes(
        x: &[f32],
        w: &[f32],
        out: &mut [f32],
        m: usize,
        k: usize,
        start: usize,
        end: usize,
    ) {
        debug_assert!((1..=MAX_ROWS).contains(&m));
        // Accumulators: groups x columns, 24 of the 32 registers, the rest for the input vectors
        // and the broadcast weight.
        // SAFETY: the caller's contract, passed on.
        unsafe {
            match m.div_ceil(LANE_ROWS) {
                1 => lanes::<1, 12>(x, w, out, m, k, start, end),
                2 => lanes::<2, 12>(x, w, out, m, k, start, end),
                3 => lanes::<3, 8>(x, w, out, m, k, start, end),
                _ => lanes::<4, 6>(x, w, out, m, k, start, end),
            }
        }
    }

    /// [`rows_in_lanes`] with `G` lane groups and `C` columns per tile.
    /// Safety: the CPU has AVX-512F; `m <= 16 * G`.
    #[target_feature(enable = "avx512f")]
    unsafe fn lanes<const G: usize, const C: usize>(
        x: &[f32],
        w: &[f32],
        out: &mut [f32],
        m: usize,
        k: usize,
        start: usize,
        end: usize,
    ) {
        let width = G * LANE_ROWS;
        let mut xt = vec![0.0f32; k * width];
        for (r, row) in x.chunks_exact(k).take(m).enumerate() {
            for (t, &v) in row.iter().enumerate() {
                xt[t * width + r] = v;
            }
        }
        let mut yt = vec![0.0f32; OUT_BLOCK * width];
        let mut j0 = start;
        while j0 < end {
            let j1 = (j0 + OUT_BLOCK).min(end);
            let mut j = j0;
            while j < j1 {
                let at = (j - j0) * width;
                // SAFETY: columns j.. are rows of `w` below `end`; `yt` holds OUT_BLOCK columns.
                if j + C <= j1 {
                    unsafe { lanes_tile::<G, C>(&xt, w, k, j, end, &mut yt[at..]) };
                    j += C;
                } else {
                    unsafe { lanes_tile::<G, 1>(&xt, w, k, j, end, &mut yt[at..]) };
                    j += 1;
                }
            }
            for r in 0..m {
                let row = &mut out[r * (end - start) + (j0 - start)..][..j1 - j0];
                for (c, o) in row.iter_mut().enumerate() {
                    *o = yt[c * width + r];
                }
            }
            j0 = j1;
        }
    }

    /// Columns `col..col + C` for all lanes: `yt[c * 16G + lane]`. The next tile's weight rows are
    /// prefetched a line at a time as this one walks the depth.
    /// Safety: the CPU has AVX-512F; `col + C <= end <= w.len() / k`; `xt` is `[k, 16G]`;
    /// `yt` holds `C * 16G` floats.
    #[target_feature(enable = "avx512f")]
    unsafe fn lanes_tile<const G: usize, const C: usize>(
        xt: &[f32],
        w: &[f32],
        k: usize,
        col: usize,
        end: usize,
        yt: &mut [f32],
    ) {
        debug_assert!(xt.len() >= k * G * LANE_ROWS && yt.len() >= C * G * LANE_ROWS);
        let mut acc = [[_mm512_setzero_ps(); G]; C];
        // SAFETY (this block): rows col + c < end and (col + C + c).min(end - 1) < end are rows of
        // `w`, each k floats; t < k; xt holds k * 16G floats; yt holds C * 16G.
        unsafe {
            let rows: [*const f32; C] = std::array::from_fn(|c| w.as_ptr().add((col + c) * k));
            let ahead: [*const f32; C] =
                std::array::from_fn(|c| w.as_ptr().add((col + C + c).min(end - 1) * k));
            let xp = xt.as_ptr();
            for t in 0..k {
                if t % 16 == 0 {
                    for row in ahead {
                        _mm_prefetch::<_MM_HINT_T0>(row.add(t).cast());
                    }
                }
                let xv: [__m512; G] =
                    std::array::from_fn(|g| _mm512_loadu_ps(xp.add((t * G + g) * LANE_ROWS)));
                for c in 0..C {
                    let b = _mm512_set1_ps(*rows[c].add(t));
                    for g in 0..G {
                        acc[c][g] = _mm512_fmadd_ps(xv[g], b, acc[c][g]);
                    }
                }
            }
            for (c, a) in acc.iter().enumerate() {
                for (g, v) in a.iter().enumerate() {
                    _mm512_storeu_ps(yt.as_mut_ptr().add((c * G + g) * LANE_ROWS), *v);
                }
            }
        }
    }

    /// How many weight rows ahead [`gemv`] prefetches.
    const GEMV_PREFETCH_ROWS: usize = 4;

    /// One input row (`m == 1`): each weight row is one sequential stream, read with eight
    /// independent accumulators (the memory stream, not the arithmetic, bounds a single row).
    /// Safety: the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gemv(
        x: &[f32],
        w: &[f32],
        out: &mut [f32],
        k: usize,
        start: usize,
        end: usize,
    ) {
        const WIDE: usize = 8 * 16;
        let wide = k / WIDE * WIDE;
        let lanes = k / 16 * 16;
        for (o, j) in out.iter_mut().zip(start..end) {
            let row = &w[j * k..(j + 1) * k];
            let mut a = [_mm512_setzero_ps(); 8];
            let ahead = (j + GEMV_PREFETCH_ROWS).min(end - 1) * k;
            let mut i = 0;
            while i < wide {
                for line in 0..8 {
                    // SAFETY: ahead + i + 16 * line < (end - 1) * k + k <= w.len().
                    unsafe {
                        _mm_prefetch::<_MM_HINT_T0>(w.as_ptr().add(ahead + i + 16 * line).cast())
                    };
                }
                for (u, acc) in a.iter_mut().enumerate() {
                    // SAFETY: i + WIDE <= wide <= k, the length of `row` and `x`.
                    unsafe {
                        let t = i + 16 * u;
                        *acc = _mm512_fmadd_ps(
                            _mm512_loadu_ps(x.as_ptr().add(t)),
                            _mm512_loadu_ps(row.as_ptr().add(t)),
                            *acc,
                        );
                    }
                }
                i += WIDE;
            }
            while i < lanes {
                // SAFETY: i + 16 <= lanes <= k.
                unsafe {
                    a[0] = _mm512_fmadd_ps(
                        _mm512_loadu_ps(x.as_ptr().add(i)),
                        _mm512_loadu_ps(row.as_ptr().add(i)),
                        a[0],
                    );
                }
                i += 16;
            }
            let pairs = [
                _mm512_add_ps(a[0], a[1]),
                _mm512_add_ps(a[2], a[3]),
                _mm512_add_ps(a[4], a[5]),
                _mm512_add_ps(a[6], a[7]),
            ];
            let sum = _mm512_add_ps(
                _mm512_add_ps(pairs[0], pairs[1]),
                _mm512_add_ps(pairs[2], pairs[3]),
            );
            let mut s = _mm512_reduce_add_ps(sum);
            for t in lanes..k {
                s += x[t] * row[t];
            }
            *o = s;
        }
    }

    /// Lanes `i0..i1` of four input rows against the block's four weight rows: 16 accumulators,
    /// each weight vector loaded once for the four rows.
    /// Safety: `i1` is at most the length of every row slice, and a multiple of 16 past `i0`.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile4(
        x: [&[f32]; 4],
        w: [&[f32]; COLS],
        prefetch: Option<[&[f32]; COLS]>,
        i0: usize,
        i1: usize,
        acc: &mut [[__m512; COLS]; 4],
    ) {
        let mut a = *acc;
        let mut i = i0;
        while i < i1 {
            // SAFETY: i + 16 <= i1 <= every slice's length (the caller's contract).
            unsafe {
                if let Some(ahead) = prefetch {
                    for row in ahead {
                        _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().add(i).cast());
                    }
                }
                let v = [
                    _mm512_loadu_ps(w[0].as_ptr().add(i)),
                    _mm512_loadu_ps(w[1].as_ptr().add(i)),
                    _mm512_loadu_ps(w[2].as_ptr().add(i)),
                    _mm512_loadu_ps(w[3].as_ptr().add(i)),
                ];
                for r in 0..4 {
                    let u = _mm512_loadu_ps(x[r].as_ptr().add(i));
                    for c in 0..COLS {
                        a[r][c] = _mm512_fmadd_ps(u, v[c], a[r][c]);
                    }
                }
            }
            i += 16;
        }
        *acc = a;
    }

    /// [`tile4`] for one input row: the same FMA chain per (row, column), so the result does not
    /// depend on how the rows were grouped.
    /// Safety: as [`tile4`].
    #[target_feature(enable = "avx512f")]
    unsafe fn tile1(
        x0: &[f32],
        w: [&[f32]; COLS],
        prefetch: Option<[&[f32]; COLS]>,
        i0: usize,
        i1: usize,
        acc0: &mut [__m512; COLS],
    ) {
        let mut a = *acc0;
        let mut i = i0;
        while i < i1 {
            // SAFETY: as in `tile4`.
            unsafe {
                if let Some(ahead) = prefetch {
                    for row in ahead {
                        _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().add(i).cast());
                    }
                }
                let u = _mm512_loadu_ps(x0.as_ptr().add(i));
                for c in 0..COLS {
                    a[c] = _mm512_fmadd_ps(u, _mm512_loadu_ps(w[c].as_ptr().add(i)), a[c]);
                }
            }
            i += 16;
        }
        *acc0 = a;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{COLS, MAX_ROWS};

    /// Depth of one tile, in floats. A block's four weight rows are walked a tile at a time, and each
    /// tile serves every input row before the next is read (SmolLM2, batch 8, one thread: 70 ms per
    /// decode step against 75 ms with one pass per row pair over the whole depth). Software
    /// prefetching of the tiles ahead, tried on top, measured no faster.
    const TILE: usize = 128;

    /// See `super::columns`. Safety: the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn columns(
        x: &[f32],
        w: &[f32],
        out: &mut [f32],
        m: usize,
        k: usize,
        start: usize,
        end: usize,
    ) {
        debug_assert!(m <= MAX_ROWS);
        let width = end - start;
        let lanes = k / 8 * 8;
        let mut acc = [[_mm256_setzero_ps(); COLS]; MAX_ROWS];
        let mut j = start;
        while j < end {
            let cols = (end - j).min(COLS);
            // Short blocks repeat their last weight row; the repeats are computed and dropped.
            let w_row = |c: usize| &w[(j + c.min(cols - 1)) * k..(j + c.min(cols - 1) + 1) * k];
            let w_rows = [w_row(0), w_row(1), w_row(2), w_row(3)];
            for a in acc.iter_mut().take(m) {
                *a = [_mm256_setzero_ps(); COLS];
            }
            let mut i0 = 0;
            while i0 < lanes {
                let i1 = (i0 + TILE).min(lanes);
                let mut r = 0;
                while r + 2 <= m {
                    let (a, b) = acc.split_at_mut(r + 1);
                    // SAFETY: i1 <= lanes <= k, the length of every row slice.
                    unsafe {
                        tile2(
                            &x[r * k..],
                            &x[(r + 1) * k..],
                            w_rows,
                            i0,
                            i1,
                            &mut a[r],
                            &mut b[0],
                        )
                    };
                    r += 2;
                }
                if r < m {
                    // SAFETY: as above.
                    unsafe { tile1(&x[r * k..], w_rows, i0, i1, &mut acc[r]) };
                }
                i0 = i1;
            }
            for (r, a) in acc.iter().enumerate().take(m) {
                let x_row = &x[r * k..(r + 1) * k];
                for c in 0..cols {
                    let mut s = hsum(a[c]);
                    for t in lanes..k {
                        s += x_row[t] * w_rows[c][t];
                    }
                    out[r * width + (j - start + c)] = s;
                }
            }
            j += cols;
        }
    }

    /// Lanes `i0..i1` of two input rows against the block's four weight rows.
    /// Safety: `i1` is at most the length of every row slice, and a multiple of 8 past `i0`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile2(
        x0: &[f32],
        x1: &[f32],
        w: [&[f32]; COLS],
        i0: usize,
        i1: usize,
        acc0: &mut [__m256; COLS],
        acc1: &mut [__m256; COLS],
    ) {
        let [mut a00, mut a01, mut a02, mut a03] = *acc0;
        let [mut a10, mut a11, mut a12, mut a13] = *acc1;
        let mut i = i0;
        while i < i1 {
            // SAFETY: i + 8 <= i1 <= every slice's length (the caller's contract).
            unsafe {
                let v0 = _mm256_loadu_ps(w[0].as_ptr().add(i));
                let v1 = _mm256_loadu_ps(w[1].as_ptr().add(i));
                let v2 = _mm256_loadu_ps(w[2].as_ptr().add(i));
                let v3 = _mm256_loadu_ps(w[3].as_ptr().add(i));
                let u = _mm256_loadu_ps(x0.as_ptr().add(i));
                a00 = _mm256_fmadd_ps(u, v0, a00);
                a01 = _mm256_fmadd_ps(u, v1, a01);
                a02 = _mm256_fmadd_ps(u, v2, a02);
                a03 = _mm256_fmadd_ps(u, v3, a03);
                let u = _mm256_loadu_ps(x1.as_ptr().add(i));
                a10 = _mm256_fmadd_ps(u, v0, a10);
                a11 = _mm256_fmadd_ps(u, v1, a11);
                a12 = _mm256_fmadd_ps(u, v2, a12);
                a13 = _mm256_fmadd_ps(u, v3, a13);
            }
            i += 8;
        }
        *acc0 = [a00, a01, a02, a03];
        *acc1 = [a10, a11, a12, a13];
    }

    /// [`tile2`] for one input row: the same FMA chain per (row, column), so the result does not
    /// depend on whether the row was paired.
    /// Safety: as [`tile2`].
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile1(
        x0: &[f32],
        w: [&[f32]; COLS],
        i0: usize,
        i1: usize,
        acc0: &mut [__m256; COLS],
    ) {
        let [mut a00, mut a01, mut a02, mut a03] = *acc0;
        let mut i = i0;
        while i < i1 {
            // SAFETY: as in `tile2`.
            unsafe {
                let u = _mm256_loadu_ps(x0.as_ptr().add(i));
                a00 = _mm256_fmadd_ps(u, _mm256_loadu_ps(w[0].as_ptr().add(i)), a00);
                a01 = _mm256_fmadd_ps(u, _mm256_loadu_ps(w[1].as_ptr().add(i)), a01);
                a02 = _mm256_fmadd_ps(u, _mm256_loadu_ps(w[2].as_ptr().add(i)), a02);
                a03 = _mm256_fmadd_ps(u, _mm256_loadu_ps(w[3].as_ptr().add(i)), a03);
            }
            i += 8;
        }
        *acc0 = [a00, a01, a02, a03];
    }

    /// Sum of the 8 lanes, in a fixed order.
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn reference(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut y = vec![0.0f64; m * n];
        for r in 0..m {
            for c in 0..n {
                y[r * n + c] = (0..k)
                    .map(|t| f64::from(x[r * k + t]) * f64::from(w[c * k + t]))
                    .sum();
            }
        }
        y
    }

    /// A cheap deterministic pseudo-random fill in [-1, 1).
    pub(crate) fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Every kernel this CPU runs (on a CPU with AVX-512 both are tested).
    fn kernels() -> Vec<Kernel> {
        let mut k = vec![];
        if simd_available() {
            k.push(Kernel::Avx2);
            if avx512_available() {
                k.push(Kernel::Avx512);
            }
        }
        k
    }

    #[test]
    fn matches_an_f64_reference_on_awkward_shapes() {
        // Rows, columns and depth that are not multiples of the block sizes, of the lanes or of
        // the tile (600 = two AVX-512 tiles, a short one and a scalar tail).
        for kernel in kernels() {
            for &(m, n, k) in &[
                (1, 1, 1),
                (1, 5, 7),
                (3, 9, 17),
                (2, 4, 8),
                (7, 130, 33),
                (9, 13, 600),
                (1, 9, 600),
                (32, 67, 576),
                (MAX_ROWS, 70, 40),
                // The lanes kernel's groups (16, 17, 40 rows), tails of its 12- and 8-column tiles,
                // and more columns than one output block (96).
                (16, 25, 16),
                (17, 200, 50),
                (40, 97, 19),
                (MAX_ROWS, 301, 3),
            ] {
                let x = values(m * k, 1);
                let w = values(n * k, 2);
                let mut y = vec![0.0; m * n];
                matmul_wt_slices_with(kernel, &x, &w, &mut y, m, n, k);
                for (got, want) in y.iter().zip(reference(&x, &w, m, n, k)) {
                    assert!(
                        (f64::from(*got) - want).abs() < 1e-4 * (k as f64).sqrt(),
                        "{kernel:?} {m}x{n}x{k}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_row_does_not_depend_on_its_batch() {
        // Within one kernel's range of row counts a row's result is bit-identical whatever its
        // batch peers and position: 9 rows against 5 (AVX-512's lanes kernel from LANES_MIN_ROWS,
        // AVX2's one kernel throughout), and 2 against 3 (below LANES_MIN_ROWS). A single row takes
        // another path (`gemv`).
        let (n, k) = (300, 300);
        let w = values(n * k, 3);
        let x = values(9 * k, 4);
        let run = |kernel, rows: &[usize]| {
            let xs: Vec<f32> = rows
                .iter()
                .flat_map(|&i| x[i * k..(i + 1) * k].iter().copied())
                .collect();
            let mut y = vec![0.0; rows.len() * n];
            matmul_wt_slices_with(kernel, &xs, &w, &mut y, rows.len(), n, k);
            y
        };
        for kernel in kernels() {
            let all = run(kernel, &(0..9).collect::<Vec<_>>());
            for r in 0..9 {
                let five = run(
                    kernel,
                    &[(r + 1) % 9, (r + 4) % 9, (r + 7) % 9, r, (r + 2) % 9],
                );
                assert_eq!(
                    five[3 * n..4 * n],
                    all[r * n..(r + 1) * n],
                    "{kernel:?} row {r}"
                );
                let other = (r + 4) % 9;
                let two = run(kernel, &[r, other]);
                let three = run(kernel, &[other, (r + 2) % 9, r]);
                assert_eq!(two[..n], three[2 * n..], "{kernel:?} row {r}, 2 vs 3 rows");
            }
        }
    }

    #[test]
    fn tensors_take_the_kernel_only_where_it_applies() {
        use crate::backend::{Cpu, CpuDevice};
        let device = CpuDevice::default();
        let (n, k) = (1024, 256);
        let w = Tensor::<Cpu, 2>::from_data(TensorData::new(values(n * k, 5), [n, k]), &device);
        let x = Tensor::<Cpu, 2>::from_data(TensorData::new(values(4 * k, 6), [4, k]), &device);
        let want = x.clone().matmul(w.clone().transpose()).into_data();
        match matmul_wt(&x, &w) {
            Some(got) => got
                .into_data()
                .assert_approx_eq::<f32>(&want, burn::tensor::Tolerance::absolute(1e-4)),
            None => assert!(!simd_available()),
        }
        // One row: `gemv` with AVX-512, else burn's matmul.
        let one = Tensor::<Cpu, 2>::from_data(TensorData::new(values(k, 7), [1, k]), &device);
        assert_eq!(matmul_wt(&one, &w).is_some(), avx512_available());
        // Too many rows, and too small a weight: burn's matmul.
        let many = Tensor::<Cpu, 2>::zeros([MAX_ROWS + 1, k], &device);
        assert!(matmul_wt(&many, &w).is_none());
        let small = Tensor::<Cpu, 2>::zeros([8, k], &device);
        assert!(matmul_wt(&x, &small).is_none());
    }

    #[test]
    fn the_in_out_copy_gives_the_same_product_above_its_row_count() {
        use crate::backend::{Cpu, CpuDevice};
        let device = CpuDevice::default();
        let (n, k) = (70, 33);
        let w = Tensor::<Cpu, 2>::from_data(TensorData::new(values(n * k, 8), [n, k]), &device);
        let w_in_out = InOutWeight::of(&w).expect("an f32 burn-flex weight");
        for m in [IN_OUT_MIN_ROWS + 1, 64, 300] {
            let x = Tensor::<Cpu, 2>::from_data(TensorData::new(values(m * k, 9), [m, k]), &device);
            let want = reference(
                &x.to_data().to_vec::<f32>().unwrap(),
                &w.to_data().to_vec::<f32>().unwrap(),
                m,
                n,
                k,
            );
            let got: Vec<f32> = matmul_in_out(&x, &w_in_out)
                .expect("more rows than IN_OUT_MIN_ROWS")
                .into_data()
                .to_vec()
                .unwrap();
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (f64::from(*g) - w).abs() < 1e-4 * (k as f64).sqrt(),
                    "{m} rows: {g} vs {w}"
                );
            }
        }
        // Up to IN_OUT_MIN_ROWS rows, and a mismatched depth: the caller's `[out, in]` path.
        let few = Tensor::<Cpu, 2>::zeros([IN_OUT_MIN_ROWS, k], &device);
        assert!(matmul_in_out(&few, &w_in_out).is_none());
        let deeper = Tensor::<Cpu, 2>::zeros([16, k + 1], &device);
        assert!(matmul_in_out(&deeper, &w_in_out).is_none());
    }
}
