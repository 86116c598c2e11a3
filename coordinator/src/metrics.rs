//! Per-step metrics: computed from a step's verified rollouts plus the timings of its phases,
//! appended to `run_dir/metrics.jsonl` (one [`StepMetrics`] row per line, the same struct that
//! `Monitor.WatchMetrics` streams) and read back for `--resume` and `laserctl`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use laser_proto::v1::{FinishReason, RolloutGroup, StepMetrics};

pub const METRICS_FILE: &str = "metrics.jsonl";

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// What the rollouts of one step say, before timings are added.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RolloutStats {
    pub groups: u64,
    pub samples: u64,
    pub reward_mean: f64,
    pub accuracy: f64,
    pub self_reward_mse: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub mean_response_len: f64,
    pub truncation_rate: f64,
    pub staleness_mean: f64,
    pub within_group_pairs: u64,
    pub self_reward_auroc_within: Option<f64>,
    pub logprob_auroc_within: Option<f64>,
}

/// The policy's self-verdict: "correct" when clamp(r_s, 0, 1) > 0.5; without r_s, "incorrect".
pub fn self_verdict(self_reward: Option<f32>) -> bool {
    self_reward.is_some_and(|r| r.clamp(0.0, 1.0) > 0.5)
}

/// Statistics of verified groups trained on by the learner holding `trained_version` (staleness is
/// measured against it). Samples without a verifier reward count as 0.
pub fn rollout_stats(groups: &[RolloutGroup], trained_version: u64) -> RolloutStats {
    let mut s = RolloutStats {
        groups: groups.len() as u64,
        ..Default::default()
    };
    let (mut tp, mut fp, mut fn_, mut tn) = (0u64, 0u64, 0u64, 0u64);
    let (mut mse_sum, mut mse_n) = (0.0f64, 0u64);
    let (mut reward_sum, mut correct, mut len_sum, mut truncated) = (0.0f64, 0u64, 0u64, 0u64);
    let mut stale_sum = 0.0;
    for g in groups {
        stale_sum += trained_version.saturating_sub(g.policy_version) as f64;
        for x in &g.samples {
            s.samples += 1;
            let r_v = f64::from(x.verifier_reward.unwrap_or(0.0));
            let is_correct = r_v >= 0.5;
            reward_sum += r_v;
            correct += u64::from(is_correct);
            len_sum += x.tokens.len() as u64;
            if x.finish_reason == FinishReason::Length as i32 {
                truncated += 1;
            }
            if let Some(r_s) = x.self_reward {
                // The MSE the learner minimises: r_s against r_v, over non-truncated samples.
                mse_sum += (f64::from(r_s) - r_v).powi(2);
                mse_n += 1;
            }
            match (self_verdict(x.self_reward), is_correct) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fn_ += 1,
                (false, false) => tn += 1,
            }
        }
    }
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let n = s.samples;
    s.reward_mean = if n == 0 { 0.0 } else { reward_sum / n as f64 };
    s.accuracy = ratio(correct, n);
    s.self_reward_mse = if mse_n == 0 {
        0.0
    } else {
        mse_sum / mse_n as f64
    };
    s.precision = ratio(tp, tp + fp);
    s.recall = ratio(tp, tp + fn_);
    // LASER.md: F1 = harmonic mean of the accuracy on correct and on incorrect answers.
    let acc_correct = ratio(tp, tp + fn_);
    let acc_incorrect = ratio(tn, tn + fp);
    s.f1 = if acc_correct + acc_incorrect == 0.0 {
        0.0
    } else {
        2.0 * acc_correct * acc_incorrect / (acc_correct + acc_incorrect)
    };
    s.mean_response_len = ratio(len_sum, n);
    s.truncation_rate = ratio(truncated, n);
    s.staleness_mean = if groups.is_empty() {
        0.0
    } else {
        stale_sum / groups.len() as f64
    };
    // The held-out evaluation's rules, on the training groups (one group = one problem).
    let graded = crate::heldout_eval::problem_samples(groups);
    s.within_group_pairs = graded
        .iter()
        .map(|p| {
            let right = p.iter().filter(|x| x.is_correct()).count() as u64;
            right * (p.len() as u64 - right)
        })
        .sum();
    let report = crate::eval_metrics::evaluate(&graded);
    s.self_reward_auroc_within = report.auroc_within;
    s.logprob_auroc_within = report.logprob_auroc_within;
    s
}

impl RolloutStats {
    /// A metrics row holding these statistics; the caller fills in timings and training stats.
    pub fn into_row(self, step: u64) -> StepMetrics {
        StepMetrics {
            step,
            groups: self.groups,
            samples: self.samples,
            reward_mean: self.reward_mean,
            accuracy: self.accuracy,
            self_reward_mse: self.self_reward_mse,
            self_verify_precision: self.precision,
            self_verify_recall: self.recall,
            self_verify_f1: self.f1,
            mean_response_len: self.mean_response_len,
            truncation_rate: self.truncation_rate,
            staleness_mean: self.staleness_mean,
            within_group_pairs: self.within_group_pairs,
            self_reward_auroc_within: self.self_reward_auroc_within,
            logprob_auroc_within: self.logprob_auroc_within,
            ..Default::default()
        }
    }
}

/// Appends rows to `metrics.jsonl`, one flushed line per step.
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    pub fn new(run_dir: &Path) -> Self {
        Self {
            path: run_dir.join(METRICS_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&self, row: &StepMetrics) -> Result<(), MetricsError> {
        let io = |source| MetricsError::Io {
            path: self.path.clone(),
            source,
        };
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        let mut line = serde_json::to_string(row).expect("StepMetrics serialises");
        line.push('\n');
        f.write_all(line.as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)
    }

    /// Every row; a missing file is an empty log.
    pub fn read(&self) -> Result<Vec<StepMetrics>, MetricsError> {
        read_metrics(&self.path)
    }

    /// Keeps only rows with `step < first_dropped` (a resumed or rolled-back run redoes the rest).
    pub fn truncate_from(&self, first_dropped: u64) -> Result<Vec<StepMetrics>, MetricsError> {
        let keep: Vec<_> = self
            .read()?
            .into_iter()
            .filter(|r| r.step < first_dropped)
            .collect();
        let mut text = String::new();
        for r in &keep {
            text.push_str(&serde_json::to_string(r).expect("StepMetrics serialises"));
            text.push('\n');
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        let io = |source| MetricsError::Io {
            path: self.path.clone(),
            source,
        };
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        Ok(keep)
    }
}

pub fn read_metrics(path: &Path) -> Result<Vec<StepMetrics>, MetricsError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(MetricsError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut rows = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        rows.push(
            serde_json::from_str(&line).map_err(|e| MetricsError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                message: e.to_string(),
            })?,
        );
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use laser_proto::v1::RolloutSample;

    fn sample(r_v: f32, r_s: Option<f32>, len: usize, finish: FinishReason) -> RolloutSample {
        RolloutSample {
            tokens: vec![1; len],
            verifier_reward: Some(r_v),
            self_reward: r_s,
            finish_reason: finish as i32,
            ..Default::default()
        }
    }

    #[test]
    fn stats_match_a_hand_count() {
        use FinishReason::{Eos, Length};
        // correct & says correct (TP), correct & says wrong (FN), wrong & says correct (FP),
        // wrong & says wrong (TN), truncated wrong without r_s (TN).
        let g = RolloutGroup {
            policy_version: 2,
            samples: vec![
                sample(1.0, Some(0.9), 4, Eos),
                sample(1.0, Some(0.2), 6, Eos),
                sample(0.0, Some(0.7), 2, Eos),
                sample(0.0, Some(-0.5), 8, Eos),
                sample(0.0, None, 10, Length),
            ],
            ..Default::default()
        };
        let s = rollout_stats(&[g], 3);
        assert_eq!((s.groups, s.samples), (1, 5));
        assert!((s.accuracy - 0.4).abs() < 1e-12);
        assert!((s.reward_mean - 0.4).abs() < 1e-12);
        assert!((s.truncation_rate - 0.2).abs() < 1e-12);
        assert!((s.mean_response_len - 6.0).abs() < 1e-12);
        // MSE over the 4 samples with r_s (f32 inputs).
        let mse = [(0.9f32, 1.0f32), (0.2, 1.0), (0.7, 0.0), (-0.5, 0.0)]
            .iter()
            .map(|&(a, b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum::<f64>()
            / 4.0;
        assert!((s.self_reward_mse - mse).abs() < 1e-12);
        assert!((s.precision - 0.5).abs() < 1e-12, "TP 1, FP 1");
        assert!((s.recall - 0.5).abs() < 1e-12, "TP 1, FN 1");
        // acc on correct = 1/2, acc on incorrect = 2/3 -> F1 = 2*(1/2)(2/3)/(1/2+2/3) = 4/7.
        assert!((s.f1 - 4.0 / 7.0).abs() < 1e-12);
        assert!((s.staleness_mean - 1.0).abs() < 1e-12);
    }

    /// The within-group figures count one group's (correct, incorrect) pairs only and rank them
    /// by r_s and by the mean log-probability separately.
    #[test]
    fn within_group_auroc_counts_pairs_inside_groups() {
        use FinishReason::Eos;
        let answered = |r_v: f32, r_s: f32, logprobs: Vec<f32>| RolloutSample {
            extracted_answer: if r_v > 0.5 { "1" } else { "2" }.into(),
            logprobs,
            ..sample(r_v, Some(r_s), 2, Eos)
        };
        let mixed = RolloutGroup {
            samples: vec![
                answered(1.0, 0.8, vec![-0.1, -0.3]),
                answered(0.0, 0.3, vec![-0.1, -0.1]),
                answered(0.0, 0.9, vec![-1.0, -1.0]),
            ],
            ..Default::default()
        };
        // An easy group: every sample right, high r_s; it adds no pair.
        let easy = RolloutGroup {
            samples: vec![answered(1.0, 0.99, vec![-0.01]); 2],
            ..Default::default()
        };
        let s = rollout_stats(&[mixed.clone(), easy.clone()], 0);
        assert_eq!(s.within_group_pairs, 2);
        // r_s: 0.8 beats 0.3, loses to 0.9. Log-prob (mean): -0.2 loses to -0.1, beats -1.0.
        assert_eq!(s.self_reward_auroc_within, Some(0.5));
        assert_eq!(s.logprob_auroc_within, Some(0.5));
        let row = s.into_row(1);
        assert_eq!(row.within_group_pairs, 2);
        let s = rollout_stats(&[easy], 0);
        assert_eq!(s.within_group_pairs, 0);
        assert_eq!(
            (s.self_reward_auroc_within, s.logprob_auroc_within),
            (None, None)
        );
    }

    #[test]
    fn log_appends_reads_and_truncates() {
        let dir = std::env::temp_dir().join(format!("laser-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = MetricsLog::new(&dir);
        let _ = std::fs::remove_file(log.path());
        for step in 0..4 {
            log.append(&StepMetrics {
                step,
                accuracy: step as f64 / 10.0,
                ..Default::default()
            })
            .unwrap();
        }
        let rows = log.read().unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[3].accuracy, 0.3);
        let kept = log.truncate_from(2).unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(log.read().unwrap().len(), 2);
        std::fs::write(log.path(), "{\"step\": 1}\nnot json\n").unwrap();
        let e = log.read().unwrap_err().to_string();
        assert!(e.contains("metrics.jsonl:2"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
