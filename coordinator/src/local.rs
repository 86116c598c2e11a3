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
    /// Extra environment variables (e.g. RAYON_NUM_THREADS from `cluster.*_threads`).
    pub env: Vec<(String, String)>,
}

/// The environment that sizes a worker's compute thread pool: `threads` = 0 leaves it at rayon's
/// default (one thread per core).
pub fn threads_env(threads: u32) -> Vec<(String, String)> {
    if threads == 0 {
        Vec::new()
    } else {
        vec![("RAYON_NUM_THREADS".into(), threads.to_string())]
    }
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
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `cluster.learner_threads` / `actor_threads` reach the child as RAYON_NUM_THREADS, and 0
    /// leaves the child's environment alone.
    #[tokio::test]
    async fn thread_counts_reach_the_child_environment() {
        assert!(threads_env(0).is_empty());
        let run_dir = std::env::temp_dir().join(format!("laser-local-env-{}", std::process::id()));
        let mut local =
            LocalCluster::new(PathBuf::from("/bin"), &run_dir, ClusterToken::generate()).unwrap();
        local
            .spawn(ChildSpec {
                name: "probe".into(),
                program: "sh".into(),
                args: vec!["-c".into(), "echo threads=$RAYON_NUM_THREADS".into()],
                env: threads_env(3),
            })
            .unwrap();
        let (_, mut child) = local.children.remove("probe").unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("sh exits")
            .unwrap();
        assert!(status.success());
        let log = std::fs::read_to_string(run_dir.join("logs/probe.log")).unwrap();
        std::fs::remove_dir_all(&run_dir).ok();
        assert_eq!(log.trim(), "threads=3");
    }
}
