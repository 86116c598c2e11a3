//! The decoder: one readable file for the Qwen2/Llama family (they differ only in biases and defaults).
//!
//! Token embedding -> N x [RMSNorm -> grouped-query causal attention with RoPE -> residual ->
//! RMSNorm -> SwiGLU MLP -> residual] -> final RMSNorm -> LM head (tied or untied).
//!
//! Linear weights stay in Hugging Face's `[out, in]` layout and are multiplied by their transpose:
//! that is both the layout checkpoints use and the faster one for burn-flex's LM head.
//!
//! Every op with a hand-written kernel goes through the kernel boundary, [`crate::kernels`]:
//! `kernels::linear`, `attention`, `rms_norm`, `rope`, `swiglu` and `select_rows` take burn tensors
//! and return the result, choosing their kernel by backend and CPU features (decode-step kernels on
//! burn-flex, ops with their own backward on the learner's `Autodiff<burn-flex>`) and falling back
//! to burn's ops inside, so this file is the model's arithmetic only. An actor's model keeps a
//! kernel-owned `[in, out]` copy ([`crate::kernels::DecodeLayout`]) of the layer weights too small
//! for the decode kernels ([`Transformer::with_decode_weights`]).
//! Every batch is laid out with prompts left-padded, so all rows share one column index per step;
//! each row's RoPE positions and key-padding mask come from the host (`ForwardBatch`).

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::cache::{KvCache, LayerCache};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::kernels::{self, DecodeLayout, MASKED};
use crate::weights::{HostTensor, WeightMap};

/// A linear layer `y = x W^T + b`, W in HF's `[out, in]` layout.
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// The weight again, in the kernels' `[in, out]` layout, for products of many rows at
    /// inference on burn-flex (see [`Transformer::with_decode_weights`]); `None` elsewhere.
    pub weight_in_out: Option<DecodeLayout>,
}

impl<B: Backend> Linear<B> {
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dims = x.dims();
        let d_in = dims[D - 1];
        let rows = dims[..D - 1].iter().product::<usize>();
        let weight = self.weight.val();
        let d_out = weight.dims()[0];
        let x = x.reshape([rows, d_in]);
        let mut y = kernels::linear(x, weight, self.weight_in_out.as_ref());
        if let Some(bias) = &self.bias {
            y = y + bias.val().unsqueeze_dim(0);
        }
        let mut out_dims = dims;
        out_dims[D - 1] = d_out;
        y.reshape(out_dims)
    }
}

/// RMSNorm exactly as HF computes it: x * rsqrt(mean(x^2) + eps) * weight.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        kernels::rms_norm(x, self.weight.val(), self.eps)
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
/// On burn-flex (and the learner's autodiff over it) `kernels::rope` does the same arithmetic in
/// one pass per row, with its own backward; the tables are then read as plain constants.
pub struct Rope<B: Backend> {
    pub cos_q: Tensor<B, 4>,
    pub sin_q: Tensor<B, 4>,
    pub cos_k: Tensor<B, 4>,
    pub sin_k: Tensor<B, 4>,
    pub rotate: Tensor<B, 2>,
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

        let q = self.q_proj.forward(x.clone()).reshape([batch, seq, nh, hd]);
        let k = self
            .k_proj
            .forward(x.clone())
            .reshape([batch, seq, nkv, hd]);
        let v = heads_major(self.v_proj.forward(x).reshape([batch, seq, nkv, hd]));
        let q = kernels::rope(q, &rope.cos_q, &rope.sin_q, &rope.rotate);
        let k = heads_major(kernels::rope(k, &rope.cos_k, &rope.sin_k, &rope.rotate));
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v),
            None => (k, v),
        };
        let scale = 1.0 / (hd as f64).sqrt();
        self.o_proj
            .forward(kernels::attention(q, k, v, mask, scale))
    }
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
        self.down_proj.forward(kernels::swiglu(gate, up))
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

    /// The model with a second copy, in `[in, out]` layout, of each layer weight smaller than the
    /// decode kernels take (2^18 elements), for an actor's policy on burn-flex: products
    /// of more than four rows then run gemm on that copy, which
    /// packs it faster than the `[out, in]` one (the tiny default model's generation at batch 8:
    /// 33-36k against 22-24k tok/s without; session 13). Larger weights take the decode
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
                if let Some(layout) = DecodeLayout::for_weight(&lin.weight.val()) {
                    lin.weight_in_out = Some(layout);
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

    /// Additive causal + left-padding mask, `[batch, heads, seq, keys]` (the same for every head;
    /// expanded so the add to the scores needs no broadcasting). `keys` is `past + seq`, or more
    /// with a cache's column bucket: the columns past `past + seq` are masked like the future.
    fn mask(
        &self,
        batch: &ForwardBatch,
        past: usize,
        keys: usize,
        device: &B::Device,
    ) -> Tensor<B, 4> {
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

    /// The embedding rows of `tokens`, `[tokens, hidden]`, through `kernels::select_rows`: on
    /// burn-flex its backward adds each token's gradient into its row, where burn-flex's `select`
    /// backward scatters element by element.
    fn embed(&self, tokens: &[u32]) -> Tensor<B, 2> {
        let rows: Vec<usize> = tokens.iter().map(|&t| t as usize).collect();
        kernels::select_rows(&self.embed_tokens.val(), &rows)
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
        let keys = cache
            .as_ref()
            .map_or(batch.seq, |c| c.attended_columns(past + batch.seq));
        let mask = self.mask(batch, past, keys, &device);
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
            None => kernels::linear(hidden, self.embed_tokens.val(), None),
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
