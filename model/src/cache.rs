//! The KV cache: per layer, keys and values `[batch, kv_heads, capacity, head_dim]`, preallocated
//! and filled column by column. All rows share one column index (prompts are left-padded), so one
//! write covers a whole decode step, in place on burn-flex. Rows can be selected (to drop finished sequences or to
//! fork one prompt's prefill into n samples).
//!
//! With a column bucket (the GPU path), attention reads the filled columns rounded up to a
//! multiple of the bucket, the unfilled rest masked, so a decode step's shapes repeat for a whole
//! bucket of steps and a compiled kernel is reused instead of being built for every length.

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
    /// 0: attention reads exactly the filled columns; else the filled columns rounded up to a
    /// multiple of this (see [`attended_columns`]).
    column_bucket: usize,
}

/// The buffer capacity once `end` columns are to be filled: doubled when full (and rounded up to
/// the column bucket, so the last bucket is whole).
fn grown_capacity(cap: usize, end: usize, column_bucket: usize) -> usize {
    if end <= cap {
        return cap;
    }
    let grown = end.max(2 * cap);
    if column_bucket > 0 {
        grown.next_multiple_of(column_bucket)
    } else {
        grown
    }
}

/// The key columns attention reads once `end` are filled in a buffer of capacity `cap`.
fn attended_columns(cap: usize, end: usize, column_bucket: usize) -> usize {
    let cap = grown_capacity(cap, end, column_bucket);
    if column_bucket > 0 {
        end.next_multiple_of(column_bucket).min(cap)
    } else {
        end
    }
}

impl<B: Backend> LayerCache<B> {
    /// Writes `k`/`v` (`[batch, kv_heads, new, head_dim]`) after the filled columns and returns the
    /// filled prefix including them (to the end of its bucket, with a column bucket). Grows the
    /// buffers (doubling) when they are full.
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
        let attended = attended_columns(cap, end, self.column_bucket);
        if end > cap {
            let grow = grown_capacity(cap, end, self.column_bucket) - cap;
            let pad = Tensor::zeros([b, h, grow, d], &k.device());
            keys = Tensor::cat(vec![keys, pad.clone()], 2);
            values = Tensor::cat(vec![values, pad], 2);
        }
        let keys = write_columns(keys, self.len, k);
        let values = write_columns(values, self.len, v);
        // Columns past `end` are zeros (or stale rows after a selection); the mask hides them.
        let filled = [0..b, 0..h, 0..attended, 0..d];
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
    column_bucket: usize,
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
                column_bucket: 0,
            })
            .collect();
        Self {
            layers,
            len: 0,
            column_bucket: 0,
        }
    }

    /// Makes attention read whole buckets of `columns` key columns (0: exactly the filled ones).
    pub fn with_column_bucket(mut self, columns: usize) -> Self {
        self.column_bucket = columns;
        for l in &mut self.layers {
            l.column_bucket = columns;
        }
        self
    }

    /// The key columns attention reads in a forward pass that fills columns up to `end`.
    pub fn attended_columns(&self, end: usize) -> usize {
        let cap = self
            .layers
            .first()
            .and_then(|l| l.keys.as_ref())
            .map_or(end, |k| k.dims()[2]);
        attended_columns(cap, end, self.column_bucket)
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
    fn column_buckets_round_the_attended_columns_up() {
        // Exact without a bucket; whole buckets (capped by the capacity) with one, and the
        // capacity grows to whole buckets.
        assert_eq!(attended_columns(100, 37, 0), 37);
        assert_eq!(attended_columns(100, 37, 64), 64);
        assert_eq!(attended_columns(100, 64, 64), 64);
        assert_eq!(attended_columns(100, 65, 64), 100);
        assert_eq!(grown_capacity(100, 101, 64), 256);
        assert_eq!(attended_columns(100, 101, 64), 128);
        assert_eq!(grown_capacity(100, 101, 0), 200);
        let device = CpuDevice::default();
        let mut cache = KvCache::<Cpu>::new(1, 2, 1, 4, 10, &device).with_column_bucket(8);
        for step in 0..12 {
            let k = Tensor::<Cpu, 4>::ones([2, 1, 1, 4], &device);
            let want = cache.attended_columns(step + 1);
            let (keys, _) = cache.layer_mut(0).append(k.clone(), k);
            cache.advance(1);
            assert_eq!(keys.dims()[2], want, "step {step}");
            assert_eq!(
                want,
                if step < 8 {
                    8
                } else if step < 10 {
                    10
                } else {
                    16
                }
            );
        }
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
