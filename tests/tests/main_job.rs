//! CI smoke test of the main job: the repository's own `cluster.toml`, run as the README says, cut
//! to 2 RL steps (`--max-steps 2`) and a few warm-start steps and eval problems through `LASER__`
//! overrides. Checks the run directory a user gets: phases, metrics, evaluations, plots, summary,
//! c_ref and checkpoints; then `--resume` of a finished run, `coordinator eval` on its final
//! checkpoint and `coordinator compare`. Every wait is bounded; nothing asserts a duration.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use laser_integration_tests::{
    TOKEN_ENV, bin, bin_dir, metrics_rows, run_bounded, temp_dir, workspace,
};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(900);

/// A short version of the default job.
const SHORT: &[(&str, &str)] = &[
    // Enough SFT for the policy to end its answers with EOS (calibration needs EOS-terminated
    // samples).
    ("LASER__WARMSTART__STEPS", "30"),
    ("LASER__WARMSTART__BATCH_SIZE", "16"),
    ("LASER__WARMSTART__MICRO_BATCH_SIZE", "16"),
    ("LASER__WARMSTART__WARMUP_STEPS", "5"),
    ("LASER__ALGORITHM__CALIBRATION_SAMPLES", "16"),
    ("LASER__ALGORITHM__BATCH_PROMPTS", "4"),
    ("LASER__ALGORITHM__GROUP_SIZE", "4"),
    ("LASER__ALGORITHM__MAX_RESPONSE_TOKENS", "48"),
    ("LASER__EVAL__PROBLEMS", "4"),
    ("LASER__EVAL__K", "4"),
];

fn coordinator(args: &[&str], run: &Path) -> (bool, String) {
    let mut cmd = Command::new(bin("coordinator"));
    cmd.current_dir(workspace())
        .args(args)
        .env_remove(TOKEN_ENV)
        .env("LASER__RUN__DIR", run)
        .env("LASER__CLUSTER__BIN_DIR", bin_dir());
    for (k, v) in SHORT {
        cmd.env(k, v);
    }
    let (status, out, err) = run_bounded(&mut cmd, LIMIT);
    (status.success(), format!("{out}\n--- stderr ---\n{err}"))
}

fn jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn default_job_two_steps_writes_the_run_directory() {
    for b in ["learner", "actor", "verifier", "coordinator"] {
        bin(b);
    }
    let dir = temp_dir("main-job");
    let run = dir.join("run");
    let args = [
        "--cluster",
        "cluster.toml",
        "--max-steps",
        "2",
        "--no-progress",
    ];
    let (ok, log) = coordinator(&args, &run);
    assert!(ok, "the default job failed:\n{log}");
    for phase in [
        "[1/5] init",
        "[2/5] warm start",
        "[3/5] calibrating c_ref",
        "[4/5] RL",
        "[5/5] report",
    ] {
        assert!(log.contains(phase), "no {phase:?} in the output:\n{log}");
    }
    assert!(
        log.contains("step 2/2 acc"),
        "a plain metrics line per step without a terminal:\n{log}"
    );
    assert!(log.contains("eval step 0: pass@1"), "{log}");

    // Phases and their products.
    let phases: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("phases.json")).unwrap()).unwrap();
    for p in ["init", "warmstart", "calibrate", "rl"] {
        assert!(
            phases[p]["seconds"].as_f64().is_some(),
            "phase {p}: {phases}"
        );
        assert!(
            phases[p]["peak_rss_kb"].as_u64().unwrap() > 1024,
            "phase {p}: {phases}"
        );
    }
    assert_eq!(
        phases["init"]["info"]["params"], 841_216,
        "the default tiny dims"
    );
    for f in [
        "init_model/config.json",
        "init_model/tokenizer.json",
        "sft_model/model.safetensors",
        "sft_data.jsonl",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    assert_eq!(
        jsonl(&run.join("sft_data.jsonl")).len(),
        30 * 16,
        "steps x batch SFT pairs"
    );
    let c_ref: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("c_ref.json")).unwrap()).unwrap();
    assert!(c_ref["c_ref"].as_f64().unwrap().is_finite() && c_ref["c_ref"].as_f64().unwrap() < 0.0);
    // The RL children trained the SFT model.
    let resolved = std::fs::read_to_string(run.join("cluster.resolved.toml")).unwrap();
    assert!(resolved.contains("sft_model"), "{resolved}");

    // Metrics: 2 rows; evaluations at step 0 (the SFT start) and at the end.
    let rows = metrics_rows(&run);
    assert_eq!(
        rows.iter()
            .map(|r| r["step"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 1]
    );
    let evals = jsonl(&run.join("eval.jsonl"));
    assert_eq!(
        evals
            .iter()
            .map(|r| r["step"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 2]
    );
    for e in &evals {
        assert_eq!(
            (
                e["problems"].as_u64(),
                e["k"].as_u64(),
                e["samples"].as_u64()
            ),
            (Some(4), Some(4), Some(16)),
            "{e}"
        );
        let p = e["pass_at_1"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{e}");
    }
    assert!(run.join("checkpoints/step-000002/COMPLETE").exists());

    // Plots and summary.
    for png in [
        "accuracy",
        "self_verify_f1",
        "reward",
        "mse",
        "response_length",
        "throughput",
    ] {
        let bytes = std::fs::read(run.join("plots").join(format!("{png}.png"))).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 1000,
            "{png}.png"
        );
    }
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    for needle in [
        "| parameters | 0.84M |",
        "| c_ref |",
        "| metric | step 0 | step 2 | change |",
        "| pass@1 |",
        "phase warmstart",
        "![accuracy](plots/accuracy.png)",
    ] {
        assert!(
            summary.contains(needle),
            "summary.md lacks {needle:?}:\n{summary}"
        );
    }

    // A finished run: --resume skips every phase and keeps the rows; no --resume refuses.
    let (ok, log) = coordinator(&[&args[..], &["--resume"]].concat(), &run);
    assert!(ok, "{log}");
    assert!(
        log.contains("[1/5] init: done") && log.contains("[4/5] RL: done"),
        "{log}"
    );
    assert_eq!(metrics_rows(&run).len(), 2);
    assert_eq!(jsonl(&run.join("eval.jsonl")).len(), 2);
    let (ok, log) = coordinator(&args, &run);
    assert!(!ok && log.contains("already holds a run"), "{log}");

    // Standalone evaluation of the final checkpoint (c_ref found in the run directory).
    let data = dir.join("problems.jsonl");
    std::fs::write(
        &data,
        "{\"question\": \"Compute 2 + 3.\", \"answer\": \"5\"}\n{\"question\": \"Compute 4 * 2.\", \"answer\": \"8\"}\n",
    )
    .unwrap();
    let ckpt = run.join("checkpoints/step-000002");
    let eval_json = |extra: &[&str]| -> Value {
        let base = [
            "eval",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--k",
            "3",
            "--json",
        ];
        let (ok, out) = coordinator(&[&base[..], extra].concat(), &dir.join("unused"));
        assert!(ok, "{out}");
        let json_text = out.split("\n--- stderr ---").next().unwrap();
        serde_json::from_str(json_text).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let report = eval_json(&[]);
    assert_eq!(
        (report["problems"].as_u64(), report["k"].as_u64()),
        (Some(2), Some(3)),
        "{report}"
    );

    // --repeats: the same problems under other sampling seeds; repeat 0 is the evaluation above.
    let repeated = eval_json(&["--repeats", "3"]);
    let rows = repeated["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{repeated}");
    for key in [
        "pass_at_1",
        "maj_at_k",
        "self_weighted_maj_at_k",
        "verify_f1",
    ] {
        assert_eq!(
            rows[0][key], report[key],
            "repeat 0 is the plain evaluation: {key}"
        );
    }
    let summary = &repeated["summary"];
    assert_eq!(summary["repeats"].as_u64(), Some(3), "{summary}");
    let mean_pass = rows
        .iter()
        .map(|r| r["pass_at_1"].as_f64().unwrap())
        .sum::<f64>()
        / 3.0;
    assert!(
        (summary["metrics"][0]["mean"].as_f64().unwrap() - mean_pass).abs() < 1e-9,
        "{summary}"
    );
    let votes: u64 = ["weighted_ahead", "weighted_tied", "weighted_behind"]
        .iter()
        .map(|k| summary[k].as_u64().unwrap())
        .sum();
    assert_eq!(votes, 3, "{summary}");

    // compare: a side-by-side table of the final evaluations.
    let (ok, out) = coordinator(
        &["compare", run.to_str().unwrap(), run.to_str().unwrap()],
        &dir.join("unused"),
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("self-verification F1") && out.contains("run @2"),
        "{out}"
    );
    if !std::thread::panicking() && std::env::var_os("LASER_IT_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
