//! `[model]`: which model a run trains, where it computes, and the self-reward token.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// Hugging Face model directory (config.json, *.safetensors, tokenizer.json) or a GGUF file.
    pub path: Option<PathBuf>,
    /// Instead of `path`: build the project's own model in `run_dir/init_model` (seed = run.seed).
    pub init: Option<ModelInit>,
    /// Dimensions of `init = "tiny"`.
    pub tiny: TinyModelSection,
    /// z_c: a token (text or id) whose log-prob after EOS is the self-reward. Default: the first of
    /// the project's known candidates present in the vocabulary.
    pub self_reward_token: Option<String>,
    /// Render prompts through the tokenizer's chat template.
    pub chat: bool,
    /// Where actors and the learner compute: `"cpu"` (burn-flex) or `"cuda"` (burn-cuda, GPU 0
    /// of those visible; the binaries must be built with `--features cuda`).
    pub backend: ComputeBackend,
}

/// `model.backend`: the compute backend of the actors and the learner, chosen at run time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ComputeBackend {
    #[default]
    Cpu,
    Cuda,
}

impl ComputeBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        }
    }
}

impl std::fmt::Display for ComputeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A model the job builds itself (`model.init`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelInit {
    /// laser_model::tiny: a small Qwen2 decoder with the project's own tokenizer (z_c =
    /// `<|verify|>`), seeded N(0, 0.02) init.
    Tiny,
}

/// `[model.tiny]`: the size of `init = "tiny"` (defaults: laser_model::tiny::TinyDims, 0.84M
/// parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TinyModelSection {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
}

impl Default for TinyModelSection {
    fn default() -> Self {
        Self {
            hidden_size: 128,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            intermediate_size: 384,
            max_position_embeddings: 512,
        }
    }
}
