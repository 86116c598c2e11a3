//! The KV cache: per layer, keys and values `[batch, kv_heads, capacity, head_dim]`, preallocated
//! and filled column by column. All rows share one column index (prompts are left-padded), so one
//! write covers a whole decode step, in place on burn-flex. Rows can be selected (to drop finished sequences or to
//! fork one prompt's prefill into n samples).

use std::any::Any;

use burn::backend::flex::FlexTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};

#[derive(Debug, Clone)]
pub struct LayerCache<B: Backend> {
    // Options only so a buffer can be moved out and written in place (see `write_columns`).
    keys: Option<Tensor<B, 4>>,
    values: Option<Tensor<B, 4>>,
    /// Columns already filled (shared by all layers; mirrored here so `append` is self-contained).
    len: usize,
}

impl<B: Backend> LayerCache<B> {
    /// Writes `k`/`v` (`[batch, kv_heads, new, head_dim]`) after the filled columns and returns the
    /// filled prefix including them. Grows the buffers (doubling) when they are full.
    pub fn append(&mut self, k: Tensor<B, 4>, v: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [b, h, new, d] = k.dims();
        let mut keys = self
            .keys
            .take()
            .expect("cache buffer present between calls");
        let mut values = self
            .values
            .take()
            .expect("cache buffer present between calls");
        let cap = keys.dims()[2];
        let end = self.len + new;
        if end > cap {
            let grow = end.max(2 * cap) - cap;
            let pad = Tensor::zeros([b, h, grow, d], &k.device());
            keys = Tensor::cat(vec![keys, pad.clone()], 2);
            values = Tensor::cat(vec![values, pad], 2);
        }
        let keys = write_columns(keys, self.len, k);
        let values = write_columns(values, self.len, v);
        let filled = [0..b, 0..h, 0..end, 0..d];
        let out = (
            keys.clone().slice(filled.clone()),
            values.clone().slice(filled),
        );
        self.keys = Some(keys);
        self.values = Some(values);
        out
    }
}

/// Writes `value` (`[b, h, new, d]`) into columns `start..start + new` of `buf` (`[b, h, cap, d]`).
///
/// burn's `slice_assign` copies the whole destination on burn-flex 0.21 (its copy-on-write check
/// runs while it still holds a second handle to the buffer), so appending through it copied every
/// layer's K and V buffers at every decode step. On burn-flex this writes the new columns in place
/// when the buffer is uniquely owned and contiguous; any other backend, or a shared buffer, takes
/// `slice_assign`.
fn write_columns<B: Backend>(buf: Tensor<B, 4>, start: usize, value: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, h, new, d] = value.dims();
    let cap = buf.dims()[2];
    let TensorPrimitive::Float(prim) = buf.into_primitive() else {
        unreachable!("a float tensor's primitive is TensorPrimitive::Float")
    };
    let mut any: Box<dyn Any> = Box::new(prim);
    let in_place = match any.downcast_mut::<FlexTensor>() {
        Some(dst)
            if dst.dtype() == DType::F32
                && dst.is_contiguous()
                && dst.layout().start_offset() == 0
                && dst.bytes().len() == b * h * cap * d * 4 =>
        {
            match dst.try_storage_mut::<f32>() {
                Some(dst) => {
                    let src: Vec<f32> = value
                        .clone()
                        .into_data()
                        .convert::<f32>()
                        .into_vec()
                        .expect("float tensor converts to f32");
                    for (row, chunk) in src.chunks_exact(new * d).enumerate() {
                        let at = (row * cap + start) * d;
                        dst[at..at + new * d].copy_from_slice(chunk);
                    }
                    true
                }
                None => false,
            }
        }
        _ => false,
    };
    let prim = *any
        .downcast::<B::FloatTensorPrimitive>()
        .expect("boxed from this type above");
    let buf = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(prim));
    if in_place {
        buf
    } else {
        buf.slice_assign([0..b, 0..h, start..start + new, 0..d], value)
    }
}

#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<LayerCache<B>>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    pub fn new(
        num_layers: usize,
        batch: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
        device: &B::Device,
    ) -> Self {
        let capacity = capacity.max(1);
        let layers = (0..num_layers)
            .map(|_| LayerCache {
                keys: Some(Tensor::zeros([batch, kv_heads, capacity, head_dim], device)),
                values: Some(Tensor::zeros([batch, kv_heads, capacity, head_dim], device)),
                len: 0,
            })
            .collect();
        Self { layers, len: 0 }
    }

    /// Number of filled columns.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn layer_mut(&mut self, i: usize) -> &mut LayerCache<B> {
        &mut self.layers[i]
    }

    /// Called once per forward pass after every layer appended `n` columns.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
        for l in &mut self.layers {
            l.len = self.len;
        }
    }

    /// Keeps (or repeats) rows: row i of the result is row `rows[i]` of `self`.
    pub fn select_rows(&mut self, rows: &[usize]) {
        // burn-flex (and the learner's autodiff over it) copies whole rows; elsewhere `select`.
        let select = |t: Tensor<B, 4>| crate::kernels::select_rows(&t, rows);
        for l in &mut self.layers {
            l.keys = l.keys.take().map(select);
            l.values = l.values.take().map(select);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};
    use burn::tensor::TensorData;

    fn host(t: Tensor<Cpu, 4>) -> Vec<f32> {
        t.into_data().convert::<f32>().into_vec().unwrap()
    }

    fn storage_ptr(t: &Tensor<Cpu, 4>) -> *const u8 {
        let TensorPrimitive::Float(p) = t.clone().into_primitive() else {
            unreachable!()
        };
        p.bytes().as_ptr()
    }

    #[test]
    fn append_writes_in_place_and_matches_slice_assign() {
        let device = CpuDevice::default();
        let (b, h, d, cap) = (3, 2, 4, 6);
        let mut cache = KvCache::<Cpu>::new(1, b, h, d, cap, &device);
        let mut reference = Tensor::<Cpu, 4>::zeros([b, h, cap, d], &device);
        let mut ptr = None;
        for (step, new) in [2usize, 1, 1, 2].into_iter().enumerate() {
            let start = cache.len();
            let k = Tensor::<Cpu, 4>::from_data(
                TensorData::new(
                    (0..b * h * new * d)
                        .map(|i| (step * 1000 + i) as f32)
                        .collect::<Vec<_>>(),
                    [b, h, new, d],
                ),
                &device,
            );
            // A transposed (non-contiguous) value, as the attention layer passes.
            let v = k.clone().swap_dims(0, 1).swap_dims(0, 1) * 2.0;
            let (keys, values) = cache.layer_mut(0).append(k.clone(), v.clone());
            cache.advance(new);
            reference = reference.slice_assign([0..b, 0..h, start..start + new, 0..d], k);
            let end = start + new;
            assert_eq!(
                host(keys),
                host(reference.clone().slice([0..b, 0..h, 0..end, 0..d]))
            );
            assert_eq!(
                host(values),
                host(reference.clone().slice([0..b, 0..h, 0..end, 0..d]) * 2.0)
            );
            // After the first write (which may materialise the zero buffer), the buffer is
            // written in place: the storage never moves.
            let p = storage_ptr(cache.layers[0].keys.as_ref().unwrap());
            if step > 0 {
                assert_eq!(Some(p), ptr, "step {step}: the cache buffer was copied");
            }
            ptr = Some(p);
        }
    }
}
