//! The `actor` command line as a library: its clap types and [`run`]; `src/main.rs` only parses
//! and calls [`run`].
//!
//! `actor`: rollout tools over laser-actor's library (generation and teacher-forced scoring).

use std::path::PathBuf;

use crate::{DEFAULT_BETA_V, DEFAULT_C_REF, GenerateArgs};
use anyhow::Result;
use burn::tensor::backend::Backend;
use clap::{Parser, Subcommand};
use laser_config::ComputeBackend;
use laser_model::SamplingParams;
use laser_model::backend::BackendTask;

#[derive(Parser)]
#[command(name = "actor", version, about = "LaSeR rollout actor")]
pub struct Cli {
    /// Compute backend of the one-shot tools (`serve` reads `model.backend` from cluster.toml).
    #[arg(long, global = true, value_enum, default_value_t = ComputeBackend::Cpu)]
    pub backend: ComputeBackend,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args)]
pub struct SelfRewardOpts {
    /// z_c: a special token (text) or numeric id; default: the first known reserved token.
    #[arg(long)]
    self_reward_token: Option<String>,
    /// beta_v in r_s = beta_v * (log p(z_c) - c_ref).
    #[arg(long, default_value_t = DEFAULT_BETA_V)]
    beta_v: f32,
    /// c_ref, from `learner calibrate` (paper default for Qwen2.5).
    #[arg(long, default_value_t = DEFAULT_C_REF, allow_hyphen_values = true)]
    c_ref: f32,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the Actor gRPC service (Generate, UpdateWeights) for a cluster.
    Serve {
        /// The run's cluster.toml (model, algorithm); local mode passes the resolved copy.
        #[arg(long)]
        cluster: PathBuf,
        #[command(flatten)]
        worker: laser_proto::rt::WorkerArgs,
    },
    /// Sample completions and print them with their self-reward scores.
    Generate {
        /// A Hugging Face model directory or a .gguf file.
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        prompt: String,
        /// Samples to draw.
        #[arg(long, default_value_t = 1)]
        n: usize,
        #[arg(long, default_value_t = 1.0)]
        temperature: f32,
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        /// 0 disables top-k.
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        #[arg(long, default_value_t = 128)]
        max_new_tokens: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Stop when the text contains this string (repeatable).
        #[arg(long)]
        stop: Vec<String>,
        /// Wrap the prompt in the model's chat template.
        #[arg(long)]
        chat: bool,
        #[command(flatten)]
        self_reward: SelfRewardOpts,
        /// One JSON object per sample instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Teacher-forced scoring: per-token log-probs of RESPONSE and the z_c log-prob after EOS.
    Score {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        prompt: String,
        #[arg(long)]
        response: String,
        #[arg(long)]
        chat: bool,
        #[command(flatten)]
        self_reward: SelfRewardOpts,
        #[arg(long)]
        json: bool,
    },
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    // A server logs its life at info; the one-shot tools only warnings (RUST_LOG overrides).
    let serving = matches!(cli.command, Command::Serve { .. });
    laser_proto::rt::init_tracing(if serving { "info" } else { "warn" });
    let backend = cli.backend;
    if let Command::Serve { cluster, worker } = cli.command {
        let cfg = laser_config::ClusterConfig::load(&cluster)?;
        return on_backend(cfg.model.backend, ServeTask { cfg, worker });
    }
    on_backend(backend, ToolTask(cli.command))
}

/// The one place the compute backend is chosen (laser-model logs the choice). CUDA needs a
/// `--features cuda` build and a usable GPU; either missing is an error, never a panic or a silent
/// CPU fallback.
fn on_backend<T: BackendTask<Output = Result<()>>>(backend: ComputeBackend, task: T) -> Result<()> {
    laser_model::backend::run_on(backend == ComputeBackend::Cuda, task)
        .map_err(anyhow::Error::msg)?
}

struct ServeTask {
    cfg: laser_config::ClusterConfig,
    worker: laser_proto::rt::WorkerArgs,
}

impl BackendTask for ServeTask {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        serve::<B>(&self.cfg, &self.worker, device)
    }
}

struct ToolTask(Command);

impl BackendTask for ToolTask {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        tool::<B>(self.0, &device)
    }
}

fn tool<B: Backend>(command: Command, device: &B::Device) -> Result<()> {
    match command {
        Command::Serve { .. } => unreachable!("serve is dispatched in main"),
        Command::Generate {
            model,
            prompt,
            n,
            temperature,
            top_p,
            top_k,
            max_new_tokens,
            seed,
            stop,
            chat,
            self_reward,
            json,
        } => {
            let p = crate::load::<B>(&model, device)?;
            let args = GenerateArgs {
                prompt,
                chat,
                n,
                params: SamplingParams {
                    temperature,
                    top_p,
                    top_k,
                    max_new_tokens,
                    seed,
                    stop_strings: stop,
                },
                self_reward_token: self_reward.self_reward_token,
                beta_v: self_reward.beta_v,
                c_ref: self_reward.c_ref,
            };
            for s in crate::generate(&p, &args)? {
                if json {
                    println!("{}", serde_json::to_string(&s)?);
                } else {
                    let sr = match (s.self_reward, s.self_reward_logprob) {
                        (Some(r), Some(lp)) => format!("self_reward={r:.4} (log p(z_c)={lp:.3})"),
                        _ => "self_reward=n/a (no EOS)".to_string(),
                    };
                    println!(
                        "--- sample {} [{:?}, {} tokens, {sr}]\n{}",
                        s.index,
                        s.finish_reason,
                        s.token_ids.len(),
                        s.text
                    );
                }
            }
        }
        Command::Score {
            model,
            prompt,
            response,
            chat,
            self_reward,
            json,
        } => {
            let p = crate::load::<B>(&model, device)?;
            let r = crate::score(
                &p,
                &prompt,
                &response,
                chat,
                self_reward.self_reward_token.as_deref(),
                self_reward.beta_v,
                self_reward.c_ref,
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("response tokens: {:?}", r.response_token_ids);
                println!("log-probs:       {:?}", r.response_logprobs);
                println!(
                    "self-reward: log p(z_c)={:.4}  r_s={:.4}",
                    r.self_reward_logprob, r.self_reward
                );
            }
        }
    }
    Ok(())
}

fn serve<B: Backend>(
    cfg: &laser_config::ClusterConfig,
    worker: &laser_proto::rt::WorkerArgs,
    device: B::Device,
) -> Result<()> {
    use crate::service::{ActorConfig, ActorService};
    use laser_proto::rt::{RoleServer, WorkerStatus, run_worker};
    let model_path = cfg.model.path.clone().unwrap_or_default();
    let p = crate::load::<B>(&model_path, &device)?;
    let eos_token_ids = p.eos_token_ids();
    let tokenizer = p
        .tokenizer
        .ok_or_else(|| anyhow::anyhow!("{}: the model has no tokenizer", model_path.display()))?;
    let token_id = laser_model::self_reward::resolve_token(
        &tokenizer,
        cfg.model.self_reward_token.as_deref(),
    )?;
    let a = &cfg.algorithm;
    // The learner reads the same value: configured, else the run's calibration; never a default.
    let c_ref = laser_config::CRef::resolve(a.c_ref, &cfg.run.dir)?;
    tracing::info!(token_id, c_ref, "self-reward read-out");
    let actor_cfg = ActorConfig {
        chat: cfg.model.chat,
        self_reward: laser_model::SelfRewardConfig {
            token_id,
            beta_v: a.beta_v as f32,
            c_ref: c_ref as f32,
        },
        eos_token_ids,
        max_prompt_tokens: a.max_prompt_tokens as usize,
        weights_idle: std::time::Duration::from_secs_f64(cfg.cluster.weights_timeout_s.max(1.0)),
    };
    let token = worker.token()?;
    let opts = worker.server_options(&token);
    let status = std::sync::Arc::new(WorkerStatus::default());
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let service = ActorService::<B>::new(
            p.model,
            device,
            tokenizer,
            actor_cfg,
            worker.client_options(&token),
            status.clone(),
        );
        let server = RoleServer::new(opts.clone()).service(opts.actor(service));
        run_worker(
            laser_proto::v1::Role::Actor,
            worker,
            &token,
            server,
            1,
            status,
        )
        .await
    })?;
    Ok(())
}
