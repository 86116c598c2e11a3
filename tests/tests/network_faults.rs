//! Issue 27: network faults between real hosts. The coordinator (with the learner), two actors
//! and two verifiers run as separate hosts of a test network (`laser_integration_tests::netns`:
//! network namespaces on one virtual switch), in external mode as the Kubernetes manifests start
//! them. The tests then break links while every socket stays open:
//!
//! - a partition of one actor, then of one verifier (frames dropped, nothing closed): the
//!   coordinator declares the silent worker lost after `worker_timeout_ms`, its groups go to the
//!   others, and after the heal it registers again and gets work;
//! - a lossy, slow link to one actor and one verifier for the whole run (random loss each way and
//!   a rate limit): the run only gets slower.
//!
//! Each ends with every step trained on its own groups exactly once and `coordinator audit` OK.
//! The recovery times are printed (`cargo test -- --nocapture`) for ARCHITECTURE.md's fault table;
//! nothing asserts a duration. Without root, iproute2 or nftables the tests say SKIPPED (CI sets
//! LASER_REQUIRE_FAULT_INJECTION=1 and installs them).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use laser_integration_tests::netns::TestNet;
use laser_integration_tests::{
    Proc, TEST_TOKEN, TOKEN_ENV, assert_audit, assert_data_order, assert_rows, bin,
    laserctl_workers, metrics_rows, skip_or_fail, spawn_announcing, temp_dir, tiny_model_dir,
    wait_for, workspace,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(300);
const BATCH: u64 = 4;
const GROUP: u64 = 4;
const HOSTS: [&str; 5] = ["coord", "actor-a", "actor-b", "verifier-a", "verifier-b"];

/// The five hosts, running a job of `steps` steps.
struct Cluster {
    dir: PathBuf,
    run: PathBuf,
    coordinator_addr: String,
    coordinator: Proc,
    /// Kept alive for the run (killed when dropped).
    workers: Vec<(String, Proc)>,
    /// The job's environment overrides and the cluster.toml path (a restarted coordinator's).
    overrides: Vec<(String, String)>,
    cfg_arg: String,
    // Declared last: dropped after the processes in it.
    net: TestNet,
}

impl Cluster {
    /// `worker_timeout_ms`: how long a silent worker stays alive (heartbeats every 200 ms).
    /// `checkpoint_every`: run.checkpoint_every.
    fn start(
        net: TestNet,
        tag: &str,
        steps: u64,
        worker_timeout_ms: u64,
        checkpoint_every: u64,
    ) -> Self {
        for b in ["coordinator", "learner", "actor", "verifier", "laserctl"] {
            bin(b);
        }
        let dir = temp_dir(tag);
        let model = tiny_model_dir(&dir);
        let run = dir.join("run");
        let cfg = workspace().join("deploy/k8s/overlays/cpu-demo/cluster.toml");
        let coord_ip = net.host("coord").ip;
        // The coordinator has its host to itself, so the manifests' port is free.
        let coordinator_addr = format!("{coord_ip}:50051");
        let overrides: Vec<(String, String)> = [
            ("LASER__MODEL__PATH", model.display().to_string()),
            ("LASER__RUN__DIR", run.display().to_string()),
            ("LASER__RUN__MAX_STEPS", steps.to_string()),
            ("LASER__RUN__CHECKPOINT_EVERY", checkpoint_every.to_string()),
            ("LASER__CLUSTER__LISTEN", "0.0.0.0:50051".into()),
            ("LASER__CLUSTER__ADVERTISE", coordinator_addr.clone()),
            ("LASER__CLUSTER__ACTORS", "2".into()),
            ("LASER__CLUSTER__VERIFIERS", "2".into()),
            ("LASER__CLUSTER__HEARTBEAT_MS", "200".into()),
            (
                "LASER__CLUSTER__WORKER_TIMEOUT_MS",
                worker_timeout_ms.to_string(),
            ),
            ("LASER__CLUSTER__GROUPS_PER_REQUEST", "2".into()),
            ("LASER__ALGORITHM__BATCH_PROMPTS", BATCH.to_string()),
            ("LASER__ALGORITHM__GROUP_SIZE", GROUP.to_string()),
            ("LASER__ALGORITHM__MAX_RESPONSE_TOKENS", "32".into()),
            ("LASER__ALGORITHM__C_REF", "-6.2".into()),
            ("LASER__EVAL__ENABLED", "false".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let start = |host: &str, program: &str, args: &[&str], extra: &[(String, String)]| {
            spawn_on(&net, &logs, &overrides, (host, program, args), extra, "")
        };
        let cfg_arg = cfg.display().to_string();
        let coordinator = start("coord", "coordinator", &coordinator_args(&cfg_arg), &[]);
        let worker_env = |name: &str, host: &str| {
            vec![
                ("LASER_COORDINATOR".to_string(), coordinator_addr.clone()),
                ("LASER_WORKER_NAME".to_string(), name.to_string()),
                ("LASER_LISTEN".to_string(), "0.0.0.0:0".to_string()),
                ("LASER_ADVERTISE".to_string(), net.host(host).ip.to_string()),
                ("LASER_DRAIN_TIMEOUT_S".to_string(), "5".to_string()),
            ]
        };
        let mut workers = Vec::new();
        for (host, program, args) in [
            ("coord", "learner", vec!["serve", "--cluster", &cfg_arg]),
            (
                "verifier-a",
                "verifier",
                vec!["serve", "--cluster", &cfg_arg],
            ),
            (
                "verifier-b",
                "verifier",
                vec!["serve", "--cluster", &cfg_arg],
            ),
            ("actor-a", "actor", vec!["serve", "--cluster", &cfg_arg]),
            ("actor-b", "actor", vec!["serve", "--cluster", &cfg_arg]),
        ] {
            let name = if host == "coord" { "learner-0" } else { host };
            let p = start(host, program, &args, &worker_env(name, host));
            workers.push((name.to_string(), p));
        }
        let cluster = Self {
            dir,
            run,
            coordinator_addr,
            coordinator,
            workers,
            overrides,
            cfg_arg,
            net,
        };
        wait_for("all five workers registered", WAIT, || {
            let alive = cluster.workers_now()?;
            (alive.iter().filter(|w| w["state"] == "alive").count() == 5).then_some(())
        });
        cluster
    }

    /// SIGKILLs the coordinator (the workers keep running), then starts it again with `--resume`
    /// on the same host and address, logging to `coord-coordinator-resumed.log`.
    fn restart_coordinator(&mut self) {
        self.coordinator.kill();
        let mut args = coordinator_args(&self.cfg_arg);
        args.push("--resume");
        self.coordinator = spawn_on(
            &self.net,
            &self.dir.join("logs"),
            &self.overrides,
            ("coord", "coordinator", &args),
            &[],
            "-resumed",
        );
    }

    /// `laserctl workers --json`, run on the coordinator's host.
    fn workers_now(&self) -> Option<Vec<Value>> {
        let mut cmd = self.net.command("coord", &bin("laserctl"));
        cmd.args(["--addr", &self.coordinator_addr, "workers", "--json"])
            .env(TOKEN_ENV, TEST_TOKEN);
        laserctl_workers(cmd)
    }

    /// Whether the coordinator holds an alive registration of worker `name` (a worker that
    /// registers again after being lost gets a new id under the same name), and its groups
    /// completed under that registration.
    fn alive(&self, name: &str) -> Option<(bool, u64)> {
        let ws = self.workers_now()?;
        let live = ws
            .iter()
            .find(|w| w["name"] == name && w["state"] == "alive");
        Some((
            live.is_some(),
            live.and_then(|w| w["completed"].as_u64()).unwrap_or(0),
        ))
    }

    fn steps_done(&self) -> usize {
        metrics_rows(&self.run).len()
    }

    /// Panics if the job has already run all `steps` (a fault meant to land mid-run would not).
    fn still_running(&self, steps: u64, what: &str) {
        assert!(
            (self.steps_done() as u64) < steps,
            "the run ended before {what}: make it longer"
        );
    }

    fn log(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join("logs").join(file)).unwrap_or_default()
    }

    /// Waits for the coordinator to finish the job, then checks that every step trained on its
    /// own groups exactly once and that the ledger's audit passes.
    fn finish(&mut self, steps: u64) {
        let status = self.coordinator.wait_exit(Duration::from_secs(600));
        let log = self.log("coord-coordinator.log") + &self.log("coord-coordinator-resumed.log");
        assert!(status.success(), "coordinator exited with {status}:\n{log}");
        assert_rows(&self.run, steps, BATCH, BATCH * GROUP);
        assert_data_order(&self.run, steps, BATCH);
        assert_audit(&self.run);
    }

    /// Partitions host `name`, and measures (1) how long until the coordinator lists it as not
    /// alive and (2) how long until the step under way when it was cut off completes without it.
    /// Then heals it and measures how long until it is alive again. Returns the three durations.
    fn partition_and_heal(&self, name: &str, steps: u64) -> [Duration; 3] {
        let before = self.steps_done();
        assert!(
            (before as u64) < steps - 2,
            "the run is almost over before {name} could be partitioned"
        );
        let cut = Instant::now();
        self.net.partition(name);
        wait_for(&format!("{name} declared lost"), WAIT, || {
            self.still_running(steps, &format!("{name} was declared lost"));
            (!self.alive(name)?.0).then_some(())
        });
        let lost = cut.elapsed();
        wait_for(&format!("a step completed without {name}"), WAIT, || {
            (self.steps_done() > before).then_some(())
        });
        let stepped = cut.elapsed();
        // Still cut off: the rest of the cluster goes on (another step completes).
        let after = self.steps_done();
        wait_for(
            &format!("another step completed without {name}"),
            WAIT,
            || {
                self.still_running(steps, &format!("{name} was healed"));
                (self.steps_done() > after).then_some(())
            },
        );
        let healed = Instant::now();
        self.net.heal(name);
        wait_for(&format!("{name} alive again after the heal"), WAIT, || {
            self.still_running(steps, &format!("{name} rejoined"));
            self.alive(name)?.0.then_some(())
        });
        let rejoined = healed.elapsed();
        eprintln!(
            "partition of {name}: declared lost after {:.2} s, the step under way completed {:.2} s \
             after the cut; alive again {:.2} s after the heal",
            lost.as_secs_f64(),
            stepped.as_secs_f64(),
            rejoined.as_secs_f64()
        );
        [lost, stepped, rejoined]
    }
}

fn coordinator_args(cfg: &str) -> Vec<&str> {
    vec!["--cluster", cfg, "--no-progress"]
}

/// Starts `program` with `args` on `host` under the job's `overrides` and `extra`, logging to
/// `logs/{host}-{program}{suffix}.log`, and waits for it to listen.
fn spawn_on(
    net: &TestNet,
    logs: &Path,
    overrides: &[(String, String)],
    (host, program, args): (&str, &str, &[&str]),
    extra: &[(String, String)],
    suffix: &str,
) -> Proc {
    let log = logs.join(format!("{host}-{program}{suffix}.log"));
    let mut cmd = net.command(host, &bin(program));
    cmd.args(args)
        .env(TOKEN_ENV, TEST_TOKEN)
        .envs(overrides.iter().chain(extra).map(|(k, v)| (k, v)))
        .stderr(File::create(&log).expect("log file"));
    spawn_announcing(cmd, format!("{program} on {host}"), WAIT).0
}

/// Step times of the run's metrics rows: (median, max), seconds.
fn step_seconds(run: &Path) -> (f64, f64) {
    let mut t: Vec<f64> = metrics_rows(run)
        .iter()
        .filter_map(|r| r["step_seconds"].as_f64())
        .collect();
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[t.len() - 1])
}

#[test]
fn a_partitioned_actor_and_verifier_are_routed_around_and_rejoin() {
    let Some(net) = TestNet::new_or_skip(
        "a_partitioned_actor_and_verifier_are_routed_around_and_rejoin",
        "part",
        &HOSTS,
    ) else {
        return;
    };
    // Long enough for both faults at ~0.1 s per step (debug build, a quiet 2-vCPU box).
    let steps = 300;
    // Short, so a partition is noticed quickly; still ten heartbeats long.
    let mut cluster = Cluster::start(net, "netns-partition", steps, 2000, 2);
    wait_for("the first step", WAIT, || {
        (cluster.steps_done() >= 1).then_some(())
    });

    cluster.partition_and_heal("actor-b", steps);
    // Back in the pool: it generates again.
    wait_for("actor-b generating again after the heal", WAIT, || {
        cluster.still_running(steps, "actor-b generated again");
        (cluster.alive("actor-b")?.1 > 0).then_some(())
    });

    cluster.partition_and_heal("verifier-a", steps);
    cluster.finish(steps);

    let clog = cluster.log("coord-coordinator.log");
    assert!(
        clog.contains("missed their heartbeats"),
        "the coordinator noticed the silent workers by their heartbeats:\n{clog}"
    );
    let (median, max) = step_seconds(&cluster.run);
    eprintln!("partition run: step median {median:.2} s, max {max:.2} s");
    if std::env::var_os("LASER_IT_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&cluster.dir);
    }
}

#[test]
fn a_lossy_slow_link_costs_time_not_work() {
    let Some(net) = TestNet::new_or_skip("a_lossy_slow_link_costs_time_not_work", "lossy", &HOSTS)
    else {
        return;
    };
    // 5% of packets dropped each way and 8 Mbit/s through a 100 ms queue, on one actor's and one
    // verifier's links, for the whole run (weights included).
    for host in ["actor-a", "verifier-a"] {
        if let Err(why) = net.degrade(host, 5, 8_000, 100) {
            skip_or_fail("a_lossy_slow_link_costs_time_not_work", &why);
            return;
        }
    }
    let steps = 6;
    // The deployments' margin for a silent worker, scaled down: loss delays heartbeats (TCP
    // retransmits back off from 200 ms), it must not end them.
    let mut cluster = Cluster::start(net, "netns-lossy", steps, 5000, 2);
    cluster.finish(steps);
    let (median, max) = step_seconds(&cluster.run);
    eprintln!("lossy link run: step median {median:.2} s, max {max:.2} s");
    // Both degraded workers did their share (the ledger names who generated and graded each
    // group), and neither was taken for dead.
    let ledger = std::fs::read_to_string(cluster.run.join("ledger.jsonl")).unwrap();
    assert!(
        ledger.contains(r#""generated_by":"actor-a-"#),
        "actor-a generated groups over its lossy link:\n{ledger}"
    );
    assert!(
        ledger.contains(r#""verifier-a-"#),
        "verifier-a graded groups over its lossy link:\n{ledger}"
    );
    let clog = cluster.log("coord-coordinator.log");
    assert!(
        !clog.contains("missed their heartbeats"),
        "a lossy link is not a dead one: no worker was declared lost:\n{clog}"
    );
    if std::env::var_os("LASER_IT_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&cluster.dir);
    }
}

#[test]
fn a_coordinator_killed_mid_run_resumes_under_the_live_workers() {
    let Some(net) = TestNet::new_or_skip(
        "a_coordinator_killed_mid_run_resumes_under_the_live_workers",
        "coord",
        &HOSTS,
    ) else {
        return;
    };
    let steps = 60;
    // Checkpoints far apart, so the kill lands with the learner (and the actors' weights) several
    // steps past the last checkpoint: the restarted coordinator must roll them back.
    let mut cluster = Cluster::start(net, "netns-coordinator", steps, 2000, 10);
    wait_for("step 13", WAIT, || {
        cluster.still_running(steps, "the coordinator was killed");
        (cluster.steps_done() >= 13).then_some(())
    });
    let pids: Vec<(String, u32)> = cluster
        .workers
        .iter()
        .map(|(n, p)| (n.clone(), p.pid()))
        .collect();
    let killed_at = cluster.steps_done();
    let t0 = Instant::now();
    cluster.restart_coordinator();
    let listening = t0.elapsed();
    wait_for("all five workers registered again", WAIT, || {
        let ws = cluster.workers_now()?;
        (ws.iter().filter(|w| w["state"] == "alive").count() == 5).then_some(())
    });
    let registered = t0.elapsed();
    // The ledger's second Start (at the checkpoint), then a Trained entry after it.
    wait_for("a step trained after the restart", WAIT, || {
        let ledger = std::fs::read_to_string(cluster.run.join("ledger.jsonl")).ok()?;
        let mut starts = ledger.match_indices(r#"{"event":"start""#).skip(1);
        let (resumed, _) = starts.next()?;
        ledger[resumed..]
            .contains(r#"{"event":"trained""#)
            .then_some(())
    });
    let training = t0.elapsed();
    cluster.finish(steps);
    eprintln!(
        "coordinator restart at step {killed_at}: listening {:.2} s, all workers registered again \
         {:.2} s, a step trained {:.2} s after the kill",
        listening.as_secs_f64(),
        registered.as_secs_f64(),
        training.as_secs_f64()
    );
    // The same worker processes throughout: none was restarted to get the run going again.
    for (name, pid) in &pids {
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "{name} (pid {pid}) exited; the workers must outlive a coordinator restart"
        );
    }
    let llog = cluster.log("coord-learner.log");
    assert!(
        llog.contains("restored: training again from this checkpoint"),
        "the live learner was rolled back to the checkpoint:\n{llog}"
    );
    // The ledger shows the second start at the checkpoint and the steps after it redone once.
    let audit = assert_audit(&cluster.run);
    assert!(audit.contains("starts: 2"), "{audit}");
    assert!(!audit.contains("steps redone: 0"), "{audit}");
    if std::env::var_os("LASER_IT_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&cluster.dir);
    }
}
