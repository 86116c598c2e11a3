//! Must-show 6: a bad cluster.toml gives one clear error naming the key and a non-zero exit.

use std::process::Command;
use std::time::Duration;

use laser_integration_tests::{bin, run_bounded, temp_dir};

fn run_coordinator(toml: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = temp_dir("badcfg");
    let path = dir.join("cluster.toml");
    std::fs::write(&path, toml).unwrap();
    let mut cmd = Command::new(bin("coordinator"));
    cmd.arg("--cluster").arg(&path).arg("--no-progress");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (status, _out, err) = run_bounded(&mut cmd, Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&dir);
    (status.code().unwrap_or(-1), err)
}

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("error:")).collect()
}

#[test]
fn unknown_key_is_named() {
    let (code, err) = run_coordinator(
        "[model]\npath = \".\"\n[algorithm]\nlearning_rate = 0.1\n",
        &[],
    );
    assert_ne!(code, 0);
    let lines = error_lines(&err);
    assert_eq!(lines.len(), 1, "one error: {err}");
    assert!(
        lines[0].contains("unknown key `algorithm.learning_rate`"),
        "{err}"
    );
    assert!(lines[0].contains("cluster.toml"), "names the file: {err}");
}

#[test]
fn wrong_type_is_named() {
    let (code, err) = run_coordinator("[model]\npath = \".\"\n[run]\nmax_steps = \"three\"\n", &[]);
    assert_ne!(code, 0);
    let lines = error_lines(&err);
    assert_eq!(lines.len(), 1, "one error: {err}");
    assert!(lines[0].contains("`run.max_steps`"), "{err}");
}

#[test]
fn missing_model_path_is_named() {
    let (code, err) = run_coordinator("[run]\nmax_steps = 3\n", &[]);
    assert_ne!(code, 0);
    let lines = error_lines(&err);
    assert_eq!(lines.len(), 1, "one error: {err}");
    assert!(lines[0].contains("`model.path` is required"), "{err}");
}

#[test]
fn bad_environment_override_is_named() {
    let (code, err) = run_coordinator(
        "[model]\npath = \".\"\n",
        &[("LASER__ALGORITHM__LR", "fast")],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("`algorithm.lr`") && err.contains("environment"),
        "{err}"
    );
}

#[test]
fn out_of_range_value_is_named() {
    let (code, err) = run_coordinator("[model]\npath = \".\"\n[algorithm]\ngroup_size = 1\n", &[]);
    assert_ne!(code, 0);
    assert!(err.contains("`algorithm.group_size`"), "{err}");
    let (code, err) = run_coordinator(
        "[model]\npath = \".\"\n[cluster]\nlearner_zero_stage = 2\n",
        &[],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("`cluster.learner_zero_stage`") && err.contains("ZeRO-1"),
        "{err}"
    );
}

#[test]
fn unknown_backend_is_named() {
    let (code, err) = run_coordinator("[model]\npath = \".\"\nbackend = \"gpu\"\n", &[]);
    assert_ne!(code, 0);
    let lines = error_lines(&err);
    assert_eq!(lines.len(), 1, "one error: {err}");
    assert!(lines[0].contains("model.backend"), "{err}");
}

/// A binary built without the `cuda` feature, asked for CUDA, says so and exits non-zero: no panic
/// and no silent CPU fallback. (The test binaries are built with default features.)
#[test]
fn cuda_backend_without_the_cuda_build_is_a_clear_error() {
    let dir = temp_dir("nocuda");
    let cases: [(&str, Vec<&str>); 2] = [
        (
            "learner",
            vec![
                "--backend",
                "cuda",
                "calibrate",
                "--model",
                ".",
                "--data",
                "x.jsonl",
                "--run-dir",
                ".",
            ],
        ),
        (
            "actor",
            vec![
                "--backend",
                "cuda",
                "generate",
                "--model",
                ".",
                "--prompt",
                "1+1",
            ],
        ),
    ];
    for (name, args) in cases {
        let mut cmd = Command::new(bin(name));
        cmd.args(&args).current_dir(&dir);
        let (status, _out, err) = run_bounded(&mut cmd, Duration::from_secs(30));
        assert_ne!(status.code().unwrap_or(-1), 0, "{name}: {err}");
        assert!(
            err.contains("built without CUDA") && err.contains("--features cuda"),
            "{name}: {err}"
        );
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
