//! Local mode: the coordinator runs every worker as a child process on loopback, each with its
//! log in `run_dir/logs/<name>.log`, the cluster token in its environment (never on the command
//! line), and stops them all on exit or Ctrl-C. On Linux a child also dies if the coordinator is
//! killed outright (PR_SET_PDEATHSIG), so no orphan keeps a port or a core.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use laser_proto::rt::{ClusterToken, TOKEN_ENV};
use tokio::process::{Child, Command};

#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub name: String,
    /// Binary name: actor, verifier or learner.
    pub program: String,
    pub args: Vec<String>,
}

pub struct LocalCluster {
    bin_dir: PathBuf,
    log_dir: PathBuf,
    token: ClusterToken,
    children: BTreeMap<String, (ChildSpec, Child)>,
}

impl LocalCluster {
    pub fn new(bin_dir: PathBuf, run_dir: &Path, token: ClusterToken) -> Result<Self> {
        let log_dir = run_dir.join("logs");
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        Ok(Self {
            bin_dir,
            log_dir,
            token,
            children: BTreeMap::new(),
        })
    }

    /// The directory holding the worker binaries: next to the coordinator's own executable.
    pub fn default_bin_dir() -> Result<PathBuf> {
        let exe = std::env::current_exe().context("locating the coordinator executable")?;
        Ok(exe.parent().map(Path::to_path_buf).unwrap_or_default())
    }

    pub fn spawn(&mut self, spec: ChildSpec) -> Result<u32> {
        let program = self.bin_dir.join(&spec.program);
        if !program.exists() {
            bail!(
                "{}: worker binary not found (build it with `cargo build --bins`, or set cluster.bin_dir)",
                program.display()
            );
        }
        let log_path = self.log_dir.join(format!("{}.log", spec.name));
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut cmd = Command::new(&program);
        cmd.args(&spec.args)
            .env(TOKEN_ENV, self.token.expose())
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .with_context(|| log_path.display().to_string())?,
            )
            .stderr(log)
            .kill_on_drop(true);
        #[cfg(target_os = "linux")]
        unsafe {
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec here.
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} ({})", spec.name, program.display()))?;
        let pid = child.id().unwrap_or(0);
        tracing::info!(name = spec.name, pid, log = %log_path.display(), "spawned");
        self.children.insert(spec.name.clone(), (spec, child));
        Ok(pid)
    }

    /// Kills child `name` (if still running) and starts it again with the same arguments.
    pub async fn restart(&mut self, name: &str) -> Result<u32> {
        let (spec, mut child) = self
            .children
            .remove(name)
            .with_context(|| format!("no local worker named {name}"))?;
        let _ = child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        self.spawn(spec)
    }

    /// (name, pid) of every running child.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.children
            .iter()
            .filter_map(|(name, (_, c))| Some((name.clone(), c.id()?)))
            .collect()
    }

    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children.get(name).and_then(|(_, c)| c.id())
    }

    /// Names of children that have exited, with their status.
    pub fn exited(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, (_, child)) in self.children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                out.push((name.clone(), status.to_string()));
            }
        }
        out
    }

    /// SIGTERM to all, then SIGKILL to any still running after `grace`.
    pub async fn stop_all(&mut self, grace: Duration) {
        for (_, child) in self.children.values() {
            if let Some(pid) = child.id() {
                // SAFETY: plain kill(2) on our own child's pid.
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        for (name, (_, child)) in self.children.iter_mut() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if tokio::time::timeout(left, child.wait()).await.is_err() {
                tracing::warn!(name, "did not stop within {grace:?}; killing");
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        self.children.clear();
    }
}
