//! Held-out evaluation through the cluster: the eval problems become prompt groups of k samples
//! (group ids from [`EVAL_GROUP_BASE`], so they never collide with training groups), the actors
//! sample them at the current policy version, the verifiers grade them, and [`crate::eval_metrics`]'s plain
//! functions turn the graded samples into an [`EvalReport`]. Rows go to `run_dir/eval.jsonl`.
//!
//! Evaluation leaves training untouched: the actors seed every group from (seed, group id), and the
//! eval groups use their own seed and ids, so the training rollouts are the same with or without it.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result, bail};
use laser_config::{ClusterConfig, DataSource};
use laser_proto::v1::{FinishReason, PromptGroup, RolloutGroup, SamplingConfig};
use laser_verifier::Task;
use laser_verifier::tasks::jsonl::JsonlFields;
use laser_verifier::tasks::parquet::load_tasks;
use serde::{Deserialize, Serialize};

use crate::data::{PromptSource, SyntheticMix, prompt_group};
use crate::eval_metrics::{EvalReport, EvalSample, ProblemSamples, evaluate};

/// `run_dir/eval.jsonl`: one [`EvalRow`] per evaluation.
pub const EVAL_FILE: &str = "eval.jsonl";
/// `run_dir/eval_samples/step-N.jsonl`: every graded sample of an evaluation (`eval.save_samples`).
pub const EVAL_SAMPLES_DIR: &str = "eval_samples";
/// Group ids of eval problems start here (training group ids are step * batch + i).
pub const EVAL_GROUP_BASE: u64 = 1 << 48;

/// The held-out problems of a run.
#[derive(Debug, Clone)]
pub struct EvalSet {
    pub tasks: Vec<Task>,
    /// Where they come from, for logs and the summary.
    pub description: String,
}

/// The seed of the held-out problems and of their sampling.
pub fn eval_seed(cfg: &ClusterConfig) -> u64 {
    cfg.eval.seed.unwrap_or(cfg.run.seed.wrapping_add(2000))
}

impl EvalSet {
    /// `data.eval_path` (its first `eval.problems`, 0 = all), else for synthetic data
    /// `eval.problems` problems drawn with [`eval_seed`]; `None` when evaluation is off or a JSONL
    /// run has no eval file.
    pub fn from_config(cfg: &ClusterConfig) -> Result<Option<Self>> {
        if !cfg.eval.enabled {
            return Ok(None);
        }
        if let Some(path) = &cfg.data.eval_path {
            return Self::from_file(
                path,
                cfg.eval.problems as usize,
                &crate::data::dataset_fields(cfg),
            )
            .map(Some);
        }
        match cfg.data.source {
            DataSource::Synthetic => {
                let seed = eval_seed(cfg);
                let mix = SyntheticMix::new(&cfg.data.levels(), seed)
                    .map_err(|e| anyhow::anyhow!("data: {e}"))?;
                let n = cfg.eval.problems as usize;
                // A separate seed is not enough: small task spaces (1-digit operands) repeat, and
                // questions the run trains on would measure recall, not the policy.
                let seen = training_questions(cfg)?;
                let mut tasks: Vec<Task> = Vec::with_capacity(n);
                let mut drawn = 0u64;
                while tasks.len() < n {
                    if drawn >= 1000 * n as u64 + 1000 {
                        bail!(
                            "eval.problems = {n}: {drawn} draws from the [data] mix found only {} \
                             problems outside the {} questions the run trains on; lower eval.problems \
                             or widen the mix",
                            tasks.len(),
                            seen.len()
                        );
                    }
                    let t = mix.task(drawn);
                    drawn += 1;
                    if !seen.contains(&t.question)
                        && !tasks.iter().any(|u| u.question == t.question)
                    {
                        tasks.push(t);
                    }
                }
                Ok(Some(Self {
                    tasks,
                    description: format!(
                        "{n} synthetic problems (seed {seed}) none of which is trained on"
                    ),
                }))
            }
            DataSource::Jsonl | DataSource::Parquet => {
                tracing::info!(
                    "no data.eval_path: held-out evaluation is off for this dataset run"
                );
                Ok(None)
            }
        }
    }

    /// A JSONL or parquet held-out file: the user's split (scripts/gen_reasoning_gym.py
    /// --exclude makes one disjoint from its training file).
    pub fn from_file(path: &Path, limit: usize, fields: &JsonlFields) -> Result<Self> {
        let mut tasks = load_tasks(path, fields)
            .with_context(|| format!("evaluation data {}", path.display()))?;
        if limit > 0 {
            tasks.truncate(limit);
        }
        if tasks.is_empty() {
            bail!("{}: no evaluation problems", path.display());
        }
        Ok(Self {
            description: format!("{} problems from {}", tasks.len(), path.display()),
            tasks,
        })
    }

    /// The prompt groups of an evaluation at training step `step`.
    pub fn groups(&self, cfg: &ClusterConfig, step: u64) -> Vec<PromptGroup> {
        self.tasks
            .iter()
            .enumerate()
            .map(|(i, t)| prompt_group(cfg, t.clone(), EVAL_GROUP_BASE + i as u64, step))
            .collect()
    }
}

/// Every question the run trains on: the warm start's generated SFT problems and the first
/// `run.max_steps * algorithm.batch_prompts` prompts of the RL stream.
pub fn training_questions(cfg: &ClusterConfig) -> Result<HashSet<String>> {
    let mut seen = HashSet::new();
    if cfg.warmstart.steps > 0 && cfg.warmstart.path.is_none() {
        let (mix, _, n) = crate::data::sft_tasks(cfg)?;
        seen.extend((0..n).map(|i| mix.task(i).question));
    }
    let source = PromptSource::from_config(cfg)?;
    let rl = cfg.run.max_steps * u64::from(cfg.algorithm.batch_prompts);
    seen.extend((0..rl).map(|i| source.task(i).question));
    Ok(seen)
}

/// The sampling of an evaluation: k samples per problem.
pub fn eval_sampling(cfg: &ClusterConfig) -> SamplingConfig {
    SamplingConfig {
        n: cfg.eval.k,
        temperature: cfg.eval.temperature as f32,
        top_p: cfg.eval.top_p as f32,
        max_response_tokens: cfg
            .eval
            .max_response_tokens
            .unwrap_or(cfg.algorithm.max_response_tokens),
        seed: eval_seed(cfg),
    }
}

/// A verifier's extraction in the form votes compare (equivalent answers equal); `None` when
/// there is none.
pub fn canonical_answer(extracted: &str) -> Option<String> {
    let answer = extracted.trim();
    (!answer.is_empty()).then(|| laser_verifier::normalize::normalize(answer))
}

/// Graded groups as the samples of [`evaluate`]: the answer is the verifier's extraction,
/// normalised so that equivalent spellings vote together; r_s only for samples that ended with EOS.
pub fn problem_samples(groups: &[RolloutGroup]) -> Vec<ProblemSamples> {
    groups
        .iter()
        .map(|g| {
            g.samples
                .iter()
                .map(|s| EvalSample {
                    answer: canonical_answer(&s.extracted_answer),
                    verifier_reward: f64::from(s.verifier_reward.unwrap_or(0.0)),
                    self_reward: (s.finish_reason == FinishReason::Eos as i32)
                        .then_some(s.self_reward)
                        .flatten()
                        .map(f64::from),
                    mean_logprob: mean_logprob(&s.logprobs),
                })
                .collect()
        })
        .collect()
}

/// The mean of a response's token log-probabilities (`None` for an empty response).
fn mean_logprob(logprobs: &[f32]) -> Option<f64> {
    (!logprobs.is_empty())
        .then(|| logprobs.iter().map(|&l| f64::from(l)).sum::<f64>() / logprobs.len() as f64)
}

/// One line of `eval.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    /// Training steps done when evaluated (0: the RL start).
    pub step: u64,
    pub policy_version: u64,
    pub seconds: f64,
    pub generated_tokens: u64,
    pub unix_time: f64,
    #[serde(flatten)]
    pub report: EvalReport,
}

pub fn append_row(run_dir: &Path, row: &EvalRow) -> Result<()> {
    use std::io::Write;
    let p = run_dir.join(EVAL_FILE);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .with_context(|| p.display().to_string())?;
    writeln!(f, "{}", serde_json::to_string(row)?).with_context(|| p.display().to_string())
}

/// One graded sample of an evaluation, as written to [`EVAL_SAMPLES_DIR`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSampleRow {
    pub task_id: String,
    pub sample_index: u32,
    /// The rendered prompt and the sampled response (text and token ids), so that a sample can be
    /// re-scored elsewhere (e.g. teacher-forced in transformers).
    pub prompt: String,
    pub text: String,
    pub tokens: Vec<u32>,
    /// The verifier's extraction ("" when there is none).
    pub answer: String,
    pub correct: bool,
    /// r_s, unclamped; absent when the sample did not end with EOS.
    pub self_reward: Option<f32>,
    pub truncated: bool,
    /// The policy's mean token log-probability of the response (absent in older files).
    #[serde(default)]
    pub mean_logprob: Option<f32>,
}

/// Writes every sample of `groups` to `run_dir/eval_samples/step-{step:06}.jsonl` (replacing a
/// file of the same step, so a resumed run that repeats an evaluation keeps one copy); `prompts`
/// are the groups' requests, matched by group id.
pub fn write_samples(
    run_dir: &Path,
    step: u64,
    prompts: &[PromptGroup],
    groups: &[RolloutGroup],
) -> Result<()> {
    let prompt_of: std::collections::HashMap<u64, &str> = prompts
        .iter()
        .map(|p| (p.group_id, p.prompt_text.as_str()))
        .collect();
    let dir = run_dir.join(EVAL_SAMPLES_DIR);
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    let p = dir.join(format!("step-{step:06}.jsonl"));
    let mut text = String::new();
    // Correctness and the read-out as the metrics see them (one rule for both).
    for (g, graded) in groups.iter().zip(problem_samples(groups)) {
        for (s, e) in g.samples.iter().zip(graded) {
            let row = EvalSampleRow {
                task_id: g.task_id.clone(),
                sample_index: s.sample_index,
                prompt: prompt_of
                    .get(&g.group_id)
                    .copied()
                    .unwrap_or("")
                    .to_string(),
                text: s.text.clone(),
                tokens: s.tokens.clone(),
                answer: s.extracted_answer.clone(),
                correct: e.is_correct(),
                self_reward: e.self_reward.map(|r| r as f32),
                truncated: s.finish_reason == FinishReason::Length as i32,
                mean_logprob: e.mean_logprob.map(|l| l as f32),
            };
            text.push_str(&serde_json::to_string(&row)?);
            text.push('\n');
        }
    }
    std::fs::write(&p, text).with_context(|| p.display().to_string())
}

/// The rows of `run_dir/eval.jsonl` (none when it does not exist).
pub fn read_rows(run_dir: &Path) -> Result<Vec<EvalRow>> {
    let p = run_dir.join(EVAL_FILE);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| p.display().to_string()),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}", p.display(), i + 1)))
        .collect()
}

/// Drops the rows after `step` (a run rolled back to its checkpoint at `step` redoes them).
pub fn truncate_after(run_dir: &Path, step: u64) -> Result<Vec<EvalRow>> {
    let rows: Vec<EvalRow> = read_rows(run_dir)?
        .into_iter()
        .filter(|r| r.step <= step)
        .collect();
    let p = run_dir.join(EVAL_FILE);
    if p.exists() {
        let text: String = rows
            .iter()
            .map(|r| serde_json::to_string(r).map(|l| l + "\n"))
            .collect::<Result<_, _>>()?;
        std::fs::write(&p, text).with_context(|| p.display().to_string())?;
    }
    Ok(rows)
}

/// An [`EvalReport`] from graded eval groups.
pub fn report(groups: &[RolloutGroup]) -> EvalReport {
    evaluate(&problem_samples(groups))
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |x| format!("{x:.3}"))
}

/// The metrics of a report, in display order: (label, value).
pub fn report_metrics(r: &EvalReport) -> Vec<(&'static str, Option<f64>)> {
    vec![
        ("pass@1", Some(r.pass_at_1)),
        ("maj@k", Some(r.maj_at_k)),
        ("self-reward-weighted maj@k", Some(r.self_weighted_maj_at_k)),
        ("best-of-k by r_s", Some(r.best_of_k)),
        ("self-verify acc. (correct)", r.verify_acc_correct),
        ("self-verify acc. (incorrect)", r.verify_acc_incorrect),
        ("self-verification F1", r.verify_f1),
        ("AUROC of r_s", r.auroc),
        ("AUROC within problems", r.auroc_within),
        ("ECE", r.ece),
        ("AUROC of log p(y|x)", r.logprob_auroc),
        ("log p(y|x) AUROC within problems", r.logprob_auroc_within),
        ("no-answer rate", Some(r.no_answer_rate)),
    ]
}

/// A report as an aligned two-column table.
pub fn report_table(r: &EvalReport) -> String {
    let mut out = format!(
        "{} problems, k = {} ({} samples)\n",
        r.problems, r.k, r.samples
    );
    for (name, v) in report_metrics(r) {
        out.push_str(&format!("  {name:<30} {:>7}\n", opt(v)));
    }
    out
}

/// The one-line form printed during training.
pub fn report_line(step: u64, r: &EvalReport) -> String {
    format!(
        "eval step {step}: pass@1 {:.3} maj@{k} {:.3} sw-maj@{k} {:.3} best-of-{k} {:.3} verify-F1 {} AUROC {} ({} problems)",
        r.pass_at_1,
        r.maj_at_k,
        r.self_weighted_maj_at_k,
        r.best_of_k,
        opt(r.verify_f1),
        opt(r.auroc),
        r.problems,
        k = r.k
    )
}

/// Side-by-side table of runs' evaluations: `runs` = (name, first row, last row).
pub fn compare_table(runs: &[(String, Option<EvalRow>, EvalRow)]) -> String {
    let width = runs
        .iter()
        .map(|(n, ..)| n.len())
        .max()
        .unwrap_or(0)
        .max(16);
    let mut out = format!("{:<30}", "metric (final eval)");
    for (name, _, last) in runs {
        out.push_str(&format!(
            " {:>width$}",
            format!("{name} @{}", last.step),
            width = width + 6
        ));
    }
    if runs.len() == 2 {
        out.push_str(&format!(" {:>9}", "diff"));
    }
    out.push('\n');
    let mut push_row = |label: String, vals: Vec<Option<f64>>| {
        out.push_str(&format!("{label:<30}"));
        for v in &vals {
            out.push_str(&format!(" {:>width$}", opt(*v), width = width + 6));
        }
        if let [Some(a), Some(b)] = vals[..] {
            out.push_str(&format!(" {:>+9.3}", b - a));
        } else if vals.len() == 2 {
            out.push_str(&format!(" {:>9}", "–"));
        }
        out.push('\n');
    };
    let metrics: Vec<Vec<(&str, Option<f64>)>> = runs
        .iter()
        .map(|(_, _, last)| report_metrics(&last.report))
        .collect();
    for (i, (label, _)) in metrics[0].iter().enumerate() {
        push_row(label.to_string(), metrics.iter().map(|m| m[i].1).collect());
    }
    push_row(
        "pass@1 at the first eval".into(),
        runs.iter()
            .map(|(_, first, _)| first.as_ref().map(|f| f.report.pass_at_1))
            .collect(),
    );
    push_row(
        "pass@1 change".into(),
        runs.iter()
            .map(|(_, first, last)| {
                first
                    .as_ref()
                    .map(|f| last.report.pass_at_1 - f.report.pass_at_1)
            })
            .collect(),
    );
    out
}

/// One metric over repeated evaluations: its mean and the standard error of that mean.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricSpread {
    pub metric: &'static str,
    /// Repeats in which the metric is defined.
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation / sqrt(n); 0 for a single repeat.
    pub standard_error: f64,
}

impl MetricSpread {
    /// The mean and standard error of `values`; `None` when empty.
    pub fn of(metric: &'static str, values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let standard_error = if n > 1 {
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            (var / n as f64).sqrt()
        } else {
            0.0
        };
        Some(Self {
            metric,
            n,
            mean,
            standard_error,
        })
    }
}

/// Repeated evaluations of one model on the same problems with other sampling seeds
/// (`coordinator eval --repeats N`). One evaluation of 128 problems moves by a few problems from
/// seed to seed; the means and standard errors say how much of a difference is the model's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepeatSummary {
    pub repeats: usize,
    /// Every metric of [`report_metrics`], in its order.
    pub metrics: Vec<MetricSpread>,
    /// Self-reward-weighted maj@k minus maj@k, paired within each repeat (same samples).
    pub weighted_minus_majority: MetricSpread,
    /// Repeats in which the weighted vote was ahead of, tied with, and behind the plain vote.
    pub weighted_ahead: usize,
    pub weighted_tied: usize,
    pub weighted_behind: usize,
}

/// The spread of every metric over `reports` (at least one).
pub fn summarize_repeats(reports: &[EvalReport]) -> Option<RepeatSummary> {
    let per_report: Vec<_> = reports.iter().map(report_metrics).collect();
    let metrics = per_report
        .first()?
        .iter()
        .enumerate()
        .filter_map(|(i, (name, _))| {
            let values: Vec<f64> = per_report.iter().filter_map(|m| m[i].1).collect();
            MetricSpread::of(name, &values)
        })
        .collect();
    let gains: Vec<f64> = reports
        .iter()
        .map(|r| r.self_weighted_maj_at_k - r.maj_at_k)
        .collect();
    // Votes are counts of problems over the same number of problems, so equal means equal.
    let count = |f: fn(&f64) -> bool| gains.iter().filter(|g| f(g)).count();
    Some(RepeatSummary {
        repeats: reports.len(),
        metrics,
        weighted_minus_majority: MetricSpread::of("weighted maj@k - maj@k", &gains)?,
        weighted_ahead: count(|g| *g > 1e-12),
        weighted_tied: count(|g| g.abs() <= 1e-12),
        weighted_behind: count(|g| *g < -1e-12),
    })
}

/// A [`RepeatSummary`] as an aligned table of mean ± standard error.
pub fn repeat_table(s: &RepeatSummary, problems: usize, k: usize) -> String {
    let mut out = format!(
        "{problems} problems, k = {k}, {} sampling seeds: mean ± standard error\n",
        s.repeats
    );
    let line = |m: &MetricSpread| {
        format!(
            "  {:<30} {:>7.3} ± {:.3}{}\n",
            m.metric,
            m.mean,
            m.standard_error,
            if m.n < s.repeats {
                format!(" ({} of {} defined)", m.n, s.repeats)
            } else {
                String::new()
            }
        )
    };
    for m in &s.metrics {
        out.push_str(&line(m));
    }
    out.push_str(&line(&s.weighted_minus_majority));
    out.push_str(&format!(
        "  weighted vote vs maj@k: ahead in {}, tied in {}, behind in {} of {}\n",
        s.weighted_ahead, s.weighted_tied, s.weighted_behind, s.repeats
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use laser_proto::v1::RolloutSample;

    fn sample(answer: &str, reward: f32, r_s: Option<f32>, eos: bool) -> RolloutSample {
        RolloutSample {
            extracted_answer: answer.into(),
            verifier_reward: Some(reward),
            self_reward: r_s,
            finish_reason: if eos {
                FinishReason::Eos as i32
            } else {
                FinishReason::Length as i32
            },
            ..Default::default()
        }
    }

    fn report_with(pass: f64, maj: f64, weighted: f64, f1: Option<f64>) -> EvalReport {
        EvalReport {
            problems: 4,
            samples: 32,
            k: 8,
            pass_at_1: pass,
            maj_at_k: maj,
            self_weighted_maj_at_k: weighted,
            best_of_k: 0.5,
            verify_acc_correct: None,
            verify_acc_incorrect: None,
            verify_f1: f1,
            auroc: None,
            auroc_within: None,
            ece: None,
            logprob_auroc: None,
            logprob_auroc_within: None,
            sample_accuracy: pass,
            no_answer_rate: 0.0,
        }
    }

    #[test]
    fn repeats_report_mean_standard_error_and_the_paired_vote() {
        let reports = [
            report_with(0.5, 0.50, 0.75, Some(0.8)),
            report_with(0.25, 0.50, 0.50, None),
            report_with(0.75, 0.75, 0.50, Some(0.6)),
        ];
        let s = summarize_repeats(&reports).unwrap();
        assert_eq!(s.repeats, 3);
        let pass = &s.metrics[0];
        assert_eq!((pass.metric, pass.n), ("pass@1", 3));
        assert!((pass.mean - 0.5).abs() < 1e-12);
        // Sample sd of {0.25, 0.5, 0.75} is 0.25; se = 0.25 / sqrt(3).
        assert!((pass.standard_error - 0.25 / 3f64.sqrt()).abs() < 1e-12);
        // A metric undefined in one repeat averages over the others.
        let f1 = s
            .metrics
            .iter()
            .find(|m| m.metric == "self-verification F1")
            .unwrap();
        assert_eq!(f1.n, 2);
        assert!((f1.mean - 0.7).abs() < 1e-12);
        assert!(s.metrics.iter().all(|m| m.metric != "ECE"), "never defined");
        // Gains +0.25, 0, -0.25: paired within each repeat.
        assert_eq!(
            (s.weighted_ahead, s.weighted_tied, s.weighted_behind),
            (1, 1, 1)
        );
        assert!(s.weighted_minus_majority.mean.abs() < 1e-12);
        assert!((s.weighted_minus_majority.standard_error - 0.25 / 3f64.sqrt()).abs() < 1e-12);
        let table = repeat_table(&s, 4, 8);
        assert!(table.contains("3 sampling seeds"), "{table}");
        assert!(table.contains("(2 of 3 defined)"), "{table}");
        assert!(
            table.contains("ahead in 1, tied in 1, behind in 1 of 3"),
            "{table}"
        );
    }

    #[test]
    fn one_repeat_has_no_spread_and_none_is_no_summary() {
        let s = summarize_repeats(&[report_with(0.5, 0.5, 0.5, None)]).unwrap();
        assert_eq!(s.metrics[0].standard_error, 0.0);
        assert!(summarize_repeats(&[]).is_none());
    }

    #[test]
    fn graded_groups_become_eval_samples() {
        let g = RolloutGroup {
            group_id: EVAL_GROUP_BASE,
            samples: vec![
                sample("4", 1.0, Some(0.9), true),
                sample(" 4 ", 1.0, Some(0.7), true),
                sample("", 0.0, Some(0.8), true),
                sample("5", 0.0, Some(0.95), false),
            ],
            ..Default::default()
        };
        let p = problem_samples(std::slice::from_ref(&g));
        assert_eq!(p.len(), 1);
        let s = &p[0];
        assert_eq!(s[0].answer, s[1].answer, "equivalent answers vote together");
        assert_eq!(s[2].answer, None);
        assert_eq!(s[3].self_reward, None, "a truncated sample has no read-out");
        let r = report(&[g]);
        assert_eq!((r.problems, r.k), (1, 4));
        assert!((r.pass_at_1 - 0.5).abs() < 1e-12);
        assert_eq!(r.maj_at_k, 1.0);
    }

    #[test]
    fn eval_samples_are_written_one_row_per_sample() {
        let dir = std::env::temp_dir().join(format!("laser-eval-samples-{}", std::process::id()));
        let g = RolloutGroup {
            group_id: 9,
            task_id: "t7".into(),
            samples: vec![
                sample("4", 1.0, Some(0.9), true),
                sample("5", 0.0, Some(0.95), false),
            ],
            ..Default::default()
        };
        let p = PromptGroup {
            group_id: 9,
            prompt_text: "Compute 2 + 2.".into(),
            ..Default::default()
        };
        write_samples(&dir, 50, std::slice::from_ref(&p), std::slice::from_ref(&g)).unwrap();
        // A repeated evaluation of the same step replaces the file.
        write_samples(&dir, 50, &[p], &[g]).unwrap();
        let text =
            std::fs::read_to_string(dir.join(EVAL_SAMPLES_DIR).join("step-000050.jsonl")).unwrap();
        let rows: Vec<EvalSampleRow> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].task_id, "t7");
        assert_eq!(rows[1].prompt, "Compute 2 + 2.");
        assert!(rows[0].correct && !rows[1].correct);
        assert_eq!(rows[0].self_reward, Some(0.9));
        assert_eq!(
            rows[1].self_reward, None,
            "a truncated sample has no read-out"
        );
        assert!(rows[1].truncated && !rows[0].truncated);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn eval_set_leaves_out_trained_questions_and_says_when_too_few_remain() {
        // 1-digit, one operation: 300 distinct questions, most of them trained on here.
        let toml = "[model]\ninit = \"tiny\"\n[[data.mix]]\nmin_digits = 1\nmax_digits = 1\n\
                    chain_length = 1\nops = \"+-*\"\n[warmstart]\nsteps = 5\nbatch_size = 32\n\
                    [run]\nmax_steps = 4\n[eval]\nproblems = 40\n";
        let mut cfg = ClusterConfig::from_toml_with_env(toml, "t", Vec::new()).unwrap();
        let seen = training_questions(&cfg).unwrap();
        assert!(seen.len() > 100, "{} trained questions", seen.len());
        let set = EvalSet::from_config(&cfg).unwrap().unwrap();
        assert_eq!(set.tasks.len(), 40);
        for t in &set.tasks {
            assert!(!seen.contains(&t.question), "{} is trained on", t.question);
        }
        let distinct: HashSet<&str> = set.tasks.iter().map(|t| t.question.as_str()).collect();
        assert_eq!(distinct.len(), 40, "no repeats");
        cfg.eval.problems = 300;
        let err = EvalSet::from_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("eval.problems = 300"), "{err}");
    }

    #[test]
    fn the_default_job_has_its_full_held_out_set_of_unseen_problems() {
        // The run-time CARGO_MANIFEST_DIR (cargo sets it for tests): a test executable reused from
        // a build in another checkout (a shared target directory) still reads this one's file.
        let dir =
            std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
        let root = Path::new(&dir).join("../cluster.toml");
        let cfg = ClusterConfig::load_with_env(&root, Vec::new()).unwrap();
        let set = EvalSet::from_config(&cfg).unwrap().unwrap();
        assert_eq!(set.tasks.len(), cfg.eval.problems as usize);
        let seen = training_questions(&cfg).unwrap();
        assert!(set.tasks.iter().all(|t| !seen.contains(&t.question)));
    }

    #[test]
    fn eval_set_is_disjoint_seeded_and_rows_round_trip() {
        let mut cfg = ClusterConfig::from_toml_with_env(
            "[model]\ninit = \"tiny\"\n[eval]\nproblems = 5\n",
            "t",
            Vec::new(),
        )
        .unwrap();
        let set = EvalSet::from_config(&cfg).unwrap().unwrap();
        assert_eq!(set.tasks.len(), 5);
        let training = SyntheticMix::new(&cfg.data.levels(), cfg.run.seed).unwrap();
        assert_ne!(set.tasks[0], training.task(0), "a seed of its own");
        let seen = training_questions(&cfg).unwrap();
        assert!(
            set.tasks.iter().all(|t| !seen.contains(&t.question)),
            "no held-out question is trained on"
        );
        let groups = set.groups(&cfg, 3);
        assert_eq!(groups[4].group_id, EVAL_GROUP_BASE + 4);
        assert!(groups[0].prompt_text.contains("\\boxed{}"));
        cfg.eval.enabled = false;
        assert!(EvalSet::from_config(&cfg).unwrap().is_none());

        let dir = std::env::temp_dir().join(format!("laser-heldout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = report(&[]);
        for step in [0, 5, 10] {
            let row = EvalRow {
                step,
                policy_version: step,
                seconds: 1.0,
                generated_tokens: 3,
                unix_time: 0.0,
                report: r.clone(),
            };
            append_row(&dir, &row).unwrap();
        }
        assert_eq!(read_rows(&dir).unwrap().len(), 3);
        let kept = truncate_after(&dir, 5).unwrap();
        assert_eq!(kept.iter().map(|r| r.step).collect::<Vec<_>>(), [0, 5]);
        assert_eq!(read_rows(&dir).unwrap(), kept);
        let table = compare_table(&[
            ("laser".into(), Some(kept[0].clone()), kept[1].clone()),
            ("grpo".into(), None, kept[1].clone()),
        ]);
        assert!(table.contains("pass@1"), "{table}");
        assert!(table.lines().count() >= 10, "{table}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
