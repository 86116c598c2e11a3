//! GGUF reader for llama-architecture models (llama.cpp's single-file format).
//!
//! Layout (v2/v3, little-endian): magic `GGUF`, version u32, tensor count u64, metadata count u64;
//! the metadata key/values; the tensor infos (name, dims innermost-first, ggml type, offset); then the
//! tensor data, starting at the next multiple of `general.alignment` (default 32). Every offset and
//! length read from the file is checked against its size, so a truncated or corrupt file is an error
//! naming the file, never a panic or a huge allocation.
//!
//! `pretrained::load_gguf` turns a file into the crate's interchange: a [`ModelConfig`] from the `llama.*` keys,
//! a [`WeightMap`] of f32 tensors under Hugging Face names and layout (dequantising F32, F16, BF16, Q8_0,
//! Q4_0, Q4_1, and undoing llama.cpp's q/k row permutation), and the tokenizer from `tokenizer.ggml.*`.

use super::{HostTensor, WeightMap};
use crate::config::{Architecture, ModelConfig};
use crate::error::{ModelError, Result};

mod reader;
pub use reader::{GgmlType, GgufFile, GgufTensorInfo, GgufValue};

/// `ModelConfig` from the `llama.*` metadata and the tensor index.
pub fn config_from_gguf(file: &GgufFile) -> Result<ModelConfig> {
    let positive = |key: &str| -> Result<usize> {
        match file.require_u64(key)? {
            0 => Err(file.format_error(format!("metadata `{key}` must be positive"))),
            v => usize::try_from(v)
                .map_err(|_| file.format_error(format!("metadata `{key}` = {v} is too large"))),
        }
    };
    let hidden_size = positive("llama.embedding_length")?;
    let num_attention_heads = positive("llama.attention.head_count")?;
    let num_key_value_heads = match file.get("llama.attention.head_count_kv") {
        None => num_attention_heads,
        Some(_) => positive("llama.attention.head_count_kv")?,
    };
    if num_attention_heads % num_key_value_heads != 0 {
        return Err(file.format_error(format!(
            "`llama.attention.head_count` {num_attention_heads} is not a multiple of `llama.attention.head_count_kv` {num_key_value_heads}"
        )));
    }
    let head_dim = match file.get("llama.attention.key_length") {
        Some(_) => positive("llama.attention.key_length")?,
        None => {
            if hidden_size % num_attention_heads != 0 {
                return Err(file.format_error(format!(
                    "`llama.embedding_length` {hidden_size} is not divisible by `llama.attention.head_count` {num_attention_heads}"
                )));
            }
            hidden_size / num_attention_heads
        }
    };
    if let Some(v) = file.get_u64("llama.attention.value_length")?
        && v as usize != head_dim
    {
        return Err(file.format_error(format!(
                "`llama.attention.value_length` {v} differs from the key length {head_dim}; not supported"
            )));
    }
    if head_dim % 2 != 0 {
        return Err(file.format_error(format!("head dimension {head_dim} must be even for RoPE")));
    }
    if let Some(rot) = file.get_u64("llama.rope.dimension_count")?
        && rot as usize != head_dim
    {
        return Err(file.format_error(format!(
                "`llama.rope.dimension_count` {rot} differs from the head dimension {head_dim}: partial rotary embeddings are not supported"
            )));
    }
    if let Some(kind) = file.get_str("llama.rope.scaling.type")?
        && kind != "none"
    {
        return Err(file.format_error(format!(
            "`llama.rope.scaling.type` is {kind:?}: RoPE scaling is not supported"
        )));
    }
    if file.tensor_info("rope_freqs.weight").is_some() {
        return Err(file.format_error(
            "tensor `rope_freqs.weight` (Llama-3.1 RoPE frequency scaling) is not supported".into(),
        ));
    }
    let positive_f64 = |key: &str, default: f64| -> Result<f64> {
        match file.get_f64(key)? {
            None => Ok(default),
            Some(v) if v.is_finite() && v > 0.0 => Ok(v),
            Some(v) => {
                Err(file.format_error(format!("metadata `{key}` must be positive, got {v}")))
            }
        }
    };

    let embed = file
        .tensor_info("token_embd.weight")
        .ok_or_else(|| ModelError::MissingTensor {
            file: file.path.clone(),
            tensor: "token_embd.weight".into(),
        })?;
    let embed_shape = embed.shape();
    if embed_shape.len() != 2 || embed_shape[1] != hidden_size {
        return Err(ModelError::TensorShape {
            file: file.path.clone(),
            tensor: "token_embd.weight".into(),
            expected: vec![embed_shape.first().copied().unwrap_or(0), hidden_size],
            actual: embed_shape,
        });
    }
    let vocab_size = embed_shape[0];
    if let Some(n_tokens) = file
        .get("tokenizer.ggml.tokens")
        .and_then(GgufValue::as_array)
        .map(<[_]>::len)
        && n_tokens > vocab_size
    {
        return Err(file.format_error(format!(
            "the tokenizer has {n_tokens} tokens but `token_embd.weight` only {vocab_size} rows"
        )));
    }
    let token_id = |key: &str| -> Result<Option<u32>> {
        match file.get_u64(key)? {
            None => Ok(None),
            Some(id) if (id as usize) < vocab_size => Ok(Some(id as u32)),
            Some(id) => Err(file.format_error(format!(
                "metadata `{key}` = {id} is outside the vocabulary of {vocab_size}"
            ))),
        }
    };
    let mut eos_token_ids = Vec::new();
    // EOT/EOM (Llama-3's <|eot_id|>, <|eom_id|>) end a turn just like EOS does.
    for key in [
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
    ] {
        if let Some(id) = token_id(key)?
            && !eos_token_ids.contains(&id)
        {
            eos_token_ids.push(id);
        }
    }
    let has = |name: &str| file.tensor_info(name).is_some();
    Ok(ModelConfig {
        architecture: Architecture::Llama,
        vocab_size,
        hidden_size,
        intermediate_size: positive("llama.feed_forward_length")?,
        num_hidden_layers: positive("llama.block_count")?,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        rope_theta: positive_f64("llama.rope.freq_base", 10_000.0)?,
        rms_norm_eps: positive_f64("llama.attention.layer_norm_rms_epsilon", 1e-6)?,
        tie_word_embeddings: !has("output.weight"),
        qkv_bias: has("blk.0.attn_q.bias"),
        o_bias: has("blk.0.attn_output.bias"),
        mlp_bias: has("blk.0.ffn_gate.bias"),
        bos_token_id: token_id("tokenizer.ggml.bos_token_id")?,
        eos_token_ids,
        max_position_embeddings: positive("llama.context_length")?,
    })
}

/// What a GGUF tensor is in Hugging Face terms.
struct HfName {
    name: String,
    /// `Some(heads)` for q/k tensors whose rows llama.cpp permuted per head.
    unpermute_heads: Option<usize>,
}

/// The Hugging Face name of a llama GGUF tensor, or None when it is not one we know.
fn hf_name(gguf: &str, config: &ModelConfig) -> Option<HfName> {
    let plain = |name: String| {
        Some(HfName {
            name,
            unpermute_heads: None,
        })
    };
    match gguf {
        "token_embd.weight" => return plain("model.embed_tokens.weight".into()),
        "output_norm.weight" => return plain("model.norm.weight".into()),
        "output.weight" => return plain("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    if layer >= config.num_hidden_layers {
        return None;
    }
    let (module, kind) = rest.split_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let (hf_module, unpermute_heads) = match module {
        "attn_q" => ("self_attn.q_proj", Some(config.num_attention_heads)),
        "attn_k" => ("self_attn.k_proj", Some(config.num_key_value_heads)),
        "attn_v" => ("self_attn.v_proj", None),
        "attn_output" => ("self_attn.o_proj", None),
        "ffn_gate" => ("mlp.gate_proj", None),
        "ffn_up" => ("mlp.up_proj", None),
        "ffn_down" => ("mlp.down_proj", None),
        "attn_norm" if kind == "weight" => ("input_layernorm", None),
        "ffn_norm" if kind == "weight" => ("post_attention_layernorm", None),
        _ => return None,
    };
    Some(HfName {
        name: format!("model.layers.{layer}.{hf_module}.{kind}"),
        unpermute_heads,
    })
}

/// Every tensor of the file, dequantised, renamed to Hugging Face names and un-permuted.
pub fn weights_from_gguf(file: &GgufFile, config: &ModelConfig) -> Result<WeightMap> {
    let mut weights = WeightMap::new(&file.path);
    for info in &file.tensors {
        let hf = hf_name(&info.name, config).ok_or_else(|| {
            file.format_error(format!(
                "tensor `{}` is not part of a llama model with {} layers",
                info.name, config.num_hidden_layers
            ))
        })?;
        let mut tensor = file.dequantize(info)?;
        if let Some(heads) = hf.unpermute_heads {
            tensor = unpermute_rows(tensor, heads).map_err(|message| ModelError::TensorFormat {
                file: file.path.clone(),
                tensor: info.name.clone(),
                message,
            })?;
        }
        if weights.contains(&hf.name) {
            return Err(file.format_error(format!("tensor `{}` appears twice", info.name)));
        }
        weights.insert(hf.name, tensor);
    }
    Ok(weights)
}

/// Undoes llama.cpp's `permute` of q/k projection rows (weights `[rows, in]` or biases `[rows]`).
///
/// llama.cpp's converter stores each head's rows interleaved for its rotate-adjacent-pairs RoPE: it
/// views the rows as `[heads, 2, half]` and swaps the last two axes. Hugging Face's rotate-half RoPE
/// wants them back, as transformers' `reverse_permute_weights` does: HF row `h*2*half + j*half + d`
/// is GGUF row `h*2*half + d*2 + j`.
pub fn unpermute_rows(tensor: HostTensor, heads: usize) -> std::result::Result<HostTensor, String> {
    let rows = tensor.shape.first().copied().unwrap_or(0);
    if heads == 0 || rows % (2 * heads) != 0 {
        return Err(format!(
            "{rows} rows cannot be split into {heads} heads of rotary pairs"
        ));
    }
    let cols = tensor.data.len().checked_div(rows).unwrap_or(0);
    let half = rows / heads / 2;
    let mut out = vec![0.0f32; tensor.data.len()];
    for h in 0..heads {
        for j in 0..2 {
            for d in 0..half {
                let hf_row = h * 2 * half + j * half + d;
                let gguf_row = h * 2 * half + d * 2 + j;
                out[hf_row * cols..(hf_row + 1) * cols]
                    .copy_from_slice(&tensor.data[gguf_row * cols..(gguf_row + 1) * cols]);
            }
        }
    }
    Ok(HostTensor::new(tensor.shape, out))
}
