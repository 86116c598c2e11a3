//! CI test of the real-model job: the repository's own `cluster.smollm2.toml` (SmolLM2-135M-Instruct
//! from its Q4_1 GGUF, reasoning-gym problems, the chat template, z_c = `<empty_output>`), cut to 2
//! RL steps of one prompt and short answers through `LASER__` overrides. Checks that the GGUF became
//! a Hugging Face start directory with its chat template, that c_ref was calibrated at the
//! configured z_c, that both steps trained, and that the held-out evaluation saved its samples
//! (the k-curve's input) and `coordinator kcurve` reads them.
//!
//! The 93 MB model is not committed: `scripts/test` fetches it (`scripts/fetch_smollm2.sh`), CI sets
//! LASER_REQUIRE_SMOLLM2=1 so that a missing file fails, and otherwise the test says NOT RUN.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use laser_integration_tests::{
    TOKEN_ENV, bin, bin_dir, metrics_rows, run_bounded, temp_dir, workspace,
};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(1200);

fn gguf_path() -> Option<PathBuf> {
    let path = std::env::var_os("LASER_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/laser/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("LASER_REQUIRE_SMOLLM2").is_some() {
        panic!(
            "LASER_REQUIRE_SMOLLM2 is set but {} does not exist; run scripts/fetch_smollm2.sh",
            path.display()
        );
    }
    eprintln!(
        "NOT RUN: SmolLM2 GGUF not found at {} (run scripts/fetch_smollm2.sh; CI requires it)",
        path.display()
    );
    None
}

/// The real-model job, as small as it still means something: 1 prompt x 4 samples per step,
/// answers cut at 96 tokens (the test checks the path, not learning), 2 held-out problems x 2
/// samples, c_ref on 16 samples (calibration needs some that end with EOS: SmolLM2's answers to
/// these problems are 50-150 tokens long).
const SHORT: &[(&str, &str)] = &[
    ("LASER__ALGORITHM__CALIBRATION_SAMPLES", "16"),
    ("LASER__ALGORITHM__BATCH_PROMPTS", "1"),
    ("LASER__ALGORITHM__GROUP_SIZE", "4"),
    ("LASER__ALGORITHM__MICRO_BATCH_SIZE", "4"),
    ("LASER__ALGORITHM__MAX_RESPONSE_TOKENS", "96"),
    ("LASER__EVAL__PROBLEMS", "2"),
    ("LASER__EVAL__K", "2"),
];

fn run(args: &[&str], run: &Path, gguf: &Path) -> (bool, String) {
    let mut cmd = Command::new(bin("coordinator"));
    cmd.current_dir(workspace())
        .args(args)
        .env_remove(TOKEN_ENV)
        .env("LASER__MODEL__PATH", gguf)
        .env("LASER__RUN__DIR", run)
        .env("LASER__CLUSTER__BIN_DIR", bin_dir());
    for (k, v) in SHORT {
        cmd.env(k, v);
    }
    let (status, out, err) = run_bounded(&mut cmd, LIMIT);
    (status.success(), format!("{out}\n--- stderr ---\n{err}"))
}

#[test]
fn smollm2_job_two_rl_steps_end_to_end() {
    let Some(gguf) = gguf_path() else { return };
    for b in ["learner", "actor", "verifier", "coordinator"] {
        bin(b);
    }
    let dir = temp_dir("smollm2-job");
    let run_dir = dir.join("run");
    let args = [
        "--cluster",
        "cluster.smollm2.toml",
        "--max-steps",
        "2",
        "--no-progress",
    ];
    let (ok, log) = run(&args, &run_dir, &gguf);
    assert!(ok, "the SmolLM2 job failed:\n{log}");
    assert!(log.contains("-> Hugging Face directory"), "{log}");
    assert!(log.contains("warm start: skipped"), "{log}");

    // The start model: a HF directory with SmolLM2's ChatML template.
    let init = run_dir.join("init_model");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(init.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["vocab_size"], 49152, "{config}");
    assert_eq!(config["num_hidden_layers"], 30, "{config}");
    assert!(init.join("model.safetensors").is_file());
    let tok_cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(init.join("tokenizer_config.json")).unwrap())
            .unwrap();
    assert!(
        tok_cfg["chat_template"]
            .as_str()
            .is_some_and(|t| t.contains("<|im_start|>")),
        "{tok_cfg}"
    );

    // c_ref at z_c = <empty_output> on the model's own samples: a log-probability well below
    // that of any token the model uses (the job's comment says about -16).
    let c_ref: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("c_ref.json")).unwrap())
            .unwrap();
    let c = c_ref["c_ref"].as_f64().expect("c_ref");
    assert!((-40.0..-8.0).contains(&c), "c_ref {c}: {c_ref}");

    // Two RL steps trained (each with a loss), and the final checkpoint is a HF directory too.
    let rows = metrics_rows(&run_dir);
    let steps: Vec<u64> = rows.iter().filter_map(|r| r["step"].as_u64()).collect();
    assert!(steps.contains(&0) && steps.contains(&1), "{rows:?}");
    let ckpt = run_dir.join("checkpoints/step-000002");
    assert!(ckpt.join("config.json").is_file(), "{}", ckpt.display());

    // The evaluations kept their samples, and the k-curve reads them (k = 1, 2 here).
    let evals = std::fs::read_to_string(run_dir.join("eval.jsonl")).unwrap();
    assert_eq!(evals.lines().filter(|l| !l.trim().is_empty()).count(), 2);
    assert!(run_dir.join("eval_samples/step-000000.jsonl").is_file());
    let mut cmd = Command::new(bin("coordinator"));
    cmd.args(["kcurve", "--json"]).arg(&run_dir);
    let (status, out, err) = run_bounded(&mut cmd, Duration::from_secs(60));
    assert!(status.success(), "kcurve failed: {out}\n{err}");
    let curve: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let ks: Vec<u64> = curve["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["k"].as_u64().unwrap())
        .collect();
    assert_eq!(ks, vec![1, 2], "{curve}");
    std::fs::remove_dir_all(&dir).ok();
}
