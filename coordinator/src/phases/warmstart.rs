//! Phase 2, `warmstart` (`warmstart.steps > 0`): SFT pairs for the synthetic tasks (a fraction
//! with a deliberate slip) in `run_dir/sft_data.jsonl`, then `learner sft` (checkpoints in
//! `run_dir/warmstart/`) writes `run_dir/sft_model`, which later phases start from.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use laser_config::ClusterConfig;
use laser_verifier::tasks::sft::{SftDataConfig, sft_pair};

use super::learner_process::{bar, run_learner, self_reward_token_args};
use super::{JobContext, PhaseRecord, SFT_DATA_FILE, SFT_MODEL_DIR, WARMSTART_DIR};
use crate::data::sft_tasks;

pub(super) async fn run(ctx: &mut JobContext) -> Result<()> {
    let cfg = &ctx.cfg;
    let opts = ctx.opts;
    let run_dir = &ctx.run_dir;
    let bin_dir = &ctx.bin_dir;
    let template = ctx.template;
    let phases = &mut ctx.phases;
    let model_path = &mut ctx.model_path;
    if cfg.warmstart.steps > 0 {
        let out = run_dir.join(SFT_MODEL_DIR);
        if !phases.done("warmstart") {
            let w = &cfg.warmstart;
            let t0 = Instant::now();
            let mut info = serde_json::Map::new();
            let data = match &w.path {
                Some(p) => p.clone(),
                None => {
                    let p = run_dir.join(SFT_DATA_FILE);
                    if !p.exists() {
                        let (n, wrong) = write_sft_data(cfg, &p)?;
                        info.insert("pairs".into(), n.into());
                        info.insert("wrong_pairs".into(), wrong.into());
                    }
                    p
                }
            };
            let mut args: Vec<String> = vec![
                "sft".into(),
                "--backend".into(),
                cfg.model.backend.to_string(),
                "--model".into(),
                model_path.display().to_string(),
                "--data".into(),
                data.display().to_string(),
                "--out".into(),
                out.display().to_string(),
                "--steps".into(),
                w.steps.to_string(),
                "--batch-size".into(),
                w.batch_size.to_string(),
                "--micro-batch-size".into(),
                w.micro_batch_size.to_string(),
                "--lr".into(),
                w.lr.to_string(),
                "--warmup-steps".into(),
                w.warmup_steps.to_string(),
                "--min-lr-ratio".into(),
                w.min_lr_ratio.to_string(),
                "--max-response-tokens".into(),
                w.max_response_tokens.to_string(),
                "--seed".into(),
                w.seed
                    .unwrap_or(cfg.run.seed.wrapping_add(1000))
                    .to_string(),
                "--run-dir".into(),
                run_dir.join(WARMSTART_DIR).display().to_string(),
                "--checkpoint-every".into(),
                w.checkpoint_every.max(1).to_string(),
                "--template".into(),
                template.into(),
            ];
            if w.cosine {
                args.push("--cosine".into());
            }
            args.extend(self_reward_token_args(cfg));
            println!(
                "[2/5] warm start: {} SFT steps of {} sequences (lr {}, {}) -> {}",
                w.steps,
                w.batch_size,
                w.lr,
                if w.cosine { "cosine" } else { "constant" },
                out.display()
            );
            let b = bar(opts.show_progress, w.steps, "warm-start SFT");
            let every = (w.steps / 20).max(1);
            let mut last_loss = f64::NAN;
            let (_, peak) = run_learner(
                bin_dir,
                run_dir,
                "warmstart",
                &args,
                cfg.cluster.learner_threads,
                |v| {
                    let (Some(step), Some(loss)) = (v["step"].as_u64(), v["loss"].as_f64()) else {
                        return;
                    };
                    last_loss = loss;
                    let done = step + 1;
                    match &b {
                        Some(b) => {
                            b.set_position(done);
                            b.set_message(format!(
                                "loss {loss:.4} lr {:.2e}",
                                v["lr"].as_f64().unwrap_or(0.0)
                            ));
                        }
                        None if done % every == 0 || done == w.steps => {
                            println!("  sft step {done}/{} loss {loss:.4}", w.steps)
                        }
                        None => {}
                    }
                },
            )
            .await?;
            if let Some(b) = b {
                b.finish();
            }
            info.insert("steps".into(), w.steps.into());
            if last_loss.is_finite() {
                info.insert("final_loss".into(), last_loss.into());
            }
            phases.complete(
                run_dir,
                "warmstart",
                PhaseRecord::one_process(t0, peak, info),
            )?;
        } else {
            println!("[2/5] warm start: done ({})", out.display());
        }
        *model_path = out;
    } else {
        println!("[2/5] warm start: skipped (warmstart.steps = 0)");
    }

    Ok(())
}

/// The SFT pairs of the warm start as JSONL (question, response, answer, correct).
pub fn write_sft_data(cfg: &ClusterConfig, path: &Path) -> Result<(usize, usize)> {
    use std::io::Write;
    let w = &cfg.warmstart;
    let (mix, seed, n) = sft_tasks(cfg)?;
    let data = SftDataConfig {
        wrong_fraction: w.wrong_fraction,
        seed,
        ..SftDataConfig::default()
    };
    let tmp = path.with_extension("jsonl.tmp");
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| tmp.display().to_string())?,
    );
    let mut wrong = 0;
    for i in 0..n {
        let pair = sft_pair(&mix.task(i), i, &data).map_err(|e| anyhow::anyhow!("{e}"))?;
        wrong += usize::from(!pair.correct);
        writeln!(f, "{}", serde_json::to_string(&pair)?)?;
    }
    f.flush()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| path.display().to_string())?;
    Ok((n as usize, wrong))
}
