//! Attention's core, `softmax(q kᵀ · scale + mask) v` with grouped-query heads, heads merged for
//! `o_proj`: a decode step's single query per row on burn-flex ([`decode`]), several queries per
//! row on burn-flex or the learner's `Autodiff<burn-flex>` with AVX-512F ([`causal`]), else burn's
//! ops (batched matmuls and the fused masked softmax).

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

pub(crate) mod causal;
pub(crate) mod decode;

/// The dimensions of one attention call: `q` `[batch, seq, heads, head_dim]`, `k` and `v`
/// `[batch, kv_heads, keys, head_dim]`, `mask` `[batch, heads, seq, keys]`; query head `h` reads kv
/// head `h / (heads / kv_heads)` (HF's `repeat_kv` order).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttentionShape {
    pub(crate) batch: usize,
    pub(crate) seq: usize,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) keys: usize,
    pub(crate) head_dim: usize,
}

impl AttentionShape {
    /// The shape, or `None` where the operands do not fit together as above.
    pub(crate) fn of<B: Backend>(
        q: &Tensor<B, 4>,
        k: &Tensor<B, 4>,
        v: &Tensor<B, 4>,
        mask: &Tensor<B, 4>,
    ) -> Option<Self> {
        let [batch, seq, heads, head_dim] = q.dims();
        let [kb, kv_heads, keys, khd] = k.dims();
        let fits = kb == batch
            && khd == head_dim
            && v.dims() == k.dims()
            && mask.dims() == [batch, heads, seq, keys]
            && kv_heads > 0
            && heads % kv_heads == 0;
        fits.then_some(Self {
            batch,
            seq,
            heads,
            kv_heads,
            keys,
            head_dim,
        })
    }

    /// Query heads per kv head.
    pub(crate) fn groups(&self) -> usize {
        self.heads / self.kv_heads
    }
}
/// See [`super::attention`].
pub(crate) fn forward<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Tensor<B, 4>,
    scale: f64,
) -> Tensor<B, 3> {
    // A decode step on burn-flex: one fused pass per (row, head) over the cache.
    if let Some(out) = decode::decode_attention(&q, &k, &v, &mask, scale as f32) {
        return out;
    }
    // Several queries per row (the learner, prefill) on burn-flex with AVX-512: one causal op
    // with its own backward, heads merged on the way out.
    if let Some(out) = causal::causal_attention(&q, &k, &v, &mask, scale as f32) {
        return out;
    }
    let [batch, seq, nh, hd] = q.dims();
    let [_, nkv, keys, _] = k.dims();
    let groups = nh / nkv;
    // Grouped-query attention without materialising repeated K/V: query head h uses kv head
    // h / groups (HF's repeat_kv order), so fold the group into the query-row dimension.
    let q = super::contiguous(q.swap_dims(1, 2)).reshape([batch, nkv, groups * seq, hd]);
    let scores = q.matmul(k.swap_dims(2, 3)).reshape([batch, nh, seq, keys]);
    // The mask comes expanded to every head (see `Transformer::mask`), so scale, mask and
    // softmax are elementwise over contiguous operands: one fused pass on burn-flex.
    let probs =
        super::masked_softmax(scores, mask, scale).reshape([batch, nkv, groups * seq, keys]);
    let out = probs
        .matmul(v)
        .reshape([batch, nh, seq, hd])
        .swap_dims(1, 2);
    super::contiguous(out).reshape([batch, seq, nh * hd])
}
