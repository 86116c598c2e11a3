//! Test helpers shared by the kernels' tests and the model's gradient tests: a deterministic fill,
//! `Autodiff` parameters from it, a tolerance check and a weighted-sum loss.

use burn::tensor::{Tensor, TensorData};

use crate::backend::{Cpu, CpuDevice};
pub(crate) use crate::kernels::autodiff::Ad;
pub(crate) use crate::kernels::flex::simd_available;

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

/// [`values`], scaled to [-range, range).
pub(crate) fn fill(len: usize, seed: u32, range: f32) -> Vec<f32> {
    let mut v = values(len, seed);
    v.iter_mut().for_each(|x| *x *= range);
    v
}

pub(crate) fn param<const D: usize>(dims: [usize; D], seed: u32, range: f32) -> Tensor<Ad, D> {
    let n = dims.iter().product();
    Tensor::from_data(
        TensorData::new(fill(n, seed, range), dims),
        &CpuDevice::default(),
    )
    .require_grad()
}

pub(crate) fn close<const D: usize>(
    got: Tensor<Cpu, D>,
    want: Tensor<Cpu, D>,
    tol: f32,
    what: &str,
) {
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
pub(crate) fn loss<const D: usize>(y: Tensor<Ad, D>, seed: u32) -> Tensor<Ad, 1> {
    let w = Tensor::<Ad, D>::from_data(
        TensorData::new(fill(y.dims().iter().product(), seed, 1.0), y.dims()),
        &y.device(),
    );
    (y * w).sum()
}
