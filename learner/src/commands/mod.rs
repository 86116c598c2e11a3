//! The `learner` command line as a library: the clap types of every subcommand and [`run`], which
//! dispatches a parsed command line. The binary (`src/main.rs`) only parses and calls [`run`].
//!
//!   learner init       --out DIR [--seed S --hidden-size H --layers L]  the embedded tiny model
//!   learner calibrate  --model M --data FILE --n 300 --run-dir D     c_ref into D/c_ref.json
//!   learner sft        --model M --data FILE --out DIR               supervised warm start
//!   learner rollout    --model M --data FILE --run-dir D --out B     sample + grade one step batch
//!   learner train-fixed --model M --batch B --steps N --run-dir D    GRPO + LaSeR steps on that batch
//!   learner serve --cluster cluster.toml [worker flags]               the gRPC Learner service

mod inputs;
mod serve;
mod tools;

use std::path::PathBuf;

use anyhow::Result;
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use clap::{Parser, Subcommand};
use laser_config::{ClusterConfig, ComputeBackend};
use laser_model::backend::{BackendTask, Cpu};

pub use inputs::{load, prompts_from_jsonl, render, tokenizer_and_token};

#[derive(Parser)]
#[command(
    name = "learner",
    about = "LaSeR learner: calibration, SFT and GRPO + LaSeR training (burn-flex on CPU, burn-cuda with --features cuda)"
)]
pub struct Cli {
    /// Compute backend of the one-shot tools (`serve` reads `model.backend` from cluster.toml).
    #[arg(long, global = true, value_enum, default_value_t = ComputeBackend::Cpu)]
    pub backend: ComputeBackend,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// Hugging Face model directory (config.json + safetensors [+ tokenizer.json]) or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// tokenizer.json or a directory holding one, when the model has none.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// z_c: a token (text) or id; default: the first of laser_model::self_reward::TOKEN_CANDIDATES
    /// in the vocabulary.
    #[arg(long)]
    pub self_reward_token: Option<String>,
    /// How a question becomes a prompt.
    #[arg(long, value_enum, default_value = "paper")]
    pub template: TemplateArg,
}

#[derive(clap::ValueEnum, Clone, Copy)]
pub enum TemplateArg {
    /// question + the paper's "Please reason step by step..." suffix, plain text.
    Paper,
    /// The same as one user turn through the tokenizer's chat template.
    Chat,
    /// The question as is.
    Raw,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the Learner gRPC service (TrainStep, Checkpoint, StreamWeights) for a cluster. Resumes
    /// from the newest complete checkpoint in run.dir when there is one.
    Serve {
        /// The run's cluster.toml (model, algorithm, run); local mode passes the resolved copy.
        #[arg(long)]
        cluster: PathBuf,
        /// This learner's data-parallel rank (0..cluster.learner_ranks). Rank 0 also writes the
        /// checkpoints and serves the weights; on Kubernetes it is the StatefulSet pod's ordinal.
        #[arg(long, env = "LASER_LEARNER_RANK", default_value_t = 0)]
        rank: u32,
        #[command(flatten)]
        worker: laser_proto::rt::WorkerArgs,
    },
    /// Write the project's embedded default model (laser_model::tiny: a Qwen2 decoder with its own
    /// tokenizer, z_c = <|verify|>) with a seeded init as a Hugging Face directory.
    Init {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 128)]
        hidden_size: usize,
        #[arg(long, default_value_t = 4)]
        layers: usize,
        #[arg(long, default_value_t = 4)]
        heads: usize,
        #[arg(long, default_value_t = 2)]
        kv_heads: usize,
        #[arg(long, default_value_t = 384)]
        intermediate_size: usize,
        #[arg(long, default_value_t = 512)]
        max_position_embeddings: usize,
    },
    /// Convert a model (a .gguf file or a Hugging Face directory) into a Hugging Face directory
    /// (f32 safetensors, config.json, tokenizer with its chat template): the run's start model.
    Export {
        /// The source: a .gguf file or a Hugging Face directory.
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Sample (x, y) from the reference model and store c_ref = mean log p_ref(z_c | x, y, EOS).
    Calibrate {
        #[command(flatten)]
        model: ModelArgs,
        /// JSONL with question/answer fields.
        #[arg(long)]
        data: PathBuf,
        /// Number of (x, y) pairs.
        #[arg(long, default_value_t = 300)]
        n: usize,
        #[arg(long)]
        run_dir: PathBuf,
        #[arg(long, default_value_t = 4)]
        samples_per_prompt: usize,
        #[arg(long, default_value_t = 256)]
        max_new_tokens: usize,
        #[arg(long, default_value_t = 1.0)]
        temperature: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Cross-entropy on (prompt, response) pairs; writes a HF model directory.
    Sft {
        #[command(flatten)]
        model: ModelArgs,
        /// JSONL with a question field (question/prompt/problem) and a response field (response/answer/solution).
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        epochs: usize,
        /// Train exactly this many optimiser steps (cycling through epochs); overrides --epochs.
        #[arg(long)]
        steps: Option<u64>,
        /// Cosine decay from --lr to --min-lr-ratio * lr at the last step (default: constant after
        /// warm-up).
        #[arg(long)]
        cosine: bool,
        #[arg(long, default_value_t = 0.1)]
        min_lr_ratio: f64,
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        #[arg(long, default_value_t = 4)]
        micro_batch_size: usize,
        #[arg(long, default_value_t = 1e-4)]
        lr: f64,
        #[arg(long, default_value_t = 0)]
        warmup_steps: u64,
        /// Responses are cut to this many tokens (EOS included).
        #[arg(long, default_value_t = 256)]
        max_response_tokens: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Checkpoint here every --checkpoint-every steps, and resume from here when it has one.
        #[arg(long)]
        run_dir: Option<PathBuf>,
        #[arg(long, default_value_t = 50)]
        checkpoint_every: u64,
    },
    /// Sample a step batch (groups of n per prompt, with self-rewards) and grade it with the verifier.
    Rollout {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        data: PathBuf,
        /// Run directory holding c_ref.json (from `calibrate`).
        #[arg(long)]
        run_dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 4)]
        prompts: usize,
        #[arg(long, default_value_t = 8)]
        n: usize,
        #[arg(long, default_value_t = 256)]
        max_new_tokens: usize,
        #[arg(long, default_value_t = 0.1)]
        beta_v: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// GRPO + LaSeR steps on one fixed batch file, with checkpoints (resumes from the run dir).
    TrainFixed {
        #[command(flatten)]
        model: ModelArgs,
        /// A TrainingBatch JSON ({"groups": [...]}), e.g. from `learner rollout`.
        #[arg(long)]
        batch: PathBuf,
        #[arg(long)]
        run_dir: PathBuf,
        #[arg(long, default_value_t = 10)]
        steps: u64,
        #[arg(long, default_value_t = 1e-5)]
        lr: f64,
        #[arg(long, default_value_t = 4)]
        micro_batch_size: usize,
        /// LaSeR hyper-parameters as JSON (LaserConfig fields, verl names), e.g. '{"reasoning_warmup_steps": 0}'.
        #[arg(long)]
        laser: Option<String>,
        #[arg(long, default_value_t = 5)]
        checkpoint_every: u64,
        #[arg(long, default_value_t = 3)]
        keep_last: usize,
    },
}

/// Runs one parsed command line (the `learner` binary's whole body after parsing).
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve {
            cluster,
            rank,
            worker,
        } => {
            let cfg = ClusterConfig::load(&cluster)?;
            on_backend(cfg.model.backend, ServeTask { cfg, rank, worker })?;
        }
        // Init only writes files: no backend to choose.
        command @ Command::Init { .. } => {
            tools::tool::<Autodiff<Cpu>>(command, &Default::default())?
        }
        command => on_backend(cli.backend, ToolTask(command))?,
    }
    // This process's peak RSS (VmHWM, Linux), a JSON line for the coordinator's run summary.
    if let Some(kb) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
    {
        println!("{}", serde_json::json!({ "peak_rss_kb": kb }));
    }
    Ok(())
}

/// The one place the compute backend is chosen (laser-model logs the choice). The learner trains
/// on `Autodiff<B>`. CUDA needs a `--features cuda` build and a usable GPU; either missing is an
/// error, never a panic or a silent CPU fallback.
fn on_backend<T: BackendTask<Output = Result<()>>>(backend: ComputeBackend, task: T) -> Result<()> {
    laser_model::backend::run_on(backend == ComputeBackend::Cuda, task)
        .map_err(anyhow::Error::msg)?
}

struct ServeTask {
    cfg: ClusterConfig,
    rank: u32,
    worker: laser_proto::rt::WorkerArgs,
}

impl BackendTask for ServeTask {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        serve::serve::<Autodiff<B>>(&self.cfg, self.rank, &self.worker, device)
    }
}

struct ToolTask(Command);

impl BackendTask for ToolTask {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        tools::tool::<Autodiff<B>>(self.0, &device)
    }
}
