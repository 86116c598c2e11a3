//! The AVX2 + FMA row kernels of the fused ops (SwiGLU and its backward, the masked softmax and its
//! backward, RMSNorm and its backward, log-sum-exp, scaled softmax rows). Callers go through the
//! safe wrappers of `kernels::simd`, which check the CPU features and the slice lengths.

use std::arch::x86_64::*;

use super::math::{exp, hsum};

/// `x / (1 + exp(-x)) * u` on 8 lanes.
#[target_feature(enable = "avx2,fma")]
fn swiglu8(x: __m256, u: __m256) -> __m256 {
    let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
    let silu = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e));
    _mm256_mul_ps(silu, u)
}

/// Safety: the CPU has AVX2 and FMA; the slices have one length.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
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
pub(crate) unsafe fn swiglu_backward(
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
pub(crate) unsafe fn masked_softmax_row(scores: &[f32], mask: &[f32], scale: f32, out: &mut [f32]) {
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
pub(crate) unsafe fn softmax_backward_row(p: &[f32], dp: &[f32], scale: f32, ds: &mut [f32]) {
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
pub(crate) unsafe fn rms_norm_row(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) -> f32 {
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
pub(crate) unsafe fn rms_norm_backward_row(
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
pub(crate) unsafe fn log_sum_exp(x: &[f32]) -> f32 {
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
pub(crate) unsafe fn softmax_scaled_row(x: &[f32], lse: f32, factor: f32, out: &mut [f32]) {
    let (l, f) = (_mm256_set1_ps(lse), _mm256_set1_ps(factor));
    for at in (0..x.len()).step_by(8) {
        let e = exp(_mm256_sub_ps(load(x, at, f32::NEG_INFINITY), l));
        store(out, at, _mm256_mul_ps(e, f));
    }
}
