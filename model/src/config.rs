//! `ModelConfig`: the architecture hyper-parameters, read from a Hugging Face `config.json`
//! (`Qwen2ForCausalLM`, `LlamaForCausalLM`) and written back in the same form.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ModelError, Result};

/// The two decoder families we support. They differ only in biases and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    Qwen2,
    Llama,
}

impl Architecture {
    pub fn hf_name(self) -> &'static str {
        match self {
            Architecture::Qwen2 => "Qwen2ForCausalLM",
            Architecture::Llama => "LlamaForCausalLM",
        }
    }
    fn model_type(self) -> &'static str {
        match self {
            Architecture::Qwen2 => "qwen2",
            Architecture::Llama => "llama",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v projections (always on for Qwen2; `attention_bias` for Llama).
    pub qkv_bias: bool,
    /// Bias on the attention output projection (Llama's `attention_bias` covers it too; Qwen2 never).
    pub o_bias: bool,
    /// Bias on the MLP projections (Llama's `mlp_bias`).
    pub mlp_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub max_position_embeddings: usize,
}

impl ModelConfig {
    /// Reads `config.json`; every problem is reported with the file path and the field.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_json_str(&text, path)
    }

    /// Parses a config.json text; `path` is only used to name the source in errors.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let err = |message: String| ModelError::Config {
            path: path.to_path_buf(),
            message,
        };
        let value: Value =
            serde_json::from_str(text).map_err(|e| err(format!("not valid JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| err("top level is not a JSON object".into()))?;

        let arch_name = obj
            .get("architectures")
            .and_then(|a| a.as_array())
            .and_then(|a| a.first())
            .and_then(|a| a.as_str())
            .ok_or_else(|| err("missing field `architectures`".into()))?;
        let architecture = match arch_name {
            "Qwen2ForCausalLM" => Architecture::Qwen2,
            "LlamaForCausalLM" => Architecture::Llama,
            other => {
                return Err(ModelError::UnknownArchitecture {
                    path: path.to_path_buf(),
                    architecture: other.to_string(),
                });
            }
        };

        let usize_field = |name: &str| -> Result<usize> {
            let v = obj
                .get(name)
                .ok_or_else(|| err(format!("missing field `{name}`")))?;
            v.as_u64()
                .filter(|&n| n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| {
                    err(format!(
                        "field `{name}` must be a positive integer, got {v}"
                    ))
                })
        };
        let f64_field = |name: &str, default: f64| -> Result<f64> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v
                    .as_f64()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .ok_or_else(|| {
                        err(format!("field `{name}` must be a positive number, got {v}"))
                    }),
            }
        };
        let bool_field = |name: &str, default: bool| -> Result<bool> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v
                    .as_bool()
                    .ok_or_else(|| err(format!("field `{name}` must be a boolean, got {v}"))),
            }
        };
        let token_ids = |name: &str| -> Result<Vec<u32>> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(vec![]),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_u64().map(|n| n as u32).ok_or_else(|| {
                            err(format!("field `{name}` must hold token ids, got {v}"))
                        })
                    })
                    .collect(),
                Some(v) => v
                    .as_u64()
                    .map(|n| vec![n as u32])
                    .ok_or_else(|| err(format!("field `{name}` must be a token id, got {v}"))),
            }
        };

        if let Some(act) = obj.get("hidden_act").and_then(|v| v.as_str())
            && act != "silu"
        {
            return Err(err(format!(
                "field `hidden_act` is {act:?}; only \"silu\" is supported"
            )));
        }
        // transformers >= 5 writes `rope_parameters: {rope_type, rope_theta}` instead of top-level
        // `rope_theta` + `rope_scaling`; older files use the latter. Only plain ("default") RoPE is supported.
        let rope_parameters = obj.get("rope_parameters").filter(|v| !v.is_null());
        for (field, value) in [
            ("rope_scaling", obj.get("rope_scaling")),
            ("rope_parameters", rope_parameters),
        ] {
            let Some(value) = value.filter(|v| !v.is_null()) else {
                continue;
            };
            let rope_type = value
                .get("rope_type")
                .or_else(|| value.get("type"))
                .and_then(|t| t.as_str())
                .unwrap_or(if field == "rope_parameters" {
                    "default"
                } else {
                    "unknown"
                });
            if rope_type != "default" {
                return Err(err(format!(
                    "field `{field}` ({value}) is not supported; only plain RoPE (rope_type \"default\") is"
                )));
            }
        }
        let rope_theta = match rope_parameters.and_then(|p| p.get("rope_theta")) {
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| {
                    err(format!(
                        "field `rope_parameters.rope_theta` must be a positive number, got {v}"
                    ))
                })?,
            None => f64_field("rope_theta", 10_000.0)?,
        };

        let hidden_size = usize_field("hidden_size")?;
        let num_attention_heads = usize_field("num_attention_heads")?;
        let num_key_value_heads = match obj.get("num_key_value_heads") {
            None | Some(Value::Null) => num_attention_heads,
            Some(_) => usize_field("num_key_value_heads")?,
        };
        let head_dim = match obj.get("head_dim") {
            None | Some(Value::Null) => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(err(format!(
                        "`hidden_size` {hidden_size} is not divisible by `num_attention_heads` {num_attention_heads}"
                    )));
                }
                hidden_size / num_attention_heads
            }
            Some(_) => usize_field("head_dim")?,
        };
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(err(format!(
                "`num_attention_heads` {num_attention_heads} is not a multiple of `num_key_value_heads` {num_key_value_heads}"
            )));
        }
        if head_dim % 2 != 0 {
            return Err(err(format!(
                "head dimension {head_dim} must be even for RoPE"
            )));
        }
        let attention_bias = bool_field("attention_bias", false)?;
        let (qkv_bias, o_bias) = match architecture {
            Architecture::Qwen2 => (true, false),
            Architecture::Llama => (attention_bias, attention_bias),
        };
        let config = ModelConfig {
            architecture,
            vocab_size: usize_field("vocab_size")?,
            hidden_size,
            intermediate_size: usize_field("intermediate_size")?,
            num_hidden_layers: usize_field("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rope_theta,
            rms_norm_eps: f64_field("rms_norm_eps", 1e-6)?,
            // Both LlamaConfig and Qwen2Config default to an untied head.
            tie_word_embeddings: bool_field("tie_word_embeddings", false)?,
            qkv_bias,
            o_bias,
            mlp_bias: bool_field("mlp_bias", false)?,
            bos_token_id: token_ids("bos_token_id")?.first().copied(),
            eos_token_ids: token_ids("eos_token_id")?,
            max_position_embeddings: usize_field("max_position_embeddings")?,
        };
        Ok(config)
    }

    /// The Hugging Face config.json for this model, loadable by transformers.
    pub fn to_hf_json(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "architectures".into(),
            Value::from(vec![self.architecture.hf_name()]),
        );
        m.insert("model_type".into(), self.architecture.model_type().into());
        m.insert("vocab_size".into(), self.vocab_size.into());
        m.insert("hidden_size".into(), self.hidden_size.into());
        m.insert("intermediate_size".into(), self.intermediate_size.into());
        m.insert("num_hidden_layers".into(), self.num_hidden_layers.into());
        m.insert(
            "num_attention_heads".into(),
            self.num_attention_heads.into(),
        );
        m.insert(
            "num_key_value_heads".into(),
            self.num_key_value_heads.into(),
        );
        m.insert("head_dim".into(), self.head_dim.into());
        m.insert("hidden_act".into(), "silu".into());
        m.insert("rope_theta".into(), self.rope_theta.into());
        m.insert("rms_norm_eps".into(), self.rms_norm_eps.into());
        m.insert(
            "tie_word_embeddings".into(),
            self.tie_word_embeddings.into(),
        );
        m.insert(
            "max_position_embeddings".into(),
            self.max_position_embeddings.into(),
        );
        m.insert("torch_dtype".into(), "float32".into());
        if self.architecture == Architecture::Llama {
            m.insert("attention_bias".into(), self.qkv_bias.into());
            m.insert("mlp_bias".into(), self.mlp_bias.into());
        }
        if let Some(bos) = self.bos_token_id {
            m.insert("bos_token_id".into(), bos.into());
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [one] => {
                m.insert("eos_token_id".into(), (*one).into());
            }
            many => {
                m.insert("eos_token_id".into(), Value::from(many.to_vec()));
            }
        }
        Value::Object(m)
    }

    pub fn num_kv_groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }
}
