//! The markdown summary written at the end of a run: the facts of the run (model, steps, time,
//! memory), held-out evaluations over training (from [`crate::eval_metrics::EvalReport`]s), training
//! metrics at the start and the end (from `metrics.jsonl` rows), and the plots.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::eval_metrics::EvalReport;

/// Everything the summary shows.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub title: String,
    /// Key facts, in order (e.g. ("model", "tiny-qwen2 0.8M"), ("wall time", "12 min")).
    pub facts: Vec<(String, String)>,
    /// Held-out evaluations, by training step.
    pub evals: Vec<(u64, EvalReport)>,
    /// `metrics.jsonl` rows.
    pub train_rows: Vec<Value>,
    /// Plot files, relative to the summary's directory.
    pub plots: Vec<String>,
}

/// Training fields shown, with their labels.
const TRAIN_FIELDS: &[(&str, &str)] = &[
    ("accuracy", "rollout accuracy"),
    ("reward_mean", "mean verifier reward"),
    ("self_verify_f1", "self-verification F1"),
    ("self_reward_mse", "self-reward MSE"),
    ("mean_response_len", "response length (tokens)"),
    ("truncation_rate", "truncation rate"),
    ("gen_tokens_per_sec", "generated tokens/s"),
    ("step_seconds", "seconds per step"),
];

/// Rows averaged at each end of the training table (single steps are noisy).
pub const TRAIN_WINDOW: usize = 10;

/// Most evaluation columns shown (first, last, and evenly spaced ones between).
pub const MAX_EVAL_COLUMNS: usize = 6;

fn fmt_opt(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.3}"),
        _ => "–".into(),
    }
}

fn mean_field(rows: &[Value], field: &str) -> Option<f64> {
    let vals: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.get(field)?.as_f64())
        .filter(|x| x.is_finite())
        .collect();
    (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
}

/// Indices of at most `max` evaluations: always the first and the last.
fn eval_columns(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    let mut cols: Vec<usize> = (0..max)
        .map(|i| (i * (n - 1) + (max - 1) / 2) / (max - 1))
        .collect();
    cols.dedup();
    cols
}

/// The summary as markdown.
pub fn render_summary(s: &RunSummary) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", s.title);
    if !s.facts.is_empty() {
        md.push_str("| | |\n|---|---|\n");
        for (k, v) in &s.facts {
            let _ = writeln!(md, "| {k} | {v} |");
        }
        md.push('\n');
    }

    md.push_str("## Held-out evaluation\n\n");
    if s.evals.is_empty() {
        md.push_str("No evaluation was run.\n\n");
    } else {
        let cols = eval_columns(s.evals.len(), MAX_EVAL_COLUMNS);
        let first = &s.evals[0].1;
        let last = &s.evals[s.evals.len() - 1].1;
        let _ = writeln!(
            md,
            "{} problems, k = {} samples each.\n",
            last.problems, last.k
        );
        md.push_str("| metric |");
        for &c in &cols {
            let _ = write!(md, " step {} |", s.evals[c].0);
        }
        md.push_str(" change |\n|---|");
        for _ in &cols {
            md.push_str("---:|");
        }
        md.push_str("---:|\n");
        type Get = fn(&EvalReport) -> Option<f64>;
        let rows: [(&str, Get); 14] = [
            ("pass@1", |r| Some(r.pass_at_1)),
            ("maj@k", |r| Some(r.maj_at_k)),
            ("self-reward-weighted maj@k", |r| {
                Some(r.self_weighted_maj_at_k)
            }),
            ("best-of-k by r_s", |r| Some(r.best_of_k)),
            ("self-verification acc. (correct answers)", |r| {
                r.verify_acc_correct
            }),
            ("self-verification acc. (incorrect answers)", |r| {
                r.verify_acc_incorrect
            }),
            ("self-verification F1", |r| r.verify_f1),
            ("AUROC of r_s", |r| r.auroc),
            ("AUROC of r_s within problems", |r| r.auroc_within),
            ("ECE", |r| r.ece),
            ("AUROC of log p(y|x) (the policy's own confidence)", |r| {
                r.logprob_auroc
            }),
            ("AUROC of log p(y|x) within problems", |r| {
                r.logprob_auroc_within
            }),
            ("sample accuracy", |r| Some(r.sample_accuracy)),
            ("no-answer rate", |r| Some(r.no_answer_rate)),
        ];
        for (name, get) in rows {
            let _ = write!(md, "| {name} |");
            for &c in &cols {
                let _ = write!(md, " {} |", fmt_opt(get(&s.evals[c].1)));
            }
            let change = match (get(first), get(last)) {
                (Some(a), Some(b)) if s.evals.len() > 1 => format!("{:+.3}", b - a),
                _ => "–".into(),
            };
            let _ = writeln!(md, " {change} |");
        }
        md.push('\n');
    }

    md.push_str("## Training\n\n");
    if s.train_rows.is_empty() {
        md.push_str("No training steps were logged.\n\n");
    } else {
        let n = s.train_rows.len();
        let w = TRAIN_WINDOW.min(n);
        let head = &s.train_rows[..w];
        let tail = &s.train_rows[n - w..];
        let _ = writeln!(
            md,
            "{n} steps logged; each column is the mean of {w} step{}.\n",
            if w == 1 { "" } else { "s" }
        );
        let _ = writeln!(md, "| metric | first {w} | last {w} |\n|---|---:|---:|");
        for (field, label) in TRAIN_FIELDS {
            let (a, b) = (mean_field(head, field), mean_field(tail, field));
            if a.is_none() && b.is_none() {
                continue;
            }
            let _ = writeln!(md, "| {label} | {} | {} |", fmt_opt(a), fmt_opt(b));
        }
        md.push('\n');
    }

    if !s.plots.is_empty() {
        md.push_str("## Plots\n\n");
        for p in &s.plots {
            let name = Path::new(p)
                .file_stem()
                .map(|n| n.to_string_lossy().replace('_', " "))
                .unwrap_or_default();
            let _ = writeln!(md, "![{name}]({p})");
        }
        md.push('\n');
    }
    md
}

/// Writes [`render_summary`] to `path`.
pub fn write_summary(path: &Path, s: &RunSummary) -> std::io::Result<()> {
    std::fs::write(path, render_summary(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval_metrics::{EvalSample, evaluate};
    use serde_json::json;

    fn report(correct_of_4: usize) -> EvalReport {
        let problem: Vec<EvalSample> = (0..4)
            .map(|i| EvalSample {
                answer: Some(if i < correct_of_4 { "1" } else { "2" }.into()),
                verifier_reward: f64::from(u8::from(i < correct_of_4)),
                self_reward: Some(if i < correct_of_4 { 0.9 } else { 0.1 }),
                mean_logprob: None,
            })
            .collect();
        evaluate(&[problem])
    }

    #[test]
    fn summary_has_the_numbers() {
        let s = RunSummary {
            title: "LaSeR run".into(),
            facts: vec![("wall time".into(), "12.0 min".into())],
            evals: vec![(0, report(1)), (50, report(2)), (100, report(3))],
            train_rows: (0..30)
                .map(|i| json!({"step": i, "accuracy": if i < 10 { 0.2 } else { 0.6 }}))
                .collect(),
            plots: vec!["plots/accuracy.png".into()],
        };
        let md = render_summary(&s);
        assert!(md.starts_with("# LaSeR run\n"));
        assert!(md.contains("| wall time | 12.0 min |"));
        assert!(
            md.contains("| metric | step 0 | step 50 | step 100 | change |"),
            "{md}"
        );
        // pass@1 0.25 -> 0.75.
        assert!(
            md.contains("| pass@1 | 0.250 | 0.500 | 0.750 | +0.500 |"),
            "{md}"
        );
        // Perfectly separated r_s: F1 1 throughout.
        assert!(md.contains("| self-verification F1 | 1.000 | 1.000 | 1.000 | +0.000 |"));
        assert!(md.contains("| rollout accuracy | 0.200 | 0.600 |"), "{md}");
        // Fields absent from every row are left out.
        assert!(!md.contains("seconds per step"));
        assert!(md.contains("![accuracy](plots/accuracy.png)"));
    }

    #[test]
    fn empty_run_and_column_selection() {
        let md = render_summary(&RunSummary {
            title: "t".into(),
            ..Default::default()
        });
        assert!(md.contains("No evaluation was run."));
        assert!(md.contains("No training steps were logged."));
        assert_eq!(eval_columns(3, 6), [0, 1, 2]);
        let cols = eval_columns(20, 6);
        assert_eq!((cols.len(), cols[0], *cols.last().unwrap()), (6, 0, 19));
        assert!(cols.windows(2).all(|w| w[0] < w[1]));
        // Undefined metrics print as a dash.
        let one = RunSummary {
            title: "t".into(),
            evals: vec![(0, report(4))],
            ..Default::default()
        };
        assert!(render_summary(&one).contains("| self-verification F1 | – | – |"));
    }
}
