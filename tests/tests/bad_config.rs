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
}
