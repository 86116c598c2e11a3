//! Must-show 1, 2, 3 and 5 on a local cluster of separate processes (coordinator, 1 learner,
//! 2 verifiers, 2 actors) running the tiny model on loopback. Every wait is bounded; nothing
//! asserts a duration. Counts are checked against the data order, which depends only on
//! (seed, step): step s trains on groups s*B .. s*B+B-1, each exactly once.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use laser_integration_tests::{LocalRun, Proc, Throttle, bin, wait_for};
use serde_json::Value;

const RUN_LIMIT: Duration = Duration::from_secs(600);
const WAIT: Duration = Duration::from_secs(300);

/// Slower steps (8 prompts x 4 samples x 48 tokens) so that a fault lands inside a step.
const SLOW: &[(&str, &str)] = &[
    ("LASER__ALGORITHM__BATCH_PROMPTS", "8"),
    ("LASER__ALGORITHM__GROUP_SIZE", "4"),
    ("LASER__ALGORITHM__MAX_RESPONSE_TOKENS", "48"),
];

#[test]
fn local_cluster_completes_three_steps() {
    let mut run = LocalRun::start("e2e", 3, &[]);
    run.finish(RUN_LIMIT);
    let rows = run.metrics();
    run.assert_rows(3, 4, 8);
    run.assert_data_order(3, 4);
    let versions: Vec<u64> = rows
        .iter()
        .map(|r| r["policy_version"].as_u64().unwrap())
        .collect();
    assert_eq!(
        versions,
        [1, 2, 3],
        "one new policy version per applied step"
    );
    for r in &rows {
        assert_eq!(r["redispatched"], 0, "{r}");
        assert_eq!(
            r["actors_at_version"], 2,
            "both actors hold the step's new version after its broadcast: {r}"
        );
        assert!(r["broadcast_bytes"].as_u64().unwrap() > 0, "{r}");
    }
    // TensorBoard: one event file under run_dir/tb, read back, holding every metrics.jsonl
    // field of each step as a train/ scalar (plotted at steps done), and the evaluations.
    let tb: Vec<_> = std::fs::read_dir(run.run.join("tb"))
        .expect("run_dir/tb")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(tb.len(), 1, "{tb:?}");
    assert!(
        tb[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("events.out.tfevents.")
    );
    let scalars = laser_coordinator::tensorboard::read_scalars(&tb[0]).unwrap();
    for r in &rows {
        let done = r["step"].as_i64().unwrap() + 1;
        for (field, v) in r.as_object().unwrap() {
            let Some(want) = v.as_f64() else { continue };
            let tag = format!("train/{field}");
            let got = scalars
                .iter()
                .find(|(s, t, _)| *s == done && *t == tag)
                .unwrap_or_else(|| panic!("no {tag} at step {done}"));
            assert_eq!(got.2, want as f32, "{tag} at step {done}");
        }
    }
    assert!(
        scalars
            .iter()
            .any(|(s, t, _)| *s == 3 && t == "eval/pass_at_1"),
        "the final evaluation is in the event file"
    );
    // Each actor swapped in version 3 (its own log, its own process).
    for a in ["actor-0", "actor-1"] {
        let log = run.worker_log(a);
        assert!(
            log.lines()
                .any(|l| l.contains("weights swapped") && l.contains("version=3")),
            "{a}:\n{log}"
        );
    }
    for w in ["learner-0", "verifier-0", "verifier-1"] {
        assert!(run.worker_log(w).contains("registered with"), "{w}");
    }
    let audit = run.assert_audit();
    assert!(audit.contains("steps trained: 3"), "{audit}");
}

#[test]
fn actor_killed_mid_step_loses_and_duplicates_nothing() {
    // Each Generate call carries 4 groups, so an actor is busy for a good part of each step.
    let env = [
        SLOW,
        &[
            ("LASER__CLUSTER__GROUPS_PER_REQUEST", "4"),
            ("LASER__ALGORITHM__GROUP_SIZE", "8"),
            ("LASER__ALGORITHM__MAX_RESPONSE_TOKENS", "128"),
            // The job's held-out evaluation before step 0 also runs Generate on the actors; the
            // kill must land in a training step, whose groups are what this test counts.
            ("LASER__EVAL__ENABLED", "false"),
        ],
    ]
    .concat();
    let mut run = LocalRun::start("actor-loss", 3, &env);
    // Kill actor-1 in the middle of a Generate call: it has streamed back some of the 4 groups of
    // its request (`completed` counts groups the coordinator received from it), so the rest are
    // still in its hands and must be re-dispatched. On a quiet machine a request is over within a
    // few hundred milliseconds, so actor-1 is throttled (stopped most of the time) to be seen
    // midway. The snapshot that says "midway" is already old when the kill would land, so the
    // actor is frozen first, what it sent before is given time to arrive, and only if the
    // coordinator still counts a partial request is it killed; otherwise it resumes.
    let completed = |run: &LocalRun| {
        run.workers()?
            .iter()
            .find(|w| w["name"] == "actor-1")
            .and_then(|w| w["completed"].as_u64())
    };
    let pid = wait_for("actor-1's pid", WAIT, || run.worker_pid("actor-1"));
    let mut throttle = Throttle::start(pid);
    wait_for(
        "actor-1 frozen midway through a request in step 0 or 1",
        WAIT,
        || {
            assert!(run.metrics().len() < 2, "the run got past step 1 first");
            let ws = run.workers()?;
            let midway = ws.iter().any(|w| {
                w["name"] == "actor-1"
                    && w["in_flight"].as_u64().unwrap_or(0) >= 1
                    && matches!(w["completed"].as_u64().unwrap_or(0) % 4, 1 | 2)
            });
            if !midway {
                return None;
            }
            throttle
                .freeze_if(Duration::from_secs(1), || {
                    completed(&run).is_some_and(|c| c % 4 != 0)
                })
                .then_some(())
        },
    );
    // SAFETY: kill(2) on a process of this test's run.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    run.finish(RUN_LIMIT);

    let rows = run.metrics();
    run.assert_rows(3, 8, 64);
    run.assert_data_order(3, 8);
    let redispatched: u64 = rows
        .iter()
        .map(|r| r["redispatched"].as_u64().unwrap())
        .sum();
    assert!(
        redispatched >= 1,
        "the killed actor's groups were re-dispatched: {rows:?}"
    );
    // The survivor holds the final version, and so does the restarted actor once registered.
    assert!(
        rows[2]["actors_at_version"].as_u64().unwrap() >= 1,
        "an actor holds the final version: {}",
        rows[2]
    );
    assert!(
        run.coordinator_log()
            .contains("local worker exited; restarting it"),
        "the killed actor was restarted:\n{}",
        run.coordinator_log()
    );
    assert!(
        run.coordinator_log().contains("marking the actor lost")
            || run.coordinator_log().contains("actor lost"),
        "{}",
        run.coordinator_log()
    );
    // The ledger shows the re-dispatch, and that it trained nothing twice.
    let audit = run.assert_audit();
    assert!(!audit.contains("re-dispatches: 0,"), "{audit}");
}

#[test]
fn learner_killed_after_a_checkpoint_resumes_at_that_step_with_the_same_data() {
    let env = [SLOW, &[("LASER__RUN__CHECKPOINT_EVERY", "2")]].concat();
    let mut run = LocalRun::start("learner-loss", 4, &env);
    // After the checkpoint at step 2, once step 2's batch has been collected: kill the learner.
    let step2 = wait_for("step 2's batch after the step-2 checkpoint", WAIT, || {
        (run.checkpointed_step() == Some(2))
            .then(|| run.data_order().into_iter().find(|r| r["step"] == 2))
            .flatten()
    });
    let pid = run.worker_pid("learner-0").expect("learner-0's pid");
    // SAFETY: kill(2) on a process of this test's run.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    run.finish(RUN_LIMIT);

    run.assert_rows(4, 8, 32);
    run.assert_data_order(4, 8);
    run.assert_redone_from_checkpoint(2, &step2, &["learner-0"]);
    assert_eq!(run.checkpointed_step(), Some(4));
    let audit = run.assert_audit();
    assert!(audit.contains("restores: 1"), "{audit}");
}

#[test]
fn laserctl_shows_workers_and_live_metrics() {
    let mut run = LocalRun::start("watch", 4, SLOW);
    wait_for("the run to be running with all workers", WAIT, || {
        let (code, out, _) = run.laserctl(&["status", "--json"]);
        let s: Value = serde_json::from_str(&out).ok()?;
        (code == 0 && s["state"] == "running").then_some(())
    });
    // Start watching while the run is still going.
    let rows_before = run.metrics().len();
    let mut cmd = Command::new(bin("laserctl"));
    cmd.arg("--run-dir")
        .arg(&run.run)
        .args(["watch", "--json"])
        .env_remove(laser_integration_tests::TOKEN_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("laserctl watch");
    let stdout = child.stdout.take().unwrap();
    let mut watch = Proc {
        child,
        name: "laserctl watch".into(),
    };
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .map(|l| serde_json::from_str::<Value>(&l).expect("a JSON row"))
            .collect::<Vec<_>>()
    });

    let (code, table, _) = run.laserctl(&["status"]);
    assert_eq!(code, 0);
    assert!(table.contains("state      running"), "{table}");
    assert!(
        table.contains("2 actors, 2 verifiers, 1 learner(s) alive"),
        "{table}"
    );
    let (code, table, _) = run.laserctl(&["workers"]);
    assert_eq!(code, 0);
    for w in [
        "learner-0",
        "verifier-0",
        "verifier-1",
        "actor-0",
        "actor-1",
    ] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(w) && l.contains("alive")),
            "{w}:\n{table}"
        );
    }

    run.finish(RUN_LIMIT);
    watch.wait_exit(Duration::from_secs(60));
    let streamed = reader.join().unwrap();
    let recorded = run.metrics();
    assert_eq!(recorded.len(), 4);
    assert!(
        rows_before < recorded.len(),
        "the watch began before the last step"
    );
    let steps: Vec<u64> = streamed
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [0, 1, 2, 3], "every step streamed once, in order");
    for (s, r) in streamed.iter().zip(&recorded) {
        assert_eq!(s["policy_version"], r["policy_version"]);
        assert_eq!(s["samples"], r["samples"]);
        assert_eq!(
            s["unix_time"], r["unix_time"],
            "the same row as metrics.jsonl"
        );
    }
}

/// Issue 27: a verifier that hangs (SIGSTOP: its sockets stay open, it answers nothing) while a
/// step is being graded. Its heartbeats stop, so it is marked lost after `worker_timeout_ms` and
/// its groups are graded by the other verifier; once resumed it registers again. Nothing is lost
/// or trained twice (the audit), and the run does not wait for the Grade deadline.
#[test]
fn a_hung_verifier_is_routed_around_and_rejoins() {
    let env = [
        SLOW,
        &[
            ("LASER__CLUSTER__WORKER_TIMEOUT_MS", "2000"),
            ("LASER__EVAL__ENABLED", "false"),
        ],
    ]
    .concat();
    let mut run = LocalRun::start("verifier-hang", 4, &env);
    let pid = wait_for("verifier-0's pid", WAIT, || run.worker_pid("verifier-0"));
    wait_for("step 0 done", WAIT, || {
        (!run.metrics().is_empty()).then_some(())
    });
    // SAFETY: signals to a process of this test's run.
    unsafe {
        libc::kill(pid as i32, libc::SIGSTOP);
    }
    std::thread::sleep(Duration::from_secs(6));
    unsafe {
        libc::kill(pid as i32, libc::SIGCONT);
    }
    run.finish(RUN_LIMIT);

    let rows = run.metrics();
    run.assert_rows(4, 8, 32);
    run.assert_data_order(4, 8);
    let log = run.coordinator_log();
    assert!(log.contains("missed their heartbeats"), "{log}");
    let seconds: Vec<f64> = rows
        .iter()
        .map(|r| r["step_seconds"].as_f64().unwrap())
        .collect();
    eprintln!("step seconds with a 6 s verifier hang after step 0: {seconds:?}");
    run.assert_audit();
}

/// Issue 27: every actor killed at once, mid-run. Local mode restarts dead actors and verifiers
/// (`cluster.worker_restarts`), so the run goes on instead of waiting out the "no actor alive"
/// deadline and failing; the ledger shows each group trained once.
#[test]
fn every_actor_killed_at_once_is_restarted_and_the_run_completes() {
    let env = [SLOW, &[("LASER__EVAL__ENABLED", "false")]].concat();
    let mut run = LocalRun::start("all-actors", 4, &env);
    wait_for("step 0 done", WAIT, || {
        (!run.metrics().is_empty()).then_some(())
    });
    for a in ["actor-0", "actor-1"] {
        let pid = run.worker_pid(a).expect("actor pid");
        // SAFETY: kill(2) on a process of this test's run.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
    run.finish(RUN_LIMIT);
    run.assert_rows(4, 8, 32);
    run.assert_data_order(4, 8);
    let log = run.coordinator_log();
    assert!(log.contains("local worker exited; restarting it"), "{log}");
    assert!(
        run.worker_log("actor-0").matches("registered with").count() >= 2,
        "actor-0 registered again:\n{}",
        run.worker_log("actor-0")
    );
    run.assert_audit();
}

/// Issue 27: the coordinator killed outright under a running job (its local workers die with it)
/// and started again with `--resume`: RL continues from the last checkpoint on the same data, and
/// the ledger, which spans both lives, proves every step trained once.
#[test]
fn a_coordinator_killed_mid_run_resumes_and_trains_each_step_once() {
    let env = [
        SLOW,
        &[
            ("LASER__RUN__CHECKPOINT_EVERY", "2"),
            ("LASER__EVAL__ENABLED", "false"),
        ],
    ]
    .concat();
    let mut run = LocalRun::start("coordinator-restart", 5, &env);
    wait_for("the step-2 checkpoint and step 2's batch", WAIT, || {
        (run.checkpointed_step() == Some(2) && run.data_order().iter().any(|r| r["step"] == 2))
            .then_some(())
    });
    run.kill_and_resume(&env);
    run.finish(RUN_LIMIT);
    run.assert_rows(5, 8, 32);
    run.assert_data_order(5, 8);
    let audit = run.assert_audit();
    assert!(audit.contains("starts: 2"), "{audit}");
}

/// Issue 28: a run started from a parquet file in verl's layout (the committed fixture that
/// pandas + pyarrow wrote with verl's gsm8k recipe): the prompts are the file's chat messages,
/// the gold its `reward_model.ground_truth`, and the held-out evaluation reads the eval split.
#[test]
fn a_run_starts_from_a_verl_parquet_file() {
    let data = laser_integration_tests::workspace().join("data");
    let train = data.join("reasoning_gym_arithmetic.verl.parquet");
    let eval = data.join("reasoning_gym_arithmetic_eval.verl.parquet");
    let (train, eval) = (train.display().to_string(), eval.display().to_string());
    let env = [
        ("LASER__DATA__SOURCE", "parquet"),
        ("LASER__DATA__PATH", train.as_str()),
        ("LASER__DATA__EVAL_PATH", eval.as_str()),
        ("LASER__EVAL__PROBLEMS", "4"),
        ("LASER__EVAL__K", "2"),
    ];
    let mut run = LocalRun::start("verl-parquet", 2, &env);
    run.finish(RUN_LIMIT);
    run.assert_rows(2, 4, 8);
    run.assert_data_order(2, 4);
    // verl's `extra_info.index` is the task id, so the data order names rows of the file.
    for row in run.data_order() {
        for id in row["task_ids"].as_array().unwrap() {
            let index: usize = id.as_str().unwrap().parse().expect("a row index");
            assert!(index < 600, "{row}");
        }
    }
    let evals = std::fs::read_to_string(run.run.join("eval.jsonl")).expect("eval.jsonl");
    assert!(!evals.trim().is_empty(), "the held-out split was evaluated");
    run.assert_audit();
}

/// `GET path` on `addr` over plain HTTP/1.1 with a deadline: (status line, body).
fn http_get(addr: &str, path: &str) -> Option<(String, String)> {
    use std::io::{Read, Write};
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// Issue 28: the coordinator serves Prometheus `/metrics` while the run goes on.
#[test]
fn prometheus_metrics_are_served_while_the_run_goes_on() {
    let env = [
        SLOW,
        &[
            ("LASER__CLUSTER__METRICS_LISTEN", "127.0.0.1:0"),
            ("LASER__RUN__MAX_STEPS", "6"),
        ],
    ]
    .concat();
    let mut run = LocalRun::start("prometheus", 6, &env);
    let addr = wait_for("run_dir/metrics.addr", WAIT, || {
        std::fs::read_to_string(run.run.join("metrics.addr"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    });
    // Scraped mid-run: at least one step done, the run not over.
    let body = wait_for("a scrape showing a completed step", WAIT, || {
        let (status, body) = http_get(&addr, "/metrics")?;
        assert!(status.contains("200"), "{status}");
        (body.contains("laser_steps_total ") && !body.contains("laser_steps_total 0\n"))
            .then_some(body)
    });
    for needle in [
        "laser_step_accuracy ",
        "laser_step_gen_tokens_per_sec ",
        "laser_step_staleness_mean ",
        "laser_step_duration_seconds_bucket{le=",
        "laser_weight_broadcast_seconds_count ",
        "laser_verifier_grade_call_seconds_bucket{le=",
        "laser_actor_generate_call_seconds_count ",
        "laser_verifier_results_total{status=\"",
        "laser_queue_depth{queue=\"generate\"} ",
        "laser_workers{role=\"actor\",state=\"alive\"} 2",
        "laser_workers{role=\"verifier\",state=\"alive\"} 2",
        "laser_workers{role=\"learner\",state=\"alive\"} 1",
        "laser_run_max_steps 6",
        "# EOF",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in:\n{body}");
    }
    let (status, _) = http_get(&addr, "/nothing").expect("an answer");
    assert!(status.contains("404"), "{status}");
    run.finish(RUN_LIMIT);
    run.assert_rows(6, 8, 32);
}

/// Runs 2 steps from the verl parquet fixture, its data_source graded by an external reward
/// that answers 3 items per process, then does `misbehave` on its 4th (its ids count from 0).
/// Checks that the run completed, that some but not all samples were marked in
/// `reward_errors`, and that the audit passes; returns the run for further checks.
fn run_with_a_failing_reward(tag: &str, misbehave: &str, timeout_ms: u64) -> LocalRun {
    let train = laser_integration_tests::workspace()
        .join("data/reasoning_gym_arithmetic.verl.parquet")
        .display()
        .to_string();
    let env = [
        ("LASER__DATA__SOURCE", "parquet"),
        ("LASER__DATA__PATH", train.as_str()),
        ("LASER__EVAL__ENABLED", "false"),
    ];
    let reward = format!(
        r#"
import json, sys, time
for line in sys.stdin:
    r = json.loads(line)
    if r["id"] == 3:
        {misbehave}
    print(json.dumps({{"id": r["id"], "reward": 1.0 if r["gold"] in r["response"] else 0.0}}), flush=True)
"#
    );
    let section = format!(
        "\n[rewards]\n[[rewards.routes]]\ndata_source = \"reasoning_gym/basic_arithmetic\"\n\
         kind = \"external\"\ncommand = [\"python3\", \"-c\", {}]\ntimeout_ms = {timeout_ms}\n",
        serde_json::to_string(&reward).unwrap()
    );
    let mut run = LocalRun::start_prepared(tag, 2, &env, |run_dir| {
        use std::io::Write;
        let toml = run_dir.parent().unwrap().join("cluster.toml");
        let mut f = std::fs::OpenOptions::new().append(true).open(toml).unwrap();
        f.write_all(section.as_bytes()).unwrap();
    });
    run.finish(RUN_LIMIT);
    run.assert_rows(2, 4, 8);
    let rows = run.metrics();
    let total = |field: &str| -> u64 { rows.iter().map(|r| r[field].as_u64().unwrap_or(0)).sum() };
    let (errors, samples) = (total("reward_errors"), total("samples"));
    assert!(
        errors > 0 && errors < samples,
        "some samples (not all) were marked: {errors} of {samples}"
    );
    run.assert_audit();
    run
}

/// Issue 28: a run whose external reward crashes now and then: the steps complete, the failed
/// samples are counted in `reward_errors` (reward 0, nothing lost), and the reward is restarted.
#[test]
fn a_crashing_external_reward_marks_its_samples_and_the_run_completes() {
    run_with_a_failing_reward(
        "reward-crash",
        r#"print("crashing on purpose", file=sys.stderr, flush=True); sys.exit(3)"#,
        20_000,
    );
}

/// Issue 28: a run whose external reward hangs on some items: each hang is cut at the route's
/// deadline, those samples are marked in `reward_errors`, the steps complete, nothing is lost.
#[test]
fn a_hanging_external_reward_is_cut_at_its_deadline_and_the_run_completes() {
    let run = run_with_a_failing_reward("reward-hang", "time.sleep(3600)", 1500);
    let log = std::fs::read_to_string(run.dir.join("coordinator.log")).unwrap_or_default();
    assert!(
        log.contains("no answer within 1500 ms"),
        "the coordinator logged each marked sample with its error:\n{log}"
    );
}
