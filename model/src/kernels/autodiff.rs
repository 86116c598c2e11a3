//! Plumbing of the hand-written ops: an operand as burn-flex or `Autodiff<burn-flex>`, recording an
//! op with its backward pass in burn's graph, and the row-parallel loops the ops share.

use std::any::{Any, TypeId};

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::{DType, Tensor, TensorPrimitive};
use rayon::prelude::*;

use super::flex::{as_flex, simd_available};
use crate::backend::Cpu;

/// The learner's backend, `Autodiff<burn-flex>` (no checkpointing).
pub(crate) type Ad = Autodiff<Cpu>;
pub(crate) type AdTensor = <Ad as BackendTypes>::FloatTensorPrimitive;

/// Elements per parallel block of the elementwise passes (and per partial sum of cross-row sums).
pub(crate) const BLOCK: usize = 1 << 14;

/// An operand as one of the two backends these ops run on.
pub(crate) enum Operand {
    Flex(FlexTensor),
    Autodiff(AdTensor),
}

impl Operand {
    pub(crate) fn of<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Option<Self> {
        if !simd_available() {
            return None;
        }
        if let Some(f) = as_flex(t) {
            return (f.dtype() == DType::F32).then_some(Operand::Flex(f));
        }
        // Only the learner's backend: `Autodiff<Flex, C>` for another checkpointing strategy has the
        // same primitive type but must record its ops with that strategy (it takes burn's ops).
        if TypeId::of::<B>() != TypeId::of::<Ad>() {
            return None;
        }
        let TensorPrimitive::Float(p) = t.clone().into_primitive() else {
            return None;
        };
        let p: Box<dyn Any> = Box::new(p);
        let a = *p.downcast::<AdTensor>().ok()?;
        (a.primitive.dtype() == DType::F32).then_some(Operand::Autodiff(a))
    }

    /// The forward value.
    pub(crate) fn value(&self) -> &FlexTensor {
        match self {
            Operand::Flex(f) => f,
            Operand::Autodiff(a) => &a.primitive,
        }
    }
}

/// A primitive of `Flex` or `Autodiff<Flex>` back into `B`'s tensor. `B` is the backend the operand
/// came from, so the downcast cannot fail.
pub(crate) fn into_tensor<B: Backend, const D: usize, P: Any>(p: P) -> Tensor<B, D> {
    let p: Box<dyn Any> = Box::new(p);
    let p = p
        .downcast::<B::FloatTensorPrimitive>()
        .expect("the output primitive belongs to the operand's backend");
    Tensor::from_primitive(TensorPrimitive::Float(*p))
}

/// Registers `out` as the output of one op of burn's graph with `parents` and `backward`; the
/// state for the backward pass is built only when some parent needs a gradient.
pub(crate) fn record<BO, S, const N: usize>(
    backward: BO,
    parents: [&AdTensor; N],
    state: impl FnOnce() -> S,
    out: FlexTensor,
) -> AdTensor
where
    BO: Backward<Cpu, N, State = S>,
    S: Clone + Send + std::fmt::Debug + 'static,
{
    match backward
        .prepare::<NoCheckpointing>(parents.map(|p| p.node.clone()))
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state(), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// `out` in blocks of whole rows of `row_len` elements, in parallel: `f(offset, block)` with the
/// block's first element's offset into `out`.
pub(crate) fn par_row_blocks(
    out: &mut [f32],
    row_len: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    let rows_per_block = (BLOCK / row_len).max(1);
    out.par_chunks_mut(rows_per_block * row_len)
        .enumerate()
        .for_each(|(i, block)| f(i * rows_per_block * row_len, block));
}

/// `f(a_row, b_row, out_row)` for every row of `row_len` elements, in parallel blocks.
pub(crate) fn par_rows2(
    a: &[f32],
    b: &[f32],
    row_len: usize,
    out: &mut [f32],
    f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync + Send,
) {
    par_row_blocks(out, row_len, |at, block| {
        for ((o, a), b) in block
            .chunks_mut(row_len)
            .zip(a[at..].chunks(row_len))
            .zip(b[at..].chunks(row_len))
        {
            f(a, b, o);
        }
    });
}
