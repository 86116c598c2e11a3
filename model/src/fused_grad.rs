//! Fused ops with their own backward pass, for the learner on `Autodiff<burn-flex>`.
//!
//! burn's autodiff records every primitive op of a composite: a softmax is five forward passes and
//! more backward, each allocating a full tensor, and its `exp` is glibc's scalar one (with a slow
//! path for the masked scores, `exp(-1e9)`). On the tiny default model the learner's attention core,
//! SwiGLU, norms and vocabulary log-softmax were together about half of a micro-batch's
//! forward+backward (`laser-bench profile-train`, BENCHMARKS.md). Each op here is one forward pass
//! per row and one backward pass per row, with the 8-lane `exp` of [`crate::fused`], registered as a
//! single node of burn's graph with its gradient written out by hand:
//! - [`swiglu`]: `silu(gate) * up`;
//! - [`masked_softmax`]: `softmax(scores * scale + mask)` over the last dimension (`mask` constant);
//! - [`rms_norm`]: HF's RMSNorm, `x * rsqrt(mean(x²) + eps) * weight`;
//! - [`rope`]: the rotary embedding, `x * cos + rotate_half(x) * sin` (tables constant);
//! - [`log_softmax_gather`]: `log_softmax(logits)[row, target[row]]` without the `[rows, vocab]`
//!   log-probability tensor.
//!
//! All but `swiglu` (whose inference kernel is [`crate::fused::swiglu`]) take burn-flex tensors too
//! (inference: forward only); each returns `None` for anything else (CUDA, other CPUs, non-f32,
//! `Autodiff` with another checkpointing strategy), where the caller runs burn's ops. Tests check
//! values and gradients against burn's own ops and autodiff. Rows are independent and every row
//! runs the same instructions, so a row's result does not depend on its batch; cross-row sums (the
//! RMSNorm weight gradient) add fixed-size blocks in a fixed order, so results do not depend on the
//! thread count.

use std::any::{Any, TypeId};

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

use crate::backend::Cpu;
use crate::small_matmul::{as_flex, simd_available};

mod causal_attention;
pub use causal_attention::causal_attention;

/// The learner's backend, `Autodiff<burn-flex>` (no checkpointing).
type Ad = Autodiff<Cpu>;
type AdTensor = <Ad as BackendTypes>::FloatTensorPrimitive;

/// Elements per parallel block of the elementwise passes (and per partial sum of cross-row sums).
const BLOCK: usize = 1 << 14;

/// An operand as one of the two backends these ops run on.
enum Operand {
    Flex(FlexTensor),
    Autodiff(AdTensor),
}

impl Operand {
    fn of<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Option<Self> {
        if !simd_available() {
            return None;
        }
        if let Some(f) = as_flex(t) {
            return (f.dtype() == DType::F32).then_some(Operand::Flex(f));
        }
        // Only the learner's backend: `Autodiff<Flex, C>` for another checkpointing strategy has the
        // same primitive type but must record its ops with that strategy (it takes burn's ops).
        if TypeId::of::<B>() != TypeId::of::<Ad>() {
            return None;
        }
        let TensorPrimitive::Float(p) = t.clone().into_primitive() else {
            return None;
        };
        let p: Box<dyn Any> = Box::new(p);
        let a = *p.downcast::<AdTensor>().ok()?;
        (a.primitive.dtype() == DType::F32).then_some(Operand::Autodiff(a))
    }

    /// The forward value.
    fn value(&self) -> &FlexTensor {
        match self {
            Operand::Flex(f) => f,
            Operand::Autodiff(a) => &a.primitive,
        }
    }
}

/// A primitive of `Flex` or `Autodiff<Flex>` back into `B`'s tensor. `B` is the backend the operand
/// came from, so the downcast cannot fail.
fn into_tensor<B: Backend, const D: usize, P: Any>(p: P) -> Tensor<B, D> {
    let p: Box<dyn Any> = Box::new(p);
    let p = p
        .downcast::<B::FloatTensorPrimitive>()
        .expect("the output primitive belongs to the operand's backend");
    Tensor::from_primitive(TensorPrimitive::Float(*p))
}

/// A tensor's f32 values, contiguous (copied only when they are not).
fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(copy_by_rows(t).unwrap_or_else(|| {
            t.to_contiguous()
                .as_slice::<f32>()
                .expect("a contiguous f32 tensor")
                .to_vec()
        })),
    }
}

/// The values of a strided f32 view whose last dimension is contiguous (a head split or merge,
/// say), copied a row at a time through [`crate::fused::StridedView`]. burn-flex's
/// `to_contiguous` walks such 4-D views one element at a time (its fast paths cover layouts that
/// collapse to two dimensions); in the learner's profile that walk was 2.7% of a micro-batch, in
/// RoPE's backward. `None` for other layouts.
fn copy_by_rows(t: &FlexTensor) -> Option<Vec<f32>> {
    crate::fused::StridedView::of(t).map(|view| view.to_vec())
}

/// Registers `out` as the output of one op of burn's graph with `parents` and `backward`; the
/// state for the backward pass is built only when some parent needs a gradient.
fn record<BO, S, const N: usize>(
    backward: BO,
    parents: [&AdTensor; N],
    state: impl FnOnce() -> S,
    out: FlexTensor,
) -> AdTensor
where
    BO: Backward<Cpu, N, State = S>,
    S: Clone + Send + std::fmt::Debug + 'static,
{
    match backward
        .prepare::<NoCheckpointing>(parents.map(|p| p.node.clone()))
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state(), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// `out` in blocks of whole rows of `row_len` elements, in parallel: `f(offset, block)` with the
/// block's first element's offset into `out`.
fn par_row_blocks(out: &mut [f32], row_len: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    let rows_per_block = (BLOCK / row_len).max(1);
    out.par_chunks_mut(rows_per_block * row_len)
        .enumerate()
        .for_each(|(i, block)| f(i * rows_per_block * row_len, block));
}

/// `f(a_row, b_row, out_row)` for every row of `row_len` elements, in parallel blocks.
fn par_rows2(
    a: &[f32],
    b: &[f32],
    row_len: usize,
    out: &mut [f32],
    f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync + Send,
) {
    par_row_blocks(out, row_len, |at, block| {
        for ((o, a), b) in block
            .chunks_mut(row_len)
            .zip(a[at..].chunks(row_len))
            .zip(b[at..].chunks(row_len))
        {
            f(a, b, o);
        }
    });
}

fn flex(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

fn shape(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().to_vec()
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
pub fn linear<B: Backend>(x: &Tensor<B, 2>, w: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
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

/// burn-flex's matmul of two matrices (strided operands go to gemm as they are, without a copy).
pub(crate) fn flex_matmul(a: FlexTensor, b: FlexTensor) -> FlexTensor {
    let t = |f| Tensor::<Cpu, 2>::from_primitive(TensorPrimitive::Float(f));
    let TensorPrimitive::Float(y) = t(a).matmul(t(b)).into_primitive() else {
        unreachable!("a float tensor's primitive is TensorPrimitive::Float")
    };
    y
}

/// A matrix's transposed view (no copy).
fn flex_transpose(a: FlexTensor) -> FlexTensor {
    let TensorPrimitive::Float(y) = Tensor::<Cpu, 2>::from_primitive(TensorPrimitive::Float(a))
        .transpose()
        .into_primitive()
    else {
        unreachable!("a float tensor's primitive is TensorPrimitive::Float")
    };
    y
}

// ---------------------------------------------------------------------------------------------
// Relayout

/// `x` with a contiguous layout, copied a row at a time ([`copy_by_rows`]) where `x` is a view whose
/// last dimension is contiguous (a head split or merge); its gradient passes through unchanged.
/// Attention calls it before reshaping such views, which burn-flex would otherwise copy one
/// element at a time. `None` where `x` is contiguous already, or the op does not apply.
pub fn contiguous<B: Backend, const D: usize>(x: &Tensor<B, D>) -> Option<Tensor<B, D>> {
    let operand = Operand::of(x)?;
    let value = operand.value();
    if value.as_slice::<f32>().is_some() {
        return None;
    }
    let out = flex(copy_by_rows(value)?, x.dims().to_vec());
    Some(match operand {
        Operand::Flex(_) => into_tensor(out),
        Operand::Autodiff(a) => into_tensor(record(ContiguousBackward, [&a], || (), out)),
    })
}

#[derive(Debug)]
struct ContiguousBackward;

impl Backward<Cpu, 1> for ContiguousBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Cpu>(&ops.node);
        let [parent] = ops.parents;
        if let Some(node) = parent {
            grads.register::<Cpu>(node.id, grad);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Row selection

/// Rows of `x` along its first dimension, `rows[i]` for output row `i` (rows may repeat: a prompt's
/// KV cache forked into its samples); in the backward pass each source row receives the sum of its
/// copies' gradients. burn-flex's `select` backward (`select_add`) scatters one element at a time:
/// 4% of the learner's step once the prompts' cache rows were shared. `None` where the op does not
/// apply (see the module docs).
pub fn repeat_rows<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    rows: &[usize],
) -> Option<Tensor<B, D>> {
    let dims = x.dims();
    if D == 0 || rows.iter().any(|&r| r >= dims[0]) {
        return None;
    }
    let operand = Operand::of(x)?;
    let row_len: usize = dims[1..].iter().product();
    let mut out_dims = dims.to_vec();
    out_dims[0] = rows.len();
    let out = {
        let xv = values(operand.value());
        let mut out = Vec::with_capacity(rows.len() * row_len);
        for &r in rows {
            out.extend_from_slice(&xv[r * row_len..(r + 1) * row_len]);
        }
        flex(out, out_dims)
    };
    Some(match operand {
        Operand::Flex(_) => into_tensor(out),
        Operand::Autodiff(a) => {
            let state = || (rows.to_vec(), dims.to_vec());
            into_tensor(record(RepeatRowsBackward, [&a], state, out))
        }
    })
}

/// Rows of `x` along its first dimension, `rows[i]` for output row `i`: [`repeat_rows`] where it
/// applies, burn's `select` elsewhere (the index tensor is built only then).
pub fn select_rows<B: Backend, const D: usize>(x: &Tensor<B, D>, rows: &[usize]) -> Tensor<B, D> {
    repeat_rows(x, rows).unwrap_or_else(|| {
        let ids: Vec<i32> = rows.iter().map(|&r| r as i32).collect();
        let ids = Tensor::<B, 1, burn::tensor::Int>::from_data(
            TensorData::new(ids, [rows.len()]),
            &x.device(),
        );
        x.clone().select(0, ids)
    })
}

#[derive(Debug)]
struct RepeatRowsBackward;

impl Backward<Cpu, 1> for RepeatRowsBackward {
    /// The selected rows and the input's shape.
    type State = (Vec<usize>, Vec<usize>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Cpu>(&ops.node);
        let [parent] = ops.parents;
        let Some(node) = parent else { return };
        let (rows, dims) = ops.state;
        let row_len: usize = dims[1..].iter().product();
        let dy = values(&grad);
        let mut dx = vec![0.0f32; dims[0] * row_len];
        for (i, &r) in rows.iter().enumerate() {
            let src = &dy[i * row_len..(i + 1) * row_len];
            for (d, s) in dx[r * row_len..(r + 1) * row_len].iter_mut().zip(src) {
                *d += s;
            }
        }
        grads.register::<Cpu>(node.id, flex(dx, dims));
    }
}

// ---------------------------------------------------------------------------------------------
// SwiGLU

/// `silu(gate) * up` for two tensors of one shape on `Autodiff<burn-flex>` (burn-flex inference
/// takes [`crate::fused::swiglu`]); `None` elsewhere.
pub fn swiglu<B: Backend, const D: usize>(
    gate: &Tensor<B, D>,
    up: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    if gate.dims() != up.dims() {
        return None;
    }
    let (Operand::Autodiff(g), Operand::Autodiff(u)) = (Operand::of(gate)?, Operand::of(up)?)
    else {
        return None;
    };
    let out = {
        let (gv, uv) = (values(&g.primitive), values(&u.primitive));
        let mut out = vec![0.0f32; gv.len()];
        par_row_blocks(&mut out, 1, |at, o| {
            crate::fused::swiglu_slices(&gv[at..at + o.len()], &uv[at..at + o.len()], o)
        });
        flex(out, gate.dims().to_vec())
    };
    let state = || (g.primitive.clone(), u.primitive.clone());
    Some(into_tensor(record(SwigluBackward, [&g, &u], state, out)))
}

#[derive(Debug)]
struct SwigluBackward;

impl Backward<Cpu, 2> for SwigluBackward {
    /// The inputs, gate and up.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Cpu>(&ops.node);
        let (gate, up) = ops.state;
        let dims = shape(&gate);
        let (dy, g, u) = (values(&grad), values(&gate), values(&up));
        let n = g.len();
        let (mut d_gate, mut d_up) = (vec![0.0f32; n], vec![0.0f32; n]);
        d_gate
            .par_chunks_mut(BLOCK)
            .zip(d_up.par_chunks_mut(BLOCK))
            .enumerate()
            .for_each(|(i, (dg, du))| {
                let r = i * BLOCK..i * BLOCK + dg.len();
                kernels::swiglu_backward(&dy[r.clone()], &g[r.clone()], &u[r], dg, du);
            });
        let [gate_node, up_node] = ops.parents;
        if let Some(node) = gate_node {
            grads.register::<Cpu>(node.id, flex(d_gate, dims.clone()));
        }
        if let Some(node) = up_node {
            grads.register::<Cpu>(node.id, flex(d_up, dims));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Masked softmax

/// `softmax(scores * scale + mask)` over the last dimension; `mask` (same shape) is a constant
/// (no gradient flows to it). `None` where the op does not apply (see the module docs).
pub fn masked_softmax<B: Backend, const D: usize>(
    scores: &Tensor<B, D>,
    mask: &Tensor<B, D>,
    scale: f32,
) -> Option<Tensor<B, D>> {
    if scores.dims() != mask.dims() || D == 0 || scores.dims()[D - 1] == 0 {
        return None;
    }
    let s = Operand::of(scores)?;
    let m = Operand::of(mask)?;
    let keys = scores.dims()[D - 1];
    let probs = {
        let (sv, mv) = (values(s.value()), values(m.value()));
        let mut out = vec![0.0f32; sv.len()];
        par_rows2(&sv, &mv, keys, &mut out, |s, m, o| {
            kernels::masked_softmax_row(s, m, scale, o)
        });
        flex(out, scores.dims().to_vec())
    };
    match s {
        Operand::Flex(_) => Some(into_tensor(probs)),
        Operand::Autodiff(s) => {
            // The state is the output itself (a second handle on the same buffer).
            let state = probs.clone();
            Some(into_tensor(record(
                SoftmaxBackward { scale },
                [&s],
                move || state,
                probs,
            )))
        }
    }
}

#[derive(Debug)]
struct SoftmaxBackward {
    scale: f32,
}

impl Backward<Cpu, 1> for SoftmaxBackward {
    /// The output probabilities.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Cpu>(&ops.node);
        let [parent] = ops.parents;
        let Some(node) = parent else { return };
        let probs = ops.state;
        let dims = shape(&probs);
        let keys = *dims.last().expect("at least one dimension");
        let (p, dp) = (values(&probs), values(&grad));
        let mut ds = vec![0.0f32; p.len()];
        par_rows2(&p, &dp, keys, &mut ds, |p, dp, o| {
            kernels::softmax_backward_row(p, dp, self.scale, o)
        });
        grads.register::<Cpu>(node.id, flex(ds, dims));
    }
}

// ---------------------------------------------------------------------------------------------
// RMSNorm

/// HF's RMSNorm over the last dimension: `x * rsqrt(mean(x²) + eps) * weight`, `weight` of the
/// last dimension's size. `None` where the op does not apply (see the module docs).
pub fn rms_norm<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    weight: &Tensor<B, 1>,
    eps: f64,
) -> Option<Tensor<B, D>> {
    let hidden = x.dims()[D - 1];
    if weight.dims()[0] != hidden || hidden == 0 {
        return None;
    }
    let xo = Operand::of(x)?;
    let wo = Operand::of(weight)?;
    let rows = x.dims()[..D - 1].iter().product::<usize>();
    let (y, inv_rms) = {
        let (xv, wv) = (values(xo.value()), values(wo.value()));
        let mut y = vec![0.0f32; rows * hidden];
        let mut inv_rms = vec![0.0f32; rows];
        let rows_per_block = (BLOCK / hidden).max(1);
        y.par_chunks_mut(rows_per_block * hidden)
            .zip(inv_rms.par_chunks_mut(rows_per_block))
            .enumerate()
            .for_each(|(i, (y, r))| {
                let at = i * rows_per_block * hidden;
                for ((y, r), x) in y.chunks_mut(hidden).zip(r).zip(xv[at..].chunks(hidden)) {
                    *r = kernels::rms_norm_row(x, &wv, eps as f32, y);
                }
            });
        (flex(y, x.dims().to_vec()), inv_rms)
    };
    match (xo, wo) {
        (Operand::Flex(_), Operand::Flex(_)) => Some(into_tensor(y)),
        (Operand::Autodiff(xa), Operand::Autodiff(wa)) => {
            let state = || (xa.primitive.clone(), wa.primitive.clone(), inv_rms);
            Some(into_tensor(record(RmsNormBackward, [&xa, &wa], state, y)))
        }
        _ => None,
    }
}

#[derive(Debug)]
struct RmsNormBackward;

impl Backward<Cpu, 2> for RmsNormBackward {
    /// The input, the weight and each row's `rsqrt(mean(x²) + eps)`.
    type State = (FlexTensor, FlexTensor, Vec<f32>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Cpu>(&ops.node);
        let (x, weight, inv_rms) = ops.state;
        let dims = shape(&x);
        let hidden = *dims.last().expect("at least one dimension");
        let (xv, wv, dy) = (values(&x), values(&weight), values(&grad));
        let rows_per_block = (BLOCK / hidden).max(1);
        let [x_node, w_node] = ops.parents;
        if let Some(node) = x_node {
            let mut dx = vec![0.0f32; xv.len()];
            par_row_blocks(&mut dx, hidden, |at, dx| {
                for (j, dx) in dx.chunks_mut(hidden).enumerate() {
                    let row = at + j * hidden..at + (j + 1) * hidden;
                    let inv = inv_rms[at / hidden + j];
                    kernels::rms_norm_backward_row(&xv[row.clone()], &wv, &dy[row], inv, dx);
                }
            });
            grads.register::<Cpu>(node.id, flex(dx, dims));
        }
        if let Some(node) = w_node {
            // Per block of rows a partial sum, then the partials in block order: the same result
            // whatever the thread count.
            let rows = inv_rms.len();
            let partials: Vec<Vec<f32>> = (0..rows.div_ceil(rows_per_block))
                .into_par_iter()
                .map(|i| {
                    let mut acc = vec![0.0f32; hidden];
                    let first = i * rows_per_block;
                    let last = ((i + 1) * rows_per_block).min(rows);
                    for (r, &s) in inv_rms.iter().enumerate().take(last).skip(first) {
                        let row = r * hidden..(r + 1) * hidden;
                        for ((a, &x), &g) in acc.iter_mut().zip(&xv[row.clone()]).zip(&dy[row]) {
                            *a += g * (x * s);
                        }
                    }
                    acc
                })
                .collect();
            let mut dw = vec![0.0f32; hidden];
            for p in partials {
                dw.iter_mut().zip(p).for_each(|(a, b)| *a += b);
            }
            grads.register::<Cpu>(node.id, flex(dw, vec![hidden]));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RoPE

/// Rotary embedding `x * cos + rotate_half(x) * sin` over the last dimension (HF's
/// `rotate_half(x) = cat(-x2, x1)`), with `cos`/`sin` of `x`'s shape (constants). `None` where the op
/// does not apply (see the module docs) or the last dimension is odd.
pub fn rope<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    cos: &Tensor<B, D>,
    sin: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    let hd = x.dims()[D - 1];
    if x.dims() != cos.dims() || x.dims() != sin.dims() || hd == 0 || hd % 2 == 1 {
        return None;
    }
    let xo = Operand::of(x)?;
    let (co, so) = (Operand::of(cos)?, Operand::of(sin)?);
    let (cv, sv) = (values(co.value()), values(so.value()));
    let y = {
        let xv = values(xo.value());
        let mut y = vec![0.0f32; xv.len()];
        par_row_blocks(&mut y, hd, |at, y| {
            let n = y.len();
            kernels::rope_rows(&xv[at..at + n], &cv[at..at + n], &sv[at..at + n], hd, y);
        });
        flex(y, x.dims().to_vec())
    };
    match xo {
        Operand::Flex(_) => Some(into_tensor(y)),
        Operand::Autodiff(xa) => {
            let state = || (co.value().clone(), so.value().clone());
            Some(into_tensor(record(RopeBackward, [&xa], state, y)))
        }
    }
}

#[derive(Debug)]
struct RopeBackward;

impl Backward<Cpu, 1> for RopeBackward {
    /// The cos and sin tables.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Cpu>(&ops.node);
        let [parent] = ops.parents;
        let Some(node) = parent else { return };
        let (cos, sin) = ops.state;
        let dims = shape(&cos);
        let hd = *dims.last().expect("at least one dimension");
        let (cv, sv, dy) = (values(&cos), values(&sin), values(&grad));
        // The transpose of the rotation is the rotation with `sin` replaced by -cat(s2, s1):
        // dx1 = dy1 c1 + dy2 s2 and dx2 = dy2 c2 - dy1 s1.
        let half = hd / 2;
        let mut sin_t = vec![0.0f32; sv.len()];
        for (t, s) in sin_t.chunks_exact_mut(hd).zip(sv.chunks_exact(hd)) {
            let ((t1, t2), (s1, s2)) = (t.split_at_mut(half), s.split_at(half));
            t1.iter_mut().zip(s2).for_each(|(t, &s)| *t = -s);
            t2.iter_mut().zip(s1).for_each(|(t, &s)| *t = -s);
        }
        let mut dx = vec![0.0f32; dy.len()];
        par_row_blocks(&mut dx, hd, |at, dx| {
            let n = dx.len();
            kernels::rope_rows(&dy[at..at + n], &cv[at..at + n], &sin_t[at..at + n], hd, dx);
        });
        grads.register::<Cpu>(node.id, flex(dx, dims));
    }
}

// ---------------------------------------------------------------------------------------------
// Log-softmax + gather

/// `log_softmax(logits, 1)[row, targets[row]]` for `logits` `[rows, vocab]`: the log-probability of
/// each row's target token, `[rows]`. `None` where the op does not apply (see the module docs) or a
/// target is out of range.
pub fn log_softmax_gather<B: Backend>(
    logits: &Tensor<B, 2>,
    targets: &[u32],
) -> Option<Tensor<B, 1>> {
    let [rows, vocab] = logits.dims();
    if targets.len() != rows || vocab == 0 || targets.iter().any(|&t| t as usize >= vocab) {
        return None;
    }
    let lo = Operand::of(logits)?;
    let (picked, lse) = {
        let lv = values(lo.value());
        let mut picked = vec![0.0f32; rows];
        let mut lse = vec![0.0f32; rows];
        picked
            .par_iter_mut()
            .zip(lse.par_iter_mut())
            .enumerate()
            .for_each(|(r, (p, l))| {
                let row = &lv[r * vocab..(r + 1) * vocab];
                *l = kernels::log_sum_exp(row);
                *p = row[targets[r] as usize] - *l;
            });
        (flex(picked, vec![rows]), lse)
    };
    match lo {
        Operand::Flex(_) => Some(into_tensor(picked)),
        Operand::Autodiff(la) => {
            let state = || (la.primitive.clone(), lse, targets.to_vec());
            Some(into_tensor(record(
                LogSoftmaxGatherBackward,
                [&la],
                state,
                picked,
            )))
        }
    }
}

#[derive(Debug)]
struct LogSoftmaxGatherBackward;

impl Backward<Cpu, 1> for LogSoftmaxGatherBackward {
    /// The logits, each row's log-sum-exp, and the targets.
    type State = (FlexTensor, Vec<f32>, Vec<u32>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Cpu>(&ops.node);
        let [parent] = ops.parents;
        let Some(node) = parent else { return };
        let (logits, lse, targets) = ops.state;
        let dims = shape(&logits);
        let vocab = dims[1];
        let (lv, g) = (values(&logits), values(&grad));
        let mut d = vec![0.0f32; lv.len()];
        d.par_chunks_mut(vocab).enumerate().for_each(|(r, d)| {
            // d/dx_j of (x_t - lse) is [j = t] - softmax_j.
            kernels::softmax_scaled_row(&lv[r * vocab..(r + 1) * vocab], lse[r], -g[r], d);
            d[targets[r] as usize] += g[r];
        });
        grads.register::<Cpu>(node.id, flex(d, dims));
    }
}

// ---------------------------------------------------------------------------------------------
// Row kernels

/// The row kernels, on AVX2 + FMA (every public op checks `simd_available` before it gets here).
/// Each safe wrapper asserts that, so a call on another CPU panics instead of faulting.
pub(crate) mod kernels {
    use crate::small_matmul::simd_available;

    pub fn swiglu_backward(
        dy: &[f32],
        gate: &[f32],
        up: &[f32],
        d_gate: &mut [f32],
        d_up: &mut [f32],
    ) {
        assert!(simd_available() && dy.len() == gate.len() && gate.len() == up.len());
        assert!(d_gate.len() == gate.len() && d_up.len() == gate.len());
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA are present; the lengths are equal (asserted above).
        unsafe {
            avx2::swiglu_backward(dy, gate, up, d_gate, d_up)
        }
    }

    pub fn masked_softmax_row(scores: &[f32], mask: &[f32], scale: f32, out: &mut [f32]) {
        assert!(simd_available() && scores.len() == mask.len() && mask.len() == out.len());
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        unsafe {
            avx2::masked_softmax_row(scores, mask, scale, out)
        }
    }

    pub fn softmax_backward_row(p: &[f32], dp: &[f32], scale: f32, ds: &mut [f32]) {
        assert!(simd_available() && p.len() == dp.len() && dp.len() == ds.len());
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        unsafe {
            avx2::softmax_backward_row(p, dp, scale, ds)
        }
    }

    /// Returns the row's `rsqrt(mean(x²) + eps)`.
    pub fn rms_norm_row(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) -> f32 {
        assert!(simd_available() && x.len() == w.len() && w.len() == y.len());
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        unsafe {
            avx2::rms_norm_row(x, w, eps, y)
        }
    }

    pub fn rms_norm_backward_row(x: &[f32], w: &[f32], dy: &[f32], inv_rms: f32, dx: &mut [f32]) {
        assert!(simd_available() && x.len() == w.len() && w.len() == dy.len());
        assert_eq!(dy.len(), dx.len());
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        unsafe {
            avx2::rms_norm_backward_row(x, w, dy, inv_rms, dx)
        }
    }

    pub fn log_sum_exp(x: &[f32]) -> f32 {
        assert!(simd_available() && !x.is_empty());
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        unsafe {
            avx2::log_sum_exp(x)
        }
    }

    /// `out[j] = factor * exp(x[j] - lse)`.
    pub fn softmax_scaled_row(x: &[f32], lse: f32, factor: f32, out: &mut [f32]) {
        assert!(simd_available() && x.len() == out.len());
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        unsafe {
            avx2::softmax_scaled_row(x, lse, factor, out)
        }
    }

    /// RoPE on rows of `hd`: `y = x cos + rotate_half(x) sin`, `rotate_half(x) = cat(-x2, x1)`.
    /// Plain loops over the two halves, which the compiler vectorises.
    pub fn rope_rows(x: &[f32], cos: &[f32], sin: &[f32], hd: usize, y: &mut [f32]) {
        let half = hd / 2;
        for (((y, x), c), s) in y
            .chunks_exact_mut(hd)
            .zip(x.chunks_exact(hd))
            .zip(cos.chunks_exact(hd))
            .zip(sin.chunks_exact(hd))
        {
            let (x1, x2) = x.split_at(half);
            let (c1, c2) = c.split_at(half);
            let (s1, s2) = s.split_at(half);
            let (y1, y2) = y.split_at_mut(half);
            for j in 0..half {
                y1[j] = x1[j] * c1[j] + (-x2[j]) * s1[j];
                y2[j] = x2[j] * c2[j] + x1[j] * s2[j];
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod avx2 {
        use std::arch::x86_64::*;

        use crate::fused::avx2::{exp, hsum};

        /// 8 lanes of `x` from `at` (fewer past the end, padded with `pad`).
        #[target_feature(enable = "avx2,fma")]
        fn load(x: &[f32], at: usize, pad: f32) -> __m256 {
            if at + 8 <= x.len() {
                // SAFETY: at + 8 <= x.len().
                unsafe { _mm256_loadu_ps(x.as_ptr().add(at)) }
            } else {
                let mut t = [pad; 8];
                t[..x.len() - at].copy_from_slice(&x[at..]);
                // SAFETY: 8-element stack array.
                unsafe { _mm256_loadu_ps(t.as_ptr()) }
            }
        }

        /// Stores the lanes of `v` that fall inside `out` from `at`.
        #[target_feature(enable = "avx2,fma")]
        fn store(out: &mut [f32], at: usize, v: __m256) {
            if at + 8 <= out.len() {
                // SAFETY: at + 8 <= out.len().
                unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(at), v) }
            } else {
                let mut t = [0.0f32; 8];
                // SAFETY: 8-element stack array.
                unsafe { _mm256_storeu_ps(t.as_mut_ptr(), v) };
                let n = out.len() - at;
                out[at..].copy_from_slice(&t[..n]);
            }
        }

        #[target_feature(enable = "avx2,fma")]
        fn hmax(v: __m256) -> f32 {
            let mut t = [0.0f32; 8];
            // SAFETY: 8-element stack array.
            unsafe { _mm256_storeu_ps(t.as_mut_ptr(), v) };
            t.iter().copied().fold(f32::NEG_INFINITY, f32::max)
        }

        /// d/dg [g σ(g) u] = u σ(g) (1 + g (1 - σ(g))); d/du = g σ(g).
        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn swiglu_backward(
            dy: &[f32],
            gate: &[f32],
            up: &[f32],
            d_gate: &mut [f32],
            d_up: &mut [f32],
        ) {
            let one = _mm256_set1_ps(1.0);
            for at in (0..gate.len()).step_by(8) {
                let (g, u, d) = (load(gate, at, 0.0), load(up, at, 0.0), load(dy, at, 0.0));
                let sig = _mm256_div_ps(
                    one,
                    _mm256_add_ps(one, exp(_mm256_sub_ps(_mm256_setzero_ps(), g))),
                );
                let silu = _mm256_mul_ps(g, sig);
                // σ (1 + g (1 - σ)) = σ + silu (1 - σ)
                let dsilu = _mm256_fmadd_ps(silu, _mm256_sub_ps(one, sig), sig);
                store(d_gate, at, _mm256_mul_ps(_mm256_mul_ps(d, u), dsilu));
                store(d_up, at, _mm256_mul_ps(d, silu));
            }
        }

        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn masked_softmax_row(
            scores: &[f32],
            mask: &[f32],
            scale: f32,
            out: &mut [f32],
        ) {
            let n = scores.len();
            let scale_v = _mm256_set1_ps(scale);
            let mut max_v = _mm256_set1_ps(f32::NEG_INFINITY);
            for at in (0..n).step_by(8) {
                // Padding lanes are -inf: they change neither the max nor the sum.
                let x = _mm256_fmadd_ps(
                    load(scores, at, 0.0),
                    scale_v,
                    load(mask, at, f32::NEG_INFINITY),
                );
                max_v = _mm256_max_ps(max_v, x);
                store(out, at, x);
            }
            let max_v = _mm256_set1_ps(hmax(max_v));
            let mut sum_v = _mm256_setzero_ps();
            for at in (0..n).step_by(8) {
                let e = exp(_mm256_sub_ps(load(out, at, f32::NEG_INFINITY), max_v));
                sum_v = _mm256_add_ps(sum_v, e);
                store(out, at, e);
            }
            let inv = _mm256_set1_ps(1.0 / hsum(sum_v));
            for at in (0..n).step_by(8) {
                store(out, at, _mm256_mul_ps(load(out, at, 0.0), inv));
            }
        }

        /// ds = scale · p ⊙ (dp − ⟨p, dp⟩).
        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn softmax_backward_row(
            p: &[f32],
            dp: &[f32],
            scale: f32,
            ds: &mut [f32],
        ) {
            let mut dot_v = _mm256_setzero_ps();
            for at in (0..p.len()).step_by(8) {
                dot_v = _mm256_fmadd_ps(load(p, at, 0.0), load(dp, at, 0.0), dot_v);
            }
            let dot = _mm256_set1_ps(hsum(dot_v));
            let scale_v = _mm256_set1_ps(scale);
            for at in (0..p.len()).step_by(8) {
                let pv = _mm256_mul_ps(load(p, at, 0.0), scale_v);
                store(
                    ds,
                    at,
                    _mm256_mul_ps(pv, _mm256_sub_ps(load(dp, at, 0.0), dot)),
                );
            }
        }

        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn rms_norm_row(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) -> f32 {
            let mut ss = _mm256_setzero_ps();
            for at in (0..x.len()).step_by(8) {
                let v = load(x, at, 0.0);
                ss = _mm256_fmadd_ps(v, v, ss);
            }
            let inv_rms = 1.0 / (hsum(ss) / x.len() as f32 + eps).sqrt();
            let r = _mm256_set1_ps(inv_rms);
            for at in (0..x.len()).step_by(8) {
                let v = _mm256_mul_ps(load(x, at, 0.0), r);
                store(y, at, _mm256_mul_ps(v, load(w, at, 0.0)));
            }
            inv_rms
        }

        /// y = x r w with r = (mean(x²) + eps)^-1/2:
        /// dx = r (w ⊙ dy) − x r³ ⟨w ⊙ dy, x⟩ / n.
        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn rms_norm_backward_row(
            x: &[f32],
            w: &[f32],
            dy: &[f32],
            inv_rms: f32,
            dx: &mut [f32],
        ) {
            let mut dot_v = _mm256_setzero_ps();
            for at in (0..x.len()).step_by(8) {
                let wdy = _mm256_mul_ps(load(w, at, 0.0), load(dy, at, 0.0));
                dot_v = _mm256_fmadd_ps(wdy, load(x, at, 0.0), dot_v);
            }
            let c = hsum(dot_v) * inv_rms * inv_rms * inv_rms / x.len() as f32;
            let (r, c) = (_mm256_set1_ps(inv_rms), _mm256_set1_ps(c));
            for at in (0..x.len()).step_by(8) {
                let wdy = _mm256_mul_ps(load(w, at, 0.0), load(dy, at, 0.0));
                let v = _mm256_fnmadd_ps(load(x, at, 0.0), c, _mm256_mul_ps(wdy, r));
                store(dx, at, v);
            }
        }

        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn log_sum_exp(x: &[f32]) -> f32 {
            let mut max_v = _mm256_set1_ps(f32::NEG_INFINITY);
            for at in (0..x.len()).step_by(8) {
                max_v = _mm256_max_ps(max_v, load(x, at, f32::NEG_INFINITY));
            }
            let max = hmax(max_v);
            let m = _mm256_set1_ps(max);
            let mut sum_v = _mm256_setzero_ps();
            for at in (0..x.len()).step_by(8) {
                sum_v = _mm256_add_ps(sum_v, exp(_mm256_sub_ps(load(x, at, f32::NEG_INFINITY), m)));
            }
            max + hsum(sum_v).ln()
        }

        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn softmax_scaled_row(x: &[f32], lse: f32, factor: f32, out: &mut [f32]) {
            let (l, f) = (_mm256_set1_ps(lse), _mm256_set1_ps(factor));
            for at in (0..x.len()).step_by(8) {
                let e = exp(_mm256_sub_ps(load(x, at, f32::NEG_INFINITY), l));
                store(out, at, _mm256_mul_ps(e, f));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuDevice;
    use burn::tensor::Int;
    use burn::tensor::activation::{log_softmax, silu, softmax};

    /// small_matmul's deterministic fill, scaled to [-range, range).
    fn fill(len: usize, seed: u32, range: f32) -> Vec<f32> {
        let mut v = crate::small_matmul::tests::values(len, seed);
        v.iter_mut().for_each(|x| *x *= range);
        v
    }

    #[test]
    fn strided_views_copy_by_rows_in_logical_order() {
        let device = CpuDevice::default();
        let x = Tensor::<Cpu, 4>::from_data(
            TensorData::new(fill(2 * 3 * 4 * 5, 1, 1.0), [2, 3, 4, 5]),
            &device,
        );
        // A head split's layout (swapped middle dims), a view with an offset (narrowed), and a
        // broadcast (stride 0) one.
        let views = [
            x.clone().swap_dims(1, 2),
            x.clone().swap_dims(1, 2).narrow(2, 1, 2),
            x.clone().narrow(0, 1, 1).expand([3, 3, 4, 5]),
        ];
        for (i, view) in views.into_iter().enumerate() {
            let flex = as_flex(&view).expect("a burn-flex tensor");
            assert!(flex.as_slice::<f32>().is_none(), "view {i} is strided");
            let want = view.clone().into_data().to_vec::<f32>().unwrap();
            assert_eq!(
                copy_by_rows(&flex).expect("a unit inner stride"),
                want,
                "view {i}"
            );
            assert_eq!(values(&flex).into_owned(), want, "view {i}");
        }
        // An inner dimension that is not contiguous is left to burn-flex.
        let transposed = as_flex(&x.clone().swap_dims(2, 3)).unwrap();
        assert!(copy_by_rows(&transposed).is_none());
        assert_eq!(
            values(&transposed).into_owned(),
            x.swap_dims(2, 3).into_data().to_vec::<f32>().unwrap()
        );
    }

    fn param<const D: usize>(dims: [usize; D], seed: u32, range: f32) -> Tensor<Ad, D> {
        let n = dims.iter().product();
        Tensor::from_data(
            TensorData::new(fill(n, seed, range), dims),
            &CpuDevice::default(),
        )
        .require_grad()
    }

    fn close<const D: usize>(got: Tensor<Cpu, D>, want: Tensor<Cpu, D>, tol: f32, what: &str) {
        let (got, want) = (got.into_data(), want.into_data());
        let (g, w) = (
            got.as_slice::<f32>().unwrap(),
            want.as_slice::<f32>().unwrap(),
        );
        assert_eq!(g.len(), w.len(), "{what}: length");
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(
                (a - b).abs() <= tol * (1.0 + b.abs()),
                "{what}[{i}]: {a} vs {b}"
            );
        }
    }

    /// A weighted sum as the loss, so every output element gets a different upstream gradient.
    fn loss<const D: usize>(y: Tensor<Ad, D>, seed: u32) -> Tensor<Ad, 1> {
        let w = Tensor::<Ad, D>::from_data(
            TensorData::new(fill(y.dims().iter().product(), seed, 1.0), y.dims()),
            &y.device(),
        );
        (y * w).sum()
    }

    #[test]
    fn swiglu_value_and_gradients_match_burns_autodiff() {
        if !simd_available() {
            return;
        }
        // 3 x 43: not a multiple of 8, so the tail path runs.
        let (g, u) = (param([3, 43], 1, 9.0), param([3, 43], 2, 3.0));
        let got = swiglu(&g, &u).expect("applies on Autodiff<burn-flex>");
        let want = silu(g.clone()) * u.clone();
        close(got.clone().inner(), want.clone().inner(), 1e-6, "value");
        let (gg, wg) = (loss(got, 3).backward(), loss(want, 3).backward());
        close(g.grad(&gg).unwrap(), g.grad(&wg).unwrap(), 1e-5, "d gate");
        close(u.grad(&gg).unwrap(), u.grad(&wg).unwrap(), 1e-5, "d up");
    }

    #[test]
    fn masked_softmax_value_and_gradient_match_burns_autodiff() {
        if !simd_available() {
            return;
        }
        let (b, h, q, k) = (2, 3, 5, 13);
        let scores = param([b, h, q, k], 4, 6.0);
        // Causal over the last q keys, and row 1 left-padded by 4 keys: the model's mask.
        let mut m = vec![0.0f32; b * h * q * k];
        for (i, v) in m.iter_mut().enumerate() {
            let (row, qi, ki) = (i / (h * q * k), (i / k) % q, i % k);
            if ki > k - q + qi || (row == 1 && ki < 4) {
                *v = crate::transformer::MASKED;
            }
        }
        let mask =
            Tensor::<Ad, 4>::from_data(TensorData::new(m, [b, h, q, k]), &CpuDevice::default());
        let scale = 0.37;
        let got = masked_softmax(&scores, &mask, scale).expect("applies");
        let want = softmax(scores.clone() * scale + mask.clone(), 3);
        close(got.clone().inner(), want.clone().inner(), 1e-6, "value");
        let (gg, wg) = (loss(got, 5).backward(), loss(want, 5).backward());
        close(
            scores.grad(&gg).unwrap(),
            scores.grad(&wg).unwrap(),
            1e-5,
            "d scores",
        );
        // Inference (burn-flex, no graph): the same values.
        let inner = masked_softmax(&scores.clone().inner(), &mask.clone().inner(), scale).unwrap();
        close(
            inner,
            softmax(scores.inner() * scale + mask.inner(), 3),
            1e-6,
            "flex value",
        );
    }

    /// burn's composite attention: GQA by repeating kv heads, full scores, additive mask, softmax.
    fn attention_reference<B: Backend>(
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        mask: Tensor<B, 4>,
        scale: f32,
    ) -> Tensor<B, 3> {
        let [b, s, nh, hd] = q.dims();
        let nkv = k.dims()[1];
        let repeat = |x: Tensor<B, 4>| {
            let heads = (0..nh)
                .map(|h| x.clone().narrow(1, h / (nh / nkv), 1))
                .collect();
            Tensor::cat(heads, 1)
        };
        let scores = q.swap_dims(1, 2).matmul(repeat(k).swap_dims(2, 3));
        softmax(scores * scale + mask, 3)
            .matmul(repeat(v))
            .swap_dims(1, 2)
            .reshape([b, s, nh * hd])
    }

    #[test]
    fn causal_attention_values_and_gradients_match_burns_autodiff() {
        if !crate::small_matmul::avx512_available() {
            assert!(
                causal_attention(
                    &param([1, 2, 1, 8], 1, 1.0),
                    &param([1, 1, 2, 8], 2, 1.0),
                    &param([1, 1, 2, 8], 3, 1.0),
                    &param([1, 1, 2, 2], 4, 1.0),
                    1.0
                )
                .is_none()
            );
            return;
        }
        // (batch, seq, heads, kv heads, head dim, cached keys before the queries, left padding of
        // row 1): GQA, head dims that are not a multiple of 16, more rows than a register block,
        // a cache prefix, and padded rows whose visible keys are all masked.
        for (b, s, nh, nkv, hd, past, pad) in [
            (2, 13, 4, 2, 24, 3, 5),
            (1, 20, 2, 2, 32, 0, 0),
            (2, 9, 3, 1, 40, 0, 4),
        ] {
            let keys = past + s;
            let what = format!("b {b} s {s} heads {nh}/{nkv} hd {hd} past {past} pad {pad}");
            let q = param([b, s, nh, hd], 11, 2.0);
            // K and V as the model has them: head-major views of [batch, keys, kv heads, hd]. Each
            // graph gets its own views (a backward pass consumes the non-leaf nodes it walks).
            let (k_src, v_src) = (
                param([b, keys, nkv, hd], 12, 2.0),
                param([b, keys, nkv, hd], 13, 2.0),
            );
            let heads_major = |x: &Tensor<Ad, 4>| x.clone().swap_dims(1, 2);
            let (k, v) = (heads_major(&k_src), heads_major(&v_src));
            let mut m = vec![0.0f32; b * nh * s * keys];
            for (i, x) in m.iter_mut().enumerate() {
                let (row, qi, ki) = (i / (nh * s * keys), (i / keys) % s, i % keys);
                if ki > past + qi || (row == 1 && ki < pad) {
                    *x = crate::transformer::MASKED;
                }
            }
            let mask = Tensor::<Ad, 4>::from_data(
                TensorData::new(m, [b, nh, s, keys]),
                &CpuDevice::default(),
            );
            // Query rows of row 1 that see only padding differ by design: no weight on them.
            let mut w = fill(b * s * nh * hd, 14, 1.0);
            for (i, x) in w.iter_mut().enumerate() {
                let (row, qi) = (i / (s * nh * hd), (i / (nh * hd)) % s);
                if row == 1 && past + qi < pad {
                    *x = 0.0;
                }
            }
            let weights = Tensor::<Ad, 3>::from_data(
                TensorData::new(w, [b, s, nh * hd]),
                &CpuDevice::default(),
            );
            let scale = 0.29;
            let got = causal_attention(&q, &k, &v, &mask, scale).expect("applies");
            let want = attention_reference(
                q.clone(),
                heads_major(&k_src),
                heads_major(&v_src),
                mask.clone(),
                scale,
            );
            close(
                (got.clone() * weights.clone()).inner(),
                (want.clone() * weights.clone()).inner(),
                1e-5,
                &format!("{what}: value"),
            );
            let gg = (got * weights.clone()).sum().backward();
            let wg = (want * weights).sum().backward();
            close(
                q.grad(&gg).unwrap(),
                q.grad(&wg).unwrap(),
                1e-4,
                &format!("{what}: dq"),
            );
            close(
                k_src.grad(&gg).unwrap(),
                k_src.grad(&wg).unwrap(),
                1e-4,
                &format!("{what}: dk"),
            );
            close(
                v_src.grad(&gg).unwrap(),
                v_src.grad(&wg).unwrap(),
                1e-4,
                &format!("{what}: dv"),
            );
            // Inference (burn-flex, no graph): the same values.
            if pad == 0 {
                let flex_out = causal_attention(
                    &q.clone().inner(),
                    &k.clone().inner(),
                    &v.clone().inner(),
                    &mask.clone().inner(),
                    scale,
                )
                .unwrap();
                close(
                    flex_out,
                    attention_reference(q.inner(), k.inner(), v.inner(), mask.inner(), scale),
                    1e-5,
                    &format!("{what}: flex value"),
                );
            }
        }
    }

    #[test]
    fn repeat_rows_value_and_gradient_match_burns_select() {
        if !simd_available() {
            return;
        }
        let x = param([3, 2, 5, 4], 21, 3.0);
        // Repeated, reordered and skipped rows (row 1 is never selected: its gradient is zero).
        let rows = [2, 0, 2, 2, 0];
        let got = repeat_rows(&x, &rows).expect("applies on Autodiff<burn-flex>");
        let idx = Tensor::<Ad, 1, burn::tensor::Int>::from_data(
            TensorData::new(
                rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
                [rows.len()],
            ),
            &CpuDevice::default(),
        );
        let want = x.clone().select(0, idx);
        close(got.clone().inner(), want.clone().inner(), 0.0, "value");
        let (gg, wg) = (loss(got, 22).backward(), loss(want, 22).backward());
        close(x.grad(&gg).unwrap(), x.grad(&wg).unwrap(), 1e-6, "dx");
        assert!(
            repeat_rows(&x, &[3]).is_none(),
            "row 3 of 3 is out of range"
        );
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

    #[test]
    fn rms_norm_value_and_gradients_match_burns_autodiff() {
        if !simd_available() {
            return;
        }
        // Hidden 20: not a multiple of 8.
        let (x, w) = (param([3, 5, 20], 6, 4.0), param([20], 7, 2.0));
        let eps = 1e-6;
        let got = rms_norm(&x, &w, eps).expect("applies");
        let variance = x.clone().powi_scalar(2).mean_dim(2);
        let want = x.clone() * (variance + eps).sqrt().recip() * w.clone().unsqueeze();
        close(got.clone().inner(), want.clone().inner(), 1e-6, "value");
        let (gg, wg) = (loss(got, 8).backward(), loss(want, 8).backward());
        close(x.grad(&gg).unwrap(), x.grad(&wg).unwrap(), 1e-5, "dx");
        close(w.grad(&gg).unwrap(), w.grad(&wg).unwrap(), 1e-5, "d weight");
    }

    #[test]
    fn rope_value_and_gradient_match_the_rotation_matrix() {
        if !simd_available() {
            return;
        }
        let device = CpuDevice::default();
        let (b, s, h, hd) = (2, 3, 4, 6);
        let x = param([b, s, h, hd], 16, 2.0);
        let table = |seed| {
            Tensor::<Ad, 4>::from_data(
                TensorData::new(fill(b * s * h * hd, seed, 1.0), [b, s, h, hd]),
                &device,
            )
        };
        let (cos, sin) = (table(17), table(18));
        let got = rope(&x, &cos, &sin).expect("applies");
        // The reference: rotate_half as a matrix product, x @ R = cat(-x2, x1).
        let half = hd / 2;
        let mut r = vec![0.0f32; hd * hd];
        for j in 0..half {
            r[(j + half) * hd + j] = -1.0;
            r[j * hd + j + half] = 1.0;
        }
        let r = Tensor::<Ad, 2>::from_data(TensorData::new(r, [hd, hd]), &device);
        let rotated = x
            .clone()
            .reshape([b * s * h, hd])
            .matmul(r)
            .reshape([b, s, h, hd]);
        let want = x.clone() * cos.clone() + rotated * sin.clone();
        close(got.clone().inner(), want.clone().inner(), 1e-6, "value");
        let (gg, wg) = (loss(got, 19).backward(), loss(want, 19).backward());
        close(x.grad(&gg).unwrap(), x.grad(&wg).unwrap(), 1e-5, "dx");
        // An odd last dimension has no halves.
        let odd = param([1, 1, 1, 5], 20, 1.0);
        assert!(rope(&odd, &odd, &odd).is_none());
    }

    #[test]
    fn log_softmax_gather_value_and_gradient_match_burns_autodiff() {
        if !simd_available() {
            return;
        }
        let (rows, vocab) = (7, 37);
        let logits = param([rows, vocab], 9, 8.0);
        let targets: Vec<u32> = (0..rows as u32).map(|r| (r * 11) % vocab as u32).collect();
        let got = log_softmax_gather(&logits, &targets).expect("applies");
        let ids: Vec<i32> = targets.iter().map(|&t| t as i32).collect();
        let ids =
            Tensor::<Ad, 2, Int>::from_data(TensorData::new(ids, [rows, 1]), &CpuDevice::default());
        let want = log_softmax(logits.clone(), 1)
            .gather(1, ids)
            .reshape([rows]);
        close(got.clone().inner(), want.clone().inner(), 1e-6, "value");
        let (gg, wg) = (loss(got, 10).backward(), loss(want, 10).backward());
        close(
            logits.grad(&gg).unwrap(),
            logits.grad(&wg).unwrap(),
            1e-5,
            "d logits",
        );
        // A target out of range or a count that does not match the rows: not applied.
        assert!(log_softmax_gather(&logits, &targets[1..]).is_none());
        let mut bad = targets.clone();
        bad[0] = vocab as u32;
        assert!(log_softmax_gather(&logits, &bad).is_none());
    }

    /// The whole model through `score` on a left-padded batch: values and every parameter's
    /// gradient with the fused ops (`Autodiff<Flex>`) against burn's own ops and autodiff
    /// (`Autodiff<Flex, BalancedCheckpointing>`, which these ops leave alone).
    #[test]
    fn a_model_scored_with_the_fused_ops_has_burns_gradients() {
        let dims = crate::tiny::TinyDims {
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            intermediate_size: 48,
            max_position_embeddings: 64,
        };
        let pairs = vec![
            (vec![5u32, 9, 14], vec![7u32, 8, 2]),
            (vec![3u32, 4, 5, 6, 7, 8], vec![11u32, 2]),
        ];
        model_gradients_match(dims, &pairs);
    }

    /// The default job's model on a batch of its size: 32 sequences of 20-40 tokens, so every op
    /// runs several parallel blocks.
    #[test]
    fn the_default_model_on_a_full_batch_has_burns_gradients() {
        let pairs: Vec<(Vec<u32>, Vec<u32>)> = (0..32u32)
            .map(|i| {
                let p = (0..12 + i % 9)
                    .map(|t| (t * 31 + i * 7) % 400 + 1)
                    .collect();
                let r = (0..8 + (i * 5) % 23)
                    .map(|t| (t * 17 + i * 13) % 400 + 1)
                    .collect();
                (p, r)
            })
            .collect();
        model_gradients_match(crate::tiny::TinyDims::default(), &pairs);
    }

    fn model_gradients_match(dims: crate::tiny::TinyDims, pairs: &[(Vec<u32>, Vec<u32>)]) {
        use crate::transformer::Transformer;
        use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
        type Ref = Autodiff<Cpu, BalancedCheckpointing>;
        if !simd_available() {
            return;
        }
        let device = CpuDevice::default();
        let config = crate::tiny::config(dims).unwrap();
        let weights = || crate::tiny::init_weights(&config, 3);
        let fused = Transformer::<Ad>::from_weights(&config, weights(), &device).unwrap();
        let reference = Transformer::<Ref>::from_weights(&config, weights(), &device).unwrap();
        let items: Vec<crate::ScoreItem> = pairs
            .iter()
            .map(|(p, r)| crate::ScoreItem {
                prompt: p,
                response: r,
            })
            .collect();
        let z_c = 17;
        let f = crate::score(&fused, &items, z_c).unwrap();
        let r = crate::score(&reference, &items, z_c).unwrap();
        close(
            f.response_logprobs.clone().inner(),
            r.response_logprobs.clone().inner(),
            1e-5,
            "response log-probs",
        );
        close(
            f.self_reward_logprob.clone().inner(),
            r.self_reward_logprob.clone().inner(),
            1e-5,
            "self-reward log-prob",
        );
        let f_loss = f.response_logprobs.sum() + f.self_reward_logprob.sum() * 0.5;
        let r_loss = r.response_logprobs.sum() + r.self_reward_logprob.sum() * 0.5;
        let (fg, rg) = (f_loss.backward(), r_loss.backward());
        let (fp, rp) = (param_grads(&fused, &fg), param_grads(&reference, &rg));
        assert_eq!(fp.len(), rp.len());
        for ((name, a), (_, b)) in fp.iter().zip(&rp) {
            assert!(
                !a.is_empty() && a.len() == b.len(),
                "{name}: a gradient each"
            );
            let scale = b.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-4 * (1.0 + scale),
                    "{name}[{i}]: {x} vs {y} (largest {scale})"
                );
            }
        }
    }

    /// Every parameter's gradient, by name.
    fn param_grads<B: burn::tensor::backend::AutodiffBackend>(
        m: &crate::transformer::Transformer<B>,
        g: &B::Gradients,
    ) -> Vec<(String, Vec<f32>)> {
        fn v<B: burn::tensor::backend::AutodiffBackend, const D: usize>(
            t: Tensor<B, D>,
            g: &B::Gradients,
        ) -> Vec<f32> {
            t.grad(g)
                .map(|t| t.into_data().convert::<f32>().into_vec().unwrap())
                .unwrap_or_default()
        }
        let mut out = vec![("embed_tokens".to_string(), v(m.embed_tokens.val(), g))];
        for (i, l) in m.layers.iter().enumerate() {
            let a = &l.self_attn;
            for (name, w) in [
                ("q_proj", &a.q_proj),
                ("k_proj", &a.k_proj),
                ("v_proj", &a.v_proj),
                ("o_proj", &a.o_proj),
                ("gate_proj", &l.mlp.gate_proj),
                ("up_proj", &l.mlp.up_proj),
                ("down_proj", &l.mlp.down_proj),
            ] {
                out.push((format!("{i}.{name}"), v(w.weight.val(), g)));
            }
            out.push((
                format!("{i}.input_layernorm"),
                v(l.input_layernorm.weight.val(), g),
            ));
            out.push((
                format!("{i}.post_attention_layernorm"),
                v(l.post_attention_layernorm.weight.val(), g),
            ));
        }
        out.push(("norm".to_string(), v(m.norm.weight.val(), g)));
        out
    }

    #[test]
    fn untracked_inputs_give_the_same_values() {
        if !simd_available() {
            return;
        }
        let device = CpuDevice::default();
        let t = |seed| {
            Tensor::<Ad, 2>::from_data(TensorData::new(fill(4 * 24, seed, 3.0), [4, 24]), &device)
        };
        let (g, u) = (t(11), t(12));
        let untracked = swiglu(&g, &u).unwrap();
        let tracked = swiglu(&g.clone().require_grad(), &u.clone().require_grad()).unwrap();
        assert_eq!(untracked.into_data(), tracked.into_data());
    }

    #[test]
    fn other_backends_and_shapes_are_left_to_burn() {
        let device = CpuDevice::default();
        // burn-flex without autodiff: SwiGLU is `fused::swiglu`'s, not this module's.
        let x = Tensor::<Cpu, 2>::ones([2, 8], &device);
        assert!(swiglu(&x, &x).is_none());
        // Mismatched shapes.
        let a = param([2, 8], 13, 1.0);
        let b = param([2, 16], 14, 1.0);
        assert!(swiglu(&a, &b).is_none());
        assert!(masked_softmax(&a, &b, 1.0).is_none());
        assert!(rms_norm(&a, &param([9], 15, 1.0), 1e-6).is_none());
    }
}
