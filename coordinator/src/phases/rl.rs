//! Phase 4, `rl`: the [`Runner`] on the RL start model, with held-out evaluations at step 0,
//! every `run.eval_every` steps and at the end (`run_dir/eval.jsonl`). Done when the run state
//! reached `run.max_steps` and the final evaluation exists.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::learner_process::own_peak_rss_kb;
use super::{JobContext, PhaseRecord};
use crate::heldout_eval::{self, EvalSet};
use crate::runner::{Runner, StartOptions};

pub(super) async fn run(ctx: &mut JobContext) -> Result<()> {
    let cfg = &ctx.cfg;
    let opts = ctx.opts;
    let run_dir = &ctx.run_dir;
    let phases = &mut ctx.phases;
    let model_path = &ctx.model_path;
    let mut rl_cfg = cfg.clone();
    rl_cfg.model.path = Some(model_path.clone());
    rl_cfg.model.init = None;
    rl_cfg.validate("the RL phase's configuration")?;
    // RL is done when its state reached run.max_steps and the final evaluation exists; a larger
    // --max-steps on --resume continues it.
    let rl_done = crate::runner::RunState::read(run_dir)?
        .is_some_and(|s| s.step >= cfg.run.max_steps)
        && (EvalSet::from_config(cfg)?.is_none()
            || heldout_eval::read_rows(run_dir)?
                .iter()
                .any(|r| r.step == cfg.run.max_steps));
    if !rl_done {
        let t0 = Instant::now();
        let resume = Runner::has_run(run_dir);
        println!(
            "[4/5] RL: {} steps of {} prompts x {} samples ({}) from {}{}",
            cfg.run.max_steps,
            cfg.algorithm.batch_prompts,
            cfg.algorithm.group_size,
            if cfg.algorithm.laser {
                "GRPO + LaSeR"
            } else {
                "plain GRPO"
            },
            model_path.display(),
            if resume { ", resumed" } else { "" }
        );
        let (mut runner, server, stop) = Runner::launch(
            rl_cfg,
            StartOptions {
                resume: Some(resume),
                learner: true,
                show_progress: opts.show_progress,
                announce: true,
            },
        )
        .await?;
        let result = runner.run().await;
        let _ = stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        result?;
        let peaks = runner.peak_rss();
        let mut info = serde_json::Map::new();
        info.insert(
            "peak_rss_kb_by_process".into(),
            serde_json::to_value(peaks).unwrap_or_default(),
        );
        info.insert("resumed".into(), resume.into());
        let own = own_peak_rss_kb();
        // Sessions of a resumed run add up.
        let before = phases.0.get("rl").cloned().unwrap_or_default();
        phases.complete(
            run_dir,
            "rl",
            PhaseRecord {
                seconds: before.seconds + t0.elapsed().as_secs_f64(),
                peak_rss_kb: peaks
                    .values()
                    .copied()
                    .max()
                    .unwrap_or(0)
                    .max(own)
                    .max(before.peak_rss_kb),
                peak_rss_sum_kb: (peaks.values().sum::<u64>() + own).max(before.peak_rss_sum_kb),
                info,
            },
        )?;
    } else {
        println!("[4/5] RL: done");
    }

    Ok(())
}
