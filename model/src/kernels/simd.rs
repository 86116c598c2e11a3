//! Safe wrappers of the AVX2 + FMA row kernels (`x86::rows`): each asserts the CPU features and
//! the slice lengths, so a call on another CPU panics instead of faulting. Every op checks
//! `simd_available` before it gets here.

use super::flex::simd_available;
#[cfg(target_arch = "x86_64")]
use super::x86::rows as avx2;

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

pub fn swiglu_backward(dy: &[f32], gate: &[f32], up: &[f32], d_gate: &mut [f32], d_up: &mut [f32]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "x86_64")]
    use crate::kernels::x86::math;

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
                    let e = math::exp(_mm256_loadu_ps(xs.as_ptr()));
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
                _mm256_storeu_ps(got.as_mut_ptr(), math::exp(_mm256_loadu_ps(xs.as_ptr())));
            }
            assert_eq!(&got[..3], &[0.0, 0.0, 0.0]);
            assert_eq!(got[3], 1.0);
            assert!(got[6].is_finite() && got[6] > 2.0e38);
            assert_eq!(got[7], 0.0);
        }
    }
}
