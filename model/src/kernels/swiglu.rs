//! SwiGLU's gating, `silu(gate) * up`: one pass with the 8-lane `exp` on burn-flex inference
//! (burn-flex runs SiLU as a scalar `exp` pass plus two more elementwise passes), and the same pass
//! with a hand-written backward on the learner's `Autodiff<burn-flex>`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use super::autodiff::{BLOCK, par_row_blocks};
use super::autodiff::{Operand, into_tensor, record};
use super::flex::{as_flex, f32_contiguous, flex, shape, simd_available, values};
use super::simd;
use crate::backend::Cpu;

/// `silu(gate) * up`, elementwise, for two contiguous tensors of one shape; `None` where the kernel
/// does not apply (see the `kernels` module docs).
pub(crate) fn swiglu_flex<B: Backend, const D: usize>(
    gate: &Tensor<B, D>,
    up: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    if gate.dims() != up.dims() || !simd_available() {
        return None;
    }
    let (g, u) = (as_flex(gate)?, as_flex(up)?);
    let (g, u) = (f32_contiguous(&g)?, f32_contiguous(&u)?);
    let mut out = vec![0.0f32; g.len()];
    simd::swiglu_slices(g, u, &mut out);
    Some(Tensor::from_data(
        TensorData::new(out, gate.dims()),
        &gate.device(),
    ))
}

// ---------------------------------------------------------------------------------------------
// SwiGLU

/// `silu(gate) * up` for two tensors of one shape on `Autodiff<burn-flex>` (burn-flex inference
/// takes [`swiglu_flex`]); `None` elsewhere.
pub(crate) fn swiglu_autodiff<B: Backend, const D: usize>(
    gate: &Tensor<B, D>,
    up: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    if gate.dims() != up.dims() {
        return None;
    }
    let (Operand::Autodiff(g), Operand::Autodiff(u)) = (Operand::of(gate)?, Operand::of(up)?)
    else {
        return None;
    };
    let out = {
        let (gv, uv) = (values(&g.primitive), values(&u.primitive));
        let mut out = vec![0.0f32; gv.len()];
        par_row_blocks(&mut out, 1, |at, o| {
            simd::swiglu_slices(&gv[at..at + o.len()], &uv[at..at + o.len()], o)
        });
        flex(out, gate.dims().to_vec())
    };
    let state = || (g.primitive.clone(), u.primitive.clone());
    Some(into_tensor(record(SwigluBackward, [&g, &u], state, out)))
}

#[derive(Debug)]
struct SwigluBackward;

impl Backward<Cpu, 2> for SwigluBackward {
    /// The inputs, gate and up.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Cpu>(&ops.node);
        let (gate, up) = ops.state;
        let dims = shape(&gate);
        let (dy, g, u) = (values(&grad), values(&gate), values(&up));
        let n = g.len();
        let (mut d_gate, mut d_up) = (vec![0.0f32; n], vec![0.0f32; n]);
        d_gate
            .par_chunks_mut(BLOCK)
            .zip(d_up.par_chunks_mut(BLOCK))
            .enumerate()
            .for_each(|(i, (dg, du))| {
                let r = i * BLOCK..i * BLOCK + dg.len();
                simd::swiglu_backward(&dy[r.clone()], &g[r.clone()], &u[r], dg, du);
            });
        let [gate_node, up_node] = ops.parents;
        if let Some(node) = gate_node {
            grads.register::<Cpu>(node.id, flex(d_gate, dims.clone()));
        }
        if let Some(node) = up_node {
            grads.register::<Cpu>(node.id, flex(d_up, dims));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::swiglu_autodiff as swiglu;
    use super::*;
    use crate::backend::CpuDevice;
    use crate::kernels::autodiff::Ad;
    use crate::kernels::flex::simd_available;
    use crate::kernels::test_support::{close, fill, loss, param};
    use burn::tensor::TensorData;
    use burn::tensor::activation::silu;

    #[test]
    fn swiglu_value_and_gradients_match_burns_autodiff() {
        if !simd_available() {
            return;
        }
        // 3 x 43: not a multiple of 8, so the tail path runs.
        let (g, u) = (param([3, 43], 1, 9.0), param([3, 43], 2, 3.0));
        let got = swiglu(&g, &u).expect("applies on Autodiff<burn-flex>");
        let want = silu(g.clone()) * u.clone();
        close(got.clone().inner(), want.clone().inner(), 1e-6, "value");
        let (gg, wg) = (loss(got, 3).backward(), loss(want, 3).backward());
        close(g.grad(&gg).unwrap(), g.grad(&wg).unwrap(), 1e-5, "d gate");
        close(u.grad(&gg).unwrap(), u.grad(&wg).unwrap(), 1e-5, "d up");
    }

    #[test]
    fn untracked_inputs_give_the_same_values() {
        if !simd_available() {
            return;
        }
        let device = CpuDevice::default();
        let t = |seed| {
            Tensor::<Ad, 2>::from_data(TensorData::new(fill(4 * 24, seed, 3.0), [4, 24]), &device)
        };
        let (g, u) = (t(11), t(12));
        let untracked = swiglu(&g, &u).unwrap();
        let tracked = swiglu(&g.clone().require_grad(), &u.clone().require_grad()).unwrap();
        assert_eq!(untracked.into_data(), tracked.into_data());
    }

    #[cfg(test)]
    mod flex_tests {
        use super::swiglu_flex as swiglu;
        use crate::backend::{Cpu, CpuDevice};
        use crate::kernels::flex::simd_available;
        use crate::kernels::simd::swiglu_slices;
        use crate::kernels::test_support::fill as values;
        use burn::tensor::activation::silu;
        use burn::tensor::{Tensor, TensorData};

        #[test]
        fn swiglu_matches_burns_ops() {
            let device = CpuDevice::default();
            // 3 x 43 elements: not a multiple of 8, so the tail path runs.
            let g = Tensor::<Cpu, 2>::from_data(
                TensorData::new(values(129, 1, 12.0), [3, 43]),
                &device,
            );
            let u =
                Tensor::<Cpu, 2>::from_data(TensorData::new(values(129, 2, 3.0), [3, 43]), &device);
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
    }
}
