//! `learner`: a thin command line over the laser-learner library (local, single-process use; the gRPC
//! service of the distributed runtime wraps the same `Learner`).
//!
//!   learner init       --out DIR [--seed S --hidden-size H --layers L]  the embedded tiny model
//!   learner calibrate  --model M --data FILE --n 300 --run-dir D     c_ref into D/c_ref.json
//!   learner sft        --model M --data FILE --out DIR               supervised warm start
//!   learner rollout    --model M --data FILE --run-dir D --out B     sample + grade one step batch
//!   learner train-fixed --model M --batch B --steps N --run-dir D    GRPO + LaSeR steps on that batch
//!   learner serve --cluster cluster.toml [worker flags]               the gRPC Learner service

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::backend::Autodiff;
use burn::tensor::backend::{AutodiffBackend, Backend};
use clap::{Parser, Subcommand};
use laser_learner::calibrate::{CalibrationRequest, read_calibration, write_calibration};
use laser_learner::checkpoint::{DataCursor, RunDir};
use laser_learner::{
    Group, LaserConfig, Learner, LearnerConfig, LrSchedule, OptimConfig, Sample, SftExample,
    TrainingBatch, calibrate, epoch_order,
};
use laser_model::backend::{BackendTask, Cpu};
use laser_model::{
    ChatMessage, GenerationRequest, Pretrained, SamplingParams, SelfRewardConfig, Tokenizer,
};
use laser_proto::cluster::{ClusterConfig, ComputeBackend};
use laser_verifier::tasks::jsonl::{JsonlFields, load_jsonl};
use laser_verifier::tasks::template::{Prompt, PromptTemplate};
use laser_verifier::{Grader, GraderConfig};

#[derive(Parser)]
#[command(
    name = "learner",
    about = "LaSeR learner: calibration, SFT and GRPO + LaSeR training (burn-flex on CPU, burn-cuda with --features cuda)"
)]
struct Cli {
    /// Compute backend of the one-shot tools (`serve` reads `model.backend` from cluster.toml).
    #[arg(long, global = true, value_enum, default_value_t = ComputeBackend::Cpu)]
    backend: ComputeBackend,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ModelArgs {
    /// Hugging Face model directory (config.json + safetensors [+ tokenizer.json]) or a .gguf file.
    #[arg(long)]
    model: PathBuf,
    /// tokenizer.json or a directory holding one, when the model has none.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// z_c: a token (text) or id; default: the first of laser_model::self_reward::TOKEN_CANDIDATES
    /// in the vocabulary.
    #[arg(long)]
    self_reward_token: Option<String>,
    /// How a question becomes a prompt.
    #[arg(long, value_enum, default_value = "paper")]
    template: TemplateArg,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum TemplateArg {
    /// question + the paper's "Please reason step by step..." suffix, plain text.
    Paper,
    /// The same as one user turn through the tokenizer's chat template.
    Chat,
    /// The question as is.
    Raw,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Learner gRPC service (TrainStep, Checkpoint, StreamWeights) for a cluster. Resumes
    /// from the newest complete checkpoint in run.dir when there is one.
    Serve {
        /// The run's cluster.toml (model, algorithm, run); local mode passes the resolved copy.
        #[arg(long)]
        cluster: PathBuf,
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

fn main() -> Result<()> {
    laser_model::backend::keep_freed_memory();
    laser_proto::rt::init_tracing("info");
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { cluster, worker } => {
            let cfg = ClusterConfig::load(&cluster)?;
            on_backend(cfg.model.backend, ServeTask { cfg, worker })?;
        }
        // Init only writes files: no backend to choose.
        command @ Command::Init { .. } => tool::<Autodiff<Cpu>>(command, &Default::default())?,
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
    worker: laser_proto::rt::WorkerArgs,
}

impl BackendTask for ServeTask {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        serve::<Autodiff<B>>(&self.cfg, &self.worker, device)
    }
}

struct ToolTask(Command);

impl BackendTask for ToolTask {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        tool::<Autodiff<B>>(self.0, &device)
    }
}

fn tool<B: AutodiffBackend>(command: Command, device: &B::Device) -> Result<()> {
    match command {
        Command::Serve { .. } => unreachable!("serve is dispatched in main"),
        Command::Init {
            out,
            seed,
            hidden_size,
            layers,
            heads,
            kv_heads,
            intermediate_size,
            max_position_embeddings,
        } => {
            use laser_model::tiny::{TinyDims, write_default};
            let dims = TinyDims {
                hidden_size,
                num_hidden_layers: layers,
                num_attention_heads: heads,
                num_key_value_heads: kv_heads,
                intermediate_size,
                max_position_embeddings,
            };
            if heads == 0 || kv_heads == 0 || hidden_size % heads != 0 || heads % kv_heads != 0 {
                bail!(
                    "--hidden-size {hidden_size} must be a multiple of --heads {heads}, itself a multiple of --kv-heads {kv_heads}"
                );
            }
            write_default::<Cpu>(dims, seed, &out, &Default::default())
                .with_context(|| format!("writing {}", out.display()))?;
            let config = laser_model::tiny::config(dims)?;
            let params: usize = laser_model::tiny::init_weights(&config, seed)
                .tensors
                .values()
                .map(|t| t.data.len())
                .sum();
            // One JSON line for the coordinator (its run summary), then the human line.
            println!(
                "{}",
                serde_json::json!({"params": params, "vocab_size": config.vocab_size, "out": out})
            );
            println!(
                "wrote the tiny model ({:.2}M parameters, vocabulary {}) to {}",
                params as f64 / 1e6,
                config.vocab_size,
                out.display()
            );
        }
        Command::Calibrate {
            model,
            data,
            n,
            run_dir,
            samples_per_prompt,
            max_new_tokens,
            temperature,
            seed,
        } => {
            let (mut pretrained, tokenizer, z_c) = load::<B::InnerBackend>(&model, device)?;
            // It samples as an actor does (see `Transformer::with_decode_weights`).
            pretrained.model = pretrained.model.with_decode_weights();
            let prompts = prompts_from_jsonl(&data, &tokenizer, model.template, usize::MAX)?;
            let request = CalibrationRequest {
                prompts: prompts.into_iter().map(|(p, _)| p).collect(),
                samples: n,
                per_prompt: samples_per_prompt,
                params: SamplingParams {
                    temperature,
                    max_new_tokens,
                    seed,
                    ..SamplingParams::default()
                },
                eos_token_ids: pretrained.eos_token_ids(),
                self_reward_token: z_c,
            };
            let calibration = calibrate(
                &pretrained.model,
                Some(&tokenizer),
                &request,
                &model.model.display().to_string(),
                |done, total| {
                    tracing::info!(done, total, "calibration samples");
                    // A JSON progress line on stdout for the coordinator's progress bar.
                    println!(
                        "{}",
                        serde_json::json!({"calibrated": done, "total": total})
                    );
                },
            )?;
            let path = write_calibration(&run_dir, &calibration)?;
            println!(
                "c_ref = {:.4} (std {:.4}, {} samples, {} truncated) -> {}",
                calibration.c_ref,
                calibration.std,
                calibration.samples,
                calibration.truncated,
                path.display()
            );
        }
        Command::Sft {
            model,
            data,
            out,
            epochs,
            steps,
            cosine,
            min_lr_ratio,
            batch_size,
            micro_batch_size,
            lr,
            warmup_steps,
            max_response_tokens,
            seed,
            run_dir,
            checkpoint_every,
        } => {
            let (pretrained, tokenizer, z_c) = load::<B>(&model, device)?;
            let eos = *pretrained
                .model
                .config
                .eos_token_ids
                .first()
                .context("the model config has no EOS token")?;
            let examples =
                sft_examples(&data, &tokenizer, model.template, eos, max_response_tokens)?;
            let batch_size = batch_size.max(1);
            let steps_per_epoch = examples.len().div_ceil(batch_size);
            let total_steps = steps.unwrap_or((epochs * steps_per_epoch) as u64);
            let run = run_dir.as_deref().map(RunDir::open).transpose()?;
            let latest = match &run {
                Some(run) => run.latest_complete()?,
                None => None,
            };
            let mut learner = match latest {
                Some(checkpoint) => {
                    println!("resuming from {}", checkpoint.path.display());
                    Learner::<B>::load_checkpoint(&checkpoint, device, None, None)?
                }
                None => {
                    let config = LearnerConfig {
                        optim: OptimConfig {
                            lr_schedule: if cosine {
                                LrSchedule::Cosine {
                                    lr,
                                    warmup_steps,
                                    total_steps,
                                    min_lr_ratio,
                                }
                            } else {
                                LrSchedule::Constant { lr, warmup_steps }
                            },
                            ..Default::default()
                        },
                        micro_batch_size,
                        self_reward_token: z_c,
                        seed,
                        ..Default::default()
                    };
                    Learner::new(pretrained.model, Some(tokenizer), None, config)?
                }
            };
            // The data cursor (epoch, position in that epoch's order) is checkpointed; the order is a
            // pure function of (seed, epoch), so a resumed run sees exactly the remaining examples.
            let more = |l: &Learner<B>| match steps {
                Some(n) => l.step() < n,
                None => (l.data_cursor().epoch as usize) < epochs,
            };
            while more(&learner) {
                let cursor = learner.data_cursor();
                let order = epoch_order(learner.config().seed, cursor.epoch, examples.len());
                let start = cursor.position as usize;
                let end = (start + batch_size).min(examples.len());
                let batch: Vec<SftExample> = order[start..end]
                    .iter()
                    .map(|&j| examples[j].clone())
                    .collect();
                let m = learner.sft_step(&batch)?;
                tracing::info!(
                    epoch = cursor.epoch,
                    step = start / batch_size + 1,
                    of = steps_per_epoch,
                    loss = m.loss,
                    grad_norm = m.grad_norm,
                    "sft"
                );
                println!("{}", serde_json::to_string(&m)?);
                learner.set_data_cursor(if end == examples.len() {
                    DataCursor {
                        epoch: cursor.epoch + 1,
                        position: 0,
                    }
                } else {
                    DataCursor {
                        epoch: cursor.epoch,
                        position: end as u64,
                    }
                });
                if let Some(run) = &run
                    && (learner.step() % checkpoint_every.max(1) == 0
                        || learner.step() == total_steps)
                {
                    learner.save_checkpoint(run)?;
                }
            }
            laser_model::pretrained::save(learner.model(), learner.tokenizer(), &out)?;
            println!("saved {}", out.display());
        }
        Command::Rollout {
            model,
            data,
            run_dir,
            out,
            prompts,
            n,
            max_new_tokens,
            beta_v,
            seed,
        } => {
            let (mut pretrained, tokenizer, z_c) = load::<B::InnerBackend>(&model, device)?;
            // It samples as an actor does (see `Transformer::with_decode_weights`).
            pretrained.model = pretrained.model.with_decode_weights();
            let calibration = read_calibration(&run_dir)?;
            let tasks = prompts_from_jsonl(&data, &tokenizer, model.template, prompts)?;
            let request = GenerationRequest {
                prompts: tasks.iter().map(|(p, _)| p.clone()).collect(),
                n,
                params: SamplingParams {
                    max_new_tokens,
                    seed,
                    ..SamplingParams::default()
                },
                eos_token_ids: pretrained.eos_token_ids(),
                self_reward: Some(SelfRewardConfig {
                    token_id: z_c,
                    beta_v,
                    c_ref: calibration.c_ref as f32,
                }),
            };
            let (samples, stats) =
                laser_model::generate(&pretrained.model, Some(&tokenizer), &request)?;
            let grader = Grader::new(GraderConfig::default());
            let mut groups: Vec<Group> = (0..tasks.len())
                .map(|i| Group {
                    prompt_id: i as u64,
                    samples: Vec::new(),
                })
                .collect();
            for s in samples {
                let (prompt, gold) = &tasks[s.prompt_index];
                let grade = grader.grade(gold, &s.text);
                let truncated = s.finish_reason == laser_model::FinishReason::Length;
                groups[s.prompt_index].samples.push(Sample {
                    prompt_tokens: prompt.clone(),
                    response_tokens: s.tokens,
                    old_logprobs: s.logprobs,
                    verifier_reward: f32::from(grade.reward),
                    self_reward: if truncated {
                        None
                    } else {
                        s.self_reward.map(|r| r.score)
                    },
                    truncated,
                    policy_version: 0,
                });
            }
            let batch = TrainingBatch::new(groups)?;
            let correct = batch.samples().filter(|s| s.verifier_reward >= 0.5).count();
            std::fs::write(&out, serde_json::to_vec(&batch)?)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{} samples ({} correct, {} tokens generated) -> {}",
                batch.num_samples(),
                correct,
                stats.decode_rows,
                out.display()
            );
        }
        Command::TrainFixed {
            model,
            batch,
            run_dir,
            steps,
            lr,
            micro_batch_size,
            laser,
            checkpoint_every,
            keep_last,
        } => {
            let text = std::fs::read_to_string(&batch)
                .with_context(|| format!("reading {}", batch.display()))?;
            let batch: TrainingBatch = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a valid training batch", run_path(&batch)))?;
            let run = RunDir::open(&run_dir)?;
            let mut learner = match run.latest_complete()? {
                Some(checkpoint) => {
                    println!("resuming from {}", checkpoint.path.display());
                    Learner::<B>::load_checkpoint(&checkpoint, device, None, None)?
                }
                None => {
                    let (pretrained, tokenizer, z_c) = load::<B>(&model, device)?;
                    let c_ref = read_calibration(&run_dir).map(|c| c.c_ref).context(
                        "no c_ref.json in the run directory: run `learner calibrate` first",
                    )?;
                    let laser: LaserConfig = match laser {
                        Some(json) => serde_json::from_str(&json).context("--laser")?,
                        None => LaserConfig::default(),
                    };
                    let config = LearnerConfig {
                        laser,
                        optim: OptimConfig {
                            lr_schedule: LrSchedule::Constant {
                                lr,
                                warmup_steps: 0,
                            },
                            ..Default::default()
                        },
                        micro_batch_size,
                        self_reward_token: z_c,
                        c_ref,
                        keep_last_checkpoints: keep_last,
                        ..Default::default()
                    };
                    Learner::new(pretrained.model, Some(tokenizer), None, config)?
                }
            };
            while learner.step() < steps {
                let m = learner.train_step(&batch)?;
                println!("{}", serde_json::to_string(&m)?);
                if learner.step() % checkpoint_every.max(1) == 0 || learner.step() == steps {
                    let c = learner.save_checkpoint(&run)?;
                    tracing::info!(path = %c.path.display(), "checkpoint");
                }
            }
        }
    }
    Ok(())
}

/// `learner serve`: the newest complete checkpoint of run.dir, else a fresh learner from
/// model.path; then the gRPC service until SIGTERM.
fn serve<B: AutodiffBackend>(
    cfg: &ClusterConfig,
    worker: &laser_proto::rt::WorkerArgs,
    device: B::Device,
) -> Result<()>
where
    Learner<B>: Send + 'static,
{
    use laser_learner::service::{LearnerService, LearnerState, learner_config};
    use laser_proto::rt::{RoleServer, WorkerStatus, run_worker};
    let run = RunDir::open(&cfg.run.dir)?;
    let learner = match run.latest_complete()? {
        Some(checkpoint) => {
            // cluster.toml wins over the configuration stored with the checkpoint (e.g. a new
            // alpha, or `--max-steps` stretching the cosine schedule), and every change is logged.
            let stored = laser_learner::stored_config(&checkpoint)
                .with_context(|| format!("resuming from {}", checkpoint.path.display()))?;
            let wanted = learner_config(cfg, stored.self_reward_token, stored.c_ref);
            for change in laser_learner::config_changes(&stored, &wanted) {
                tracing::warn!(%change, "resume: cluster.toml changes the checkpoint's learner configuration");
            }
            let l = Learner::<B>::load_checkpoint(&checkpoint, &device, None, Some(wanted))
                .with_context(|| format!("resuming from {}", checkpoint.path.display()))?;
            tracing::info!(
                path = %checkpoint.path.display(),
                step = l.step(),
                version = l.policy_version(),
                "resumed"
            );
            l
        }
        None => {
            let model_path = cfg.model.path.clone().context("model.path is required")?;
            let args = ModelArgs {
                model: model_path,
                tokenizer: None,
                self_reward_token: cfg.model.self_reward_token.clone(),
                template: TemplateArg::Raw,
            };
            let (pretrained, tokenizer, z_c) = load::<B>(&args, &device)?;
            let c_ref = laser_model::self_reward::resolve_c_ref(cfg.algorithm.c_ref, &cfg.run.dir)?;
            tracing::info!(z_c, c_ref, "fresh learner");
            Learner::new(
                pretrained.model,
                Some(tokenizer),
                None,
                learner_config(cfg, z_c, c_ref),
            )?
        }
    };
    let token = worker.token()?;
    let opts = worker.server_options(&token);
    let status = std::sync::Arc::new(WorkerStatus::default());
    let service = LearnerService::new(
        LearnerState::new(learner, run),
        status.clone(),
        opts.max_message_bytes,
    )?;
    let server = RoleServer::new(opts.clone()).service(opts.learner(service));
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    rt.block_on(run_worker(
        laser_proto::v1::Role::Learner,
        worker,
        &token,
        server,
        1,
        status,
    ))?;
    Ok(())
}

fn run_path(p: &Path) -> String {
    p.display().to_string()
}

/// The model on `device` (any backend: the inference one for sampling, `Autodiff<B>` to train),
/// its tokenizer and z_c.
fn load<B: Backend>(
    args: &ModelArgs,
    device: &B::Device,
) -> Result<(Pretrained<B>, Tokenizer, u32)> {
    let pretrained = laser_model::pretrained::load::<B>(&args.model, device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let (tokenizer, z_c) = tokenizer_and_token(
        args,
        pretrained.tokenizer.clone(),
        pretrained.model.config.vocab_size,
    )?;
    Ok((pretrained, tokenizer, z_c))
}

fn tokenizer_and_token(
    args: &ModelArgs,
    from_model: Option<Tokenizer>,
    vocab: usize,
) -> Result<(Tokenizer, u32)> {
    let tokenizer = match &args.tokenizer {
        Some(path) if path.is_dir() => Tokenizer::from_hf_dir(path)?,
        Some(path) => Tokenizer::from_file(path)?,
        None => from_model.with_context(|| {
            format!(
                "{} has no tokenizer.json; pass --tokenizer",
                args.model.display()
            )
        })?,
    };
    let z_c =
        laser_model::self_reward::resolve_token(&tokenizer, args.self_reward_token.as_deref())?;
    if z_c as usize >= vocab {
        bail!("self-reward token {z_c} is outside the model's vocabulary of {vocab}");
    }
    Ok((tokenizer, z_c))
}

fn render(tokenizer: &Tokenizer, template: TemplateArg, question: &str) -> Result<Vec<u32>> {
    let template = match template {
        TemplateArg::Paper => PromptTemplate::PaperSuffix,
        TemplateArg::Chat => PromptTemplate::Chat { system: None },
        TemplateArg::Raw => PromptTemplate::Raw,
    };
    Ok(match template.render(question) {
        Prompt::Text(text) => tokenizer.encode(&text, true)?,
        Prompt::Chat(messages) => {
            let messages: Vec<ChatMessage> = messages
                .into_iter()
                .map(|m| ChatMessage::new(m.role, m.content))
                .collect();
            let text = tokenizer.apply_chat_template(&messages, true)?;
            tokenizer.encode(&text, false)?
        }
    })
}

/// (prompt tokens, gold answer) for up to `limit` tasks of a JSONL file.
fn prompts_from_jsonl(
    data: &Path,
    tokenizer: &Tokenizer,
    template: TemplateArg,
    limit: usize,
) -> Result<Vec<(Vec<u32>, String)>> {
    let tasks = load_jsonl(data, &JsonlFields::default())?;
    if tasks.is_empty() {
        bail!("{}: no tasks", data.display());
    }
    tasks
        .iter()
        .take(limit)
        .map(|t| Ok((render(tokenizer, template, &t.question)?, t.gold.clone())))
        .collect()
}

/// SFT pairs: prompt from the question field, response = the full response/answer/solution text + EOS.
fn sft_examples(
    data: &Path,
    tokenizer: &Tokenizer,
    template: TemplateArg,
    eos: u32,
    max_response_tokens: usize,
) -> Result<Vec<SftExample>> {
    let file = std::fs::File::open(data).with_context(|| format!("opening {}", data.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}", data.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: invalid JSON", data.display(), i + 1))?;
        let field = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| value.get(*n).and_then(|v| v.as_str()).map(str::to_owned))
        };
        let question = field(&["question", "prompt", "problem"]).with_context(|| {
            format!(
                "{}:{}: no question/prompt/problem field",
                data.display(),
                i + 1
            )
        })?;
        let answer = field(&["response", "answer", "solution"]).with_context(|| {
            format!(
                "{}:{}: no response/answer/solution field",
                data.display(),
                i + 1
            )
        })?;
        let prompt = render(tokenizer, template, &question)?;
        let mut response = tokenizer.encode(&answer, false)?;
        response.truncate(max_response_tokens.saturating_sub(1));
        response.push(eos);
        out.push(SftExample { prompt, response });
    }
    if out.is_empty() {
        bail!("{}: no examples", data.display());
    }
    Ok(out)
}
