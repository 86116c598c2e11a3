//! Helpers for the cross-process tests: build and locate the role binaries, start them on
//! loopback with a cluster token in their environment, read the address they announce, and kill
//! them when the test ends (also when it panics). Everything waits with a deadline. [`netns`]
//! puts them on separate hosts of a virtual network, for the fault tests.

pub mod netns;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use laser_proto::rt::TOKEN_ENV;

/// A token good for tests (the cluster requires at least 16 characters).
pub const TEST_TOKEN: &str = "test-cluster-token-0123456789";

/// The workspace root: from the run-time CARGO_MANIFEST_DIR (cargo sets it for tests), so a test
/// executable reused from a build in another checkout (a shared target directory) still uses this
/// one.
pub fn workspace() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
    Path::new(&dir)
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The directory cargo puts binaries in for this test build (target/<profile>).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

static BUILT: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// The package that owns a binary.
fn package_of(name: &str) -> &'static str {
    match name {
        "coordinator" | "laserctl" => "laser-coordinator",
        "verifier" => "laser-verifier",
        "actor" => "laser-actor",
        "learner" => "laser-learner",
        other => panic!("unknown binary {other}"),
    }
}

/// Path of a role binary, building its package's binaries once per test process (cargo makes
/// this a no-op when they are up to date).
pub fn bin(name: &str) -> PathBuf {
    let package = package_of(name);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if !built.contains(&package) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace())
            .args(["build", "--bins", "--quiet", "-p", package]);
        if bin_dir().file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build --bins");
        assert!(status.success(), "cargo build --bins -p {package} failed");
        built.push(package);
    }
    drop(built);
    let p = bin_dir().join(name);
    assert!(p.exists(), "{} was not built", p.display());
    p
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, sig: i32) {
        signal(self.child.id() as i32, sig);
    }

    /// Waits up to `limit` for exit; kills it and panics if it does not.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            if Instant::now() > end {
                self.kill();
                panic!("{} did not exit within {limit:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `program args` with the test token in its environment; returns it and the address it
/// announced on stdout (`LASER_LISTENING <role> <addr>`), waiting at most `limit`.
pub fn spawn_server(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> (Proc, String) {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env(TOKEN_ENV, TEST_TOKEN)
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    spawn_announcing(cmd, name, limit)
}

/// Starts `cmd` (its arguments, environment and stderr already set) with stdout piped; returns it
/// and the address it announced (`LASER_LISTENING <role> <addr>`), waiting at most `limit`.
pub fn spawn_announcing(mut cmd: Command, name: String, limit: Duration) -> (Proc, String) {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let proc = Proc { child, name };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !sent && line.starts_with(laser_proto::rt::worker::LISTENING_PREFIX) {
                let addr = line
                    .split_whitespace()
                    .nth(2)
                    .unwrap_or_default()
                    .to_string();
                let _ = tx.send(addr);
                sent = true;
            }
        }
    });
    let addr = rx
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{} announced no address within {limit:?}", proc.name));
    (proc, addr)
}

/// Runs a `laserctl … workers --json` command (30 s limit); the worker rows, or None until the
/// coordinator answers.
pub fn laserctl_workers(mut cmd: Command) -> Option<Vec<serde_json::Value>> {
    let (status, out, _) = run_bounded(&mut cmd, Duration::from_secs(30));
    if !status.success() {
        return None;
    }
    serde_json::from_str::<serde_json::Value>(&out)
        .ok()?
        .as_array()
        .cloned()
}

/// For a test that needs root's fault-injection tools (network namespaces, nftables, tc, a tmpfs
/// mount) and cannot have them here: says SKIPPED loudly, or panics with `why` when
/// `LASER_REQUIRE_FAULT_INJECTION=1` (CI, which installs them).
pub fn skip_or_fail(test: &str, why: &str) {
    let required = std::env::var("LASER_REQUIRE_FAULT_INJECTION").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: fault injection is required here (LASER_REQUIRE_FAULT_INJECTION=1): {why}"
    );
    eprintln!("\n==== SKIPPED {test}: {why}; it needs root, iproute2, nftables and tmpfs ====\n");
}

/// A fresh empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "laser-it-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Runs a command to completion with a time limit; returns (status, stdout, stderr).
pub fn run_bounded(
    cmd: &mut Command,
    limit: Duration,
) -> (std::process::ExitStatus, String, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let mut p = Proc {
        child,
        name: format!("{cmd:?}"),
    };
    let status = p.wait_exit(limit);
    (
        status,
        t_out.join().unwrap_or_default(),
        t_err.join().unwrap_or_default(),
    )
}

/// Polls `f` every 100 ms until it returns Some, or panics after `limit` naming `what`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A tiny policy as a Hugging Face directory `dir/tiny-model`: the project's own default model
/// (laser_model::tiny: byte-level BPE tokenizer with `<|verify|>` as z_c, ChatML template, seeded
/// init) at the size of the tiny-qwen2 parity fixture (hidden 64, 2 layers). It is written, not
/// committed, because it is a pure function of its seed. Its outputs are near-uniform random text:
/// rewards are mostly 0, which is fine for runtime tests that count groups, steps and versions.
pub fn tiny_model_dir(dir: &Path) -> PathBuf {
    use laser_model::tiny::{TinyDims, write_default};
    let out = dir.join("tiny-model");
    let dims = TinyDims {
        hidden_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        intermediate_size: 128,
        max_position_embeddings: 256,
    };
    write_default::<laser_model::backend::Cpu>(dims, 7, &out, &Default::default())
        .unwrap_or_else(|e| panic!("writing the tiny model to {}: {e}", out.display()));
    out
}

/// Writes `dir/cluster.toml` for a local cluster on the tiny model: 2 actors, 2 verifiers, 4 prompts
/// of 2 samples per step, 8 response tokens, `steps` steps, a checkpoint every step. c_ref is
/// configured, so no calibration is needed. Tests change it with `LASER__…` overrides.
pub fn cluster_toml(dir: &Path, model: &Path, run: &Path, steps: u64) -> PathBuf {
    let path = dir.join("cluster.toml");
    let text = format!(
        "[model]\npath = {model:?}\n\
         [data]\nmin_digits = 1\nmax_digits = 1\nchain_length = 1\n\
         [algorithm]\ngroup_size = 2\nbatch_prompts = 4\nlr = 1e-4\nc_ref = -6.2\n\
         max_response_tokens = 8\nreasoning_warmup_steps = 1\nself_rewarding_warmup_steps = 1\n\
         [cluster]\nmode = \"local\"\nactors = 2\nverifiers = 2\nheartbeat_ms = 200\n\
         worker_timeout_ms = 4000\nstartup_timeout_s = 120\ngenerate_timeout_s = 30\n\
         train_timeout_s = 300\nweights_timeout_s = 60\nbin_dir = {bins:?}\n\
         [run]\ndir = {run:?}\nmax_steps = {steps}\ncheckpoint_every = 1\nseed = 7\n",
        model = model.display().to_string(),
        run = run.display().to_string(),
        bins = bin_dir().display().to_string(),
    );
    std::fs::write(&path, text).expect("cluster.toml");
    path
}

/// A local-mode coordinator running in the background (its stderr in `dir/coordinator.log`),
/// killed with its workers when dropped.
pub struct LocalRun {
    pub dir: PathBuf,
    pub run: PathBuf,
    pub coordinator: Proc,
}

impl LocalRun {
    /// Builds the role binaries, writes the tiny model and cluster.toml, and starts the
    /// coordinator with `env` overrides (`LASER__SECTION__KEY`).
    pub fn start(tag: &str, steps: u64, env: &[(&str, &str)]) -> Self {
        Self::start_prepared(tag, steps, env, |_| {})
    }

    /// [`LocalRun::start`], calling `prepare(run_dir)` just before the coordinator starts (a test
    /// mounts a small filesystem there).
    pub fn start_prepared(
        tag: &str,
        steps: u64,
        env: &[(&str, &str)],
        prepare: impl FnOnce(&Path),
    ) -> Self {
        for b in ["learner", "actor", "verifier", "laserctl"] {
            bin(b);
        }
        let dir = temp_dir(tag);
        let model = tiny_model_dir(&dir);
        let run = dir.join("run");
        cluster_toml(&dir, &model, &run, steps);
        prepare(&run);
        let coordinator = Self::spawn_coordinator(&dir, env, false);
        Self {
            dir,
            run,
            coordinator,
        }
    }

    fn spawn_coordinator(dir: &Path, env: &[(&str, &str)], resume: bool) -> Proc {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(dir.join("coordinator.log"))
            .expect("coordinator.log");
        let mut cmd = Command::new(bin("coordinator"));
        cmd.arg("--cluster")
            .arg(dir.join("cluster.toml"))
            .arg("--no-progress")
            .env_remove(TOKEN_ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if resume {
            cmd.arg("--resume");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc {
            child: cmd.spawn().expect("starting the coordinator"),
            name: "coordinator".into(),
        }
    }

    /// SIGKILLs the coordinator (its local workers die with it) and starts it again with
    /// `--resume` and `env`, appending to the same log.
    pub fn kill_and_resume(&mut self, env: &[(&str, &str)]) {
        self.coordinator.kill();
        self.coordinator = Self::spawn_coordinator(&self.dir, env, true);
    }

    /// Waits for the coordinator to exit; panics with its log unless it succeeded.
    pub fn finish(&mut self, limit: Duration) {
        let status = self.coordinator.wait_exit(limit);
        let log = std::fs::read_to_string(self.dir.join("coordinator.log")).unwrap_or_default();
        assert!(status.success(), "coordinator exited with {status}:\n{log}");
    }

    pub fn coordinator_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("coordinator.log")).unwrap_or_default()
    }

    pub fn worker_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.run.join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }

    /// `laserctl --run-dir RUN ARGS` (address and token from the run directory).
    pub fn laserctl(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = Command::new(bin("laserctl"));
        cmd.arg("--run-dir")
            .arg(&self.run)
            .args(args)
            .env_remove(TOKEN_ENV);
        let (status, out, err) = run_bounded(&mut cmd, Duration::from_secs(30));
        (status.code().unwrap_or(-1), out, err)
    }

    /// See [`assert_audit`].
    pub fn assert_audit(&self) -> String {
        assert_audit(&self.run)
    }

    /// `laserctl workers --json`, once the coordinator answers.
    pub fn workers(&self) -> Option<Vec<serde_json::Value>> {
        let mut cmd = Command::new(bin("laserctl"));
        cmd.arg("--run-dir")
            .arg(&self.run)
            .args(["workers", "--json"])
            .env_remove(TOKEN_ENV);
        laserctl_workers(cmd)
    }

    /// The pid of local worker `name` (e.g. `actor-1`) of this run, from /proc.
    pub fn worker_pid(&self, name: &str) -> Option<u32> {
        let resolved = self.run.join("cluster.resolved.toml").display().to_string();
        let coordinator = self.coordinator.pid().to_string();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let named = args.windows(2).any(|w| w[0] == "--name" && w[1] == name);
            let ours = args.contains(&resolved)
                || std::fs::read_to_string(entry.path().join("stat"))
                    .ok()
                    .and_then(|s| s.rsplit(") ").next().map(str::to_string))
                    .and_then(|s| s.split_whitespace().nth(1).map(|p| p == coordinator))
                    .unwrap_or(false);
            if named && ours {
                return Some(pid);
            }
        }
        None
    }

    pub fn metrics(&self) -> Vec<serde_json::Value> {
        metrics_rows(&self.run)
    }

    /// The rows of `run/data_order.jsonl`: the group and task ids each step trained on.
    pub fn data_order(&self) -> Vec<serde_json::Value> {
        jsonl(&self.run.join("data_order.jsonl"))
    }

    /// See [`assert_data_order`].
    pub fn assert_data_order(&self, steps: u64, batch: u64) {
        assert_data_order(&self.run, steps, batch)
    }

    /// See [`assert_rows`].
    pub fn assert_rows(&self, steps: u64, groups: u64, samples: u64) {
        assert_rows(&self.run, steps, groups, samples)
    }

    /// After a rollback to the checkpoint at `step`: the step was redone on the same groups and
    /// tasks (`before`: its data-order row before the fault), every learner in `learners`
    /// resumed from that checkpoint, and the coordinator logged the rollback.
    pub fn assert_redone_from_checkpoint(
        &self,
        step: u64,
        before: &serde_json::Value,
        learners: &[&str],
    ) {
        let redone = self
            .data_order()
            .into_iter()
            .find(|r| r["step"] == step)
            .unwrap_or_else(|| panic!("no data-order row for step {step}"));
        assert_eq!(
            &redone, before,
            "step {step} was redone on the same groups and tasks"
        );
        for learner in learners {
            let log = self.worker_log(learner);
            assert!(
                log.lines()
                    .any(|l| l.contains("resumed") && l.contains(&format!("step={step}"))),
                "{learner} resumed from the step-{step} checkpoint:\n{log}"
            );
        }
        assert!(
            self.coordinator_log().contains("redoing from checkpoint"),
            "{}",
            self.coordinator_log()
        );
    }

    /// `run/coordinator_state.json`: the last checkpointed step.
    pub fn checkpointed_step(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.run.join("coordinator_state.json")).ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()?["step"].as_u64()
    }
}

impl Drop for LocalRun {
    fn drop(&mut self) {
        // The workers die with the coordinator (PR_SET_PDEATHSIG); keep the files of a failure.
        self.coordinator.kill();
        if !std::thread::panicking() && std::env::var_os("LASER_IT_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("kept {}", self.dir.display());
        }
    }
}

fn jsonl(p: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", p.display())))
        .collect()
}

/// `coordinator audit RUN`: panics with its report unless the ledger proves that every scheduled
/// group was trained exactly once, in order, fresh enough. Returns the report.
pub fn assert_audit(run: &Path) -> String {
    let mut cmd = Command::new(bin("coordinator"));
    cmd.arg("audit").arg(run);
    let (status, out, err) = run_bounded(&mut cmd, Duration::from_secs(60));
    assert!(status.success(), "coordinator audit: {status}\n{out}{err}");
    assert!(out.contains("audit: OK"), "{out}");
    out
}

/// Every step's groups in `run/data_order.jsonl` are exactly its own (step s: groups s*batch ..
/// (s+1)*batch), each once.
pub fn assert_data_order(run: &Path, steps: u64, batch: u64) {
    let order = jsonl(&run.join("data_order.jsonl"));
    let got: Vec<u64> = order.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(
        got,
        (0..steps).collect::<Vec<_>>(),
        "one data-order row per step"
    );
    for r in &order {
        let s = r["step"].as_u64().unwrap();
        let mut ids: Vec<u64> = r["group_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_u64().unwrap())
            .collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            (s * batch..(s + 1) * batch).collect::<Vec<_>>(),
            "step {s}: every group once, none lost or duplicated"
        );
    }
}

/// One metrics row per step 0..steps, each with `groups` groups of `samples` samples in all.
pub fn assert_rows(run: &Path, steps: u64, groups: u64, samples: u64) {
    let rows = metrics_rows(run);
    let got: Vec<u64> = rows.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(
        got,
        (0..steps).collect::<Vec<_>>(),
        "one metrics row per step"
    );
    for r in &rows {
        assert_eq!(r["groups"], groups, "{r}");
        assert_eq!(r["samples"], samples, "{r}");
    }
}

/// The rows of `run/metrics.jsonl`.
pub fn metrics_rows(run: &Path) -> Vec<serde_json::Value> {
    jsonl(&run.join("metrics.jsonl"))
}

/// Slows process `pid` down by keeping it stopped (SIGSTOP) three quarters of the time, so that a
/// test polling the coordinator can catch it in the middle of a request even on a quiet machine,
/// where the tiny model streams a whole request within a few hundred milliseconds. Every stop is
/// far shorter than any worker timeout. [`Throttle::freeze_if`] then stops it for good once a
/// check made while it is frozen holds.
pub struct Throttle {
    pid: i32,
    /// Held for a whole stop-and-continue cycle, so a freeze never races the throttle; false ends it.
    on: std::sync::Arc<Mutex<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
    frozen: bool,
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a process this test started.
    unsafe {
        libc::kill(pid, sig);
    }
}

impl Throttle {
    pub fn start(pid: u32) -> Self {
        let pid = pid as i32;
        let on = std::sync::Arc::new(Mutex::new(true));
        let thread = {
            let on = std::sync::Arc::clone(&on);
            std::thread::spawn(move || {
                loop {
                    {
                        let on = on.lock().unwrap_or_else(|p| p.into_inner());
                        if !*on {
                            return;
                        }
                        signal(pid, libc::SIGSTOP);
                        std::thread::sleep(Duration::from_millis(150));
                        signal(pid, libc::SIGCONT);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Self {
            pid,
            on,
            thread: Some(thread),
            frozen: false,
        }
    }

    /// Stops the process, gives what it sent `settle` to arrive, and asks `check`. True: the
    /// process stays stopped (the caller signals it next) and the throttle ends. False: it resumes.
    pub fn freeze_if(&mut self, settle: Duration, check: impl FnOnce() -> bool) -> bool {
        let mut on = self.on.lock().unwrap_or_else(|p| p.into_inner());
        signal(self.pid, libc::SIGSTOP);
        std::thread::sleep(settle);
        if check() {
            *on = false;
            drop(on);
            self.frozen = true;
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            return true;
        }
        signal(self.pid, libc::SIGCONT);
        false
    }
}

impl Drop for Throttle {
    /// Ends the throttle; a process it did not leave frozen on purpose runs on.
    fn drop(&mut self) {
        *self.on.lock().unwrap_or_else(|p| p.into_inner()) = false;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if !self.frozen {
            signal(self.pid, libc::SIGCONT);
        }
    }
}
