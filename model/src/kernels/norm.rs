//! HF's RMSNorm, `x * rsqrt(mean(x²) + eps) * weight`, one pass per row forward and backward on
//! burn-flex and the learner's `Autodiff<burn-flex>`. The weight gradient adds fixed-size blocks of
//! rows in a fixed order, so it does not depend on the thread count.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rayon::prelude::*;

use super::autodiff::{BLOCK, Operand, into_tensor, par_row_blocks, record};
use super::flex::{flex, shape, values};
use super::simd;
use crate::backend::Cpu;

// ---------------------------------------------------------------------------------------------
// RMSNorm

/// HF's RMSNorm over the last dimension: `x * rsqrt(mean(x²) + eps) * weight`, `weight` of the
/// last dimension's size. `None` where the op does not apply (see the `kernels` module docs).
pub(crate) fn rms_norm<B: Backend, const D: usize>(
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
                    *r = simd::rms_norm_row(x, &wv, eps as f32, y);
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
                    simd::rms_norm_backward_row(&xv[row.clone()], &wv, &dy[row], inv, dx);
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::kernels::test_support::{close, loss, param};

    use crate::kernels::flex::simd_available;

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
}
