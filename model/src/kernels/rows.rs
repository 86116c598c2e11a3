//! Row copies: a strided view made contiguous a row at a time (attention's head split and merge),
//! and rows selected along the first dimension (the embedding lookup, the KV cache's forks), whose
//! backward adds each copy's gradient into its source row.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::autodiff::{Operand, into_tensor, record};
use super::flex::{copy_by_rows, flex, values};
use crate::backend::Cpu;

// ---------------------------------------------------------------------------------------------
// Relayout

/// `x` with a contiguous layout, copied a row at a time ([`copy_by_rows`]) where `x` is a view whose
/// last dimension is contiguous (a head split or merge); its gradient passes through unchanged.
/// Attention calls it before reshaping such views, which burn-flex would otherwise copy one
/// element at a time. `None` where `x` is contiguous already, or the op does not apply.
pub(crate) fn contiguous<B: Backend, const D: usize>(x: &Tensor<B, D>) -> Option<Tensor<B, D>> {
    let operand = Operand::of(x)?;
    let value = operand.value();
    if value.as_slice::<f32>().is_some() {
        return None;
    }
    let out = flex(copy_by_rows(value)?, x.dims().to_vec());
    Some(match operand {
        Operand::Flex(_) => into_tensor(out),
        Operand::Autodiff(a) => into_tensor(record(ContiguousBackward, [&a], || (), out)),
    })
}

#[derive(Debug)]
struct ContiguousBackward;

impl Backward<Cpu, 1> for ContiguousBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Cpu>(&ops.node);
        let [parent] = ops.parents;
        if let Some(node) = parent {
            grads.register::<Cpu>(node.id, grad);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Row selection

/// Rows of `x` along its first dimension, `rows[i]` for output row `i` (rows may repeat: a prompt's
/// KV cache forked into its samples); in the backward pass each source row receives the sum of its
/// copies' gradients. burn-flex's `select` backward (`select_add`) scatters one element at a time:
/// 4% of the learner's step once the prompts' cache rows were shared. `None` where the op does not
/// apply (see the `kernels` module docs).
pub(crate) fn repeat_rows<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    rows: &[usize],
) -> Option<Tensor<B, D>> {
    let dims = x.dims();
    if D == 0 || rows.iter().any(|&r| r >= dims[0]) {
        return None;
    }
    let operand = Operand::of(x)?;
    let row_len: usize = dims[1..].iter().product();
    let mut out_dims = dims.to_vec();
    out_dims[0] = rows.len();
    let out = {
        let xv = values(operand.value());
        let mut out = Vec::with_capacity(rows.len() * row_len);
        for &r in rows {
            out.extend_from_slice(&xv[r * row_len..(r + 1) * row_len]);
        }
        flex(out, out_dims)
    };
    Some(match operand {
        Operand::Flex(_) => into_tensor(out),
        Operand::Autodiff(a) => {
            let state = || (rows.to_vec(), dims.to_vec());
            into_tensor(record(RepeatRowsBackward, [&a], state, out))
        }
    })
}

#[derive(Debug)]
struct RepeatRowsBackward;

impl Backward<Cpu, 1> for RepeatRowsBackward {
    /// The selected rows and the input's shape.
    type State = (Vec<usize>, Vec<usize>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Cpu>(&ops.node);
        let [parent] = ops.parents;
        let Some(node) = parent else { return };
        let (rows, dims) = ops.state;
        let row_len: usize = dims[1..].iter().product();
        let dy = values(&grad);
        let mut dx = vec![0.0f32; dims[0] * row_len];
        for (i, &r) in rows.iter().enumerate() {
            let src = &dy[i * row_len..(i + 1) * row_len];
            for (d, s) in dx[r * row_len..(r + 1) * row_len].iter_mut().zip(src) {
                *d += s;
            }
        }
        grads.register::<Cpu>(node.id, flex(dx, dims));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use crate::backend::CpuDevice;
    use crate::kernels::autodiff::Ad;
    use crate::kernels::flex::simd_available;
    use crate::kernels::flex::{as_flex, copy_by_rows};
    use crate::kernels::test_support::{close, fill, loss, param};
    use burn::tensor::TensorData;

    #[test]
    fn repeat_rows_value_and_gradient_match_burns_select() {
        if !simd_available() {
            return;
        }
        let x = param([3, 2, 5, 4], 21, 3.0);
        // Repeated, reordered and skipped rows (row 1 is never selected: its gradient is zero).
        let rows = [2, 0, 2, 2, 0];
        let got = repeat_rows(&x, &rows).expect("applies on Autodiff<burn-flex>");
        let idx = Tensor::<Ad, 1, burn::tensor::Int>::from_data(
            TensorData::new(
                rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
                [rows.len()],
            ),
            &CpuDevice::default(),
        );
        let want = x.clone().select(0, idx);
        close(got.clone().inner(), want.clone().inner(), 0.0, "value");
        let (gg, wg) = (loss(got, 22).backward(), loss(want, 22).backward());
        close(x.grad(&gg).unwrap(), x.grad(&wg).unwrap(), 1e-6, "dx");
        assert!(
            repeat_rows(&x, &[3]).is_none(),
            "row 3 of 3 is out of range"
        );
    }

    #[test]
    fn strided_views_copy_by_rows_in_logical_order() {
        let device = CpuDevice::default();
        let x = Tensor::<Cpu, 4>::from_data(
            TensorData::new(fill(2 * 3 * 4 * 5, 1, 1.0), [2, 3, 4, 5]),
            &device,
        );
        // A head split's layout (swapped middle dims), a view with an offset (narrowed), and a
        // broadcast (stride 0) one.
        let views = [
            x.clone().swap_dims(1, 2),
            x.clone().swap_dims(1, 2).narrow(2, 1, 2),
            x.clone().narrow(0, 1, 1).expand([3, 3, 4, 5]),
        ];
        for (i, view) in views.into_iter().enumerate() {
            let flex = as_flex(&view).expect("a burn-flex tensor");
            assert!(flex.as_slice::<f32>().is_none(), "view {i} is strided");
            let want = view.clone().into_data().to_vec::<f32>().unwrap();
            assert_eq!(
                copy_by_rows(&flex).expect("a unit inner stride"),
                want,
                "view {i}"
            );
            assert_eq!(values(&flex).into_owned(), want, "view {i}");
        }
        // An inner dimension that is not contiguous is left to burn-flex.
        let transposed = as_flex(&x.clone().swap_dims(2, 3)).unwrap();
        assert!(copy_by_rows(&transposed).is_none());
        assert_eq!(
            values(&transposed).into_owned(),
            x.swap_dims(2, 3).into_data().to_vec::<f32>().unwrap()
        );
    }
}
