//! `x · Wᵀ` with W in HF's `[out, in]` layout: the decode-step kernels for the few rows of a decode
//! step on burn-flex (without re-packing the weight; the SIMD bodies are in `x86::{avx2, avx512}`),
//! gemm on an actor's [`DecodeLayout`] copy of a small weight, and the learner's op on
//! `Autodiff<burn-flex>` whose weight gradient keeps the `[out, in]` layout ([`linear_autodiff`]).
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
//! and `kernels::linear` takes the next path. Where the CPU has AVX-512F, a 16-lane kernel runs instead of
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
//! that copy in an actor ([`DecodeLayout`]): in cache, gemm packs it cheaply.
//!
//! Each kernel accumulates an output element in the same order whatever the row count, the row's
//! position and the thread count, so within one kernel's range of row counts (AVX2: 2 to
//! [`MAX_ROWS`]; AVX-512: 2 to 4, and [`LANES_MIN_ROWS`] to [`MAX_ROWS`]) a row's result does not
//! depend on what it is batched with. The kernels sum in different orders, so across those ranges

use std::any::{Any, TypeId};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};

use super::autodiff::{Ad, Operand, into_tensor, record};
use super::flex::{
    as_flex, avx512_available, f32_contiguous, flex_matmul, flex_transpose, simd_available,
};
pub(crate) use super::x86::MAX_ROWS;
use super::x86::{self, COLS};
use crate::backend::Cpu;

/// The fewest rows this module takes. A single row takes its `gemv` only where the CPU has
/// AVX-512F: burn-flex then runs gemm's AVX-512 gemv, which streams slower (SmolLM2 decode at batch
/// 1, one thread: 21.2 ms per step, against 16.5 with gemm's AVX2 gemv and 17.3 with `gemv`).
/// Without AVX-512 a single row takes burn's matmul (gemm's AVX2 gemv), which streams about 1.5x
/// faster than the AVX2 kernel here (LM head at one row: 5.5 against 8.5 ms).
pub(crate) const MIN_ROWS: usize = 1;
/// Smaller weights take burn's matmul: the tiny default model's layers are per-op overhead bound,
/// and its rollouts do not depend on this module.
pub(crate) const MIN_WEIGHT_ELEMENTS: usize = 1 << 18;

/// `x [m, k] · w[n, k]ᵀ -> [m, n]`, or `None` where this kernel does not apply (see the module docs).
pub(crate) fn matmul_wt_decode<B: Backend>(
    x: &Tensor<B, 2>,
    w: &Tensor<B, 2>,
) -> Option<Tensor<B, 2>> {
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
pub(crate) const LANES_MIN_ROWS: usize = 5;

/// Row counts above this take [`matmul_in_out`] where the weight has an `[in, out]` copy: an
/// actor's weights smaller than [`MIN_WEIGHT_ELEMENTS`], which this module's kernels do not take
/// (see [`crate::transformer::Transformer::with_decode_weights`]).
pub(crate) const IN_OUT_MIN_ROWS: usize = 4;

/// A small linear weight transposed to `[in, out]` (contiguous, burn-flex): see
/// [`crate::transformer::Transformer::with_decode_weights`].
#[derive(Clone, Debug)]
pub struct DecodeLayout(FlexTensor);

impl DecodeLayout {
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
pub(crate) fn matmul_in_out<B: Backend>(
    x: &Tensor<B, 2>,
    w: &DecodeLayout,
) -> Option<Tensor<B, 2>> {
    let [m, k] = x.dims();
    if m <= IN_OUT_MIN_ROWS || w.0.layout().shape()[0] != k {
        return None;
    }
    let x = as_flex(x)?;
    if x.dtype() != DType::F32 {
        return None;
    }
    let y: Box<dyn Any> = Box::new(flex_matmul(x, w.0.clone()));
    let y = y.downcast::<B::FloatTensorPrimitive>().ok()?;
    Some(Tensor::from_primitive(TensorPrimitive::Float(*y)))
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
        Kernel::Avx512 if m == 1 => unsafe { x86::avx512::gemv(x, w, out, k, start, end) },
        // SAFETY: as above.
        Kernel::Avx512 if m >= LANES_MIN_ROWS => unsafe {
            x86::avx512::rows_in_lanes(x, w, out, m, k, start, end)
        },
        // SAFETY: as above.
        Kernel::Avx512 => unsafe { x86::avx512::columns(x, w, out, m, k, start, end) },
        // SAFETY: as above.
        Kernel::Avx2 => unsafe { x86::avx2::columns(x, w, out, m, k, start, end) },
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no {kernel:?} kernel off x86-64")
}

// ---------------------------------------------------------------------------------------------
// Linear

/// `x · wᵀ` for `x` `[m, k]` and `w` `[n, k]` (HF's `[out, in]` layout) on `Autodiff<burn-flex>`,
/// whose backward pass writes `w`'s gradient as `dyᵀ · x`: contiguous, in `w`'s own layout. Through
/// burn's `x.matmul(w.transpose())` the gradient arrives as the transposed view of `xᵀ · dy`, and
/// every later add walks that view across rows: SmolLM2's tied embedding adds its lookup's gradient
/// to the LM head's, 28M elements strided, twice per micro-batch (5% of a SmolLM2 RL step), and
/// the learner's micro-batch accumulation and optimiser read every weight's gradient the same way.
/// Same products, same FLOPs. `None` outside the learner's backend.
pub(crate) fn linear_autodiff<B: Backend>(
    x: &Tensor<B, 2>,
    w: &Tensor<B, 2>,
) -> Option<Tensor<B, 2>> {
    // Inference tensors leave at once: this sits on every product's path.
    if TypeId::of::<B>() != TypeId::of::<Ad>() || x.dims()[1] != w.dims()[1] {
        return None;
    }
    let (Operand::Autodiff(xa), Operand::Autodiff(wa)) = (Operand::of(x)?, Operand::of(w)?) else {
        return None;
    };
    let out = flex_matmul(xa.primitive.clone(), flex_transpose(wa.primitive.clone()));
    let state = || (xa.primitive.clone(), wa.primitive.clone());
    Some(into_tensor(record(LinearBackward, [&xa, &wa], state, out)))
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Cpu, 2> for LinearBackward {
    /// The inputs, x and w.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Cpu>(&ops.node);
        let (x, w) = ops.state;
        let [x_node, w_node] = ops.parents;
        if let Some(node) = w_node {
            grads.register::<Cpu>(node.id, flex_matmul(flex_transpose(dy.clone()), x));
        }
        if let Some(node) = x_node {
            grads.register::<Cpu>(node.id, flex_matmul(dy, w));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::{linear_autodiff as linear, matmul_wt_decode as matmul_wt};
    use crate::kernels::rows::repeat_rows;
    use crate::kernels::test_support::{close, loss, param, values};

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
        let w_in_out = DecodeLayout::of(&w).expect("an f32 burn-flex weight");
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

    #[test]
    fn linear_value_and_gradients_match_burns_matmul_with_a_tied_weight() {
        if !simd_available() {
            return;
        }
        // A tied table as SmolLM2's: rows looked up for the input and multiplied as the head, so
        // its gradient is the sum of both paths' (the add this op's layout is for).
        let (x, table) = (param([7, 12], 31, 2.0), param([9, 12], 32, 1.5));
        let rows = [4, 0, 8, 4];
        let run = |fused: bool| {
            let looked_up = repeat_rows(&table, &rows).expect("applies");
            let h = Tensor::cat(vec![x.clone(), looked_up], 0); // [11, 12]
            let y = if fused {
                linear(&h, &table).expect("applies on Autodiff<burn-flex>")
            } else {
                h.matmul(table.clone().transpose())
            };
            let grads = loss(y.clone(), 33).backward();
            (y, x.grad(&grads).unwrap(), table.grad(&grads).unwrap())
        };
        let (got, dx, dw) = run(true);
        let (want, want_dx, want_dw) = run(false);
        assert_eq!(got.dims(), [11, 9]);
        close(got.inner(), want.inner(), 1e-5, "value");
        close(dx, want_dx, 1e-5, "dx");
        close(dw, want_dw, 1e-5, "d weight");
        // An untied weight's gradient comes out contiguous (burn's path: a transposed view).
        let w = param([5, 12], 35, 1.0);
        let grads = loss(linear(&x, &w).unwrap(), 36).backward();
        let dw = as_flex(&w.grad(&grads).unwrap()).unwrap();
        assert!(
            dw.as_slice::<f32>().is_some(),
            "the weight's gradient is contiguous"
        );
        // Shapes that do not multiply, and inference tensors, take burn's matmul.
        assert!(linear(&x, &param([9, 5], 34, 1.0)).is_none());
        assert!(linear(&x.clone().inner(), &table.clone().inner()).is_none());
    }
}
