//! The paper's inference-time-scaling figure: accuracy of maj@k, self-reward-weighted maj@k and
//! best-of-k by r_s against k = 1, 2, 4, ..., from the samples one held-out evaluation saved
//! (`eval.save_samples`, `run_dir/eval_samples/step-N.jsonl`). `coordinator kcurve RUN...`
//! prints the table and writes `RUN/plots/kcurve.png`.
//!
//! For each k, a problem's n samples (in sample order) are cut into n / k disjoint sets of k,
//! each set is voted on, and the votes are averaged: every sample counts once at every k, so k = 1
//! is pass@1 exactly and the points are not one lucky draw of k.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::eval_metrics::{EvalSample, best_of_k, majority_vote, self_weighted_vote};
use crate::heldout_eval::{EVAL_SAMPLES_DIR, EvalSampleRow, canonical_answer};
use crate::plots::{Series, line_plot};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KPoint {
    pub k: usize,
    /// Disjoint sets of k voted on, over all problems.
    pub sets: usize,
    pub maj_at_k: f64,
    pub self_weighted_maj_at_k: f64,
    pub best_of_k: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KCurve {
    pub samples_file: PathBuf,
    pub problems: usize,
    /// Samples of the problem with the fewest (the largest k is the largest power of 2 below it).
    pub samples_per_problem: usize,
    pub points: Vec<KPoint>,
}

/// The k-curve of graded samples grouped by problem.
pub fn kcurve(problems: &[Vec<EvalSample>]) -> Vec<KPoint> {
    let n = problems.iter().map(Vec::len).min().unwrap_or(0);
    let mut points = Vec::new();
    let mut k = 1;
    while k <= n {
        let (mut sets, mut maj, mut weighted, mut best) = (0usize, 0.0, 0.0, 0.0);
        for p in problems {
            let chunks = p.len() / k;
            let (mut m, mut w, mut b) = (0.0, 0.0, 0.0);
            for c in p.chunks_exact(k) {
                m += majority_vote(c);
                w += self_weighted_vote(c);
                b += best_of_k(c);
            }
            // Each problem weighs the same, whatever its number of sets.
            maj += m / chunks as f64;
            weighted += w / chunks as f64;
            best += b / chunks as f64;
            sets += chunks;
        }
        let np = problems.len() as f64;
        points.push(KPoint {
            k,
            sets,
            maj_at_k: maj / np,
            self_weighted_maj_at_k: weighted / np,
            best_of_k: best / np,
        });
        k *= 2;
    }
    points
}

/// The saved samples of `run`'s evaluation at `step`, or of its last saved evaluation.
pub fn samples_file(run: &Path, step: Option<u64>) -> Result<PathBuf> {
    let dir = run.join(EVAL_SAMPLES_DIR);
    if let Some(s) = step {
        let p = dir.join(format!("step-{s:06}.jsonl"));
        if !p.is_file() {
            bail!("{}: no saved evaluation samples at step {s}", p.display());
        }
        return Ok(p);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| {
            format!(
                "{}: no saved evaluation samples (set eval.save_samples = true)",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
        .pop()
        .with_context(|| format!("{}: no step-N.jsonl files", dir.display()))
}

/// Reads a samples file into problems (by task id, in first-seen order; samples by index).
pub fn read_problems(path: &Path) -> Result<Vec<Vec<EvalSample>>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let mut order: Vec<String> = Vec::new();
    let mut by_task: BTreeMap<String, Vec<(u32, EvalSample)>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: EvalSampleRow =
            serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        // The same canonical answer and read-out rule as the evaluation's own metrics
        // (heldout_eval::problem_samples): truncated samples were saved without r_s.
        let sample = EvalSample {
            answer: canonical_answer(&row.answer),
            verifier_reward: if row.correct { 1.0 } else { 0.0 },
            self_reward: row.self_reward.map(f64::from),
            mean_logprob: row.mean_logprob.map(f64::from),
        };
        if !by_task.contains_key(&row.task_id) {
            order.push(row.task_id.clone());
        }
        by_task
            .entry(row.task_id)
            .or_default()
            .push((row.sample_index, sample));
    }
    if order.is_empty() {
        bail!("{}: no samples", path.display());
    }
    Ok(order
        .into_iter()
        .map(|t| {
            let mut s = by_task.remove(&t).unwrap_or_default();
            s.sort_by_key(|(i, _)| *i);
            s.into_iter().map(|(_, e)| e).collect()
        })
        .collect())
}

/// The k-curve of one run's evaluation.
pub fn run_kcurve(run: &Path, step: Option<u64>) -> Result<KCurve> {
    let file = samples_file(run, step)?;
    let problems = read_problems(&file)?;
    Ok(KCurve {
        samples_per_problem: problems.iter().map(Vec::len).min().unwrap_or(0),
        problems: problems.len(),
        points: kcurve(&problems),
        samples_file: file,
    })
}

pub fn kcurve_table(name: &str, c: &KCurve) -> String {
    let mut out = format!(
        "{name}: {} problems, {} samples each ({})\n{:>4} {:>6} {:>8} {:>12} {:>10}\n",
        c.problems,
        c.samples_per_problem,
        c.samples_file.display(),
        "k",
        "sets",
        "maj@k",
        "weighted@k",
        "best-of-k"
    );
    for p in &c.points {
        out.push_str(&format!(
            "{:>4} {:>6} {:>8.3} {:>12.3} {:>10.3}\n",
            p.k, p.sets, p.maj_at_k, p.self_weighted_maj_at_k, p.best_of_k
        ));
    }
    out
}

/// Writes the curves of `runs` (name, curve) into one PNG: three lines per run.
pub fn write_kcurve_plot(path: &Path, runs: &[(String, KCurve)]) -> Result<()> {
    let mut series = Vec::new();
    for (name, c) in runs {
        let pts = |f: fn(&KPoint) -> f64| c.points.iter().map(|p| (p.k as f64, f(p))).collect();
        let prefix = if runs.len() > 1 {
            format!("{name}: ")
        } else {
            String::new()
        };
        series.push(Series {
            label: format!("{prefix}maj@k"),
            points: pts(|p| p.maj_at_k),
        });
        series.push(Series {
            label: format!("{prefix}r_s-weighted maj@k"),
            points: pts(|p| p.self_weighted_maj_at_k),
        });
        series.push(Series {
            label: format!("{prefix}best-of-k by r_s"),
            points: pts(|p| p.best_of_k),
        });
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    line_plot(
        path,
        "Inference-time scaling on held-out problems",
        "k (samples per problem)",
        "accuracy",
        &series,
        None,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(answer: &str, correct: bool, r: Option<f64>) -> EvalSample {
        EvalSample {
            answer: Some(answer.into()),
            verifier_reward: if correct { 1.0 } else { 0.0 },
            self_reward: r,
            mean_logprob: None,
        }
    }

    #[test]
    fn k1_is_pass_at_1_and_sets_are_disjoint() {
        // Problem A: 4 samples, right answer "1" twice with high r_s, wrong "2" twice with low r_s.
        // Problem B: all wrong.
        let a = vec![
            s("2", false, Some(0.1)),
            s("1", true, Some(0.9)),
            s("2", false, Some(0.2)),
            s("1", true, Some(0.8)),
        ];
        let b = vec![s("3", false, Some(0.9)); 4];
        let c = kcurve(&[a, b]);
        assert_eq!(c.iter().map(|p| p.k).collect::<Vec<_>>(), vec![1, 2, 4]);
        // k = 1: A 2/4 right, B 0 -> 0.25 for all three rules.
        assert_eq!(c[0].sets, 8);
        for v in [c[0].maj_at_k, c[0].self_weighted_maj_at_k, c[0].best_of_k] {
            assert!((v - 0.25).abs() < 1e-12, "{:?}", c[0]);
        }
        // k = 2: A's sets {2,1} and {2,1}: the plain vote is a tie won by the first seen ("2"),
        // the weighted vote and best-of-k pick "1".
        assert_eq!(c[1].sets, 4);
        assert!((c[1].maj_at_k - 0.0).abs() < 1e-12, "{:?}", c[1]);
        assert!(
            (c[1].self_weighted_maj_at_k - 0.5).abs() < 1e-12,
            "{:?}",
            c[1]
        );
        assert!((c[1].best_of_k - 0.5).abs() < 1e-12, "{:?}", c[1]);
        assert_eq!(c[2].sets, 2);
    }

    #[test]
    fn the_largest_k_is_bounded_by_the_smallest_problem() {
        let c = kcurve(&[vec![s("1", true, None); 8], vec![s("1", true, None); 5]]);
        assert_eq!(c.last().unwrap().k, 4);
        // 8/4 + 5/4 = 3 sets of 4 (the fifth sample of the second problem is left out).
        assert_eq!(c.last().unwrap().sets, 3);
        assert!((c[0].maj_at_k - 1.0).abs() < 1e-12);
    }

    #[test]
    fn reads_saved_samples_by_problem_and_index() {
        let dir = std::env::temp_dir().join(format!("laser-kcurve-{}", std::process::id()));
        let samples = dir.join(EVAL_SAMPLES_DIR);
        std::fs::create_dir_all(&samples).unwrap();
        let row = |task: &str, i: u32, answer: &str, correct: bool, r: Option<f32>| EvalSampleRow {
            task_id: task.into(),
            sample_index: i,
            prompt: String::new(),
            text: String::new(),
            tokens: vec![],
            answer: answer.into(),
            correct,
            self_reward: r,
            truncated: r.is_none(),
            mean_logprob: None,
        };
        let rows = [
            row("b", 1, "7", true, Some(0.9)),
            row("a", 0, "", false, None),
            row("b", 0, "8", false, Some(0.1)),
            row("a", 1, "3", true, Some(0.5)),
        ];
        let text: String = rows
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect();
        std::fs::write(samples.join("step-000000.jsonl"), "").unwrap();
        std::fs::write(samples.join("step-000010.jsonl"), text).unwrap();
        let c = run_kcurve(&dir, None).unwrap();
        assert!(c.samples_file.ends_with("step-000010.jsonl"));
        assert_eq!((c.problems, c.samples_per_problem), (2, 2));
        // k = 2: "b" -> the vote ties ("8" first by index) and loses, the weighted vote wins;
        // "a" -> the only answer "3" is right.
        let k2 = &c.points[1];
        assert!((k2.maj_at_k - 0.5).abs() < 1e-12, "{k2:?}");
        assert!((k2.self_weighted_maj_at_k - 1.0).abs() < 1e-12, "{k2:?}");
        let err = format!("{:#}", run_kcurve(&dir, Some(5)).unwrap_err());
        assert!(err.contains("step 5"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
