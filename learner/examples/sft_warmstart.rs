//! Measures the default job's SFT warm start on this machine: builds the embedded tiny model
//! (`laser_model::tiny`), SFTs it on synthetic arithmetic with a fraction of deliberately wrong
//! solutions (`laser_verifier::tasks::sft`), and reports SFT tokens/s, generation tokens/s and the
//! held-out accuracy (sampled at temperature 1, and greedy) every `--eval-every` steps.
//!
//!   cargo run -p laser-learner --example sft_warmstart -- --steps 300 --hidden 128 --layers 4
//!
//! Optional: `--save DIR` writes the warm-started model as a HF directory.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::AutodiffModule;
use clap::Parser;
use laser_config::{LearnerConfig, LrSchedule, OptimConfig};
use laser_learner::{Learner, SftExample, TrainBackend};
use laser_model::tiny::{self, TinyDims};
use laser_model::{GenerationRequest, SamplingParams, SelfRewardConfig};
use laser_verifier::tasks::sft::{SftDataConfig, sft_pairs};
use laser_verifier::tasks::synthetic::{ArithOp, SyntheticConfig, SyntheticTasks};
use laser_verifier::tasks::template::PAPER_SUFFIX;
use laser_verifier::{Grader, GraderConfig, Task};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    #[arg(long, default_value_t = 4)]
    layers: usize,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    #[arg(long, default_value_t = 2)]
    kv_heads: usize,
    #[arg(long, default_value_t = 384)]
    ff: usize,
    #[arg(long, default_value_t = 300)]
    steps: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 32)]
    micro_batch: usize,
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    #[arg(long, default_value_t = 20)]
    warmup: u64,
    #[arg(long, default_value_t = 0.3)]
    wrong_fraction: f64,
    #[arg(long, default_value_t = 1)]
    min_digits: u32,
    #[arg(long, default_value_t = 2)]
    max_digits: u32,
    #[arg(long, default_value_t = 2)]
    chain: usize,
    /// Operators, e.g. "+-*".
    #[arg(long, default_value = "+-*")]
    ops: String,
    #[arg(long, default_value_t = 100)]
    eval_every: usize,
    #[arg(long, default_value_t = 64)]
    eval_prompts: usize,
    #[arg(long, default_value_t = 4)]
    eval_k: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    save: Option<PathBuf>,
    /// Cosine decay to 10% of --lr at the last step (default: constant after warm-up).
    #[arg(long)]
    cosine: bool,
    /// Prompt = the question alone (default: question + the paper's instruction suffix).
    #[arg(long)]
    raw_prompt: bool,
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<()> {
    let a = Args::parse();
    let dims = TinyDims {
        hidden_size: a.hidden,
        num_hidden_layers: a.layers,
        num_attention_heads: a.heads,
        num_key_value_heads: a.kv_heads,
        intermediate_size: a.ff,
        ..TinyDims::default()
    };
    let config = tiny::config(dims)?;
    let tokenizer = tiny::build_tokenizer()?;
    let eos = tokenizer.eos_token_ids()[0];
    let z_c = tokenizer
        .token_to_id(tiny::VERIFY_TOKEN)
        .context("no <|verify|>")?;
    let params: usize = tiny::init_weights(&config, a.seed)
        .tensors
        .values()
        .map(|t| t.data.len())
        .sum();
    println!(
        "model: hidden {} layers {} heads {}/{} ff {} vocab {} -> {:.2}M params",
        a.hidden,
        a.layers,
        a.heads,
        a.kv_heads,
        a.ff,
        config.vocab_size,
        params as f64 / 1e6
    );
    let model = tiny::init_model::<TrainBackend>(&config, a.seed, &Default::default())?;

    let ops = a
        .ops
        .chars()
        .map(|c| match c {
            '+' => Ok(ArithOp::Add),
            '-' => Ok(ArithOp::Sub),
            '*' => Ok(ArithOp::Mul),
            '/' => Ok(ArithOp::Div),
            _ => anyhow::bail!("--ops: unknown operator {c:?}"),
        })
        .collect::<Result<Vec<_>>>()?;
    let synth = SyntheticConfig {
        min_digits: a.min_digits,
        max_digits: a.max_digits,
        ops,
        chain_length: a.chain,
    };
    let n_train = a.steps * a.batch;
    let train: Vec<Task> = SyntheticTasks::new(synth.clone(), 1000 + a.seed)?
        .take(n_train)
        .collect();
    let held_out: Vec<Task> = SyntheticTasks::new(synth, 2000 + a.seed)?
        .take(a.eval_prompts)
        .collect();
    let pairs = sft_pairs(
        &train,
        &SftDataConfig {
            wrong_fraction: a.wrong_fraction,
            seed: a.seed,
            ..Default::default()
        },
    )?;
    let suffix = if a.raw_prompt { "" } else { PAPER_SUFFIX };
    let encode_prompt = |q: &str| tokenizer.encode(&format!("{q}{suffix}"), false);
    let mut examples = Vec::with_capacity(pairs.len());
    for p in &pairs {
        let mut response = tokenizer.encode(&p.response, false)?;
        response.push(eos);
        examples.push(SftExample {
            prompt: encode_prompt(&p.question)?,
            response,
        });
    }
    let mean_len = |f: &dyn Fn(&SftExample) -> usize| {
        examples.iter().map(f).sum::<usize>() as f64 / examples.len() as f64
    };
    println!(
        "data: {} pairs ({:.0}% deliberately wrong), prompt {:.1} tokens, response {:.1} tokens",
        pairs.len(),
        100.0 * pairs.iter().filter(|p| !p.correct).count() as f64 / pairs.len() as f64,
        mean_len(&|e| e.prompt.len()),
        mean_len(&|e| e.response.len())
    );
    println!("example: {}  ->  {}", pairs[0].question, pairs[0].response);

    let lconfig = LearnerConfig {
        optim: OptimConfig {
            lr_schedule: if a.cosine {
                LrSchedule::Cosine {
                    lr: a.lr,
                    warmup_steps: a.warmup,
                    total_steps: a.steps as u64,
                    min_lr_ratio: 0.1,
                }
            } else {
                LrSchedule::Constant {
                    lr: a.lr,
                    warmup_steps: a.warmup,
                }
            },
            ..Default::default()
        },
        micro_batch_size: a.micro_batch,
        self_reward_token: z_c,
        seed: a.seed,
        ..Default::default()
    };
    let mut learner = Learner::new(model, Some(tokenizer.clone()), None, lconfig)?;
    let grader = Grader::new(GraderConfig::default());
    let eval_prompts: Vec<Vec<u32>> = held_out
        .iter()
        .map(|t| encode_prompt(&t.question))
        .collect::<laser_model::Result<_>>()?;

    let evaluate = |learner: &Learner<TrainBackend>, step: usize| -> Result<()> {
        let model = learner.model().valid();
        for (name, temperature, n) in [("sampled", 1.0f32, a.eval_k), ("greedy", 0.0, 1)] {
            let request = GenerationRequest {
                prompts: eval_prompts.clone(),
                n,
                params: SamplingParams {
                    temperature,
                    max_new_tokens: 96,
                    seed: 7,
                    ..Default::default()
                },
                eos_token_ids: tokenizer.eos_token_ids().to_vec(),
                self_reward: Some(SelfRewardConfig {
                    token_id: z_c,
                    beta_v: 0.1,
                    c_ref: -10.0,
                }),
            };
            let t0 = Instant::now();
            let (samples, stats) = laser_model::generate(&model, Some(&tokenizer), &request)?;
            let secs = t0.elapsed().as_secs_f64();
            let correct = samples
                .iter()
                .filter(|s| grader.grade(&held_out[s.prompt_index].gold, &s.text).reward == 1)
                .count();
            let truncated = samples
                .iter()
                .filter(|s| s.finish_reason == laser_model::FinishReason::Length)
                .count();
            let gen_tokens: usize = samples.iter().map(|s| s.tokens.len()).sum();
            println!(
                "eval step {step:>4} {name:>7}: accuracy {:.3} ({correct}/{}), truncated {truncated}, \
                 {:.2} s, {:.0} generated tok/s (prefill {} tokens, {} decode rows)",
                correct as f64 / samples.len() as f64,
                samples.len(),
                secs,
                gen_tokens as f64 / secs,
                stats.prefill_tokens,
                stats.decode_rows
            );
            if step == a.steps && name == "sampled" {
                for s in samples.iter().take(3) {
                    println!("  sample: {:?}", s.text);
                }
            }
        }
        Ok(())
    };

    let t_train = Instant::now();
    let mut tokens_total = 0usize;
    let mut window = (Instant::now(), 0usize);
    for step in 0..a.steps {
        let batch = &examples[step * a.batch..(step + 1) * a.batch];
        let m = learner.sft_step(batch)?;
        let seq_tokens: usize = batch
            .iter()
            .map(|e| e.prompt.len() + e.response.len())
            .sum();
        tokens_total += seq_tokens;
        window.1 += seq_tokens;
        if (step + 1) % 25 == 0 {
            let secs = window.0.elapsed().as_secs_f64();
            println!(
                "sft step {:>4}: loss {:.4} grad_norm {:.3} | {:.0} tok/s ({:.3} s/step)",
                step + 1,
                m.loss,
                m.grad_norm,
                window.1 as f64 / secs,
                secs / 25.0
            );
            window = (Instant::now(), 0);
        }
        if (step + 1) % a.eval_every == 0 || step + 1 == a.steps {
            evaluate(&learner, step + 1)?;
        }
    }
    let secs = t_train.elapsed().as_secs_f64();
    println!(
        "total: {} steps in {:.1} s (evals included), {:.0} SFT tok/s overall, peak RSS {:.0} MB",
        a.steps,
        secs,
        tokens_total as f64 / secs,
        peak_rss_mb()
    );
    if let Some(dir) = &a.save {
        laser_model::pretrained::save(learner.model(), learner.tokenizer(), dir)?;
        println!("saved {}", dir.display());
    }
    Ok(())
}
