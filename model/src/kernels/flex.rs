//! Low-level access shared by the kernels: burn-flex tensors as slices and strided views, the few
//! burn-flex ops the kernels build on, and the CPU features they need.

use std::any::Any;

use burn::backend::flex::FlexTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};

use crate::backend::Cpu;

/// The tensor as a burn-flex tensor (sharing its buffer), if it is one: `None` on other backends,
/// for autodiff tensors and for quantized values.
pub(crate) fn as_flex<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Option<FlexTensor> {
    let TensorPrimitive::Float(p) = t.clone().into_primitive() else {
        return None;
    };
    let p: Box<dyn Any> = Box::new(p);
    p.downcast::<FlexTensor>().ok().map(|t| *t)
}

pub(crate) fn f32_contiguous(t: &FlexTensor) -> Option<&[f32]> {
    if t.dtype() != DType::F32 || !t.is_contiguous() {
        return None;
    }
    t.as_slice::<f32>()
}

pub(crate) fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the 16-lane kernel runs (x86-64 with AVX-512F): twice the lanes of the AVX2 kernel and
/// twice the registers, so four input rows share each weight load.
pub(crate) fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// AVX-512F and AVX-512VL: the attention kernel then runs its AVX2 instructions with 32 registers.
pub(crate) fn wide_registers_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        avx512_available() && std::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
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

/// A tensor's f32 values, contiguous (copied only when they are not).
pub(crate) fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(copy_by_rows(t).unwrap_or_else(|| {
            t.to_contiguous()
                .as_slice::<f32>()
                .expect("a contiguous f32 tensor")
                .to_vec()
        })),
    }
}

/// The values of a strided f32 view whose last dimension is contiguous (a head split or merge,
/// say), copied a row at a time through [`StridedView`]. burn-flex's
/// `to_contiguous` walks such 4-D views one element at a time (its fast paths cover layouts that
/// collapse to two dimensions); in the learner's profile that walk was 2.7% of a micro-batch, in
/// RoPE's backward. `None` for other layouts.
pub(crate) fn copy_by_rows(t: &FlexTensor) -> Option<Vec<f32>> {
    StridedView::of(t).map(|view| view.to_vec())
}

pub(crate) fn flex(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

pub(crate) fn shape(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().to_vec()
}

/// burn-flex's matmul of two matrices (strided operands go to gemm as they are, without a copy).
pub(crate) fn flex_matmul(a: FlexTensor, b: FlexTensor) -> FlexTensor {
    let t = |f| Tensor::<Cpu, 2>::from_primitive(TensorPrimitive::Float(f));
    let TensorPrimitive::Float(y) = t(a).matmul(t(b)).into_primitive() else {
        unreachable!("a float tensor's primitive is TensorPrimitive::Float")
    };
    y
}

/// A matrix's transposed view (no copy).
pub(crate) fn flex_transpose(a: FlexTensor) -> FlexTensor {
    let TensorPrimitive::Float(y) = Tensor::<Cpu, 2>::from_primitive(TensorPrimitive::Float(a))
        .transpose()
        .into_primitive()
    else {
        unreachable!("a float tensor's primitive is TensorPrimitive::Float")
    };
    y
}
