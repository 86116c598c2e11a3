//! Causal attention as one op with its own backward pass, for the learner (and prefill) on
//! burn-flex with AVX-512F.
//!
//! burn's ops run attention's core as batched matmuls of one small matrix per (row, head): at the
//! tiny default model's shapes (128 x 32 x 128 per head) each gemm call is mostly overhead, the
//! full square of scores is computed before the causal mask discards half of it, and the backward
//! pass is four more batched matmuls. It was a third of a learner micro-batch at about 47 GFLOP/s
//! (`laser-bench profile-train`, BENCHMARKS.md). Here, per (row, key/value head), the query heads
//! of the group run through one register-blocked kernel that stops at each query's last visible
//! key: scores, softmax (`simd::masked_softmax_row` over the visible keys only), the value
//! product, and in the backward pass the four gradient products with the same bounds.
//!
//! Layouts: `q` is `[batch, seq, heads, head_dim]` (RoPE's output), `k` and `v` are
//! `[batch, kv_heads, keys, head_dim]` in any layout with a unit inner stride (a head-major view
//! or a KV cache prefix), `mask` is the model's additive `[batch, heads, seq, keys]` mask; query
//! `i` sees keys `j <= keys - seq + i` (the causal bound the mask also encodes). The output is
//! `[batch, seq, heads * head_dim]`, heads already merged for `o_proj`. Rows whose visible keys are
//! all masked (left padding) give a uniform softmax over those keys, as burn's path gives over all
//! of its keys: finite, and never read.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rayon::prelude::*;

use super::AttentionShape;
use crate::backend::Cpu;
use crate::kernels::autodiff::{Operand, into_tensor, record};
use crate::kernels::flex::{StridedView, avx512_available, flex, values};
use crate::kernels::simd;

/// Rows per register block of the product kernel (8 rows x 32 columns = 16 accumulators).
const ROWS: usize = 8;

/// The causal bounds: query `i` is the `keys - seq + i`-th key's query.
impl AttentionShape {
    fn past(&self) -> usize {
        self.keys - self.seq
    }
    /// Keys query `i` sees.
    fn visible(&self, i: usize) -> usize {
        self.past() + i + 1
    }
}

/// `softmax(q kᵀ · scale + mask) v` with heads merged, or `None` where the op does not apply
/// (no AVX-512F, not burn-flex or `Autodiff<burn-flex>`, shapes that are not causal attention).
pub(crate) fn causal_attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    mask: &Tensor<B, 4>,
    scale: f32,
) -> Option<Tensor<B, 3>> {
    let shape = AttentionShape::of(q, k, v, mask)?;
    let AttentionShape {
        batch,
        seq,
        heads,
        keys,
        head_dim,
        ..
    } = shape;
    if !avx512_available() || keys < seq || seq == 0 || head_dim == 0 {
        return None;
    }
    let (q, k, v, mask) = (
        Operand::of(q)?,
        Operand::of(k)?,
        Operand::of(v)?,
        Operand::of(mask)?,
    );
    let (out, probs) = {
        let (kv, vv) = (StridedView::of(k.value())?, StridedView::of(v.value())?);
        let (qv, mv) = (values(q.value()), values(mask.value()));
        forward(shape, &qv, &kv, &vv, &mv, scale)
    };
    let out = flex(out, vec![batch, seq, heads * head_dim]);
    Some(match (q, k, v) {
        (Operand::Autodiff(q), Operand::Autodiff(k), Operand::Autodiff(v)) => {
            let state = || State {
                shape,
                scale,
                q: q.primitive.clone(),
                k: k.primitive.clone(),
                v: v.primitive.clone(),
                probs: flex(probs, vec![batch, heads, seq, keys]),
            };
            into_tensor(record(CausalAttentionBackward, [&q, &k, &v], state, out))
        }
        (Operand::Flex(_), Operand::Flex(_), Operand::Flex(_)) => into_tensor(out),
        _ => return None,
    })
}

/// One (row, kv head)'s keys or values, contiguous: `[keys, head_dim]`.
fn head_rows(view: &StridedView, b: usize, kvh: usize, s: AttentionShape) -> Vec<f32> {
    let (n, d) = (s.keys, s.head_dim);
    let mut rows = Vec::with_capacity(n * d);
    for t in 0..n {
        rows.extend_from_slice(view.row(b, kvh, t, d));
    }
    rows
}

/// `[rows, cols]` row-major -> `[cols, rows]`, written in order (the reads stride by `cols`, which
/// is a head dim here: short).
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * cols);
    for c in 0..cols {
        out.extend((0..rows).map(|r| x[r * cols + c]));
    }
    out
}

/// Where query head `h` of batch row `b` starts in a `[batch, seq, heads, head_dim]` buffer; its
/// rows are `heads * head_dim` apart, which the product kernel takes as a row stride (no copy).
fn head_start(b: usize, h: usize, s: AttentionShape) -> usize {
    (b * s.seq * s.heads + h) * s.head_dim
}

/// Output `[batch, seq, heads * head_dim]` and probabilities `[batch, heads, seq, keys]` (zero past
/// each query's last visible key).
fn forward(
    s: AttentionShape,
    q: &[f32],
    k: &StridedView,
    v: &StridedView,
    mask: &[f32],
    scale: f32,
) -> (Vec<f32>, Vec<f32>) {
    let (n, d) = (s.keys, s.head_dim);
    let ld = s.heads * d;
    let mut out = vec![0.0f32; s.batch * s.seq * ld];
    let mut probs = vec![0.0f32; s.batch * s.heads * s.seq * n];
    out.par_chunks_mut(s.seq * ld)
        .zip(probs.par_chunks_mut(s.heads * s.seq * n))
        .enumerate()
        .for_each(|(b, (out_b, probs_b))| {
            let mut scores = vec![0.0f32; s.seq * n];
            for kvh in 0..s.kv_heads {
                let (k_t, v_rows) = (
                    transpose(&head_rows(k, b, kvh, s), n, d),
                    head_rows(v, b, kvh, s),
                );
                for h in kvh * s.groups()..(kvh + 1) * s.groups() {
                    scores.fill(0.0);
                    // Scores up to each query's last visible key.
                    let qh = Strided::rows(&q[head_start(b, h, s)..], ld);
                    product(qh, &k_t, n, &mut scores, n, s.seq, n, |i| {
                        (0, d, s.visible(i))
                    });
                    let p = &mut probs_b[h * s.seq * n..(h + 1) * s.seq * n];
                    let mask_h = &mask[(b * s.heads + h) * s.seq * n..][..s.seq * n];
                    for i in 0..s.seq {
                        let vis = s.visible(i);
                        let row = i * n..i * n + vis;
                        simd::masked_softmax_row(
                            &scores[row.clone()],
                            &mask_h[row.clone()],
                            scale,
                            &mut p[row],
                        );
                    }
                    // Straight into head h of the merged output (still zero there).
                    product(
                        Strided::rows(p, n),
                        &v_rows,
                        d,
                        &mut out_b[h * d..],
                        ld,
                        s.seq,
                        d,
                        |i| (0, s.visible(i), d),
                    );
                }
            }
        });
    (out, probs)
}

#[derive(Debug)]
struct CausalAttentionBackward;

#[derive(Debug, Clone)]
struct State {
    shape: AttentionShape,
    scale: f32,
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    probs: FlexTensor,
}

impl Backward<Cpu, 3> for CausalAttentionBackward {
    type State = State;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Cpu>(&ops.node);
        let State {
            shape: s,
            scale,
            q,
            k,
            v,
            probs,
        } = ops.state;
        let (dy, qv, pv) = (values(&grad), values(&q), values(&probs));
        let (kview, vview) = (
            StridedView::of(&k).expect("checked in the forward pass"),
            StridedView::of(&v).expect("checked in the forward pass"),
        );
        let (n, d) = (s.keys, s.head_dim);
        let ld = s.heads * d;
        let mut dq = vec![0.0f32; s.batch * s.seq * ld];
        let mut dk = vec![0.0f32; s.batch * s.kv_heads * n * d];
        let mut dv = vec![0.0f32; s.batch * s.kv_heads * n * d];
        dq.par_chunks_mut(s.seq * ld)
            .zip(dk.par_chunks_mut(s.kv_heads * n * d))
            .zip(dv.par_chunks_mut(s.kv_heads * n * d))
            .enumerate()
            .for_each(|(b, ((dq_b, dk_b), dv_b))| {
                let mut dp = vec![0.0f32; s.seq * n];
                let mut ds = vec![0.0f32; s.seq * n];
                // Key j is seen by queries i >= j - past.
                let first_query = |j: usize| j.saturating_sub(s.past());
                for kvh in 0..s.kv_heads {
                    let (k_rows, v_t) = (
                        head_rows(&kview, b, kvh, s),
                        transpose(&head_rows(&vview, b, kvh, s), n, d),
                    );
                    let dk_h = &mut dk_b[kvh * n * d..(kvh + 1) * n * d];
                    let dv_h = &mut dv_b[kvh * n * d..(kvh + 1) * n * d];
                    for h in kvh * s.groups()..(kvh + 1) * s.groups() {
                        let (qh, doh) = (&qv[head_start(b, h, s)..], &dy[head_start(b, h, s)..]);
                        let p = &pv[(b * s.heads + h) * s.seq * n..][..s.seq * n];
                        // dP = dO vᵀ, then dS = P (dP - rowsum(P dP)) scale, on the visible keys.
                        dp.fill(0.0);
                        product(Strided::rows(doh, ld), &v_t, n, &mut dp, n, s.seq, n, |i| {
                            (0, d, s.visible(i))
                        });
                        ds.fill(0.0);
                        for i in 0..s.seq {
                            let row = i * n..i * n + s.visible(i);
                            simd::softmax_backward_row(
                                &p[row.clone()],
                                &dp[row.clone()],
                                scale,
                                &mut ds[row],
                            );
                        }
                        // dQ = dS k, straight into head h of dq (still zero there).
                        product(
                            Strided::rows(&ds, n),
                            &k_rows,
                            d,
                            &mut dq_b[h * d..],
                            ld,
                            s.seq,
                            d,
                            |i| (0, s.visible(i), d),
                        );
                        // dK += dSᵀ q and dV += Pᵀ dO, over the queries that see each key.
                        product(Strided::transposed(&ds, n), qh, ld, dk_h, d, n, d, |j| {
                            (first_query(j), s.seq, d)
                        });
                        product(Strided::transposed(p, n), doh, ld, dv_h, d, n, d, |j| {
                            (first_query(j), s.seq, d)
                        });
                    }
                }
            });
        let [q_node, k_node, v_node] = ops.parents;
        if let Some(node) = q_node {
            grads.register::<Cpu>(node.id, flex(dq, vec![s.batch, s.seq, s.heads, d]));
        }
        if let Some(node) = k_node {
            grads.register::<Cpu>(node.id, flex(dk, vec![s.batch, s.kv_heads, n, d]));
        }
        if let Some(node) = v_node {
            grads.register::<Cpu>(node.id, flex(dv, vec![s.batch, s.kv_heads, n, d]));
        }
    }
}

/// `c[i, ..n_end] += a[i, t_lo..t_hi] · b[t_lo..t_hi, ..n_end]` for every row `i < m`, where
/// `bounds(i) = (t_lo, t_hi, n_end)`. Rows are taken in blocks of [`ROWS`]; a block runs the union
/// of its rows' bounds, which is exact wherever `a` is zero outside a row's `t` range (every caller
/// here), and writes columns up to the largest `n_end` of the block (callers read only their own).
/// `a[i, t]` is `a.data[i * a.row + t * a.col]` (so a transpose is a swap of strides), `b` is
/// `[.., ldb]` and `c` `[m, ldc]`, row-major. Panics without AVX-512F.
#[allow(clippy::too_many_arguments)]
fn product(
    a: Strided,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    m: usize,
    n: usize,
    bounds: impl Fn(usize) -> (usize, usize, usize),
) {
    assert!(avx512_available());
    let mut r0 = 0;
    while r0 < m {
        let rows = (m - r0).min(ROWS);
        let (mut t_lo, mut t_hi, mut n_end) = bounds(r0);
        for i in r0 + 1..r0 + rows {
            let (lo, hi, ne) = bounds(i);
            t_lo = t_lo.min(lo);
            t_hi = t_hi.max(hi);
            n_end = n_end.max(ne);
        }
        let n_end = n_end.min(n);
        let last = r0 + rows - 1;
        assert!(n_end <= ldb && n_end <= ldc);
        assert!(last * ldc + n_end <= c.len());
        assert!(
            t_hi <= t_lo
                || (last * a.row + (t_hi - 1) * a.col < a.data.len()
                    && (t_hi - 1) * ldb + n_end <= b.len())
        );
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F is present (asserted above); every index read or written is inside the
        // bounds asserted above (rows r0..r0 + rows, columns < n_end, depth t_lo..t_hi).
        unsafe {
            if rows == ROWS {
                avx512::block::<ROWS>(a, b, ldb, c, ldc, r0, t_lo, t_hi, n_end);
            } else {
                for r in r0..r0 + rows {
                    avx512::block::<1>(a, b, ldb, c, ldc, r, t_lo, t_hi, n_end);
                }
            }
        }
        r0 += rows;
    }
}

/// A matrix operand read one element at a time: `data[i * row + t * col]`.
#[derive(Clone, Copy)]
struct Strided<'a> {
    data: &'a [f32],
    row: usize,
    col: usize,
}

impl<'a> Strided<'a> {
    /// Rows `stride` apart, each contiguous (row-major `[.., stride]`, or one head of a
    /// heads-interleaved buffer).
    fn rows(data: &'a [f32], stride: usize) -> Self {
        Self {
            data,
            row: stride,
            col: 1,
        }
    }
    /// The transpose of row-major `[.., cols]`.
    fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row: 1,
            col: cols,
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::Strided;

    /// `R` rows from `r0`, all columns below `n_end` in chunks of 32 (two vectors; masked tails).
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn block<const R: usize>(
        a: Strided,
        b: &[f32],
        ldb: usize,
        c: &mut [f32],
        ldc: usize,
        r0: usize,
        t_lo: usize,
        t_hi: usize,
        n_end: usize,
    ) {
        let (a_rs, a_cs) = (a.row, a.col);
        let (a, b, c) = (a.data.as_ptr(), b.as_ptr(), c.as_mut_ptr());
        let lane_mask = |from: usize| -> __mmask16 {
            let left = n_end.saturating_sub(from).min(16);
            if left == 16 {
                0xFFFF
            } else {
                ((1u32 << left) - 1) as __mmask16
            }
        };
        let mut n0 = 0;
        while n0 < n_end {
            let (m0, m1) = (lane_mask(n0), lane_mask(n0 + 16));
            let mut acc = [[_mm512_setzero_ps(); 2]; R];
            // SAFETY (all pointer arithmetic below): rows r0..r0 + R of `a` and `c`, columns below
            // n_end of `b` and `c`, depth t_lo..t_hi, all inside the slices (the caller asserts);
            // masked-out lanes are neither read nor written.
            unsafe {
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let row = c.add((r0 + r) * ldc + n0);
                    acc_r[0] = _mm512_maskz_loadu_ps(m0, row);
                    acc_r[1] = _mm512_maskz_loadu_ps(m1, row.wrapping_add(16));
                }
                for t in t_lo..t_hi {
                    let b_row = b.add(t * ldb + n0);
                    let b0 = _mm512_maskz_loadu_ps(m0, b_row);
                    let b1 = _mm512_maskz_loadu_ps(m1, b_row.wrapping_add(16));
                    for (r, acc_r) in acc.iter_mut().enumerate() {
                        let x = _mm512_set1_ps(*a.add((r0 + r) * a_rs + t * a_cs));
                        acc_r[0] = _mm512_fmadd_ps(x, b0, acc_r[0]);
                        acc_r[1] = _mm512_fmadd_ps(x, b1, acc_r[1]);
                    }
                }
                for (r, acc_r) in acc.iter().enumerate() {
                    let row = c.add((r0 + r) * ldc + n0);
                    _mm512_mask_storeu_ps(row, m0, acc_r[0]);
                    _mm512_mask_storeu_ps(row.wrapping_add(16), m1, acc_r[1]);
                }
            }
            n0 += 32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuDevice;
    use crate::kernels::autodiff::Ad;
    use crate::kernels::test_support::{close, fill, param};
    use burn::tensor::TensorData;
    use burn::tensor::activation::softmax;

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
        if !avx512_available() {
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
                    *x = crate::kernels::MASKED;
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
}
