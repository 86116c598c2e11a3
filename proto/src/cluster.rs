//! `cluster.toml`: the one configuration file of a run, read by the coordinator and by every worker
//! (local mode hands its children the resolved copy in the run directory).
//!
//! Loaded through the `config` crate: the file, then environment overrides such as
//! `LASER__ALGORITHM__LR=1e-5` (prefix `LASER`, `__` between keys). Every section denies unknown
//! keys, so a typo or a wrong type is one error that names the key, and [`ClusterConfig::validate`]
//! names the field of any value out of range (e.g. a missing `model.path`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::rt::{TlsFiles, TokenSource};

#[derive(Debug, thiserror::Error)]
pub enum ClusterConfigError {
    /// Parse errors, unknown keys and wrong types, as the `config` crate words them (with the key).
    #[error("{file}: {message}")]
    Load { file: String, message: String },
    #[error("{file}: `{key}` {message}")]
    Invalid {
        file: String,
        key: &'static str,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    #[serde(default)]
    pub model: ModelSection,
    #[serde(default)]
    pub data: DataSection,
    #[serde(default)]
    pub algorithm: AlgorithmSection,
    #[serde(default)]
    pub cluster: ClusterSection,
    #[serde(default)]
    pub run: RunSection,
    #[serde(default)]
    pub warmstart: WarmstartSection,
    #[serde(default)]
    pub eval: EvalSection,
}

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

/// One difficulty level of the synthetic tasks (`[[data.mix]]`, `[[warmstart.mix]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskLevel {
    /// Digits per operand, inclusive range.
    pub min_digits: u32,
    pub max_digits: u32,
    /// Operations per problem.
    pub chain_length: usize,
    /// Operators drawn from, e.g. "+-*" (`/` gives fractions).
    pub ops: String,
    /// Relative share of the level in the mix.
    pub weight: f64,
}

impl Default for TaskLevel {
    fn default() -> Self {
        Self {
            min_digits: 1,
            max_digits: 1,
            chain_length: 1,
            ops: "+-*".into(),
            weight: 1.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// The built-in seeded arithmetic tasks.
    #[default]
    Synthetic,
    /// A JSONL file (`data.path`).
    Jsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PromptTemplateKind {
    /// question + the paper's "put your final answer within \boxed{}" suffix.
    #[default]
    PaperSuffix,
    Raw,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSection {
    pub source: DataSource,
    pub path: Option<PathBuf>,
    pub template: PromptTemplateKind,
    /// Synthetic tasks: digits per operand and operations per problem (used when `mix` is empty).
    pub min_digits: u32,
    pub max_digits: u32,
    pub chain_length: usize,
    /// Synthetic tasks: operators drawn from (used when `mix` is empty).
    pub ops: String,
    /// Synthetic tasks as a weighted mix of difficulty levels; empty: the single level above.
    pub mix: Vec<TaskLevel>,
    /// Held-out evaluation set (JSONL). None: synthetic runs draw `eval.problems` held-out
    /// problems with a seed disjoint from training; JSONL runs skip evaluation.
    pub eval_path: Option<PathBuf>,
}

impl DataSection {
    /// The synthetic task levels: `mix`, or the single level of min_digits/max_digits/chain_length.
    pub fn levels(&self) -> Vec<TaskLevel> {
        if self.mix.is_empty() {
            vec![TaskLevel {
                min_digits: self.min_digits,
                max_digits: self.max_digits,
                chain_length: self.chain_length,
                ops: self.ops.clone(),
                weight: 1.0,
            }]
        } else {
            self.mix.clone()
        }
    }
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            source: DataSource::Synthetic,
            path: None,
            template: PromptTemplateKind::PaperSuffix,
            min_digits: 1,
            max_digits: 2,
            chain_length: 2,
            ops: "+-*".into(),
            mix: Vec::new(),
            eval_path: None,
        }
    }
}

/// GRPO + LaSeR hyper-parameters (LASER.md). Defaults are the paper's, except the learning rate,
/// which a tiny model needs larger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlgorithmSection {
    /// LaSeR on (self-reward MSE and advantage mixing); off is plain GRPO.
    pub laser: bool,
    /// Samples per prompt (n).
    pub group_size: u32,
    /// Prompts per training step.
    pub batch_prompts: u32,
    /// Sequences per forward/backward pass of the learner; the step's gradient is accumulated over
    /// its micro-batches (verl's `ppo_micro_batch_size_per_gpu`). Larger is faster while it fits
    /// in memory; the result is the same up to float rounding.
    pub micro_batch_size: u32,
    pub lr: f64,
    /// Cosine decay of the RL learning rate from `lr` to `min_lr_ratio * lr` at `run.max_steps`;
    /// off: constant.
    pub cosine: bool,
    pub min_lr_ratio: f64,
    pub weight_decay: f64,
    pub grad_clip: f64,
    pub beta_v: f64,
    pub alpha: f64,
    pub tau: f64,
    /// T: group std threshold of the self-reward advantage.
    pub std_threshold: f64,
    /// c_ref; none: calibrated before training.
    pub c_ref: Option<f64>,
    pub reasoning_warmup_steps: u64,
    pub self_rewarding_warmup_steps: u64,
    pub clip_ratio_low: f64,
    pub clip_ratio_high: f64,
    pub clip_ratio_c: f64,
    pub max_prompt_tokens: u32,
    pub max_response_tokens: u32,
    pub temperature: f64,
    pub top_p: f64,
    /// (x, y) pairs sampled from the RL start model to calibrate c_ref when `c_ref` is not set.
    pub calibration_samples: u32,
}

impl Default for AlgorithmSection {
    fn default() -> Self {
        Self {
            laser: true,
            group_size: 8,
            batch_prompts: 8,
            micro_batch_size: 8,
            lr: 1e-6,
            cosine: false,
            min_lr_ratio: 0.1,
            weight_decay: 0.01,
            grad_clip: 1.0,
            beta_v: 0.1,
            alpha: 0.1,
            tau: 0.1,
            std_threshold: 0.1,
            c_ref: None,
            reasoning_warmup_steps: 200,
            self_rewarding_warmup_steps: 200,
            clip_ratio_low: 0.2,
            clip_ratio_high: 0.2,
            clip_ratio_c: 3.0,
            max_prompt_tokens: 512,
            max_response_tokens: 1024,
            temperature: 1.0,
            top_p: 1.0,
            calibration_samples: 256,
        }
    }
}

/// `[warmstart]`: supervised fine-tuning before RL (the job's phase 2), on step-by-step solutions of
/// the synthetic tasks of which `wrong_fraction` carry a deliberate slip, so that RL starts from a
/// deliberately imperfect policy. Writes `run_dir/sft_model`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarmstartSection {
    /// Optimiser steps; 0 skips the warm start.
    pub steps: u64,
    /// Sequences per step.
    pub batch_size: u32,
    pub micro_batch_size: u32,
    pub lr: f64,
    pub warmup_steps: u64,
    /// Cosine decay from `lr` to `min_lr_ratio * lr` at the last step; off: constant after warm-up.
    pub cosine: bool,
    pub min_lr_ratio: f64,
    /// Fraction of solutions with a deliberate slip.
    pub wrong_fraction: f64,
    /// Responses are cut to this many tokens (EOS included).
    pub max_response_tokens: u32,
    /// Seed of the SFT problems and slips; default: run.seed + 1000 (disjoint from RL's run.seed).
    pub seed: Option<u64>,
    /// Difficulty levels of the SFT problems; empty: the RL task levels (`data`).
    pub mix: Vec<TaskLevel>,
    /// An SFT JSONL (question + response fields) to use instead of generating one.
    pub path: Option<PathBuf>,
    pub checkpoint_every: u64,
}

impl Default for WarmstartSection {
    fn default() -> Self {
        Self {
            steps: 0,
            batch_size: 32,
            micro_batch_size: 32,
            lr: 3e-3,
            warmup_steps: 20,
            cosine: true,
            min_lr_ratio: 0.1,
            wrong_fraction: 0.3,
            max_response_tokens: 256,
            seed: None,
            mix: Vec::new(),
            path: None,
            checkpoint_every: 100,
        }
    }
}

/// `[eval]`: held-out evaluation through the actors and verifiers, at step 0 (the RL start), every
/// `run.eval_every` steps and at the end; rows go to `run_dir/eval.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalSection {
    pub enabled: bool,
    /// Samples per problem (the k of maj@k).
    pub k: u32,
    /// Held-out synthetic problems to draw (a `data.eval_path` file: its first N; 0 = all).
    pub problems: u32,
    /// Seed of the held-out problems and of their sampling; default: run.seed + 2000.
    pub seed: Option<u64>,
    pub temperature: f64,
    pub top_p: f64,
    /// Default: algorithm.max_response_tokens.
    pub max_response_tokens: Option<u32>,
    /// Write every graded sample of each evaluation to `run_dir/eval_samples/step-N.jsonl`
    /// (text, extracted answer, correctness, r_s), for inspecting the self-verifier.
    pub save_samples: bool,
}

impl Default for EvalSection {
    fn default() -> Self {
        Self {
            enabled: true,
            k: 8,
            problems: 64,
            seed: None,
            temperature: 1.0,
            top_p: 1.0,
            max_response_tokens: None,
            save_samples: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClusterMode {
    /// The coordinator spawns every worker as a child process on loopback.
    #[default]
    Local,
    /// Workers are started elsewhere (Kubernetes) and register themselves.
    External,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    pub mode: ClusterMode,
    pub actors: u32,
    pub verifiers: u32,
    /// Address the coordinator listens on (Register, Heartbeat, Monitor).
    pub listen: String,
    /// Address workers use to reach the coordinator; default: `listen`.
    pub advertise: Option<String>,
    /// Cluster token. Local mode without one makes a fresh token per run.
    pub token: Option<TokenSource>,
    pub tls: Option<TlsFiles>,
    pub max_message_mb: u32,
    /// Async mode: actors generate step k+1 while the learner trains step k.
    #[serde(rename = "async")]
    pub async_mode: bool,
    /// Async bound: a rollout made with weights older than this many versions is dropped.
    pub max_off_policy_steps: u64,
    /// Compute threads (rayon's pool, which burn-flex and its gemm run on) of each learner process
    /// started in local mode, warm start included; 0: one per core. Results do not depend on it.
    /// Workers started elsewhere (Kubernetes) take RAYON_NUM_THREADS from their own environment, or
    /// one thread per CPU of their container.
    pub learner_threads: u32,
    /// Compute threads of each local actor; 0: one per core.
    pub actor_threads: u32,
    pub heartbeat_ms: u64,
    /// A worker silent for this long is lost; its in-flight work is re-dispatched.
    pub worker_timeout_ms: u64,
    /// Prompt groups per Generate call.
    pub groups_per_request: u32,
    pub verify_batch: u32,
    /// Per-RPC deadlines, seconds.
    pub generate_timeout_s: f64,
    pub grade_timeout_s: f64,
    pub train_timeout_s: f64,
    pub weights_timeout_s: f64,
    pub control_timeout_s: f64,
    /// How long to wait for the workers to register at start.
    pub startup_timeout_s: f64,
    /// Directory of the worker binaries in local mode; default: the coordinator's own directory.
    pub bin_dir: Option<PathBuf>,
    /// Restarts of a lost learner in local mode before the run fails.
    pub learner_restarts: u32,
    /// Weight data plane: "auto" (NCCL when the learner and every actor can use it, else the gRPC
    /// stream), "grpc", or "nccl" (wanted; falls back to gRPC with a warning). See laser_proto::plane.
    pub weight_transport: crate::plane::TransportPref,
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            mode: ClusterMode::Local,
            actors: 2,
            verifiers: 1,
            listen: "127.0.0.1:0".into(),
            advertise: None,
            token: None,
            tls: None,
            max_message_mb: 64,
            async_mode: false,
            max_off_policy_steps: 1,
            learner_threads: 0,
            actor_threads: 0,
            heartbeat_ms: 500,
            worker_timeout_ms: 5000,
            groups_per_request: 1,
            verify_batch: 64,
            generate_timeout_s: 600.0,
            grade_timeout_s: 60.0,
            train_timeout_s: 1800.0,
            weights_timeout_s: 300.0,
            control_timeout_s: 10.0,
            startup_timeout_s: 120.0,
            bin_dir: None,
            learner_restarts: 3,
            weight_transport: crate::plane::TransportPref::Auto,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSection {
    pub dir: PathBuf,
    pub seed: u64,
    pub max_steps: u64,
    pub checkpoint_every: u64,
    /// Held-out evaluation every this many steps (besides step 0 and the end, see `[eval]`);
    /// 0: only at step 0 and at the end.
    pub eval_every: u64,
    pub keep_checkpoints: usize,
}

impl Default for RunSection {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("runs/default"),
            seed: 0,
            max_steps: 100,
            checkpoint_every: 10,
            eval_every: 0,
            keep_checkpoints: 3,
        }
    }
}

/// Name of the resolved copy a run keeps (and local children and `--resume` read).
pub const RESOLVED_FILE: &str = "cluster.resolved.toml";

impl ClusterConfig {
    /// Reads `path`, applies `LASER__…` environment overrides, and validates.
    pub fn load(path: &Path) -> Result<Self, ClusterConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`load`](Self::load) with an explicit environment (tests).
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ClusterConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ClusterConfigError::Load {
            file: file.clone(),
            message: e.to_string(),
        })?;
        let cfg = Self::from_toml_with_env(&text, &file, env)?;
        cfg.validate(&file)?;
        Ok(cfg)
    }

    /// Parses TOML text plus overrides; `file` names the source in errors. Does not validate.
    pub fn from_toml_with_env(
        text: &str,
        file: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ClusterConfigError> {
        let env_map: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("LASER__"))
            .collect();
        let load_err = |e: config::ConfigError| ClusterConfigError::Load {
            file: file.to_string(),
            message: qualify_unknown_key(&e.to_string()),
        };
        config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("LASER")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env_map)),
            )
            .build()
            .map_err(load_err)?
            .try_deserialize::<ClusterConfig>()
            .map_err(load_err)
    }

    /// Range checks; the first violation names its key.
    pub fn validate(&self, file: &str) -> Result<(), ClusterConfigError> {
        let bad = |key: &'static str, message: String| {
            Err(ClusterConfigError::Invalid {
                file: file.to_string(),
                key,
                message,
            })
        };
        match (&self.model.path, self.model.init) {
            (Some(_), Some(_)) => {
                return bad(
                    "model.init",
                    "and `model.path` are both set: use `path` for an existing model, or `init = \"tiny\"` to build one"
                        .into(),
                );
            }
            (None, Some(ModelInit::Tiny)) => {
                let t = &self.model.tiny;
                if t.hidden_size == 0
                    || t.num_hidden_layers == 0
                    || t.num_attention_heads == 0
                    || t.num_key_value_heads == 0
                    || t.intermediate_size == 0
                    || t.max_position_embeddings == 0
                {
                    return bad("model.tiny", "dimensions must all be at least 1".into());
                }
                if !t.hidden_size.is_multiple_of(t.num_attention_heads)
                    || !t.num_attention_heads.is_multiple_of(t.num_key_value_heads)
                {
                    return bad(
                        "model.tiny",
                        format!(
                            "hidden_size {} must be a multiple of num_attention_heads {}, itself a multiple of num_key_value_heads {}",
                            t.hidden_size, t.num_attention_heads, t.num_key_value_heads
                        ),
                    );
                }
            }
            (None, None) => {
                return bad(
                    "model.path",
                    "is required: the model directory (config.json, *.safetensors, tokenizer.json), or set model.init = \"tiny\""
                        .into(),
                );
            }
            (Some(p), None) if !p.exists() => {
                return bad(
                    "model.path",
                    format!("= {:?}: no such file or directory", p.display().to_string()),
                );
            }
            (Some(_), None) => {}
        }
        if self.data.source == DataSource::Synthetic {
            for (key, levels) in [
                ("data.mix", self.data.levels()),
                ("warmstart.mix", self.warmstart.mix.clone()),
            ] {
                for l in &levels {
                    if l.min_digits == 0 || l.min_digits > l.max_digits || l.max_digits > 18 {
                        return bad(
                            key,
                            format!(
                                "digits must satisfy 1 <= min_digits <= max_digits <= 18 (got {}..={})",
                                l.min_digits, l.max_digits
                            ),
                        );
                    }
                    if l.chain_length == 0 || l.chain_length > 64 {
                        return bad(
                            key,
                            format!("chain_length = {}: must be in 1..=64", l.chain_length),
                        );
                    }
                    if l.ops.is_empty() || l.ops.chars().any(|c| !"+-*/".contains(c)) {
                        return bad(
                            key,
                            format!("ops = {:?}: must be a non-empty string of + - * /", l.ops),
                        );
                    }
                    if !(l.weight > 0.0 && l.weight.is_finite()) {
                        return bad(key, format!("weight = {}: must be > 0", l.weight));
                    }
                }
            }
        }
        let w = &self.warmstart;
        if w.steps > 0 {
            if w.batch_size == 0 || w.micro_batch_size == 0 {
                return bad(
                    "warmstart.batch_size",
                    "and warmstart.micro_batch_size must be at least 1".into(),
                );
            }
            if !(w.lr > 0.0 && w.lr.is_finite()) {
                return bad("warmstart.lr", format!("= {}: must be > 0", w.lr));
            }
            if !(0.0..=1.0).contains(&w.wrong_fraction) {
                return bad(
                    "warmstart.wrong_fraction",
                    format!("= {}: must be in [0, 1]", w.wrong_fraction),
                );
            }
            if !(0.0..=1.0).contains(&w.min_lr_ratio) {
                return bad(
                    "warmstart.min_lr_ratio",
                    format!("= {}: must be in [0, 1]", w.min_lr_ratio),
                );
            }
            if let Some(p) = &w.path
                && !p.exists()
            {
                return bad(
                    "warmstart.path",
                    format!("= {:?}: no such file", p.display().to_string()),
                );
            }
        }
        if self.eval.enabled {
            if self.eval.k == 0 {
                return bad("eval.k", "= 0: must be at least 1".into());
            }
            if self.eval.temperature < 0.0 {
                return bad(
                    "eval.temperature",
                    format!("= {}: must be >= 0", self.eval.temperature),
                );
            }
            if self.data.eval_path.is_none()
                && self.data.source == DataSource::Synthetic
                && self.eval.problems == 0
            {
                return bad(
                    "eval.problems",
                    "= 0: synthetic evaluation needs at least 1 problem (or set eval.enabled = false)"
                        .into(),
                );
            }
        }
        if self.algorithm.c_ref.is_none() && self.algorithm.calibration_samples == 0 {
            return bad(
                "algorithm.calibration_samples",
                "= 0 with no algorithm.c_ref: c_ref must be calibrated or configured".into(),
            );
        }
        if self.data.source == DataSource::Jsonl && self.data.path.is_none() {
            return bad(
                "data.path",
                "is required when data.source = \"jsonl\"".into(),
            );
        }
        let a = &self.algorithm;
        let checks: [(&'static str, bool, String); 13] = [
            (
                "algorithm.group_size",
                a.group_size >= 2,
                format!(
                    "= {}: GRPO needs at least 2 samples per prompt",
                    a.group_size
                ),
            ),
            (
                "algorithm.batch_prompts",
                a.batch_prompts >= 1,
                format!("= {}: must be at least 1", a.batch_prompts),
            ),
            (
                "algorithm.micro_batch_size",
                a.micro_batch_size >= 1,
                format!("= {}: must be at least 1", a.micro_batch_size),
            ),
            (
                "algorithm.lr",
                a.lr > 0.0 && a.lr.is_finite(),
                format!("= {}: must be > 0", a.lr),
            ),
            (
                "algorithm.beta_v",
                a.beta_v > 0.0 && a.beta_v.is_finite(),
                format!("= {}: must be > 0", a.beta_v),
            ),
            (
                "algorithm.alpha",
                a.alpha >= 0.0,
                format!("= {}: must be >= 0", a.alpha),
            ),
            (
                "algorithm.tau",
                (0.0..=1.0).contains(&a.tau),
                format!("= {}: must be in [0, 1]", a.tau),
            ),
            (
                "algorithm.std_threshold",
                a.std_threshold >= 0.0,
                format!("= {}: must be >= 0", a.std_threshold),
            ),
            (
                "algorithm.temperature",
                a.temperature > 0.0,
                format!("= {}: must be > 0", a.temperature),
            ),
            (
                "algorithm.top_p",
                a.top_p > 0.0 && a.top_p <= 1.0,
                format!("= {}: must be in (0, 1]", a.top_p),
            ),
            (
                "algorithm.max_response_tokens",
                a.max_response_tokens >= 1,
                format!("= {}: must be at least 1", a.max_response_tokens),
            ),
            (
                "cluster.actors",
                self.cluster.actors >= 1 || self.cluster.mode == ClusterMode::External,
                format!(
                    "= {}: local mode needs at least 1 actor",
                    self.cluster.actors
                ),
            ),
            (
                "cluster.verifiers",
                self.cluster.verifiers >= 1 || self.cluster.mode == ClusterMode::External,
                format!(
                    "= {}: local mode needs at least 1 verifier",
                    self.cluster.verifiers
                ),
            ),
        ];
        for (key, ok, message) in checks {
            if !ok {
                return bad(key, message);
            }
        }
        if self.cluster.max_message_mb == 0 {
            return bad("cluster.max_message_mb", "= 0: must be at least 1".into());
        }
        if self.cluster.mode == ClusterMode::External && self.cluster.token.is_none() {
            return bad(
                "cluster.token",
                "is required in external mode (e.g. token = { env = \"LASER_CLUSTER_TOKEN\" })"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&self.algorithm.min_lr_ratio) {
            return bad(
                "algorithm.min_lr_ratio",
                format!("= {}: must be in [0, 1]", self.algorithm.min_lr_ratio),
            );
        }
        if self.run.max_steps == 0 {
            return bad("run.max_steps", "= 0: must be at least 1".into());
        }
        Ok(())
    }

    pub fn max_message_bytes(&self) -> usize {
        (self.cluster.max_message_mb as usize) << 20
    }

    pub fn to_toml(&self) -> String {
        toml_string(self)
    }
}

/// serde says "unknown field `lrr`, expected one of … for key `algorithm`"; name the full key first.
fn qualify_unknown_key(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((field, tail)) = rest.split_once('`') else {
        return message.to_string();
    };
    let (expected, section) = match tail.rsplit_once(" for key `") {
        Some((expected, section)) => (expected, section.split('`').next().unwrap_or("")),
        None => (tail, ""),
    };
    let key = if section.is_empty() {
        field.to_string()
    } else {
        format!("{section}.{field}")
    };
    format!(
        "unknown key `{key}`{}",
        expected.replacen(", ", " (", 1) + ")"
    )
}

fn toml_string(cfg: &ClusterConfig) -> String {
    // `config` has no writer; serde's TOML output via the `toml` crate `config` already depends on.
    toml::to_string_pretty(cfg).unwrap_or_else(|e| format!("# could not serialise: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<ClusterConfig, ClusterConfigError> {
        ClusterConfig::from_toml_with_env(
            text,
            "cluster.toml",
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn env_overrides_reach_nested_keys() {
        let c = parse(
            "[model]\npath = \"m\"\n[algorithm]\nlr = 0.5\n",
            &[
                ("LASER__ALGORITHM__LR", "1e-5"),
                ("LASER__CLUSTER__ACTORS", "3"),
            ],
        )
        .unwrap();
        assert_eq!(c.algorithm.lr, 1e-5);
        assert_eq!(c.cluster.actors, 3);
        assert_eq!(
            c.algorithm.group_size, 8,
            "untouched keys keep their defaults"
        );
    }

    #[test]
    fn unknown_key_and_wrong_type_name_the_key() {
        let e = parse(
            "[model]\npath = \"m\"\n[algorithm]\nlearning_rate = 1.0\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(
                "cluster.toml: unknown key `algorithm.learning_rate` (expected one of `laser`"
            ),
            "{e}"
        );
        let e = parse("[modle]\npath = \"m\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cluster.toml: unknown key `modle` ("), "{e}");
        let e = parse("[model]\npath = \"m\"\n", &[("LASER__ALGORITHM__LRR", "1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key `algorithm.lrr`"), "{e}");
        let e = parse("[model]\npath = \"m\"\n[algorithm]\nlr = \"fast\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("algorithm.lr"), "{e}");
        let e = parse("[model]\npath = \"m\"\n[cluster]\nmode = \"cloud\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster.mode") || e.contains("cloud"), "{e}");
    }

    #[test]
    fn missing_model_path_is_named() {
        let c = parse("[run]\nmax_steps = 3\n", &[]).unwrap();
        let e = c.validate("cluster.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("cluster.toml: `model.path` is required"),
            "{e}"
        );
    }

    #[test]
    fn learner_micro_batch_is_configurable_and_checked() {
        let c = parse("[model]\npath = \"m\"\n", &[]).unwrap();
        assert_eq!(c.algorithm.micro_batch_size, 8);
        let c = parse(
            "[model]\npath = \"m\"\n",
            &[("LASER__ALGORITHM__MICRO_BATCH_SIZE", "32")],
        )
        .unwrap();
        assert_eq!(c.algorithm.micro_batch_size, 32);
        let c = parse(
            "[model]\ninit = \"tiny\"\n[algorithm]\nmicro_batch_size = 0\n",
            &[],
        )
        .unwrap();
        let e = c.validate("cluster.toml").unwrap_err().to_string();
        assert!(e.contains("`algorithm.micro_batch_size` = 0"), "{e}");
    }

    #[test]
    fn model_init_and_job_sections() {
        let c = parse(
            "[model]\ninit = \"tiny\"\n[model.tiny]\nhidden_size = 64\n\
             [[data.mix]]\nmax_digits = 1\nchain_length = 1\n[[data.mix]]\nchain_length = 2\nweight = 2.0\n\
             [warmstart]\nsteps = 10\n[eval]\nk = 4\n",
            &[("LASER__WARMSTART__LR", "0.01"), ("LASER__MODEL__TINY__NUM_HIDDEN_LAYERS", "2")],
        )
        .unwrap();
        c.validate("cluster.toml").unwrap();
        assert_eq!(c.model.init, Some(ModelInit::Tiny));
        assert_eq!(
            (c.model.tiny.hidden_size, c.model.tiny.num_hidden_layers),
            (64, 2)
        );
        assert_eq!(c.data.levels().len(), 2);
        assert_eq!(c.data.levels()[1].weight, 2.0);
        assert_eq!((c.warmstart.steps, c.warmstart.lr), (10, 0.01));
        assert_eq!(c.eval.k, 4);
        assert_eq!(parse(&c.to_toml(), &[]).unwrap(), c);

        let err = |text: &str| {
            parse(text, &[])
                .unwrap()
                .validate("cluster.toml")
                .unwrap_err()
                .to_string()
        };
        let e = err("[model]\ninit = \"tiny\"\npath = \"/\"\n");
        assert!(
            e.starts_with("cluster.toml: `model.init` and `model.path` are both set"),
            "{e}"
        );
        let e = err(
            "[model]\ninit = \"tiny\"\n[model.tiny]\nhidden_size = 100\nnum_attention_heads = 3\n",
        );
        assert!(e.starts_with("cluster.toml: `model.tiny`"), "{e}");
        let e = err("[model]\ninit = \"tiny\"\n[[data.mix]]\nops = \"+^\"\n");
        assert!(e.starts_with("cluster.toml: `data.mix` ops"), "{e}");
        let e = err("[model]\ninit = \"tiny\"\n[warmstart]\nsteps = 5\nwrong_fraction = 1.5\n");
        assert!(
            e.starts_with("cluster.toml: `warmstart.wrong_fraction`"),
            "{e}"
        );
        let e = err("[model]\ninit = \"tiny\"\n[eval]\nk = 0\n");
        assert!(e.starts_with("cluster.toml: `eval.k`"), "{e}");
        let e = parse("[model]\ninit = \"huge\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("huge") || e.contains("model.init"), "{e}");
    }

    #[test]
    fn resolved_toml_round_trips() {
        let c = parse(
            "[model]\npath = \"m\"\n[cluster]\ntoken = { file = \"/etc/laser/token\" }\n",
            &[],
        )
        .unwrap();
        let again = parse(&c.to_toml(), &[]).unwrap();
        assert_eq!(c, again);
    }
}
