//! Attention of one new query per row over the KV cache (a decode step) on burn-flex: one pass per
//! (row, head) with the 8-lane `exp`, scores, softmax and the value product in registers.
//!
//! A decode step of a small model is bound by the number of ops, not by arithmetic: burn-flex runs
//! attention over the KV cache as two batched matmuls, a mask add and a four-op softmax, each
//! allocating its output (the tiny default model at batch 32: the MLP's elementwise part and the
//! attention core were about 0.7 of its 2.0 ms per step, BENCHMARKS.md). It runs only on burn-flex,
//! f32, x86-64 with AVX2 and FMA; everything else returns `None`. Every output element is computed
//! by the same instructions in the same order whatever the batch size and the element's position,
//! so a row's result does not depend on what it is batched with.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::AttentionShape;
use crate::kernels::flex::{
    StridedView, as_flex, f32_contiguous, simd_available, wide_registers_available,
};

/// Largest head dimension the attention kernel keeps in registers (16 AVX2 accumulators).
const MAX_HEAD_DIM: usize = 128;

/// Attention of one new query per row over the cached keys: `q` `[batch, 1, heads, head_dim]`
/// (contiguous, RoPE applied), `k`/`v` `[batch, kv_heads, keys, head_dim]` (any layout with a unit
/// inner stride, e.g. the filled prefix of the cache), `mask` additive `[batch, heads, 1, keys]`
/// (contiguous). Query head `h` reads kv head `h / (heads / kv_heads)`, HF's `repeat_kv` order.
/// Returns `softmax(q kᵀ · scale + mask) v` as `[batch, 1, heads * head_dim]`, or `None` where the
/// kernel does not apply.
pub(crate) fn decode_attention<B: Backend>(
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
        heads: nh,
        head_dim: hd,
        ..
    } = shape;
    if seq != 1 || !hd.is_multiple_of(8) || hd > MAX_HEAD_DIM || !simd_available() {
        return None;
    }
    let device = q.device();
    let (q, mask) = (as_flex(q)?, as_flex(mask)?);
    let (q_data, m_data) = (f32_contiguous(&q)?, f32_contiguous(&mask)?);
    let (k, v) = (as_flex(k)?, as_flex(v)?);
    let (k_view, v_view) = (StridedView::of(&k)?, StridedView::of(&v)?);
    let mut out = vec![0.0f32; batch * nh * hd];
    let wide = wide_registers_available();
    decode_attention_slices(
        shape, q_data, &k_view, &v_view, m_data, scale, wide, &mut out,
    );
    Some(Tensor::from_data(
        TensorData::new(out, [batch, 1, nh * hd]),
        &device,
    ))
}

/// See [`decode_attention`]. `q` is `[batch, heads, head_dim]`, `mask` `[batch, heads, keys]`, `out`
/// `[batch, heads, head_dim]`. `wide`: use AVX-512VL's 32 registers (same results).
#[allow(clippy::too_many_arguments)]
fn decode_attention_slices(
    s: AttentionShape,
    q: &[f32],
    k: &StridedView,
    v: &StridedView,
    mask: &[f32],
    scale: f32,
    wide: bool,
    out: &mut [f32],
) {
    let hd = s.head_dim;
    assert_eq!(q.len(), s.batch * s.heads * hd);
    assert_eq!(mask.len(), s.batch * s.heads * s.keys);
    assert_eq!(out.len(), s.batch * s.heads * hd);
    assert!(hd.is_multiple_of(8) && hd <= MAX_HEAD_DIM);
    assert!(
        simd_available(),
        "decode_attention_slices needs AVX2 and FMA"
    );
    assert!(
        !wide || wide_registers_available(),
        "this CPU lacks AVX-512VL"
    );
    let groups = s.groups();
    let mut probs = vec![0.0f32; s.keys.next_multiple_of(8)];
    for b in 0..s.batch {
        for h in 0..s.heads {
            let kvh = h / groups;
            let at = (b * s.heads + h) * hd;
            let q_row = &q[at..at + hd];
            let mask_row = &mask[(b * s.heads + h) * s.keys..][..s.keys];
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 and FMA are present (asserted above); every row has `hd` elements.
            unsafe {
                avx2::attend(
                    q_row,
                    |t| k.row(b, kvh, t, hd),
                    |t| v.row(b, kvh, t, hd),
                    mask_row,
                    scale,
                    &mut probs,
                    &mut out[at..at + hd],
                    wide,
                )
            };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::MAX_HEAD_DIM;
    use crate::kernels::x86::math::{exp, hsum, sum8};

    /// One (row, head): scores over `mask.len()` keys, softmax, and the weighted sum of values into
    /// `out` (`head_dim` = `q.len()` floats). `probs` is scratch of at least the keys rounded up to 8.
    /// Safety: the CPU has AVX2 and FMA, and AVX-512F and AVX-512VL where `wide`; `q.len()` is a
    /// multiple of 8 up to `MAX_HEAD_DIM`, and every key and value row has `q.len()` elements.
    ///
    /// The kernel is compiled once per head dimension, so the query and the accumulators are arrays
    /// of a fixed size that stay in registers (with a lane count known only at run time they lived
    /// on the stack, and every value FMA waited on a store). With AVX-512VL the same AVX2
    /// instructions get 32 vector registers instead of 16 (a head dim of 64 needs 24); the
    /// arithmetic, and so every result, is the same on both paths.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn attend<'a>(
        q: &[f32],
        key: impl Fn(usize) -> &'a [f32],
        value: impl Fn(usize) -> &'a [f32],
        mask: &[f32],
        scale: f32,
        probs: &mut [f32],
        out: &mut [f32],
        wide: bool,
    ) {
        macro_rules! by_lanes {
            ($($l:literal)*) => {
                match q.len() / 8 {
                    // SAFETY: the caller's contract, with the lane count matched.
                    $($l => unsafe {
                        if wide {
                            attend_vl::<$l>(q, key, value, mask, scale, probs, out)
                        } else {
                            attend_avx2::<$l>(q, key, value, mask, scale, probs, out)
                        }
                    },)*
                    other => unreachable!("head dim {} is not a multiple of 8 up to {MAX_HEAD_DIM}", other * 8),
                }
            };
        }
        by_lanes!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
    }

    /// The body of [`attend`] for `L` lanes of 8, compiled once per feature set (a macro rather
    /// than an inlined generic, so the intrinsics are certain to inline into the enabled function).
    macro_rules! attend_kernel {
        ($name:ident, $features:literal) => {
            #[target_feature(enable = $features)]
            unsafe fn $name<'a, const L: usize>(
                q: &[f32],
                key: impl Fn(usize) -> &'a [f32],
                value: impl Fn(usize) -> &'a [f32],
                mask: &[f32],
                scale: f32,
                probs: &mut [f32],
                out: &mut [f32],
            ) {
                let hd = q.len();
                debug_assert_eq!(hd, L * 8);
                let keys = mask.len();
                let mut qv = [_mm256_setzero_ps(); L];
                for (c, slot) in qv.iter_mut().enumerate() {
                    // SAFETY: c * 8 + 8 <= hd.
                    *slot = unsafe { _mm256_loadu_ps(q.as_ptr().add(c * 8)) };
                }
                // Scores 8 keys at a time: eight dot-product accumulators reduced into one vector, so every
                // key's sum goes through the same tree whatever its position. Keys past the end read a zero
                // row and are overwritten below.
                let zeros = [0.0f32; MAX_HEAD_DIM];
                let padded = keys.next_multiple_of(8);
                let scale_v = _mm256_set1_ps(scale);
                let mut max_v = _mm256_set1_ps(f32::NEG_INFINITY);
                let mut t0 = 0;
                while t0 < padded {
                    let mut acc = [_mm256_setzero_ps(); 8];
                    for (j, a) in acc.iter_mut().enumerate() {
                        let t = t0 + j;
                        let k_row = if t < keys { key(t) } else { &zeros[..hd] };
                        for (c, qc) in qv.iter().enumerate() {
                            // SAFETY: the key row has hd elements.
                            *a = _mm256_fmadd_ps(
                                *qc,
                                unsafe { _mm256_loadu_ps(k_row.as_ptr().add(c * 8)) },
                                *a,
                            );
                        }
                    }
                    let mut m = [0.0f32; 8];
                    let n = (keys - t0).min(8);
                    m[..n].copy_from_slice(&mask[t0..t0 + n]);
                    // SAFETY: 8-element stack array; t0 + 8 <= padded <= probs.len().
                    let s =
                        unsafe { _mm256_fmadd_ps(sum8(acc), scale_v, _mm256_loadu_ps(m.as_ptr())) };
                    // SAFETY: as above.
                    unsafe { _mm256_storeu_ps(probs.as_mut_ptr().add(t0), s) };
                    t0 += 8;
                }
                // Padding lanes give exp(-inf) = 0 and add nothing to the sum.
                probs[keys..padded].fill(f32::NEG_INFINITY);
                for t in (0..padded).step_by(8) {
                    // SAFETY: t + 8 <= padded <= probs.len().
                    max_v = _mm256_max_ps(max_v, unsafe { _mm256_loadu_ps(probs.as_ptr().add(t)) });
                }
                let mut lanes_max = [0.0f32; 8];
                // SAFETY: 8-element stack array.
                unsafe { _mm256_storeu_ps(lanes_max.as_mut_ptr(), max_v) };
                let max = lanes_max.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let max_v = _mm256_set1_ps(max);
                let mut sum_v = _mm256_setzero_ps();
                let mut t = 0;
                while t < padded {
                    // SAFETY: t + 8 <= padded <= probs.len().
                    unsafe {
                        let e = exp(_mm256_sub_ps(_mm256_loadu_ps(probs.as_ptr().add(t)), max_v));
                        _mm256_storeu_ps(probs.as_mut_ptr().add(t), e);
                        sum_v = _mm256_add_ps(sum_v, e);
                    }
                    t += 8;
                }
                let inv = 1.0 / hsum(sum_v);
                // Even and odd keys in two accumulator sets, so consecutive FMAs do not wait on each other.
                let mut even = [_mm256_setzero_ps(); L];
                let mut odd = [_mm256_setzero_ps(); L];
                let fma_row = |acc: &mut [__m256; L], p: __m256, v_row: &[f32]| {
                    for (c, a) in acc.iter_mut().enumerate() {
                        // SAFETY: the value row has hd elements.
                        *a = _mm256_fmadd_ps(
                            p,
                            unsafe { _mm256_loadu_ps(v_row.as_ptr().add(c * 8)) },
                            *a,
                        );
                    }
                };
                let mut t = 0;
                while t + 1 < keys {
                    fma_row(&mut even, _mm256_set1_ps(probs[t] * inv), value(t));
                    fma_row(&mut odd, _mm256_set1_ps(probs[t + 1] * inv), value(t + 1));
                    t += 2;
                }
                if t < keys {
                    fma_row(&mut even, _mm256_set1_ps(probs[t] * inv), value(t));
                }
                for (c, (e, o)) in even.iter().zip(odd).enumerate() {
                    // SAFETY: c * 8 + 8 <= hd = out.len().
                    unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(c * 8), _mm256_add_ps(*e, o)) };
                }
            }
        };
    }
    attend_kernel!(attend_avx2, "avx2,fma");
    attend_kernel!(attend_vl, "avx2,fma,avx512f,avx512vl");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};
    use crate::kernels::test_support::fill as values;
    use burn::backend::flex::FlexTensor;
    use burn::tensor::activation::softmax;

    /// burn's path of `Attention::forward` for one query per row: GQA by folding groups into rows.
    fn reference(
        q: Tensor<Cpu, 4>,
        k: Tensor<Cpu, 4>,
        v: Tensor<Cpu, 4>,
        mask: Tensor<Cpu, 4>,
        scale: f32,
    ) -> Tensor<Cpu, 3> {
        let [batch, _, nh, hd] = q.dims();
        let [_, nkv, keys, _] = k.dims();
        let q = q.swap_dims(1, 2).reshape([batch, nkv, nh / nkv, hd]);
        let scores = q.matmul(k.swap_dims(2, 3)) * scale;
        let scores = scores.reshape([batch, nh, 1, keys]) + mask;
        let probs = softmax(scores, 3).reshape([batch, nkv, nh / nkv, keys]);
        probs
            .matmul(v)
            .reshape([batch, nh, 1, hd])
            .swap_dims(1, 2)
            .reshape([batch, 1, nh * hd])
    }

    #[test]
    fn decode_attention_matches_burns_ops_on_a_cache_prefix() {
        let device = CpuDevice::default();
        let (batch, nh, nkv, hd, keys, cap) = (3, 4, 2, 16, 13, 20);
        let q = Tensor::<Cpu, 4>::from_data(
            TensorData::new(values(batch * nh * hd, 5, 2.0), [batch, 1, nh, hd]),
            &device,
        );
        // K/V as the cache hands them over: the filled prefix of a larger buffer (strided).
        let buf = |seed| {
            Tensor::<Cpu, 4>::from_data(
                TensorData::new(
                    values(batch * nkv * cap * hd, seed, 2.0),
                    [batch, nkv, cap, hd],
                ),
                &device,
            )
            .slice([0..batch, 0..nkv, 0..keys, 0..hd])
        };
        let (k, v) = (buf(6), buf(7));
        // Row 1 is left-padded by 4 keys, row 2 by 12 (one visible key).
        let mut m = vec![0.0f32; batch * nh * keys];
        for (b, pad) in [(1usize, 4usize), (2, 12)] {
            for h in 0..nh {
                m[(b * nh + h) * keys..][..pad].fill(crate::kernels::MASKED);
            }
        }
        let mask = Tensor::<Cpu, 4>::from_data(TensorData::new(m, [batch, nh, 1, keys]), &device);
        let scale = 1.0 / (hd as f32).sqrt();
        let want = reference(q.clone(), k.clone(), v.clone(), mask.clone(), scale).into_data();
        match decode_attention(&q, &k, &v, &mask, scale) {
            Some(got) => got
                .into_data()
                .assert_approx_eq::<f32>(&want, burn::tensor::Tolerance::absolute(2e-6)),
            None => assert!(!simd_available()),
        }
        // Two new tokens per row (prefill) or a head dimension off the 8-lane grid: burn's ops.
        let q2 = Tensor::<Cpu, 4>::zeros([batch, 2, nh, hd], &device);
        assert!(decode_attention(&q2, &k, &v, &mask, scale).is_none());
        let q_odd = Tensor::<Cpu, 4>::zeros([batch, 1, nh, 12], &device);
        let k_odd = Tensor::<Cpu, 4>::zeros([batch, nkv, keys, 12], &device);
        assert!(decode_attention(&q_odd, &k_odd, &k_odd, &mask, scale).is_none());
    }

    #[test]
    fn both_register_sets_give_identical_attention() {
        if !wide_registers_available() {
            return;
        }
        // Head dims of one lane (8) up to MAX_HEAD_DIM, GQA groups of 1 and 3, odd key counts.
        for (nh, nkv, hd, keys) in [
            (2, 2, 8, 1),
            (6, 2, 32, 17),
            (9, 3, 64, 40),
            (4, 1, 128, 33),
        ] {
            let batch = 2;
            let shape = AttentionShape {
                batch,
                seq: 1,
                heads: nh,
                kv_heads: nkv,
                keys,
                head_dim: hd,
            };
            let q = values(batch * nh * hd, 3, 1.5);
            let kv = |seed| {
                FlexTensor::from_data(TensorData::new(
                    values(batch * nkv * keys * hd, seed, 1.5),
                    [batch, nkv, keys, hd],
                ))
            };
            let (k, v) = (kv(4), kv(5));
            let mask: Vec<f32> = values(batch * nh * keys, 6, 2.0);
            let run = |wide| {
                let mut out = vec![0.0f32; batch * nh * hd];
                let (kv_, vv) = (StridedView::of(&k).unwrap(), StridedView::of(&v).unwrap());
                decode_attention_slices(shape, &q, &kv_, &vv, &mask, 0.25, wide, &mut out);
                out
            };
            let (narrow, wide) = (run(false), run(true));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&narrow),
                bits(&wide),
                "heads {nh}/{nkv}, head dim {hd}, {keys} keys"
            );
        }
    }

    #[test]
    fn an_attention_row_does_not_depend_on_its_batch() {
        if !simd_available() {
            return;
        }
        let device = CpuDevice::default();
        let (batch, nh, nkv, hd, keys) = (4, 2, 1, 32, 9);
        let t = |len, seed, dims: [usize; 4]| {
            Tensor::<Cpu, 4>::from_data(TensorData::new(values(len, seed, 1.5), dims), &device)
        };
        let q = t(batch * nh * hd, 8, [batch, 1, nh, hd]);
        let k = t(batch * nkv * keys * hd, 9, [batch, nkv, keys, hd]);
        let v = t(batch * nkv * keys * hd, 10, [batch, nkv, keys, hd]);
        let mask = Tensor::<Cpu, 4>::zeros([batch, nh, 1, keys], &device);
        let all: Vec<f32> = decode_attention(&q, &k, &v, &mask, 0.3)
            .unwrap()
            .into_data()
            .into_vec()
            .unwrap();
        for b in 0..batch {
            let one: Vec<f32> = decode_attention(
                &q.clone().slice(b..b + 1),
                &k.clone().slice(b..b + 1),
                &v.clone().slice(b..b + 1),
                &mask.clone().slice(b..b + 1),
                0.3,
            )
            .unwrap()
            .into_data()
            .into_vec()
            .unwrap();
            assert_eq!(one, all[b * nh * hd..(b + 1) * nh * hd], "row {b}");
        }
    }
}
