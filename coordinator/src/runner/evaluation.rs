//! The held-out evaluations of a run, as `Runner` methods: whether a step is an evaluation point,
//! and one evaluation of the actors' current weights through the same collection as training.

use std::time::Instant;

use anyhow::{Context, Result};

use super::{Runner, secs};
use crate::collect::{CollectPlan, collect};
use crate::heldout_eval::{self, EvalRow, EvalSet};

impl Runner {
    /// Whether step `step` is an evaluation point: the RL start, every `run.eval_every` steps, and
    /// the end.
    pub fn is_eval_point(&self, step: u64) -> bool {
        let every = self.cfg.run.eval_every;
        step == 0 || step == self.cfg.run.max_steps || (every > 0 && step.is_multiple_of(every))
    }

    /// Evaluates at `step` when it is an evaluation point that `eval.jsonl` does not hold yet.
    pub(super) async fn maybe_evaluate(
        &mut self,
        step: u64,
        version: u64,
        bar: Option<&indicatif::ProgressBar>,
    ) -> Result<()> {
        if self.eval_set.is_none() || !self.is_eval_point(step) {
            return Ok(());
        }
        if heldout_eval::read_rows(&self.run_dir)?
            .iter()
            .any(|r| r.step == step)
        {
            return Ok(());
        }
        if let Some(b) = bar {
            b.set_message(format!("evaluating at step {step}…"));
        }
        let row = self.evaluate(step, version).await?;
        heldout_eval::append_row(&self.run_dir, &row)?;
        if let Some(tb) = self.tensorboard.as_mut() {
            tb.scalars(
                step,
                row.unix_time,
                &crate::tensorboard::scalars("eval", &serde_json::to_value(&row)?),
            )?;
        }
        let line = format!(
            "{} [{:.1} s]",
            heldout_eval::report_line(step, &row.report),
            row.seconds
        );
        match bar {
            Some(b) if !b.is_hidden() => b.println(line),
            _ => println!("{line}"),
        }
        tracing::info!(step, pass_at_1 = row.report.pass_at_1, "evaluated");
        Ok(())
    }

    /// One held-out evaluation of the actors' weights at `version` (the run's [`EvalSet`]):
    /// k samples per problem through the actors, graded by the verifiers.
    pub async fn evaluate(&mut self, step: u64, version: u64) -> Result<EvalRow> {
        self.evaluate_repeat(step, version, 0).await
    }

    /// One evaluation of the held-out set with sampling seed [`heldout_eval::eval_seed`] + `repeat`:
    /// the same problems, other samples, so that repeats measure the sampling noise of a metric.
    /// Only repeat 0 (the evaluation of a training run) writes its samples.
    pub async fn evaluate_repeat(
        &mut self,
        step: u64,
        version: u64,
        repeat: u64,
    ) -> Result<EvalRow> {
        let set = self.eval_set.as_ref().context(
            "evaluation is off (eval.enabled = false, or a JSONL run without data.eval_path)",
        )?;
        let groups = set.groups(&self.cfg, step);
        let c = &self.cfg.cluster;
        let learner_endpoint = self.learner().map(|l| l.1).unwrap_or_default();
        let prompts = (self.cfg.eval.save_samples && repeat == 0).then(|| groups.clone());
        let mut sampling = heldout_eval::eval_sampling(&self.cfg);
        sampling.seed = sampling.seed.wrapping_add(repeat);
        let plan = CollectPlan {
            step,
            groups,
            sampling,
            min_version: version,
            max_version: version,
            learner_endpoint,
            // Larger requests than training: eval groups are many and independent.
            groups_per_request: (c.groups_per_request as usize).max(8),
            generate_timeout: secs(c.generate_timeout_s),
            grade_timeout: secs(c.grade_timeout_s),
            weights_timeout: secs(c.weights_timeout_s),
            no_worker_timeout: secs(c.startup_timeout_s),
        };
        let t0 = Instant::now();
        let collected = collect(self.shared.clone(), self.client.clone(), plan).await?;
        self.sample_peak_rss();
        if let Some(prompts) = prompts {
            heldout_eval::write_samples(&self.run_dir, step, &prompts, &collected.groups)?;
        }
        Ok(EvalRow {
            step,
            policy_version: version,
            seconds: t0.elapsed().as_secs_f64(),
            generated_tokens: collected.generated_tokens,
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            report: heldout_eval::report(&collected.groups),
        })
    }

    pub fn eval_set(&self) -> Option<&EvalSet> {
        self.eval_set.as_ref()
    }
}
