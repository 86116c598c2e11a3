//! Phase 5, `report`: PNG plots of `metrics.jsonl` and `eval.jsonl` in `run_dir/plots/`, and
//! `run_dir/summary.md`.

use std::path::Path;

use anyhow::{Context, Result};
use laser_config::{ClusterConfig, ModelInit};

use serde_json::Value;

use super::{JobContext, JobOutcome, PLOTS_DIR, Phases, SUMMARY_FILE, read_c_ref};
use crate::heldout_eval::{self, EvalSet};
use crate::summary::{RunSummary, write_summary};

pub(super) fn run(ctx: &mut JobContext) -> Result<()> {
    let (cfg, run_dir, phases) = (&ctx.cfg, &ctx.run_dir, &ctx.phases);
    println!("[5/5] report");
    let outcome = write_report(cfg, run_dir, phases, ctx.started.elapsed().as_secs_f64())?;
    println!("plots:   {}", run_dir.join(PLOTS_DIR).display());
    println!("summary: {}", outcome.summary.display());
    ctx.outcome = Some(outcome);
    Ok(())
}

fn mb(kb: u64) -> String {
    format!("{:.0} MB", kb as f64 / 1024.0)
}

fn minutes(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}

pub fn write_report(
    cfg: &ClusterConfig,
    run_dir: &Path,
    phases: &Phases,
    session_seconds: f64,
) -> Result<JobOutcome> {
    let train_rows = crate::plots::read_rows(&run_dir.join(crate::metrics::METRICS_FILE))?;
    let eval_rows = crate::plots::read_rows(&run_dir.join(heldout_eval::EVAL_FILE))?;
    let plots = crate::plots::write_run_plots(&run_dir.join(PLOTS_DIR), &train_rows, &eval_rows)?;
    let evals: Vec<(u64, crate::eval_metrics::EvalReport)> = heldout_eval::read_rows(run_dir)?
        .into_iter()
        .map(|r| (r.step, r.report))
        .collect();

    let mut facts: Vec<(String, String)> = Vec::new();
    let model = match (cfg.model.init, &cfg.model.path) {
        (Some(ModelInit::Tiny), _) => {
            let t = &cfg.model.tiny;
            format!(
                "laser_model::tiny (hidden {}, {} layers, {}/{} heads, ff {}), seed {}",
                t.hidden_size,
                t.num_hidden_layers,
                t.num_attention_heads,
                t.num_key_value_heads,
                t.intermediate_size,
                cfg.run.seed
            )
        }
        (None, Some(p)) => p.display().to_string(),
        (None, None) => "–".into(),
    };
    facts.push(("model".into(), model));
    if let Some(p) = phases.0.get("init").and_then(|r| r.info.get("params")) {
        let params = p.as_f64().unwrap_or(0.0);
        facts.push(("parameters".into(), format!("{:.2}M", params / 1e6)));
    }
    facts.push((
        "algorithm".into(),
        if cfg.algorithm.laser {
            format!(
                "GRPO + LaSeR (reasoning warm-up {} steps, self-rewarding warm-up {} steps, alpha {}, beta_v {})",
                cfg.algorithm.reasoning_warmup_steps,
                cfg.algorithm.self_rewarding_warmup_steps,
                cfg.algorithm.alpha,
                cfg.algorithm.beta_v
            )
        } else {
            "plain GRPO (algorithm.laser = false)".into()
        },
    ));
    facts.push((
        "RL steps".into(),
        format!(
            "{} of {} ({} prompts x {} samples, lr {})",
            train_rows.len(),
            cfg.run.max_steps,
            cfg.algorithm.batch_prompts,
            cfg.algorithm.group_size,
            cfg.algorithm.lr
        ),
    ));
    if let Some(w) = phases.0.get("warmstart") {
        facts.push((
            "warm start".into(),
            format!(
                "{} SFT steps, final loss {}",
                w.info.get("steps").and_then(Value::as_u64).unwrap_or(0),
                w.info
                    .get("final_loss")
                    .and_then(Value::as_f64)
                    .map_or("–".into(), |l| format!("{l:.4}"))
            ),
        ));
    }
    let c_ref = cfg.algorithm.c_ref.or_else(|| read_c_ref(run_dir));
    facts.push((
        "c_ref".into(),
        c_ref.map_or("–".into(), |c| format!("{c:.4}")),
    ));
    if let Ok(Some(set)) = EvalSet::from_config(cfg) {
        facts.push((
            "held-out set".into(),
            format!("{}, k = {}", set.description, cfg.eval.k),
        ));
    }
    let mut total = 0.0;
    for name in ["init", "warmstart", "calibrate", "rl"] {
        if let Some(r) = phases.0.get(name) {
            total += r.seconds;
            let mem = if r.peak_rss_sum_kb > r.peak_rss_kb {
                format!(
                    "peak RSS {} summed over its processes (largest {})",
                    mb(r.peak_rss_sum_kb),
                    mb(r.peak_rss_kb)
                )
            } else {
                format!("peak RSS {}", mb(r.peak_rss_kb))
            };
            facts.push((
                format!("phase {name}"),
                format!("{}, {mem}", minutes(r.seconds)),
            ));
        }
    }
    facts.push((
        "wall time".into(),
        format!(
            "{} over the phases (this session: {})",
            minutes(total),
            minutes(session_seconds)
        ),
    ));
    facts.push((
        "machine".into(),
        format!(
            "{} CPUs available",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
    ));
    let summary_path = run_dir.join(SUMMARY_FILE);
    let rel_plots: Vec<String> = plots
        .iter()
        .filter_map(|p| p.strip_prefix(run_dir).ok())
        .map(|p| p.display().to_string())
        .collect();
    write_summary(
        &summary_path,
        &RunSummary {
            title: format!(
                "LaSeR run: {}",
                run_dir
                    .file_name()
                    .map_or("run".into(), |n| n.to_string_lossy().into_owned())
            ),
            facts,
            evals,
            train_rows,
            plots: rel_plots,
        },
    )
    .with_context(|| summary_path.display().to_string())?;
    Ok(JobOutcome {
        run_dir: run_dir.to_path_buf(),
        summary: summary_path,
        plots,
    })
}
