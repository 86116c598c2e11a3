//! The rotary embedding, `x * cos + rotate_half(x) * sin` (tables constant), one pass per row
//! forward and backward on burn-flex and the learner's `Autodiff<burn-flex>`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::autodiff::{Operand, into_tensor, par_row_blocks, record};
use super::flex::{flex, shape, values};
use super::simd;
use crate::backend::Cpu;

// ---------------------------------------------------------------------------------------------
// RoPE

/// Rotary embedding `x * cos + rotate_half(x) * sin` over the last dimension (HF's
/// `rotate_half(x) = cat(-x2, x1)`), with `cos`/`sin` of `x`'s shape (constants). `None` where the op
/// does not apply (see the `kernels` module docs) or the last dimension is odd.
pub(crate) fn rope<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    cos: &Tensor<B, D>,
    sin: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    let hd = x.dims()[D - 1];
    if x.dims() != cos.dims() || x.dims() != sin.dims() || hd == 0 || hd % 2 == 1 {
        return None;
    }
    let xo = Operand::of(x)?;
    let (co, so) = (Operand::of(cos)?, Operand::of(sin)?);
    let (cv, sv) = (values(co.value()), values(so.value()));
    let y = {
        let xv = values(xo.value());
        let mut y = vec![0.0f32; xv.len()];
        par_row_blocks(&mut y, hd, |at, y| {
            let n = y.len();
            simd::rope_rows(&xv[at..at + n], &cv[at..at + n], &sv[at..at + n], hd, y);
        });
        flex(y, x.dims().to_vec())
    };
    match xo {
        Operand::Flex(_) => Some(into_tensor(y)),
        Operand::Autodiff(xa) => {
            let state = || (co.value().clone(), so.value().clone());
            Some(into_tensor(record(RopeBackward, [&xa], state, y)))
        }
    }
}

#[derive(Debug)]
struct RopeBackward;

impl Backward<Cpu, 1> for RopeBackward {
    /// The cos and sin tables.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Cpu>(&ops.node);
        let [parent] = ops.parents;
        let Some(node) = parent else { return };
        let (cos, sin) = ops.state;
        let dims = shape(&cos);
        let hd = *dims.last().expect("at least one dimension");
        let (cv, sv, dy) = (values(&cos), values(&sin), values(&grad));
        // The transpose of the rotation is the rotation with `sin` replaced by -cat(s2, s1):
        // dx1 = dy1 c1 + dy2 s2 and dx2 = dy2 c2 - dy1 s1.
        let half = hd / 2;
        let mut sin_t = vec![0.0f32; sv.len()];
        for (t, s) in sin_t.chunks_exact_mut(hd).zip(sv.chunks_exact(hd)) {
            let ((t1, t2), (s1, s2)) = (t.split_at_mut(half), s.split_at(half));
            t1.iter_mut().zip(s2).for_each(|(t, &s)| *t = -s);
            t2.iter_mut().zip(s1).for_each(|(t, &s)| *t = -s);
        }
        let mut dx = vec![0.0f32; dy.len()];
        par_row_blocks(&mut dx, hd, |at, dx| {
            let n = dx.len();
            simd::rope_rows(&dy[at..at + n], &cv[at..at + n], &sin_t[at..at + n], hd, dx);
        });
        grads.register::<Cpu>(node.id, flex(dx, dims));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuDevice;
    use crate::kernels::autodiff::Ad;
    use crate::kernels::flex::simd_available;
    use crate::kernels::test_support::{close, fill, loss, param};
    use burn::tensor::TensorData;

    #[test]
    fn rope_value_and_gradient_match_the_rotation_matrix() {
        if !simd_available() {
            return;
        }
        let device = CpuDevice::default();
        let (b, s, h, hd) = (2, 3, 4, 6);
        let x = param([b, s, h, hd], 16, 2.0);
        let table = |seed| {
            Tensor::<Ad, 4>::from_data(
                TensorData::new(fill(b * s * h * hd, seed, 1.0), [b, s, h, hd]),
                &device,
            )
        };
        let (cos, sin) = (table(17), table(18));
        let got = rope(&x, &cos, &sin).expect("applies");
        // The reference: rotate_half as a matrix product, x @ R = cat(-x2, x1).
        let half = hd / 2;
        let mut r = vec![0.0f32; hd * hd];
        for j in 0..half {
            r[(j + half) * hd + j] = -1.0;
            r[j * hd + j + half] = 1.0;
        }
        let r = Tensor::<Ad, 2>::from_data(TensorData::new(r, [hd, hd]), &device);
        let rotated = x
            .clone()
            .reshape([b * s * h, hd])
            .matmul(r)
            .reshape([b, s, h, hd]);
        let want = x.clone() * cos.clone() + rotated * sin.clone();
        close(got.clone().inner(), want.clone().inner(), 1e-6, "value");
        let (gg, wg) = (loss(got, 19).backward(), loss(want, 19).backward());
        close(x.grad(&gg).unwrap(), x.grad(&wg).unwrap(), 1e-5, "dx");
        // An odd last dimension has no halves.
        let odd = param([1, 1, 1, 5], 20, 1.0);
        assert!(rope(&odd, &odd, &odd).is_none());
    }
}
