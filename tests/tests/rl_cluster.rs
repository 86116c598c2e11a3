//! Must-show 1: a local cluster of separate processes (coordinator, 1 learner, 2 verifiers, 2
//! actors) completes 3 RL steps with the tiny fixture model; every actor ends at the new policy
//! version and metrics.jsonl has one row per step with every group counted once.

use std::process::Command;
use std::time::Duration;

use laser_integration_tests::{
    bin, cluster_toml, metrics_rows, run_bounded, temp_dir, tiny_model_dir,
};

#[test]
fn local_cluster_completes_three_steps() {
    let dir = temp_dir("e2e");
    let model = tiny_model_dir(&dir);
    let run = dir.join("run");
    let cfg = cluster_toml(&dir, &model, &run, 3, "");
    // The learner and the actors build before the coordinator starts them.
    for b in ["learner", "actor", "verifier"] {
        bin(b);
    }
    let mut cmd = Command::new(bin("coordinator"));
    cmd.arg("--cluster").arg(&cfg).arg("--no-progress");
    let (status, _out, err) = run_bounded(&mut cmd, Duration::from_secs(600));
    assert!(status.success(), "coordinator failed: {err}");

    let rows = metrics_rows(&run);
    assert_eq!(rows.len(), 3, "one metrics row per step");
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["step"], i as u64);
        assert_eq!(r["groups"], 4, "batch_prompts groups, each once: {r}");
        assert_eq!(r["samples"], 8, "group_size samples per group: {r}");
        assert_eq!(r["redispatched"], 0, "{r}");
    }
    let last = &rows[2];
    let version = last["policy_version"].as_u64().unwrap();
    assert!(version >= 1, "the weights changed: {last}");
    assert_eq!(
        last["actors_at_version"], 2,
        "both actors hold version {version} after the last broadcast: {last}"
    );
    assert!(last["broadcast_bytes"].as_u64().unwrap() > 0, "{last}");
    // Each worker ran as its own process with its own log.
    for w in [
        "learner-0",
        "verifier-0",
        "verifier-1",
        "actor-0",
        "actor-1",
    ] {
        assert!(run.join("logs").join(format!("{w}.log")).exists(), "{w}");
    }
    if std::env::var_os("LASER_IT_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
