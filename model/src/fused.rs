//! Fused inference ops for decode steps on burn-flex: SwiGLU's gating and single-query attention.
//!
//! A decode step of a small model is bound by the number of ops, not by arithmetic: burn-flex runs
//! SiLU as a scalar `exp` pass plus two more elementwise passes, and attention over the KV cache as
//! two batched matmuls, a mask add and a four-op softmax, each allocating its output (the tiny
//! default model at batch 32: the MLP's elementwise part and the attention core were about 0.7 of
//! its 2.0 ms per step, BENCHMARKS.md). Here each is one pass over its inputs, with a vectorised
//! `exp`.
//!
//! Like `small_matmul`, these run only on burn-flex, f32, x86-64 with AVX2 and FMA; everything else
//! (autodiff tensors in the learner, CUDA, other CPUs) returns `None` and the caller takes burn's ops.
//! Every output element is computed by the same instructions in the same order whatever the batch
//! size and the element's position, so a row's result does not depend on what it is batched with.

use burn::backend::flex::FlexTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};

use crate::small_matmul::{as_flex, f32_contiguous, simd_available};

/// Largest head dimension the attention kernel keeps in registers (16 AVX2 accumulators).
const MAX_HEAD_DIM: usize = 128;

/// `silu(gate) * up`, elementwise, for two contiguous tensors of one shape; `None` where the kernel
/// does not apply (see the module docs).
pub fn swiglu<B: Backend, const D: usize>(
    gate: &Tensor<B, D>,
    up: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    if gate.dims() != up.dims() || !simd_available() {
        return None;
    }
    let (g, u) = (as_flex(gate)?, as_flex(up)?);
    let (g, u) = (f32_contiguous(&g)?, f32_contiguous(&u)?);
    let mut out = vec![0.0f32; g.len()];
    swiglu_slices(g, u, &mut out);
    Some(Tensor::from_data(
        TensorData::new(out, gate.dims()),
        &gate.device(),
    ))
}

/// Attention of one new query per row over the cached keys: `q` `[batch, 1, heads, head_dim]`
/// (contiguous, RoPE applied), `k`/`v` `[batch, kv_heads, keys, head_dim]` (any layout with a unit
/// inner stride, e.g. the filled prefix of the cache), `mask` additive `[batch, heads, 1, keys]`
/// (contiguous). Query head `h` reads kv head `h / (heads / kv_heads)`, HF's `repeat_kv` order.
/// Returns `softmax(q kᵀ · scale + mask) v` as `[batch, 1, heads * head_dim]`, or `None` where the
/// kernel does not apply.
pub fn decode_attention<B: Backend>(
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

/// A 4-d f32 tensor's storage and element strides, for reading rows `[b, h, t, ..]` in place.
pub(crate) struct StridedView<'a> {
    data: &'a [f32],
    offset: usize,
    strides: [usize; 3],
    dims: [usize; 4],
}

impl<'a> StridedView<'a> {
    /// `None` unless the tensor is f32, 4-d, with non-negative strides and a unit innermost stride.
    pub(crate) fn of(t: &'a FlexTensor) -> Option<Self> {
        if t.dtype() != DType::F32 {
            return None;
        }
        let layout = t.layout();
        let s = layout.strides();
        if s.len() != 4 || s[3] != 1 || s.iter().any(|&x| x < 0) {
            return None;
        }
        let data = t.storage::<f32>();
        let dims = layout.shape();
        // The last element read must lie in the buffer.
        let last = layout.start_offset()
            + (0..4)
                .map(|i| (dims[i].max(1) - 1) * s[i] as usize)
                .sum::<usize>();
        if layout.num_elements() == 0 || last >= data.len() {
            return None;
        }
        Some(Self {
            data,
            offset: layout.start_offset(),
            strides: [s[0] as usize, s[1] as usize, s[2] as usize],
            dims: [dims[0], dims[1], dims[2], dims[3]],
        })
    }

    /// Every element in logical (row-major) order, copied a row at a time.
    pub(crate) fn to_vec(&self) -> Vec<f32> {
        let [d0, d1, d2, len] = self.dims;
        let mut out = Vec::with_capacity(d0 * d1 * d2 * len);
        for b in 0..d0 {
            for h in 0..d1 {
                for t in 0..d2 {
                    out.extend_from_slice(self.row(b, h, t, len));
                }
            }
        }
        out
    }

    /// Row `[b, h, t, ..]`, `len` elements.
    pub(crate) fn row(&self, b: usize, h: usize, t: usize, len: usize) -> &[f32] {
        let at = self.offset + b * self.strides[0] + h * self.strides[1] + t * self.strides[2];
        &self.data[at..at + len]
    }
}

/// See [`swiglu`]. Panics if the slices differ in length or the CPU lacks AVX2/FMA.
pub(crate) fn swiglu_slices(gate: &[f32], up: &[f32], out: &mut [f32]) {
    assert!(gate.len() == up.len() && up.len() == out.len());
    assert!(simd_available(), "swiglu_slices needs AVX2 and FMA");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX2 and FMA are present (asserted above).
    unsafe {
        avx2::swiglu(gate, up, out)
    }
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

/// AVX-512F and AVX-512VL: the attention kernel then runs its AVX2 instructions with 32 registers.
fn wide_registers_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::small_matmul::avx512_available() && std::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    use super::MAX_HEAD_DIM;

    /// `exp` on 8 lanes: Cephes' `expf` (range reduction by ln 2 in two parts, a degree-5
    /// polynomial), within 2 ulp of libm over the normal range. Inputs below -87.3 give 0 (libm gives
    /// a subnormal or 0; softmax's masked keys land here), inputs above 88.37 give exp(88.37) = 2.5e38 (keeping 2^n
    /// representable).
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn exp(x: __m256) -> __m256 {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4;
        let underflow = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-87.3));
        let x = _mm256_min_ps(x, _mm256_set1_ps(88.37));
        let x = _mm256_max_ps(x, _mm256_set1_ps(-87.3));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(LOG2E)),
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.398_199_9e-3));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.333_452e-3));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.166_579_6e-2));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.666_666_5e-1));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5));
        let r2 = _mm256_mul_ps(r, r);
        let y = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
        // 2^n, built in the exponent field (n is in [-126, 127] after the clamps).
        let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        )));
        _mm256_andnot_ps(underflow, _mm256_mul_ps(y, pow2n))
    }

    /// `x / (1 + exp(-x)) * u` on 8 lanes.
    #[target_feature(enable = "avx2,fma")]
    fn swiglu8(x: __m256, u: __m256) -> __m256 {
        let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
        let silu = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e));
        _mm256_mul_ps(silu, u)
    }

    /// Safety: the CPU has AVX2 and FMA; the slices have one length.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
        let n = gate.len();
        let body = n / 8 * 8;
        let mut i = 0;
        while i < body {
            // SAFETY: i + 8 <= body <= the length of all three slices.
            unsafe {
                let y = swiglu8(
                    _mm256_loadu_ps(gate.as_ptr().add(i)),
                    _mm256_loadu_ps(up.as_ptr().add(i)),
                );
                _mm256_storeu_ps(out.as_mut_ptr().add(i), y);
            }
            i += 8;
        }
        if body < n {
            // The tail goes through the same 8-lane code, so a value's result does not depend on
            // where it sits.
            let (mut g, mut u, mut y) = ([0.0f32; 8], [0.0f32; 8], [0.0f32; 8]);
            g[..n - body].copy_from_slice(&gate[body..]);
            u[..n - body].copy_from_slice(&up[body..]);
            // SAFETY: 8-element stack arrays.
            unsafe {
                let r = swiglu8(_mm256_loadu_ps(g.as_ptr()), _mm256_loadu_ps(u.as_ptr()));
                _mm256_storeu_ps(y.as_mut_ptr(), r);
            }
            out[body..].copy_from_slice(&y[..n - body]);
        }
    }

    /// Sum of the 8 lanes, in a fixed order.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
        _mm_cvtss_f32(s)
    }

    /// `[sum(a[0]), ..., sum(a[7])]`: the lanes of each input summed pairwise, in one fixed tree.
    #[target_feature(enable = "avx2,fma")]
    fn sum8(a: [__m256; 8]) -> __m256 {
        let h01 = _mm256_hadd_ps(a[0], a[1]);
        let h23 = _mm256_hadd_ps(a[2], a[3]);
        let h45 = _mm256_hadd_ps(a[4], a[5]);
        let h67 = _mm256_hadd_ps(a[6], a[7]);
        // [s0 s1 s2 s3 | s0' s1' s2' s3'] with the low and high halves of each input's lanes.
        let h0123 = _mm256_hadd_ps(h01, h23);
        let h4567 = _mm256_hadd_ps(h45, h67);
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(h0123, h4567),
            _mm256_permute2f128_ps::<0x31>(h0123, h4567),
        )
    }

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
    use burn::tensor::activation::{silu, softmax};

    /// small_matmul's deterministic fill, scaled to [-range, range).
    fn values(len: usize, seed: u32, range: f32) -> Vec<f32> {
        let mut v = crate::small_matmul::tests::values(len, seed);
        v.iter_mut().for_each(|x| *x *= range);
        v
    }

    #[test]
    fn vector_exp_is_within_2_ulp_of_libm() {
        if !simd_available() {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::*;
            let mut worst = 0u32;
            let mut x = -87.0f32;
            while x < 88.3 {
                let xs: [f32; 8] = std::array::from_fn(|i| x + i as f32 * 1.37e-3);
                let mut got = [0.0f32; 8];
                // SAFETY: AVX2/FMA checked above; 8-element arrays.
                unsafe {
                    let e = avx2::exp(_mm256_loadu_ps(xs.as_ptr()));
                    _mm256_storeu_ps(got.as_mut_ptr(), e);
                }
                for (g, xi) in got.iter().zip(xs) {
                    let want = xi.min(88.37).exp();
                    let ulp = g.to_bits().abs_diff(want.to_bits());
                    assert!(ulp <= 2, "exp({xi}): {g} vs {want}");
                    worst = worst.max(ulp);
                }
                x += 0.0113;
            }
            assert!(worst <= 2, "worst error {worst} ulp");
            // Underflow and the masked value give exactly 0; overflow stays finite.
            let xs = [
                -1.0e9f32,
                -100.0,
                -87.4,
                0.0,
                1.0,
                88.0,
                100.0,
                f32::NEG_INFINITY,
            ];
            let mut got = [0.0f32; 8];
            // SAFETY: as above.
            unsafe {
                _mm256_storeu_ps(got.as_mut_ptr(), avx2::exp(_mm256_loadu_ps(xs.as_ptr())));
            }
            assert_eq!(&got[..3], &[0.0, 0.0, 0.0]);
            assert_eq!(got[3], 1.0);
            assert!(got[6].is_finite() && got[6] > 2.0e38);
            assert_eq!(got[7], 0.0);
        }
    }

    #[test]
    fn swiglu_matches_burns_ops() {
        let device = CpuDevice::default();
        // 3 x 43 elements: not a multiple of 8, so the tail path runs.
        let g =
            Tensor::<Cpu, 2>::from_data(TensorData::new(values(129, 1, 12.0), [3, 43]), &device);
        let u = Tensor::<Cpu, 2>::from_data(TensorData::new(values(129, 2, 3.0), [3, 43]), &device);
        let want = (silu(g.clone()) * u.clone()).into_data();
        match swiglu(&g, &u) {
            Some(got) => got
                .into_data()
                .assert_approx_eq::<f32>(&want, burn::tensor::Tolerance::relative(1e-6)),
            None => assert!(!simd_available()),
        }
        // A transposed (non-contiguous) operand or mismatched shapes: burn's ops.
        assert!(swiglu(&g.clone().transpose(), &u.clone().transpose()).is_none());
        assert!(swiglu(&g, &u.slice([0..2, 0..43])).is_none());
    }

    #[test]
    fn a_value_does_not_depend_on_its_position() {
        if !simd_available() {
            return;
        }
        let g = values(37, 3, 8.0);
        let u = values(37, 4, 2.0);
        let mut all = vec![0.0; 37];
        swiglu_slices(&g, &u, &mut all);
        for i in 0..37 {
            let mut one = [0.0f32];
            swiglu_slices(&g[i..=i], &u[i..=i], &mut one);
            assert_eq!(one[0].to_bits(), all[i].to_bits(), "element {i}");
        }
    }

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
                m[(b * nh + h) * keys..][..pad].fill(crate::transformer::MASKED);
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
