//! Issue 7, must-show 2: external mode on loopback. The coordinator and every worker are started
//! the way the Kubernetes manifests start them (deploy/k8s): the cpu-demo overlay's cluster.toml
//! (external mode), the same commands (`learner serve --cluster …`, `actor serve --cluster …`,
//! `verifier serve`) and the same environment variables (LASER_COORDINATOR, LASER_WORKER_NAME,
//! LASER_LISTEN, LASER_ADVERTISE with a bare host as `$(POD_IP)` gives, LASER_DRAIN_TIMEOUT_S,
//! LASER_CLUSTER_TOKEN). Only machine-specific keys are overridden (`LASER__…`: model path, run
//! directory, listen address, sizes).
//!
//! They register and complete the run's steps. An actor gets SIGTERM in the middle of a Generate
//! request: it hands its unfinished groups back (ends the stream, deregisters) and exits 0; every
//! step still trains on each of its groups exactly once. At the end every worker gets SIGTERM and
//! exits 0. Every wait is bounded; nothing asserts a duration.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use laser_integration_tests::{
    Proc, TEST_TOKEN, TOKEN_ENV, Throttle, assert_data_order, bin, laserctl_workers, metrics_rows,
    spawn_announcing, temp_dir, tiny_model_dir, wait_for, workspace,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(300);
const EXIT: Duration = Duration::from_secs(60);

/// Starts `program args` with `env` (plus the cluster token), stderr to `log`. Returns the
/// process and the address it announced.
fn start(program: &str, args: &[&str], env: &[(String, String)], log: &Path) -> (Proc, String) {
    let mut cmd = Command::new(bin(program));
    cmd.args(args)
        .env(TOKEN_ENV, TEST_TOKEN)
        .stderr(File::create(log).expect("log file"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    spawn_announcing(cmd, format!("{program} {}", log.display()), WAIT)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `laserctl --addr … workers --json` (token from the environment, as in a pod).
fn workers(addr: &str) -> Option<Vec<Value>> {
    let mut cmd = Command::new(bin("laserctl"));
    cmd.args(["--addr", addr, "workers", "--json"])
        .env(TOKEN_ENV, TEST_TOKEN);
    laserctl_workers(cmd)
}

/// Sends SIGTERM (unless `signalled` already) and checks the process drained and exited 0.
fn assert_clean_exit(p: &mut Proc, log: &Path, signalled: bool) {
    if !signalled {
        p.signal(libc::SIGTERM);
    }
    let status = p.wait_exit(EXIT);
    let text = read(log);
    assert!(
        status.success(),
        "{} exited with {status} after SIGTERM:\n{text}",
        p.name
    );
    assert!(
        text.contains("stopped cleanly"),
        "{} did not report a clean stop:\n{text}",
        p.name
    );
}

#[test]
fn external_workers_register_train_and_leave_cleanly_on_sigterm() {
    for b in ["coordinator", "learner", "actor", "verifier", "laserctl"] {
        bin(b);
    }
    let dir = temp_dir("external");
    let model = tiny_model_dir(&dir);
    let run = dir.join("run");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // The manifests' configuration file, as the ConfigMap mounts it.
    let cfg: PathBuf = workspace().join("deploy/k8s/overlays/cpu-demo/cluster.toml");
    let cfg_arg = cfg.display().to_string();
    let steps = 3u64;
    // The manifests' coordinator listens on 0.0.0.0:50051 behind the `laser-coordinator` Service;
    // here a free loopback port stands in for both.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let coordinator_addr = format!("127.0.0.1:{port}");
    // Machine-specific keys only (the pods take them from the image and their volumes), plus a
    // step long enough for the SIGTERM to land inside a Generate request of 4 groups.
    let overrides = env(&[
        ("LASER__MODEL__PATH", &model.display().to_string()),
        ("LASER__RUN__DIR", &run.display().to_string()),
        ("LASER__RUN__MAX_STEPS", &steps.to_string()),
        ("LASER__RUN__CHECKPOINT_EVERY", "1"),
        ("LASER__CLUSTER__LISTEN", &coordinator_addr),
        ("LASER__CLUSTER__ADVERTISE", &coordinator_addr),
        ("LASER__CLUSTER__ACTORS", "2"),
        ("LASER__CLUSTER__VERIFIERS", "2"),
        ("LASER__CLUSTER__HEARTBEAT_MS", "200"),
        ("LASER__CLUSTER__GROUPS_PER_REQUEST", "4"),
        ("LASER__ALGORITHM__BATCH_PROMPTS", "8"),
        ("LASER__ALGORITHM__GROUP_SIZE", "8"),
        ("LASER__ALGORITHM__MAX_RESPONSE_TOKENS", "128"),
        ("LASER__ALGORITHM__C_REF", "-6.2"),
        ("LASER__EVAL__ENABLED", "false"),
    ]);

    let coord_log = dir.join("coordinator.log");
    let (mut coordinator, addr) = start(
        "coordinator",
        &["--cluster", &cfg_arg, "--no-progress"],
        &overrides,
        &coord_log,
    );

    // What the Deployments and the StatefulSet put in each worker's environment.
    let worker_env = |name: &str| {
        let mut e = overrides.clone();
        e.extend(env(&[
            ("LASER_COORDINATOR", &addr),
            ("LASER_WORKER_NAME", name),
            ("LASER_LISTEN", "127.0.0.1:0"),
            ("LASER_ADVERTISE", "127.0.0.1"),
            ("LASER_DRAIN_TIMEOUT_S", "10"),
        ]));
        e
    };
    let mut workers_up: Vec<(String, Proc, PathBuf)> = Vec::new();
    for (name, program, args) in [
        (
            "laser-learner-0",
            "learner",
            vec!["serve", "--cluster", &cfg_arg],
        ),
        ("laser-verifier-a", "verifier", vec!["serve"]),
        ("laser-verifier-b", "verifier", vec!["serve"]),
        (
            "laser-actor-a",
            "actor",
            vec!["serve", "--cluster", &cfg_arg],
        ),
        (
            "laser-actor-b",
            "actor",
            vec!["serve", "--cluster", &cfg_arg],
        ),
    ] {
        let log = logs.join(format!("{name}.log"));
        let (p, _) = start(program, &args, &worker_env(name), &log);
        workers_up.push((name.to_string(), p, log));
    }

    // Everyone registers under its name.
    wait_for("all five workers registered", WAIT, || {
        let ws = workers(&addr)?;
        let alive = ws.iter().filter(|w| w["state"] == "alive").count();
        (alive == 5).then_some(())
    });

    // SIGTERM actor-b while it holds a Generate request with groups still to stream. On a quiet
    // machine the tiny model streams a request's groups within a few hundred milliseconds, faster
    // than polling the coordinator can see, so actor-b is slowed down: a throttle thread keeps it
    // stopped (SIGSTOP) three quarters of the time. A snapshot that says "midway" is still old
    // when the signal would land, so actor-b is then frozen, what it sent before is given a moment
    // to arrive, and only if the coordinator still counts a partial request does it get SIGTERM;
    // otherwise the throttle resumes and the next request is tried. Every stop is far shorter than
    // the worker timeout, so the coordinator never declares it lost.
    let idx = workers_up
        .iter()
        .position(|(n, _, _)| n == "laser-actor-b")
        .unwrap();
    let (_, mut actor_b, actor_b_log) = workers_up.remove(idx);
    let mut throttle = Throttle::start(actor_b.child.id());
    let midway = |ws: &[Value]| {
        ws.iter().any(|w| {
            w["name"] == "laser-actor-b"
                && w["in_flight"].as_u64().unwrap_or(0) >= 1
                && matches!(w["completed"].as_u64().unwrap_or(0) % 4, 1 | 2)
        })
    };
    wait_for(
        "laser-actor-b frozen midway through a request",
        WAIT,
        || {
            assert!(
                metrics_rows(&run).len() < steps as usize,
                "the run ended before actor-b was caught mid-request"
            );
            if !midway(&workers(&addr)?) {
                return None;
            }
            throttle
                .freeze_if(Duration::from_millis(300), || {
                    workers(&addr).is_some_and(|ws| midway(&ws))
                })
                .then_some(())
        },
    );
    // The SIGTERM waits while the process is stopped; SIGCONT lets it handle it.
    actor_b.signal(libc::SIGTERM);
    actor_b.signal(libc::SIGCONT);
    assert_clean_exit(&mut actor_b, &actor_b_log, true);
    // It deregistered while holding work (the coordinator then cancels its stream, or the actor
    // ends it itself: either way the unstreamed groups go back).
    let text = read(&actor_b_log);
    assert!(
        text.contains("deregistered from") && text.contains("known=true"),
        "{text}"
    );
    assert!(
        text.contains("shutdown signal: draining") && !text.contains("in_flight=0"),
        "actor-b held a request when it got SIGTERM:\n{text}"
    );

    // The run completes on the remaining actor.
    let status = coordinator.wait_exit(Duration::from_secs(600));
    let clog = read(&coord_log);
    assert!(
        status.success(),
        "coordinator exited with {status}:\n{clog}"
    );
    assert!(
        clog.contains("worker deregistered"),
        "the coordinator took actor-b out at once:\n{clog}"
    );

    let rows = metrics_rows(&run);
    let got: Vec<u64> = rows.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(got, (0..steps).collect::<Vec<_>>(), "one row per step");
    for r in &rows {
        assert_eq!(r["groups"], 8, "{r}");
        assert_eq!(r["samples"], 64, "{r}");
    }
    let redispatched: u64 = rows
        .iter()
        .map(|r| r["redispatched"].as_u64().unwrap())
        .sum();
    assert!(
        redispatched >= 1,
        "actor-b's handed-back groups were re-dispatched: {rows:?}"
    );
    // Nothing lost, nothing twice: step s trained on groups s*8 .. s*8+7, each once.
    assert_data_order(&run, steps, 8);

    // The rest shut down on SIGTERM, each cleanly (the coordinator is gone: deregistering fails
    // fast and is only logged).
    for (_, mut p, log) in workers_up {
        assert_clean_exit(&mut p, &log, false);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
