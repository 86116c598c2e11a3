//! The KV cache: per layer, keys and values `[batch, kv_heads, capacity, head_dim]`, preallocated
//! and filled column by column. All rows share one column index (prompts are left-padded), so one
//! `slice_assign` writes a whole decode step. Rows can be selected (to drop finished sequences or to
//! fork one prompt's prefill into n samples).

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

#[derive(Debug, Clone)]
pub struct LayerCache<B: Backend> {
    // Options only so a buffer can be moved out and written in place: burn-flex mutates a tensor
    // in `slice_assign` when it holds the only reference, and copies it otherwise.
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
        let range = [0..b, 0..h, self.len..end, 0..d];
        let keys = keys.slice_assign(range.clone(), k);
        let values = values.slice_assign(range, v);
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
        let Some(device) = self
            .layers
            .first()
            .and_then(|l| l.keys.as_ref())
            .map(|k| k.device())
        else {
            return;
        };
        let idx: Vec<i32> = rows.iter().map(|&r| r as i32).collect();
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [rows.len()]), &device);
        for l in &mut self.layers {
            l.keys = l.keys.take().map(|t| t.select(0, idx.clone()));
            l.values = l.values.take().map(|t| t.select(0, idx.clone()));
        }
    }
}
