//! Loading a whole pretrained policy — config, weights and tokenizer — from a Hugging Face model
//! directory (config.json + safetensors + tokenizer.json) or a single GGUF file.

use std::path::Path;

use burn::tensor::backend::Backend;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::tokenizer::Tokenizer;
use crate::transformer::Transformer;
use crate::weights::gguf::{GgufFile, config_from_gguf, weights_from_gguf};
use crate::weights::{WeightMap, safetensors};

pub struct Pretrained<B: Backend> {
    pub model: Transformer<B>,
    /// Absent only for a HF directory without tokenizer.json.
    pub tokenizer: Option<Tokenizer>,
}

impl<B: Backend> Pretrained<B> {
    /// EOS ids from the tokenizer's config, falling back to the model config's.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .tokenizer
            .as_ref()
            .map(|t| t.eos_token_ids().to_vec())
            .unwrap_or_default();
        for &id in &self.model.config.eos_token_ids {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }
}

/// Reads config, weights and tokenizer (no model built), for callers that need the host weights.
pub fn load_parts(path: &Path) -> Result<(ModelConfig, WeightMap, Option<Tokenizer>)> {
    if path.is_dir() {
        let config = ModelConfig::from_file(&path.join("config.json"))?;
        let weights = safetensors::load_dir(path)?;
        let tokenizer = if path.join("tokenizer.json").exists() {
            Some(Tokenizer::from_hf_dir(path)?)
        } else {
            None
        };
        Ok((config, weights, tokenizer))
    } else if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        let g = load_gguf(path)?;
        Ok((g.config, g.weights, g.tokenizer))
    } else if path.exists() {
        Err(ModelError::Format {
            file: path.to_path_buf(),
            message: "expected a Hugging Face model directory or a .gguf file".into(),
        })
    } else {
        Err(ModelError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        ))
    }
}

/// Loads a model directory or GGUF file onto `device`.
pub fn load<B: Backend>(path: &Path, device: &B::Device) -> Result<Pretrained<B>> {
    let (config, weights, tokenizer) = load_parts(path)?;
    let model = Transformer::from_weights(&config, weights, device)?;
    Ok(Pretrained { model, tokenizer })
}

/// Saves a HF-layout model directory: model.safetensors (f32) + config.json (+ tokenizer files
/// when given), loadable by transformers and by `load`.
pub fn save<B: Backend>(
    model: &Transformer<B>,
    tokenizer: Option<&Tokenizer>,
    dir: &Path,
) -> Result<()> {
    save_parts(&model.config, &model.to_weights(), tokenizer, dir)
}

/// The files of a HF-layout model directory, from host weights (`save_dir` creates `dir`).
fn save_parts(
    config: &ModelConfig,
    weights: &WeightMap,
    tokenizer: Option<&Tokenizer>,
    dir: &Path,
) -> Result<()> {
    safetensors::save_dir(weights, dir)?;
    let config_json =
        serde_json::to_string_pretty(&config.to_hf_json()).expect("a JSON value always serialises");
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, config_json).map_err(|e| ModelError::io(&config_path, e))?;
    if let Some(tok) = tokenizer {
        save_tokenizer(tok, dir)?;
    }
    Ok(())
}

/// Converts a model directory or GGUF file into a Hugging Face directory at `dir` (f32
/// model.safetensors, config.json, tokenizer.json + tokenizer_config.json with the chat
/// template), without building the model. Returns its config and parameter count. A GGUF's
/// quantised weights are dequantised: training needs f32 master weights anyway, and a HF
/// directory is what checkpoints, transformers and the other roles read.
pub fn export(path: &Path, dir: &Path) -> Result<(ModelConfig, usize)> {
    let (config, weights, tokenizer) = load_parts(path)?;
    save_parts(&config, &weights, tokenizer.as_ref(), dir)?;
    let params = weights.tensors.values().map(|t| t.data.len()).sum();
    Ok((config, params))
}

/// tokenizer.json plus a tokenizer_config.json carrying the chat template and bos/eos tokens.
fn save_tokenizer(tok: &Tokenizer, dir: &Path) -> Result<()> {
    let json_path = dir.join("tokenizer.json");
    tok.inner()
        .save(&json_path, false)
        .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", json_path.display())))?;
    let mut cfg = serde_json::Map::new();
    cfg.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
    if let Some(t) = tok.chat_template() {
        cfg.insert("chat_template".into(), t.into());
    }
    if let Some(t) = tok.bos_token() {
        cfg.insert("bos_token".into(), t.into());
    }
    if let Some(t) = tok.eos_token() {
        cfg.insert("eos_token".into(), t.into());
    }
    let cfg_path = dir.join("tokenizer_config.json");
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(cfg))
        .expect("a JSON value always serialises");
    std::fs::write(&cfg_path, text).map_err(|e| ModelError::io(&cfg_path, e))
}

/// A llama-architecture GGUF model in the crate's interchange form.
#[derive(Debug)]
pub struct GgufModel {
    pub config: ModelConfig,
    /// f32 tensors under Hugging Face names, HF layout, q/k un-permuted.
    pub weights: WeightMap,
    /// Built from `tokenizer.ggml.*`; None when the file carries no tokenizer.
    pub tokenizer: Option<Tokenizer>,
    /// `tokenizer.chat_template` (also set on `tokenizer`).
    pub chat_template: Option<String>,
}

/// Loads a llama-architecture GGUF file: config, dequantised weights and tokenizer.
pub fn load_gguf(path: &Path) -> Result<GgufModel> {
    let file = GgufFile::open(path)?;
    let architecture = file
        .get_str("general.architecture")?
        .ok_or_else(|| file.format_error("missing metadata `general.architecture`".into()))?;
    if architecture != "llama" {
        return Err(ModelError::UnsupportedGgufArchitecture {
            file: path.to_path_buf(),
            architecture: architecture.to_string(),
        });
    }
    let config = config_from_gguf(&file)?;
    let weights = weights_from_gguf(&file, &config)?;
    let tokenizer = if file.get("tokenizer.ggml.model").is_some() {
        Some(Tokenizer::from_gguf_file(&file)?)
    } else {
        None
    };
    let chat_template = file.get_str("tokenizer.chat_template")?.map(str::to_string);
    Ok(GgufModel {
        config,
        weights,
        tokenizer,
        chat_template,
    })
}
