//! The attention softmax, `softmax(scores * scale + mask)` (mask constant), and the vocabulary
//! log-softmax with the target's gather, `log_softmax(logits)[row, target[row]]`, without the
//! `[rows, vocab]` log-probability tensor: one pass per row forward and backward, on burn-flex and
//! the learner's `Autodiff<burn-flex>`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rayon::prelude::*;

use super::autodiff::{Operand, into_tensor, par_rows2, record};
use super::flex::{flex, shape, values};
use super::simd;
use crate::backend::Cpu;

// ---------------------------------------------------------------------------------------------
// Masked softmax

/// `softmax(scores * scale + mask)` over the last dimension; `mask` (same shape) is a constant
/// (no gradient flows to it). `None` where the op does not apply (see the `kernels` module docs).
pub(crate) fn masked_softmax<B: Backend, const D: usize>(
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
            simd::masked_softmax_row(s, m, scale, o)
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
            simd::softmax_backward_row(p, dp, self.scale, o)
        });
        grads.register::<Cpu>(node.id, flex(ds, dims));
    }
}

// ---------------------------------------------------------------------------------------------
// Log-softmax + gather

/// `log_softmax(logits, 1)[row, targets[row]]` for `logits` `[rows, vocab]`: the log-probability of
/// each row's target token, `[rows]`. `None` where the op does not apply (see the `kernels` module docs) or a
/// target is out of range.
pub(crate) fn log_softmax_gather<B: Backend>(
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
                *l = simd::log_sum_exp(row);
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
            simd::softmax_scaled_row(&lv[r * vocab..(r + 1) * vocab], lse[r], -g[r], d);
            d[targets[r] as usize] += g[r];
        });
        grads.register::<Cpu>(node.id, flex(d, dims));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuDevice;
    use crate::kernels::autodiff::Ad;
    use crate::kernels::flex::simd_available;
    use crate::kernels::test_support::{close, loss, param};
    use burn::tensor::Int;
    use burn::tensor::TensorData;
    use burn::tensor::activation::{log_softmax, softmax};

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
                *v = crate::kernels::MASKED;
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
}
