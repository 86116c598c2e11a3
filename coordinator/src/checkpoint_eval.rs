//! `coordinator eval --checkpoint DIR` (a model directory evaluated on a mini local cluster through
//! the same path as the job's held-out evaluations) and `coordinator compare RUN...`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use laser_config::{CRef, ClusterConfig, ClusterMode};

use crate::heldout_eval::{self, EvalRow, EvalSet};
use crate::runner::{Runner, StartOptions};

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub checkpoint: PathBuf,
    /// JSONL problems; none: the configuration's held-out set.
    pub data: Option<PathBuf>,
    pub k: u32,
    pub problems: Option<u32>,
    pub c_ref: Option<f64>,
    pub actors: u32,
    pub out_dir: Option<PathBuf>,
    pub show_progress: bool,
    /// Evaluations of the same problems, repeat r sampling with seed eval_seed + r (at least 1).
    pub repeats: u32,
}

/// c_ref for a checkpoint: `c_ref.json` in it or in one of its three nearest ancestors (a run
/// directory holds it beside `checkpoints/step-N/`).
pub fn find_c_ref(checkpoint: &Path) -> Option<(f64, PathBuf)> {
    CRef::find_near(checkpoint).map(|(c, path)| (c.c_ref, path))
}

/// Standalone evaluation of a model directory on a mini local cluster (actors + 1 verifier, no
/// learner), through the same path as the job's evaluations: one row per repeat (repeat 0
/// samples as a training run's evaluation does).
pub async fn eval_checkpoint(mut cfg: ClusterConfig, o: EvalOptions) -> Result<Vec<EvalRow>> {
    if o.repeats == 0 {
        bail!("--repeats 0: evaluate at least once");
    }
    if !o.checkpoint.exists() {
        bail!("--checkpoint {}: no such directory", o.checkpoint.display());
    }
    cfg.model.path = Some(o.checkpoint.clone());
    cfg.model.init = None;
    cfg.cluster.mode = ClusterMode::Local;
    cfg.cluster.actors = o.actors.max(1);
    cfg.cluster.verifiers = 1;
    cfg.cluster.token = None;
    cfg.cluster.listen = "127.0.0.1:0".into();
    cfg.cluster.advertise = None;
    cfg.eval.enabled = true;
    cfg.eval.k = o.k;
    if let Some(d) = &o.data {
        cfg.data.eval_path = Some(d.clone());
        // A file given on the command line is evaluated whole unless --problems says otherwise.
        cfg.eval.problems = 0;
    }
    if let Some(n) = o.problems {
        cfg.eval.problems = n;
    }
    cfg.algorithm.c_ref = match (o.c_ref, cfg.algorithm.c_ref) {
        (Some(c), _) => Some(c),
        (None, Some(c)) => Some(c),
        (None, None) => match find_c_ref(&o.checkpoint) {
            Some((c, from)) => {
                tracing::info!(c_ref = c, from = %from.display(), "c_ref");
                Some(c)
            }
            None => bail!(
                "no c_ref for {}: pass --c-ref, or keep the run's c_ref.json beside its checkpoints",
                o.checkpoint.display()
            ),
        },
    };
    let scratch = o
        .out_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("laser-eval-{}", std::process::id())));
    std::fs::create_dir_all(&scratch).with_context(|| scratch.display().to_string())?;
    cfg.run.dir = scratch.clone();
    cfg.validate("coordinator eval")?;
    if EvalSet::from_config(&cfg)?.is_none() {
        bail!("nothing to evaluate: pass --data FILE (a JSONL with question and answer fields)");
    }
    let (mut runner, server, stop) = Runner::launch(
        cfg.clone(),
        StartOptions {
            resume: None,
            learner: false,
            show_progress: o.show_progress,
            announce: false,
        },
    )
    .await?;
    let result = async {
        runner
            .wait_for_workers(0, 1, cfg.cluster.actors as usize)
            .await?;
        if let Some(set) = runner.eval_set() {
            eprintln!(
                "evaluating {} on {} with k = {}{}",
                o.checkpoint.display(),
                set.description,
                cfg.eval.k,
                if o.repeats > 1 {
                    format!(", {} sampling seeds", o.repeats)
                } else {
                    String::new()
                }
            );
        }
        let mut rows = Vec::with_capacity(o.repeats as usize);
        for repeat in 0..u64::from(o.repeats) {
            rows.push(runner.evaluate_repeat(0, 0, repeat).await?);
        }
        anyhow::Ok(rows)
    }
    .await;
    runner.stop_workers().await;
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    let rows = result?;
    if o.out_dir.is_some() {
        for row in &rows {
            heldout_eval::append_row(&scratch, row)?;
        }
    } else {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(rows)
}

/// `coordinator compare RUN...`: each run's first and last evaluation.
pub fn compare_runs(runs: &[PathBuf]) -> Result<Vec<(String, Option<EvalRow>, EvalRow)>> {
    runs.iter()
        .map(|dir| {
            let rows = heldout_eval::read_rows(dir)?;
            let last = rows.last().cloned().with_context(|| {
                format!(
                    "{}: no evaluations ({} is empty or missing)",
                    dir.display(),
                    heldout_eval::EVAL_FILE
                )
            })?;
            let first = (rows.len() > 1).then(|| rows[0].clone());
            let name = dir.file_name().map_or_else(
                || dir.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            Ok((name, first, last))
        })
        .collect()
}
