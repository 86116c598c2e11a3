//! The decoder: one readable file for the Qwen2/Llama family (they differ only in biases and defaults).
//!
//! Token embedding -> N x [RMSNorm -> grouped-query causal attention with RoPE -> residual ->
//! RMSNorm -> SwiGLU MLP -> residual] -> final RMSNorm -> LM head (tied or untied).
//!
//! Linear weights stay in Hugging Face's `[out, in]` layout and are multiplied by their transpose:
//! that is both the layout checkpoints use and the faster one for burn-flex's LM head. Products of
//! up to 64 rows (decode steps) on burn-flex take `small_matmul`'s kernels, which read that layout
//! directly; an actor's model keeps `[in, out]` copies of the layer weights too small for them
//! ([`Transformer::with_decode_weights`]). The learner's products take `fused_grad::linear`, whose
//! weight gradient keeps the `[out, in]` layout. A decode step's SwiGLU and attention take
//! `fused`'s one-pass kernels; several queries per row (the learner, prefill) take
//! `fused_grad::causal_attention` where the CPU has AVX-512. RMSNorm,
//! RoPE, the attention softmax and the learner's SwiGLU take `fused_grad`'s ops, which carry their
//! own backward pass on `Autodiff<burn-flex>`.
//! Every batch is laid out with prompts left-padded, so all rows share one column index per step;
//! each row's RoPE positions and key-padding mask come from the host (`ForwardBatch`).

use burn::module::{Module, Param};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::cache::{KvCache, LayerCache};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::weights::{HostTensor, WeightMap};

/// Additive mask value for positions a query must not see. Finite, so fully masked rows (left
/// padding) give a uniform softmax rather than NaN, which would poison gradients.
pub const MASKED: f32 = -1.0e9;

/// A linear layer `y = x W^T + b`, W in HF's `[out, in]` layout.
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// The weight again, in `[in, out]` layout, for products of many rows at inference on
    /// burn-flex (see [`Transformer::with_decode_weights`]); `None` elsewhere.
    pub weight_in_out: Option<crate::small_matmul::InOutWeight>,
}

impl<B: Backend> Linear<B> {
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dims = x.dims();
        let d_in = dims[D - 1];
        let rows = dims[..D - 1].iter().product::<usize>();
        let weight = self.weight.val();
        let d_out = weight.dims()[0];
        let x = x.reshape([rows, d_in]);
        let in_out = self
            .weight_in_out
            .as_ref()
            .and_then(|w| crate::small_matmul::matmul_in_out(&x, w));
        let mut y = in_out.unwrap_or_else(|| matmul_wt(x, weight));
        if let Some(bias) = &self.bias {
            y = y + bias.val().unsqueeze_dim(0);
        }
        let mut out_dims = dims;
        out_dims[D - 1] = d_out;
        y.reshape(out_dims)
    }
}

/// `x · Wᵀ` for W in `[out, in]`: the decode kernel for a few rows on burn-flex, the op with a
/// contiguous weight gradient in the learner, else burn's matmul.
fn matmul_wt<B: Backend>(x: Tensor<B, 2>, weight: Tensor<B, 2>) -> Tensor<B, 2> {
    crate::small_matmul::matmul_wt(&x, &weight)
        .or_else(|| crate::fused_grad::linear(&x, &weight))
        .unwrap_or_else(|| x.matmul(weight.transpose()))
}

/// RMSNorm exactly as HF computes it: x * rsqrt(mean(x^2) + eps) * weight.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        if let Some(y) = crate::fused_grad::rms_norm(&x, &self.weight.val(), self.eps) {
            return y;
        }
        let variance = x.clone().powi_scalar(2).mean_dim(D - 1);
        let normed = x * (variance + self.eps).sqrt().recip();
        normed * self.weight.val().unsqueeze()
    }
}

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

/// Rotary tables for one batch, expanded to the layout RoPE is applied in: `[batch, seq, heads,
/// head_dim]`, one pair for the query heads and one for the key/value heads, plus the `[head_dim,
/// head_dim]` signed permutation that rotates halves (`x @ rotate == cat(-x2, x1)`). Every operand
/// of `x * cos + (x @ rotate) * sin` is then contiguous and of one shape, which burn-flex runs as
/// SIMD kernels; broadcasting over heads on a transposed `x` went through its per-element strided
/// iterator instead. The result is bit-identical: `@ rotate` only copies and negates values (one
/// non-zero term of +-1 per output), and the products and sum are the same f32 operations.
/// On burn-flex (and the learner's autodiff over it) `fused_grad::rope` does the same arithmetic in
/// one pass per row, with its own backward; the tables are then read as plain constants.
pub struct Rope<B: Backend> {
    pub cos_q: Tensor<B, 4>,
    pub sin_q: Tensor<B, 4>,
    pub cos_k: Tensor<B, 4>,
    pub sin_k: Tensor<B, 4>,
    pub rotate: Tensor<B, 2>,
}

/// RoPE on `x` laid out `[batch, seq, heads, head_dim]` with tables of the same shape.
fn apply_rope<B: Backend>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
    rotate: &Tensor<B, 2>,
) -> Tensor<B, 4> {
    if let Some(y) = crate::fused_grad::rope(&x, cos, sin) {
        return y;
    }
    let dims = x.dims();
    let rows = dims[0] * dims[1] * dims[2];
    let rotated = x
        .clone()
        .reshape([rows, dims[3]])
        .matmul(rotate.clone())
        .reshape(dims);
    x * cos.clone() + rotated * sin.clone()
}

/// `[batch, seq, heads, head_dim] -> [batch, heads, seq, head_dim]`. With one token per row (a
/// decode step) that is a reshape of the same memory; burn-flex would otherwise treat the swapped
/// view as strided and copy it element by element where the cache reads it.
fn heads_major<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [batch, seq, heads, hd] = x.dims();
    if seq == 1 {
        x.reshape([batch, heads, seq, hd])
    } else {
        x.swap_dims(1, 2)
    }
}

impl<B: Backend> Attention<B> {
    /// `x`: `[batch, seq, hidden]`; `mask`: additive `[batch, heads, seq, keys]` where keys is the
    /// cache length after this step (or `seq` without a cache).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &Rope<B>,
        mask: Tensor<B, 4>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, _] = x.dims();
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let groups = nh / nkv;

        let q = self.q_proj.forward(x.clone()).reshape([batch, seq, nh, hd]);
        let k = self
            .k_proj
            .forward(x.clone())
            .reshape([batch, seq, nkv, hd]);
        let v = heads_major(self.v_proj.forward(x).reshape([batch, seq, nkv, hd]));
        let q = apply_rope(q, &rope.cos_q, &rope.sin_q, &rope.rotate);
        let k = heads_major(apply_rope(k, &rope.cos_k, &rope.sin_k, &rope.rotate));
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v),
            None => (k, v),
        };
        let keys = k.dims()[2];
        let scale = 1.0 / (hd as f64).sqrt();
        // A decode step on burn-flex: one fused pass per (row, head) over the cache.
        if let Some(out) = crate::fused::decode_attention(&q, &k, &v, &mask, scale as f32) {
            return self.o_proj.forward(out);
        }
        // Several queries per row (the learner, prefill) on burn-flex with AVX-512: one causal op
        // with its own backward, heads merged on the way out.
        if let Some(out) = crate::fused_grad::causal_attention(&q, &k, &v, &mask, scale as f32) {
            return self.o_proj.forward(out);
        }

        // Grouped-query attention without materialising repeated K/V: query head h uses kv head
        // h / groups (HF's repeat_kv order), so fold the group into the query-row dimension.
        let q = relayout(q.swap_dims(1, 2)).reshape([batch, nkv, groups * seq, hd]);
        let scores = q.matmul(k.swap_dims(2, 3)).reshape([batch, nh, seq, keys]);
        // The mask comes expanded to every head (see `Transformer::mask`), so scale, mask and
        // softmax are elementwise over contiguous operands: one fused pass on burn-flex.
        let probs = crate::fused_grad::masked_softmax(&scores, &mask, scale as f32)
            .unwrap_or_else(|| softmax(scores * scale + mask, 3))
            .reshape([batch, nkv, groups * seq, keys]);
        let out = probs
            .matmul(v)
            .reshape([batch, nh, seq, hd])
            .swap_dims(1, 2);
        self.o_proj
            .forward(relayout(out).reshape([batch, seq, nh * hd]))
    }
}

/// A head split or merge made contiguous before its reshape: on burn-flex a row-at-a-time copy
/// (`fused_grad::contiguous`), elsewhere the reshape's own copy.
fn relayout<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    crate::fused_grad::contiguous(&x).unwrap_or(x)
}

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = self.gate_proj.forward(x.clone());
        let up = self.up_proj.forward(x);
        let hidden = crate::fused::swiglu(&gate, &up)
            .or_else(|| crate::fused_grad::swiglu(&gate, &up))
            .unwrap_or_else(|| silu(gate) * up);
        self.down_proj.forward(hidden)
    }
}

#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    pub input_layernorm: RmsNorm<B>,
    pub self_attn: Attention<B>,
    pub post_attention_layernorm: RmsNorm<B>,
    pub mlp: Mlp<B>,
}

impl<B: Backend> DecoderLayer<B> {
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &Rope<B>,
        mask: Tensor<B, 4>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let h = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), rope, mask, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}

/// One forward pass's host-side description: token ids, each token's RoPE position, and each row's
/// left padding (keys before `left_pad[row]` are hidden from every query of that row).
#[derive(Debug, Clone)]
pub struct ForwardBatch {
    pub batch: usize,
    pub seq: usize,
    /// Row-major `[batch, seq]`.
    pub tokens: Vec<u32>,
    /// Row-major `[batch, seq]`.
    pub positions: Vec<usize>,
    /// Per row: number of padding columns at the start of the (cached + new) key sequence.
    pub left_pad: Vec<usize>,
}

#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    pub embed_tokens: Param<Tensor<B, 2>>,
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: RmsNorm<B>,
    /// `None` when the head is tied to the embedding.
    pub lm_head: Option<Linear<B>>,
    pub config: ModelConfig,
    /// RoPE inverse frequencies `[head_dim / 2]`; angles are formed per batch on the host.
    inv_freq: Vec<f32>,
}

fn param<B: Backend, const D: usize>(t: HostTensor, device: &B::Device) -> Param<Tensor<B, D>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(t.data, t.shape), device))
}

impl<B: Backend> Transformer<B> {
    /// Builds the model from a `WeightMap` in HF naming; every tensor is shape-checked, and
    /// unexpected leftovers are ignored (e.g. `rotary_emb.inv_freq` in old checkpoints).
    pub fn from_weights(
        config: &ModelConfig,
        mut w: WeightMap,
        device: &B::Device,
    ) -> Result<Self> {
        let c = config;
        let (h, nh, nkv, hd, ff) = (
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim,
            c.intermediate_size,
        );
        let linear = |w: &mut WeightMap,
                      name: &str,
                      out: usize,
                      inp: usize,
                      bias: bool|
         -> Result<Linear<B>> {
            let weight = param(w.take(&format!("{name}.weight"), &[out, inp])?, device);
            let bias = if bias {
                Some(param(w.take(&format!("{name}.bias"), &[out])?, device))
            } else {
                None
            };
            Ok(Linear {
                weight,
                bias,
                weight_in_out: None,
            })
        };
        let norm = |w: &mut WeightMap, name: &str| -> Result<RmsNorm<B>> {
            Ok(RmsNorm {
                weight: param(w.take(&format!("{name}.weight"), &[h])?, device),
                eps: c.rms_norm_eps,
            })
        };

        let embed_tokens = param(
            w.take("model.embed_tokens.weight", &[c.vocab_size, h])?,
            device,
        );
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("model.layers.{i}");
            layers.push(DecoderLayer {
                input_layernorm: norm(&mut w, &format!("{p}.input_layernorm"))?,
                self_attn: Attention {
                    q_proj: linear(
                        &mut w,
                        &format!("{p}.self_attn.q_proj"),
                        nh * hd,
                        h,
                        c.qkv_bias,
                    )?,
                    k_proj: linear(
                        &mut w,
                        &format!("{p}.self_attn.k_proj"),
                        nkv * hd,
                        h,
                        c.qkv_bias,
                    )?,
                    v_proj: linear(
                        &mut w,
                        &format!("{p}.self_attn.v_proj"),
                        nkv * hd,
                        h,
                        c.qkv_bias,
                    )?,
                    o_proj: linear(
                        &mut w,
                        &format!("{p}.self_attn.o_proj"),
                        h,
                        nh * hd,
                        c.o_bias,
                    )?,
                    num_heads: nh,
                    num_kv_heads: nkv,
                    head_dim: hd,
                },
                post_attention_layernorm: norm(&mut w, &format!("{p}.post_attention_layernorm"))?,
                mlp: Mlp {
                    gate_proj: linear(&mut w, &format!("{p}.mlp.gate_proj"), ff, h, c.mlp_bias)?,
                    up_proj: linear(&mut w, &format!("{p}.mlp.up_proj"), ff, h, c.mlp_bias)?,
                    down_proj: linear(&mut w, &format!("{p}.mlp.down_proj"), h, ff, c.mlp_bias)?,
                },
            });
        }
        let norm = norm(&mut w, "model.norm")?;
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(linear(&mut w, "lm_head", c.vocab_size, h, false)?)
        };
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            config: c.clone(),
            inv_freq: inv_freq(c),
        })
    }

    /// The model with a second copy, in `[in, out]` layout, of each layer weight smaller than
    /// [`crate::small_matmul::MIN_WEIGHT_ELEMENTS`], for an actor's policy on burn-flex: products
    /// of more than [`crate::small_matmul::IN_OUT_MIN_ROWS`] rows then run gemm on that copy, which
    /// packs it faster than the `[out, in]` one (the tiny default model's generation at batch 8:
    /// 33-36k against 22-24k tok/s without; session 13). Larger weights take `small_matmul`'s
    /// kernels on their one copy (session 12 copied every weight: SmolLM2 +425 MB, 0.29 s per
    /// policy version). A no-op on other backends. Call it once per policy version; training code
    /// never does.
    pub fn with_decode_weights(mut self) -> Self {
        for layer in &mut self.layers {
            let a = &mut layer.self_attn;
            let m = &mut layer.mlp;
            for lin in [
                &mut a.q_proj,
                &mut a.k_proj,
                &mut a.v_proj,
                &mut a.o_proj,
                &mut m.gate_proj,
                &mut m.up_proj,
                &mut m.down_proj,
            ] {
                let [out, inp] = lin.weight.dims();
                if out * inp < crate::small_matmul::MIN_WEIGHT_ELEMENTS {
                    lin.weight_in_out = crate::small_matmul::InOutWeight::of(&lin.weight.val());
                }
            }
        }
        self
    }

    /// The weights in HF naming and layout, ready for `weights::safetensors::save`.
    pub fn to_weights(&self) -> WeightMap {
        fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> HostTensor {
            let shape = t.dims().to_vec();
            let data = t
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .expect("float tensor converts to f32");
            HostTensor::new(shape, data)
        }
        let mut w = WeightMap::new("<in-memory model>");
        let put_linear = |w: &mut WeightMap, name: &str, l: &Linear<B>| {
            w.insert(format!("{name}.weight"), host(l.weight.val()));
            if let Some(b) = &l.bias {
                w.insert(format!("{name}.bias"), host(b.val()));
            }
        };
        w.insert("model.embed_tokens.weight", host(self.embed_tokens.val()));
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            w.insert(
                format!("{p}.input_layernorm.weight"),
                host(layer.input_layernorm.weight.val()),
            );
            w.insert(
                format!("{p}.post_attention_layernorm.weight"),
                host(layer.post_attention_layernorm.weight.val()),
            );
            let a = &layer.self_attn;
            put_linear(&mut w, &format!("{p}.self_attn.q_proj"), &a.q_proj);
            put_linear(&mut w, &format!("{p}.self_attn.k_proj"), &a.k_proj);
            put_linear(&mut w, &format!("{p}.self_attn.v_proj"), &a.v_proj);
            put_linear(&mut w, &format!("{p}.self_attn.o_proj"), &a.o_proj);
            put_linear(&mut w, &format!("{p}.mlp.gate_proj"), &layer.mlp.gate_proj);
            put_linear(&mut w, &format!("{p}.mlp.up_proj"), &layer.mlp.up_proj);
            put_linear(&mut w, &format!("{p}.mlp.down_proj"), &layer.mlp.down_proj);
        }
        w.insert("model.norm.weight", host(self.norm.weight.val()));
        if let Some(head) = &self.lm_head {
            put_linear(&mut w, "lm_head", head);
        }
        w
    }

    pub fn device(&self) -> B::Device {
        self.embed_tokens.val().device()
    }

    fn rope(&self, batch: &ForwardBatch, device: &B::Device) -> Rope<B> {
        let c = &self.config;
        let half = c.head_dim / 2;
        let d = half * 2;
        // One [head_dim] row of cos and sin per token; HF: emb = cat(freqs, freqs), so both halves
        // of the head share each angle.
        let n = batch.positions.len();
        let mut cos = Vec::with_capacity(n * d);
        let mut sin = Vec::with_capacity(n * d);
        for &pos in &batch.positions {
            for _ in 0..2 {
                for &f in &self.inv_freq[..half] {
                    let angle = pos as f32 * f;
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        let expand = |table: &[f32], heads: usize| -> Tensor<B, 4> {
            let mut out = Vec::with_capacity(n * heads * d);
            for row in table.chunks(d) {
                for _ in 0..heads {
                    out.extend_from_slice(row);
                }
            }
            Tensor::from_data(
                TensorData::new(out, [batch.batch, batch.seq, heads, d]),
                device,
            )
        };
        // rotate[k][j] = -1 at (k = j + half, j < half), +1 at (k = j - half, j >= half).
        let mut rotate = vec![0.0f32; d * d];
        for j in 0..half {
            rotate[(j + half) * d + j] = -1.0;
            rotate[j * d + j + half] = 1.0;
        }
        Rope {
            cos_q: expand(&cos, c.num_attention_heads),
            sin_q: expand(&sin, c.num_attention_heads),
            cos_k: expand(&cos, c.num_key_value_heads),
            sin_k: expand(&sin, c.num_key_value_heads),
            rotate: Tensor::from_data(TensorData::new(rotate, [d, d]), device),
        }
    }

    /// Additive causal + left-padding mask, `[batch, heads, seq, past + seq]` (the same for every
    /// head; expanded so the add to the scores needs no broadcasting).
    fn mask(&self, batch: &ForwardBatch, past: usize, device: &B::Device) -> Tensor<B, 4> {
        let keys = past + batch.seq;
        let heads = self.config.num_attention_heads;
        let per_row = batch.seq * keys;
        let mut m = vec![0.0f32; batch.batch * heads * per_row];
        for b in 0..batch.batch {
            let pad = batch.left_pad[b];
            let first = &mut m[b * heads * per_row..][..per_row];
            for i in 0..batch.seq {
                let row = &mut first[i * keys..][..keys];
                for (j, v) in row.iter_mut().enumerate() {
                    if j < pad || j > past + i {
                        *v = MASKED;
                    }
                }
            }
            for h in 1..heads {
                let (done, rest) = m[b * heads * per_row..].split_at_mut(h * per_row);
                rest[..per_row].copy_from_slice(&done[..per_row]);
            }
        }
        Tensor::from_data(
            TensorData::new(m, [batch.batch, heads, batch.seq, keys]),
            device,
        )
    }

    /// The embedding rows of `tokens`, `[tokens, hidden]`, through `fused_grad::select_rows`: on
    /// burn-flex its backward adds each token's gradient into its row, where burn-flex's `select`
    /// backward scatters element by element.
    fn embed(&self, tokens: &[u32]) -> Tensor<B, 2> {
        let rows: Vec<usize> = tokens.iter().map(|&t| t as usize).collect();
        crate::fused_grad::select_rows(&self.embed_tokens.val(), &rows)
    }

    /// Final hidden states `[batch, seq, hidden]` (after the last norm). With a cache, the new keys
    /// and values are appended to it and attention covers the cached prefix too.
    pub fn hidden_states(
        &self,
        batch: &ForwardBatch,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let device = self.device();
        let past = cache.as_ref().map_or(0, |c| c.len());
        let hidden = self.config.hidden_size;
        let mut x = self
            .embed(&batch.tokens)
            .reshape([batch.batch, batch.seq, hidden]);
        let rope = self.rope(batch, &device);
        let mask = self.mask(batch, past, &device);
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| c.layer_mut(i));
            x = layer.forward(x, &rope, mask.clone(), layer_cache);
        }
        if let Some(c) = cache {
            c.advance(batch.seq);
        }
        self.norm.forward(x)
    }

    /// LM head: `[rows, hidden] -> [rows, vocab]` logits.
    pub fn logits(&self, hidden: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => matmul_wt(hidden, self.embed_tokens.val()),
        }
    }

    pub fn new_cache(&self, batch: usize, capacity: usize) -> KvCache<B> {
        KvCache::new(
            self.config.num_hidden_layers,
            batch,
            self.config.num_key_value_heads,
            self.config.head_dim,
            capacity,
            &self.device(),
        )
    }
}

/// HF's RoPE inverse frequencies: 1 / theta^(2i/d), computed in f64 then rounded once.
fn inv_freq(c: &ModelConfig) -> Vec<f32> {
    let d = c.head_dim;
    (0..d / 2)
        .map(|i| (1.0 / c.rope_theta.powf((2 * i) as f64 / d as f64)) as f32)
        .collect()
}
