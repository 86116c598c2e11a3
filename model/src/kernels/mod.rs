//! The kernel boundary: every op of the model whose fast path is hand-written, one function each.
//!
//! The model calls [`linear`], [`attention`], [`rms_norm`], [`rope`], [`swiglu`],
//! [`masked_softmax`], [`select_rows`], [`log_softmax_gather`] and [`contiguous`] with burn tensors
//! and gets the result back; each function picks its kernel by backend and CPU features and falls
//! back to burn's own ops, so the model holds no dispatch of its own. The kernels run on burn-flex
//! (inference) and, with a hand-written backward registered as one node of burn's graph, on the
//! learner's `Autodiff<burn-flex>` (no checkpointing); every other backend (CUDA, another
//! checkpointing strategy) and every CPU without AVX2 + FMA takes burn's ops. Each kernel computes a
//! row with the same instructions in the same order whatever its batch, position and thread count.
//!
//! Layout: one file per op (`linear`: the decode-step `x · Wᵀ` kernels and the learner's linear
//! with an `[out, in]` weight gradient; `attention::{decode, causal}`; `norm`; `rope`; `swiglu`;
//! `softmax`: the attention softmax and the vocabulary log-softmax + gather; `rows`: row selection
//! and row-at-a-time relayout), shared plumbing (`flex`: burn-flex tensor access, strided views, CPU
//! features; `autodiff`: operands and op recording), the safe wrappers of the row kernels (`simd`),
//! and the x86-64 SIMD code (`x86`: vector math, row kernels, and the AVX2 and AVX-512 column
//! kernels generated from one body). Only [`MASKED`], [`DecodeLayout`] and the functions the bench
//! crate times ([`masked_softmax`], [`bench_api`]) are public.

use burn::tensor::activation::{log_softmax, silu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

mod attention;
mod autodiff;
mod flex;
mod linear;
mod norm;
mod rope;
mod rows;
mod simd;
mod softmax;
mod swiglu;
#[cfg(test)]
pub(crate) mod test_support;
mod x86;

/// Additive mask value for positions a query must not see. Finite, so fully masked rows (left
/// padding) give a uniform softmax rather than NaN, which would poison gradients.
pub const MASKED: f32 = -1.0e9;

/// A linear weight's second copy in `[in, out]` layout, for products of many rows at inference on
/// burn-flex: only weights too small for the `[out, in]` decode kernels get one (an actor's tiny
/// model; see `Transformer::with_decode_weights`).
pub use linear::DecodeLayout;

impl DecodeLayout {
    /// The `[in, out]` copy of `w` (`[out, in]`) where the decode kernels would not take it (fewer
    /// than `linear::MIN_WEIGHT_ELEMENTS` elements) and it is an f32 burn-flex tensor; else `None`.
    pub fn for_weight<B: Backend>(w: &Tensor<B, 2>) -> Option<Self> {
        let [out, inp] = w.dims();
        if out * inp < linear::MIN_WEIGHT_ELEMENTS {
            Self::of(w)
        } else {
            None
        }
    }
}

/// `x · Wᵀ` for `x` `[rows, in]` and `weight` in HF's `[out, in]` layout: gemm on the `[in, out]`
/// copy where there is one and more than `linear::IN_OUT_MIN_ROWS` rows; the decode kernel for 1-64
/// rows on burn-flex; the learner's op with a contiguous weight gradient on `Autodiff<burn-flex>`;
/// else burn's matmul.
pub(crate) fn linear<B: Backend>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    layout: Option<&DecodeLayout>,
) -> Tensor<B, 2> {
    if let Some(y) = layout.and_then(|w| linear::matmul_in_out(&x, w)) {
        return y;
    }
    linear::matmul_wt_decode(&x, &weight)
        .or_else(|| linear::linear_autodiff(&x, &weight))
        .unwrap_or_else(|| x.matmul(weight.transpose()))
}

/// Attention's core for `q` `[batch, seq, heads, head_dim]` (RoPE applied), `k`/`v` `[batch,
/// kv_heads, keys, head_dim]` (any layout with a unit inner stride, e.g. the cache's filled
/// prefix) and the additive `mask` `[batch, heads, seq, keys]`: `softmax(q kᵀ · scale + mask) v`,
/// query head `h` reading kv head `h / (heads / kv_heads)` (HF's `repeat_kv` order), heads merged:
/// `[batch, seq, heads * head_dim]`.
pub(crate) fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Tensor<B, 4>,
    scale: f64,
) -> Tensor<B, 3> {
    attention::forward(q, k, v, mask, scale)
}

/// HF's RMSNorm over the last dimension: `x * rsqrt(mean(x²) + eps) * weight`.
pub(crate) fn rms_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 1>,
    eps: f64,
) -> Tensor<B, D> {
    if let Some(y) = norm::rms_norm(&x, &weight, eps) {
        return y;
    }
    let variance = x.clone().powi_scalar(2).mean_dim(D - 1);
    let normed = x * (variance + eps).sqrt().recip();
    normed * weight.unsqueeze()
}

/// RoPE on `x` laid out `[batch, seq, heads, head_dim]` with `cos`/`sin` tables of the same shape
/// and `rotate`, the `[head_dim, head_dim]` signed permutation with `x @ rotate == cat(-x2, x1)`:
/// `x * cos + (x @ rotate) * sin`. The fused op does the same arithmetic in one pass per row.
pub(crate) fn rope<B: Backend>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
    rotate: &Tensor<B, 2>,
) -> Tensor<B, 4> {
    if let Some(y) = rope::rope(&x, cos, sin) {
        return y;
    }
    let dims = x.dims();
    let rows = dims[0] * dims[1] * dims[2];
    let rotated = x
        .clone()
        .reshape([rows, dims[3]])
        .matmul(rotate.clone())
        .reshape(dims);
    x * cos.clone() + rotated * sin.clone()
}

/// `silu(gate) * up` for two tensors of one shape.
pub(crate) fn swiglu<B: Backend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
) -> Tensor<B, D> {
    swiglu::swiglu_flex(&gate, &up)
        .or_else(|| swiglu::swiglu_autodiff(&gate, &up))
        .unwrap_or_else(|| silu(gate) * up)
}

/// `softmax(scores * scale + mask)` over the last dimension, `mask` (same shape) a constant.
pub fn masked_softmax<B: Backend, const D: usize>(
    scores: Tensor<B, D>,
    mask: Tensor<B, D>,
    scale: f64,
) -> Tensor<B, D> {
    softmax::masked_softmax(&scores, &mask, scale as f32)
        .unwrap_or_else(|| softmax(scores * scale + mask, D - 1))
}

/// Rows of `x` along its first dimension, `rows[i]` for output row `i` (rows may repeat: a
/// prompt's KV cache forked into its samples); in the backward pass each source row receives the
/// sum of its copies' gradients. burn's `select` where the row copy does not apply (the index
/// tensor is built only then).
pub(crate) fn select_rows<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    rows: &[usize],
) -> Tensor<B, D> {
    rows::repeat_rows(x, rows).unwrap_or_else(|| {
        let ids: Vec<i32> = rows.iter().map(|&r| r as i32).collect();
        let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [rows.len()]), &x.device());
        x.clone().select(0, ids)
    })
}

/// `log_softmax(logits, 1)[row, targets[row]]` for `logits` `[rows, vocab]`: each row's target
/// log-probability, `[rows]`.
pub(crate) fn log_softmax_gather<B: Backend>(
    logits: Tensor<B, 2>,
    targets: &[u32],
) -> Tensor<B, 1> {
    if let Some(picked) = softmax::log_softmax_gather(&logits, targets) {
        return picked;
    }
    let rows = targets.len();
    let ids: Vec<i32> = targets.iter().map(|&t| t as i32).collect();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [rows, 1]), &logits.device());
    log_softmax(logits, 1).gather(1, ids).reshape([rows])
}

/// `x` with a contiguous layout before a reshape of a head split or merge: on burn-flex a
/// row-at-a-time copy (its gradient passes through), elsewhere `x` itself (the reshape copies).
pub(crate) fn contiguous<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    rows::contiguous(&x).unwrap_or(x)
}

/// `exp(x[j] - max)` into `out` for a row of logits whose largest value is `max` (the numerators
/// of its softmax), with the 8-lane `exp` where the CPU has AVX2 + FMA.
pub(crate) fn softmax_numerators(x: &[f32], max: f32, out: &mut [f32]) {
    if flex::simd_available() {
        simd::softmax_scaled_row(x, max, 1.0, out);
    } else {
        for (p, &x) in out.iter_mut().zip(x) {
            *p = (x - max).exp();
        }
    }
}

/// The kernels the bench crate times on their own (`laser-bench profile`).
pub mod bench_api {
    use burn::tensor::Tensor;
    use burn::tensor::backend::Backend;

    /// The decode-step attention kernel alone: `q` `[batch, 1, heads, head_dim]`, `k`/`v`
    /// `[batch, kv_heads, keys, head_dim]`, `mask` `[batch, heads, 1, keys]`; heads merged,
    /// `[batch, 1, heads * head_dim]`. `None` where it does not apply (not burn-flex, no AVX2).
    pub fn decode_attention<B: Backend>(
        q: &Tensor<B, 4>,
        k: &Tensor<B, 4>,
        v: &Tensor<B, 4>,
        mask: &Tensor<B, 4>,
        scale: f32,
    ) -> Option<Tensor<B, 3>> {
        super::attention::decode::decode_attention(q, k, v, mask, scale)
    }
}

#[cfg(test)]
mod tests {
    use super::norm::rms_norm;
    use super::softmax::masked_softmax;
    use super::swiglu::swiglu_autodiff as swiglu;
    use super::test_support::param;
    use crate::backend::{Cpu, CpuDevice};
    use burn::tensor::Tensor;

    #[test]
    fn other_backends_and_shapes_are_left_to_burn() {
        let device = CpuDevice::default();
        // burn-flex without autodiff: SwiGLU is `swiglu_flex`'s, not this op's.
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
