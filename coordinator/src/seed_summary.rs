//! `coordinator compare --seeds ROOT`: the final held-out evaluations of the same recipe trained
//! with several seeds (`ROOT/seed-S/LEG/eval.jsonl`, as `scripts/ablation --seeds N` writes them),
//! as every metric's mean ± standard error over the seeds, per leg, and the legs' difference
//! paired by seed (both legs of a seed share the warm start, c_ref and held-out set).
//!
//! One training run is one draw: RESULTS.md measured the default job's end point moving by 11
//! points of pass@1 with the machine's float rounding alone. A seed mean is what a newcomer's run
//! can be held to.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::heldout_eval::{self, EvalRow, MetricSpread, RepeatSummary};

/// One leg (e.g. `laser`, `grpo`) over the seeds.
#[derive(Debug, Clone, Serialize)]
pub struct LegOverSeeds {
    pub leg: String,
    /// The final evaluation's training step of each seed, in seed order.
    pub final_steps: Vec<u64>,
    /// The final evaluations' spread over seeds (`repeats` = seeds).
    pub final_eval: RepeatSummary,
    /// pass@1 at the first evaluation (the RL start) and its change to the final one.
    pub first_pass_at_1: Option<MetricSpread>,
    pub pass_at_1_change: Option<MetricSpread>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeedComparison {
    pub root: PathBuf,
    pub seeds: Vec<u64>,
    pub legs: Vec<LegOverSeeds>,
    /// With two legs: first minus second per seed, for every metric of
    /// [`heldout_eval::report_metrics`] (defined in both), as mean ± s.e. of the differences.
    pub paired_difference: Vec<MetricSpread>,
    pub problems: usize,
    pub k: usize,
}

/// The seeds under `root`: directories named `seed-S`, in numeric order.
fn seed_dirs(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = std::fs::read_dir(root).with_context(|| format!("{}", root.display()))?;
    let mut seeds = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("{}", root.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(s) = name
            .strip_prefix("seed-")
            .and_then(|s| s.parse::<u64>().ok())
        {
            seeds.push((s, e.path()));
        }
    }
    seeds.sort();
    if seeds.is_empty() {
        bail!(
            "{}: no seed-S directories (scripts/ablation --seeds N writes ROOT/seed-S/LEG)",
            root.display()
        );
    }
    Ok(seeds)
}

/// The legs every seed has: the subdirectories of the first seed holding an eval.jsonl, `laser`
/// first, then by name.
fn leg_names(first_seed: &Path) -> Result<Vec<String>> {
    let mut legs: Vec<String> = std::fs::read_dir(first_seed)
        .with_context(|| format!("{}", first_seed.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(heldout_eval::EVAL_FILE).is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    legs.sort_by_key(|l| (l != "laser", l.clone()));
    if legs.is_empty() {
        bail!(
            "{}: no leg directory with an {}",
            first_seed.display(),
            heldout_eval::EVAL_FILE
        );
    }
    Ok(legs)
}

fn rows_of(run: &Path) -> Result<Vec<EvalRow>> {
    let rows = heldout_eval::read_rows(run)?;
    if rows.is_empty() {
        bail!(
            "{}: no evaluations ({} is empty or missing): has this seed finished?",
            run.display(),
            heldout_eval::EVAL_FILE
        );
    }
    Ok(rows)
}

/// Reads every seed's legs under `root` and summarises them. Every seed must have every leg the
/// first seed has, each with at least one evaluation, all on the same problems and k.
pub fn compare_seeds(root: &Path) -> Result<SeedComparison> {
    let seeds = seed_dirs(root)?;
    let legs = leg_names(&seeds[0].1)?;
    // rows[leg][seed]
    let mut rows: Vec<Vec<Vec<EvalRow>>> = Vec::new();
    for leg in &legs {
        let mut per_seed = Vec::new();
        for (_, dir) in &seeds {
            per_seed.push(rows_of(&dir.join(leg))?);
        }
        rows.push(per_seed);
    }
    let last = |r: &Vec<EvalRow>| r.last().expect("rows_of checks").clone();
    let shape = {
        let r = &last(&rows[0][0]).report;
        (r.problems, r.k)
    };
    for (leg, per_seed) in legs.iter().zip(&rows) {
        for ((s, _), r) in seeds.iter().zip(per_seed) {
            let rep = &last(r).report;
            if (rep.problems, rep.k) != shape {
                bail!(
                    "seed-{s}/{leg}: final evaluation on {} problems with k = {}, others on {} with \
                     k = {}: not the same measurement",
                    rep.problems,
                    rep.k,
                    shape.0,
                    shape.1
                );
            }
        }
    }
    let mut summaries = Vec::new();
    for (leg, per_seed) in legs.iter().zip(&rows) {
        let finals: Vec<_> = per_seed.iter().map(|r| last(r).report).collect();
        let firsts: Vec<f64> = per_seed
            .iter()
            .filter(|r| r.len() > 1)
            .map(|r| r[0].report.pass_at_1)
            .collect();
        let changes: Vec<f64> = per_seed
            .iter()
            .filter(|r| r.len() > 1)
            .map(|r| last(r).report.pass_at_1 - r[0].report.pass_at_1)
            .collect();
        summaries.push(LegOverSeeds {
            leg: leg.clone(),
            final_steps: per_seed.iter().map(|r| last(r).step).collect(),
            final_eval: heldout_eval::summarize_repeats(&finals).expect("at least one seed"),
            first_pass_at_1: MetricSpread::of("pass@1 at the first eval", &firsts),
            pass_at_1_change: MetricSpread::of("pass@1 change", &changes),
        });
    }
    let mut paired_difference = Vec::new();
    if let [a, b] = &rows[..] {
        let metrics = |leg: &[Vec<EvalRow>]| -> Vec<_> {
            leg.iter()
                .map(|r| heldout_eval::report_metrics(&last(r).report))
                .collect()
        };
        let (ma, mb) = (metrics(a), metrics(b));
        for (i, (name, _)) in ma[0].iter().enumerate() {
            let diffs: Vec<f64> = ma
                .iter()
                .zip(&mb)
                .filter_map(|(x, y)| Some(x[i].1? - y[i].1?))
                .collect();
            paired_difference.extend(MetricSpread::of(name, &diffs));
        }
    }
    Ok(SeedComparison {
        root: root.to_path_buf(),
        seeds: seeds.iter().map(|(s, _)| *s).collect(),
        legs: summaries,
        paired_difference,
        problems: shape.0,
        k: shape.1,
    })
}

fn cell(m: Option<&MetricSpread>) -> String {
    m.map_or_else(
        || "–".into(),
        |m| format!("{:.3} ± {:.3}", m.mean, m.standard_error),
    )
}

/// A [`SeedComparison`] as an aligned table.
pub fn seed_table(c: &SeedComparison) -> String {
    let seeds: Vec<String> = c.seeds.iter().map(|s| s.to_string()).collect();
    let mut out = format!(
        "{}: {} training seeds ({}); final evaluation, {} problems, k = {}; mean ± standard error \
         over seeds\n",
        c.root.display(),
        c.seeds.len(),
        seeds.join(", "),
        c.problems,
        c.k
    );
    let width = 17;
    out.push_str(&format!("{:<30}", "metric"));
    for l in &c.legs {
        let steps = &l.final_steps;
        let at = if steps.iter().all(|s| *s == steps[0]) {
            format!("@{}", steps[0])
        } else {
            "@mixed".into()
        };
        out.push_str(&format!(" {:>width$}", format!("{} {at}", l.leg)));
    }
    if !c.paired_difference.is_empty() {
        out.push_str(&format!(
            " {:>width$}",
            format!("{} - {}", c.legs[0].leg, c.legs[1].leg)
        ));
    }
    out.push('\n');
    let names: Vec<&str> = c.legs[0]
        .final_eval
        .metrics
        .iter()
        .map(|m| m.metric)
        .collect();
    let mut row = |label: &str, cells: Vec<String>| {
        out.push_str(&format!("{label:<30}"));
        for v in cells {
            out.push_str(&format!(" {v:>width$}"));
        }
        out.push('\n');
    };
    for name in names {
        let mut cells: Vec<String> = c
            .legs
            .iter()
            .map(|l| cell(l.final_eval.metrics.iter().find(|m| m.metric == name)))
            .collect();
        if !c.paired_difference.is_empty() {
            cells.push(cell(c.paired_difference.iter().find(|m| m.metric == name)));
        }
        row(name, cells);
    }
    row(
        "weighted maj@k - maj@k",
        c.legs
            .iter()
            .map(|l| cell(Some(&l.final_eval.weighted_minus_majority)))
            .collect(),
    );
    row(
        "pass@1 at the first eval",
        c.legs
            .iter()
            .map(|l| cell(l.first_pass_at_1.as_ref()))
            .collect(),
    );
    row(
        "pass@1 change",
        c.legs
            .iter()
            .map(|l| cell(l.pass_at_1_change.as_ref()))
            .collect(),
    );
    for l in &c.legs {
        let s = &l.final_eval;
        out.push_str(&format!(
            "{}: weighted vote ahead of maj@k in {}, tied in {}, behind in {} of {} seeds\n",
            l.leg, s.weighted_ahead, s.weighted_tied, s.weighted_behind, s.repeats
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval_metrics::EvalReport;

    fn row(step: u64, pass_at_1: f64, maj: f64, weighted: f64, f1: Option<f64>) -> EvalRow {
        EvalRow {
            step,
            policy_version: step,
            seconds: 1.0,
            generated_tokens: 10,
            unix_time: 0.0,
            report: EvalReport {
                problems: 4,
                samples: 32,
                k: 8,
                pass_at_1,
                maj_at_k: maj,
                self_weighted_maj_at_k: weighted,
                best_of_k: maj,
                verify_acc_correct: None,
                verify_acc_incorrect: None,
                verify_f1: f1,
                auroc: None,
                auroc_within: None,
                ece: None,
                logprob_auroc: None,
                logprob_auroc_within: None,
                sample_accuracy: pass_at_1,
                no_answer_rate: 0.0,
            },
        }
    }

    fn write(root: &Path, seed: u64, leg: &str, rows: &[EvalRow]) {
        let dir = root.join(format!("seed-{seed}")).join(leg);
        std::fs::create_dir_all(&dir).unwrap();
        for r in rows {
            heldout_eval::append_row(&dir, r).unwrap();
        }
    }

    #[test]
    fn means_standard_errors_and_paired_differences_over_seeds() {
        let root = std::env::temp_dir().join(format!("laser-seeds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // LaSeR final pass@1 0.5, 0.6, 0.7; GRPO 0.4, 0.6, 0.5 -> differences 0.1, 0.0, 0.2.
        for (s, (l, g)) in [(0.5, 0.4), (0.6, 0.6), (0.7, 0.5)].into_iter().enumerate() {
            let s = s as u64;
            write(
                &root,
                s,
                "laser",
                &[row(0, 0.2, 0.3, 0.3, None), row(9, l, 0.75, 1.0, Some(0.8))],
            );
            write(
                &root,
                s,
                "grpo",
                &[row(0, 0.2, 0.3, 0.3, None), row(9, g, 0.75, 0.5, None)],
            );
        }
        // A seed directory past 9 sorts numerically, not as text.
        write(&root, 10, "laser", &[row(9, 0.6, 0.75, 0.75, Some(0.7))]);
        write(&root, 10, "grpo", &[row(9, 0.5, 0.75, 0.75, None)]);
        let c = compare_seeds(&root).unwrap();
        assert_eq!(c.seeds, vec![0, 1, 2, 10]);
        assert_eq!(c.legs[0].leg, "laser");
        assert_eq!(c.legs[1].leg, "grpo");
        let laser = &c.legs[0].final_eval.metrics[0];
        assert_eq!((laser.metric, laser.n), ("pass@1", 4));
        assert!((laser.mean - 0.6).abs() < 1e-12);
        // sd of (0.5, 0.6, 0.7, 0.6) = sqrt(0.02 / 3); s.e. = sd / 2.
        assert!((laser.standard_error - (0.02f64 / 3.0).sqrt() / 2.0).abs() < 1e-12);
        let d = &c.paired_difference[0];
        assert_eq!(d.metric, "pass@1");
        assert!((d.mean - 0.1).abs() < 1e-12, "{}", d.mean);
        // F1 is defined for LaSeR only: no paired difference, and the table shows a dash.
        assert!(
            c.paired_difference
                .iter()
                .all(|m| m.metric != "self-verification F1")
        );
        // Seed 10 has one evaluation: the first-eval statistics use the other three.
        assert_eq!(c.legs[0].pass_at_1_change.as_ref().unwrap().n, 3);
        let w = &c.legs[0].final_eval;
        assert_eq!((w.weighted_ahead, w.weighted_tied), (3, 1));
        let table = seed_table(&c);
        assert!(table.contains("4 training seeds (0, 1, 2, 10)"), "{table}");
        assert!(table.contains("0.600 ± "), "{table}");
        assert!(table.contains("laser - grpo"), "{table}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_missing_leg_or_seed_is_named() {
        let root = std::env::temp_dir().join(format!("laser-seeds-miss-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        assert!(format!("{:#}", compare_seeds(&root).unwrap_err()).contains("laser-seeds-miss"));
        std::fs::create_dir_all(&root).unwrap();
        assert!(
            format!("{:#}", compare_seeds(&root).unwrap_err()).contains("no seed-S directories")
        );
        write(&root, 0, "laser", &[row(9, 0.5, 0.75, 0.75, None)]);
        write(&root, 0, "grpo", &[row(9, 0.5, 0.75, 0.75, None)]);
        write(&root, 1, "laser", &[row(9, 0.5, 0.75, 0.75, None)]);
        let err = format!("{:#}", compare_seeds(&root).unwrap_err());
        assert!(err.contains("seed-1/grpo"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
