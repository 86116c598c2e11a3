//! Phase 3, `calibrate` (no `algorithm.c_ref`, local mode): `learner calibrate` on the RL start
//! model writes `run_dir/c_ref.json`, which the learner and the actors read.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use laser_config::ClusterConfig;

use super::learner_process::{bar, run_learner, self_reward_token_args};
use super::{
    CALIBRATION_PER_PROMPT, CALIBRATION_PROMPTS_FILE, JobContext, PhaseRecord, read_c_ref,
};
use crate::data::PromptSource;

pub(super) async fn run(ctx: &mut JobContext) -> Result<()> {
    let cfg = &ctx.cfg;
    let opts = ctx.opts;
    let run_dir = &ctx.run_dir;
    let bin_dir = &ctx.bin_dir;
    let template = ctx.template;
    let phases = &mut ctx.phases;
    let local = ctx.local;
    let model_path = &ctx.model_path;
    match cfg.algorithm.c_ref {
        Some(c) => println!("[3/5] c_ref = {c} (algorithm.c_ref)"),
        None if !local => {
            println!("[3/5] c_ref: the workers read it from run.dir/c_ref.json (external mode)")
        }
        None if phases.done("calibrate") => println!("[3/5] c_ref: done"),
        None => {
            let t0 = Instant::now();
            let n = cfg.algorithm.calibration_samples as usize;
            let prompts_path = run_dir.join(CALIBRATION_PROMPTS_FILE);
            write_calibration_prompts(cfg, &prompts_path, n.div_ceil(CALIBRATION_PER_PROMPT))?;
            let mut args: Vec<String> = vec![
                "calibrate".into(),
                "--backend".into(),
                cfg.model.backend.to_string(),
                "--model".into(),
                model_path.display().to_string(),
                "--data".into(),
                prompts_path.display().to_string(),
                "--n".into(),
                n.to_string(),
                "--run-dir".into(),
                run_dir.display().to_string(),
                "--samples-per-prompt".into(),
                CALIBRATION_PER_PROMPT.to_string(),
                "--max-new-tokens".into(),
                cfg.algorithm.max_response_tokens.to_string(),
                "--temperature".into(),
                cfg.algorithm.temperature.to_string(),
                "--seed".into(),
                cfg.run.seed.to_string(),
                "--template".into(),
                template.into(),
            ];
            args.extend(self_reward_token_args(cfg));
            println!(
                "[3/5] calibrating c_ref on {n} samples of {}",
                model_path.display()
            );
            let b = bar(opts.show_progress, n as u64, "calibrating c_ref");
            let (_, peak) = run_learner(
                bin_dir,
                run_dir,
                "calibrate",
                &args,
                cfg.cluster.learner_threads,
                |v| {
                    if let (Some(b), Some(done)) = (&b, v["calibrated"].as_u64()) {
                        b.set_position(done);
                    }
                },
            )
            .await?;
            if let Some(b) = b {
                b.finish();
            }
            let c = read_c_ref(run_dir).context("calibration wrote no c_ref.json")?;
            println!(
                "  c_ref = {c:.4} -> {}",
                run_dir.join("c_ref.json").display()
            );
            phases.complete(
                run_dir,
                "calibrate",
                PhaseRecord::one_process(
                    t0,
                    peak,
                    serde_json::Map::from_iter([("c_ref".to_string(), c.into())]),
                ),
            )?;
        }
    }

    Ok(())
}

/// Prompts for the c_ref calibration: the first training tasks (`id`, `question`, `answer`).
fn write_calibration_prompts(cfg: &ClusterConfig, path: &Path, prompts: usize) -> Result<()> {
    let source = PromptSource::from_config(cfg)?;
    let text: String = (0..prompts as u64)
        .map(|i| {
            let t = source.task(i);
            serde_json::json!({"id": t.id, "question": t.question, "answer": t.gold}).to_string()
                + "\n"
        })
        .collect();
    std::fs::write(path, text).with_context(|| path.display().to_string())
}
