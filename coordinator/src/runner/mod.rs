//! The run loop: start (or find) the workers, then for each step collect a verified batch, train
//! it (`Learner.TrainStep`), broadcast the new weights (`Actor.UpdateWeights`, which makes every
//! actor pull `Learner.StreamWeights`), write the metrics row, and checkpoint on schedule.
//!
//! Sync mode trains on rollouts of the current weights. Async mode starts collecting step k+1
//! before step k is trained, so rollouts may be up to `max_off_policy_steps` versions old; older
//! ones are dropped and counted. A lost learner (local mode: restarted here; external mode: waited
//! for) brings the run back to the last checkpoint: the same steps are redone with the same data.

mod evaluation;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use laser_config::{ClusterConfig, ClusterMode, RESOLVED_FILE};
use laser_proto::rt::{
    ClientOptions, ClusterToken, RoleServer, ServerOptions, request, with_deadline,
};
use laser_proto::v1::{
    CheckpointRequest, DataCursor, DataParallel, RestoreRequest, Role, RolloutGroup,
    SamplingConfig, StepMetrics, TrainStepRequest, TrainStepResponse, WeightPlaneCaps,
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::collect::{CollectPlan, Collected, collect};
use crate::data::{PromptSource, append_data_order, step_groups, truncate_data_order};
use crate::fault::{LearnerLost, is_transport_failure};
use crate::heldout_eval::{self, EvalSet};
use crate::ledger::{Entry, Ledger};
use crate::local::{ChildSpec, LocalCluster, threads_env};
use crate::metrics::{MetricsLog, rollout_stats};
use crate::registry::{RunInfo, Shared};
use crate::service::{CoordinatorService, MonitorService};

/// `run_dir/coordinator_state.json`: the last checkpointed point of the run.
pub const STATE_FILE: &str = "coordinator_state.json";
/// `run_dir/coordinator.addr`: where laserctl finds the coordinator.
pub const ADDR_FILE: &str = "coordinator.addr";
/// Where `/metrics` listens (cluster.metrics_listen), for scrapers and tests.
pub const METRICS_ADDR_FILE: &str = "metrics.addr";
/// `run_dir/token`: the generated token of a local run (mode 0600), for laserctl.
pub const TOKEN_FILE: &str = "token";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// Steps completed and covered by the learner's checkpoint.
    pub step: u64,
    pub policy_version: u64,
}

impl RunState {
    pub fn read(run_dir: &Path) -> Result<Option<Self>> {
        let p = run_dir.join(STATE_FILE);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(
                serde_json::from_slice(&b).with_context(|| p.display().to_string())?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| p.display().to_string()),
        }
    }

    fn write(&self, run_dir: &Path) -> Result<()> {
        let p = run_dir.join(STATE_FILE);
        let tmp = run_dir.join(format!("{STATE_FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| tmp.display().to_string())?;
        std::fs::rename(&tmp, &p).with_context(|| p.display().to_string())
    }
}

pub struct Runner {
    cfg: ClusterConfig,
    run_dir: PathBuf,
    resolved: PathBuf,
    shared: Arc<Shared>,
    client: ClientOptions,
    local: Option<LocalCluster>,
    source: PromptSource,
    metrics: MetricsLog,
    ledger: Ledger,
    /// `run_dir/tb` event files, opened when the RL loop (re)starts.
    tensorboard: Option<crate::tensorboard::EventWriter>,
    addr: String,
    learner_restarts: u32,
    /// Restarts so far of each local actor and verifier (cluster.worker_restarts each).
    worker_restarts: std::collections::BTreeMap<String, u32>,
    /// Set once the workers first registered: from then on a local actor or verifier that dies
    /// is restarted instead of failing the start-up.
    supervising: bool,
    show_progress: bool,
    with_learner: bool,
    eval_set: Option<EvalSet>,
    /// Largest VmHWM seen per local worker, KiB.
    peak_rss_kb: std::collections::BTreeMap<String, u64>,
    /// The learner ranks' gradient collective: the last choice logged, and why an NCCL step
    /// failed (the run then stays on the gRPC ring).
    collective: std::sync::Mutex<CollectiveChoice>,
}

#[derive(Debug, Default)]
struct CollectiveChoice {
    last: Option<(laser_proto::plane::Transport, String)>,
    nccl_failure: Option<String>,
}

/// How [`Runner::launch`] starts.
#[derive(Debug, Clone, Copy)]
pub struct StartOptions {
    /// `Some(resume)`: the run directory must (resume) or must not (fresh) hold a run;
    /// `None`: no check (a scratch directory, e.g. `coordinator eval`).
    pub resume: Option<bool>,
    /// Start a learner (local mode) and wait for one; off for evaluation-only clusters.
    pub learner: bool,
    pub show_progress: bool,
    /// Print `LASER_LISTENING coordinator ADDR` on stdout (off where stdout is a report).
    pub announce: bool,
}

/// Peak resident set size (VmHWM) of process `pid` in KiB, from /proc (Linux).
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.001))
}

impl Runner {
    /// Prepares the run directory, token and coordinator server; spawns local workers.
    pub async fn start(
        cfg: ClusterConfig,
        resume: bool,
        show_progress: bool,
    ) -> Result<(
        Self,
        tokio::task::JoinHandle<()>,
        tokio::sync::watch::Sender<bool>,
    )> {
        Self::launch(
            cfg,
            StartOptions {
                resume: Some(resume),
                learner: true,
                show_progress,
                announce: true,
            },
        )
        .await
    }

    /// Whether `run_dir` holds an RL run (`--resume` continues it).
    pub fn has_run(run_dir: &Path) -> bool {
        run_dir.join(STATE_FILE).exists() || run_dir.join(crate::metrics::METRICS_FILE).exists()
    }

    /// [`Runner::start`] with options.
    pub async fn launch(
        cfg: ClusterConfig,
        opts: StartOptions,
    ) -> Result<(
        Self,
        tokio::task::JoinHandle<()>,
        tokio::sync::watch::Sender<bool>,
    )> {
        let run_dir = cfg.run.dir.clone();
        let has_run = Self::has_run(&run_dir);
        if let Some(resume) = opts.resume {
            if has_run && !resume {
                bail!(
                    "run.dir {:?} already holds a run; pass --resume to continue it, or set another run.dir",
                    run_dir.display().to_string()
                );
            }
            if resume && !has_run {
                bail!(
                    "--resume: {:?} holds no run to continue",
                    run_dir.display().to_string()
                );
            }
        }
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("creating run.dir {}", run_dir.display()))?;
        let resolved = run_dir.join(RESOLVED_FILE);
        std::fs::write(&resolved, cfg.to_toml()).with_context(|| resolved.display().to_string())?;

        let token = match (&cfg.cluster.token, cfg.cluster.mode) {
            (Some(src), _) => ClusterToken::load(src).context("cluster.token")?,
            (None, ClusterMode::Local) => {
                let t = ClusterToken::generate();
                write_private(&run_dir.join(TOKEN_FILE), t.expose())?;
                t
            }
            (None, ClusterMode::External) => bail!("`cluster.token` is required in external mode"),
        };
        let max_bytes = cfg.max_message_bytes();
        let mut sopts = ServerOptions::new(token.clone());
        sopts.max_message_bytes = max_bytes;
        sopts.tls = cfg.cluster.tls.clone();
        let mut client = ClientOptions::new(token.clone());
        client.max_message_bytes = max_bytes;
        client.connect_timeout = secs(cfg.cluster.control_timeout_s);
        client.tls_ca = cfg.cluster.tls.as_ref().and_then(|t| t.ca.clone());

        let listener = TcpListener::bind(&cfg.cluster.listen)
            .await
            .with_context(|| format!("cluster.listen = {:?}: bind", cfg.cluster.listen))?;
        let bound = listener.local_addr()?;
        let addr = cfg
            .cluster
            .advertise
            .clone()
            .unwrap_or_else(|| bound.to_string());
        std::fs::write(run_dir.join(ADDR_FILE), format!("{addr}\n"))?;

        let shared = Arc::new(Shared::new(
            RunInfo {
                run_dir: run_dir.display().to_string(),
                state: "starting".into(),
                step: 0,
                max_steps: cfg.run.max_steps,
                policy_version: 0,
                mode: format!("{:?}", cfg.cluster.mode).to_lowercase(),
                async_mode: cfg.cluster.async_mode,
            },
            Duration::from_millis(cfg.cluster.heartbeat_ms.max(10)),
        ));
        let server = RoleServer::new(sopts.clone())
            .service(sopts.coordinator(CoordinatorService {
                shared: shared.clone(),
            }))
            .service(sopts.monitor(MonitorService {
                shared: shared.clone(),
            }));
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let server_task = tokio::spawn(async move {
            let stop = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            if let Err(e) = server.serve(listener, stop).await {
                tracing::error!("coordinator server: {e}");
            }
        });
        if let Some(listen) = &cfg.cluster.metrics_listen {
            let metrics = TcpListener::bind(listen)
                .await
                .with_context(|| format!("cluster.metrics_listen = {listen:?}: bind"))?;
            let bound = metrics.local_addr()?;
            std::fs::write(run_dir.join(METRICS_ADDR_FILE), format!("{bound}\n"))?;
            tracing::info!(%bound, "Prometheus metrics at http://{bound}/metrics");
            let (shared, mut stop) = (shared.clone(), stop_tx.subscribe());
            tokio::spawn(async move {
                let stop = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = crate::telemetry::serve(metrics, shared, stop).await {
                    tracing::error!("metrics server: {e}");
                }
            });
        }
        tracing::info!(%addr, run_dir = %run_dir.display(), "coordinator listening");
        if opts.announce {
            println!(
                "{} coordinator {addr}",
                laser_proto::rt::worker::LISTENING_PREFIX
            );
        }

        // Heartbeat monitor: silent workers become lost, which wakes the scheduler.
        {
            let shared = shared.clone();
            let timeout = Duration::from_millis(cfg.cluster.worker_timeout_ms);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(shared.heartbeat_interval).await;
                    let lost = shared.registry().expire(timeout);
                    if !lost.is_empty() {
                        tracing::warn!(?lost, "workers missed their heartbeats");
                        shared.membership.notify_waiters();
                    }
                }
            });
        }

        let local = match cfg.cluster.mode {
            ClusterMode::Local => {
                let bin_dir = match &cfg.cluster.bin_dir {
                    Some(d) => d.clone(),
                    None => LocalCluster::default_bin_dir()?,
                };
                Some(LocalCluster::new(bin_dir, &run_dir, token.clone())?)
            }
            ClusterMode::External => None,
        };
        let source = PromptSource::from_config(&cfg)?;
        let eval_set = EvalSet::from_config(&cfg)?;
        let metrics = MetricsLog::new(&run_dir);
        let ledger = Ledger::new(&run_dir);
        let mut runner = Self {
            cfg,
            run_dir,
            resolved,
            shared,
            client,
            local,
            source,
            metrics,
            ledger,
            tensorboard: None,
            addr,
            learner_restarts: 0,
            worker_restarts: Default::default(),
            supervising: false,
            show_progress: opts.show_progress,
            with_learner: opts.learner,
            eval_set,
            peak_rss_kb: Default::default(),
            collective: Default::default(),
        };
        runner.spawn_local_workers()?;
        Ok((runner, server_task, stop_tx))
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn spawn_local_workers(&mut self) -> Result<()> {
        let Some(local) = self.local.as_mut() else {
            return Ok(());
        };
        let common = |name: &str| {
            vec![
                "serve".to_string(),
                "--coordinator".into(),
                self.addr.clone(),
                "--name".into(),
                name.to_string(),
                "--max-message-mb".into(),
                self.cfg.cluster.max_message_mb.to_string(),
            ]
        };
        if self.with_learner {
            for rank in 0..self.cfg.cluster.learner_ranks {
                let name = format!("learner-{rank}");
                let mut learner_args = common(&name);
                learner_args.extend([
                    "--cluster".into(),
                    self.resolved.display().to_string(),
                    "--rank".into(),
                    rank.to_string(),
                ]);
                local.spawn(ChildSpec {
                    name,
                    program: "learner".into(),
                    args: learner_args,
                    env: threads_env(self.cfg.cluster.learner_threads),
                })?;
            }
        }
        for i in 0..self.cfg.cluster.verifiers {
            let name = format!("verifier-{i}");
            local.spawn(ChildSpec {
                name: name.clone(),
                program: "verifier".into(),
                // The [rewards] section: which reward grades each data_source.
                args: [
                    common(&name),
                    vec!["--cluster".into(), self.resolved.display().to_string()],
                ]
                .concat(),
                env: Vec::new(),
            })?;
        }
        for i in 0..self.cfg.cluster.actors {
            let name = format!("actor-{i}");
            let mut args = common(&name);
            args.extend(["--cluster".into(), self.resolved.display().to_string()]);
            local.spawn(ChildSpec {
                name: name.clone(),
                program: "actor".into(),
                args,
                env: threads_env(self.cfg.cluster.actor_threads),
            })?;
        }
        Ok(())
    }

    /// Local mode: starts again every actor and verifier child that has exited (killed, crashed),
    /// each at most `cluster.worker_restarts` times; its work was already handed to the others
    /// when it was marked lost, and the new process registers like a new worker. Learners are
    /// left to the learner-loss path ([`Runner::recover`]), which restarts every rank.
    async fn revive_local_workers(&mut self) -> Result<()> {
        let Some(local) = self.local.as_mut() else {
            return Ok(());
        };
        for (name, status) in local.exited() {
            if name.starts_with("learner-") {
                continue;
            }
            let n = self.worker_restarts.entry(name.clone()).or_default();
            *n += 1;
            if *n > self.cfg.cluster.worker_restarts {
                bail!(
                    "{name} died {} times (cluster.worker_restarts = {}); last: {status}; see {}",
                    *n,
                    self.cfg.cluster.worker_restarts,
                    self.run_dir
                        .join("logs")
                        .join(format!("{name}.log"))
                        .display()
                );
            }
            tracing::warn!(worker = name, %status, restart = *n, "local worker exited; restarting it");
            local.restart(&name).await?;
        }
        Ok(())
    }

    /// Runs `work` (a step's collection) while restarting local workers that die meanwhile:
    /// with every actor dead the collection would otherwise wait out `startup_timeout_s`.
    async fn supervised<T>(&mut self, work: impl std::future::Future<Output = T>) -> Result<T> {
        // Check once up front too: a step shorter than the heartbeat would otherwise never see
        // a worker that died in the step before.
        self.revive_local_workers().await?;
        tokio::pin!(work);
        loop {
            tokio::select! {
                r = &mut work => return Ok(r),
                _ = tokio::time::sleep(self.shared.heartbeat_interval) => {
                    self.revive_local_workers().await?;
                }
            }
        }
    }

    /// Waits until the configured workers have registered (local children that exit fail fast
    /// at start-up; later, actors and verifiers are restarted).
    pub async fn wait_for_workers(
        &mut self,
        learners: usize,
        verifiers: usize,
        actors: usize,
    ) -> Result<()> {
        let deadline = Instant::now() + secs(self.cfg.cluster.startup_timeout_s);
        loop {
            let (l, v, a) = {
                let r = self.shared.registry();
                (
                    r.count_alive(Role::Learner),
                    r.count_alive(Role::Verifier),
                    r.count_alive(Role::Actor),
                )
            };
            if l >= learners && v >= verifiers && a >= actors {
                return Ok(());
            }
            if self.supervising {
                self.revive_local_workers().await?;
            } else if let Some(local) = self.local.as_mut()
                && let Some((name, status)) = local.exited().into_iter().next()
            {
                bail!(
                    "{name} exited during start-up ({status}); see {}",
                    self.run_dir
                        .join("logs")
                        .join(format!("{name}.log"))
                        .display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "start-up: after {:?}, {l}/{learners} learners, {v}/{verifiers} verifiers and {a}/{actors} actors have registered (cluster.startup_timeout_s)",
                    secs(self.cfg.cluster.startup_timeout_s)
                );
            }
            tokio::select! {
                _ = self.shared.membership.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Learner rank 0 (it checkpoints and serves the weights): (id, endpoint, policy version).
    fn learner(&self) -> Result<(String, String, u64)> {
        let r = self.shared.registry();
        r.alive(Role::Learner)
            .find(|w| w.learner_rank == 0)
            .map(|w| (w.id.clone(), w.endpoint.clone(), w.policy_version))
            .context("no learner (rank 0) registered")
    }

    /// Every learner rank by rank, (id, endpoint): exactly `cluster.learner_ranks` of them.
    fn learner_ranks(&self) -> Result<Vec<(String, String)>> {
        let n = self.cfg.cluster.learner_ranks as usize;
        let r = self.shared.registry();
        let mut by_rank: Vec<Option<(String, String)>> = vec![None; n];
        for w in r.alive(Role::Learner) {
            let rank = w.learner_rank as usize;
            if rank >= n {
                bail!(
                    "learner {} registered as rank {rank}, but cluster.learner_ranks is {n}",
                    w.id
                );
            }
            by_rank[rank] = Some((w.id.clone(), w.endpoint.clone()));
        }
        by_rank
            .into_iter()
            .enumerate()
            .map(|(rank, w)| w.with_context(|| format!("learner rank {rank} is not registered")))
            .collect()
    }

    /// Rank `rank`'s part in a data-parallel call to `ranks`; `None` for a lone learner.
    fn data_parallel(&self, rank: usize, ranks: &[(String, String)]) -> Option<DataParallel> {
        (ranks.len() > 1).then(|| DataParallel {
            rank: rank as u32,
            world: ranks.len() as u32,
            peers: ranks.iter().map(|(_, ep)| ep.clone()).collect(),
            // A peer's deadline falls before the coordinator's, so a lost rank surfaces as the
            // survivors' error naming it rather than as a bare TrainStep timeout.
            round_timeout_ms: (self.cfg.cluster.train_timeout_s * 900.0) as u64,
            zero_stage: self.cfg.cluster.learner_zero_stage,
            nccl: None,
        })
    }

    /// The NCCL unique id of the learner ranks' gradient communicator when this step's
    /// collective goes over NCCL (`plane::choose_collective`, logged when the choice changes),
    /// else `None` (the gRPC ring).
    fn collective_nccl_id(&self, ranks: &[(String, String)]) -> Option<Vec<u8>> {
        use laser_proto::plane::{Transport, choose_collective};
        let caps: Vec<(String, WeightPlaneCaps)> = {
            let r = self.shared.registry();
            ranks
                .iter()
                .map(|(id, _)| {
                    let c = r
                        .get(id)
                        .map(|w| w.weight_plane.clone())
                        .unwrap_or_default();
                    (id.clone(), c)
                })
                .collect()
        };
        let refs: Vec<(&str, &WeightPlaneCaps)> =
            caps.iter().map(|(id, c)| (id.as_str(), c)).collect();
        let mut choice = self.collective.lock().unwrap_or_else(|p| p.into_inner());
        let d = choose_collective(
            self.cfg.cluster.learner_collective,
            choice.nccl_failure.as_deref(),
            &refs,
        );
        let key = (d.transport, d.reason.clone());
        if ranks.len() > 1 && choice.last.as_ref() != Some(&key) {
            d.log("learner collective");
            choice.last = Some(key);
        }
        (d.transport == Transport::Nccl).then(|| caps[0].1.collective_unique_id.clone())
    }

    /// With ZeRO-1 ranks, every rank but 0 writes its share of the AdamW state for `step` into
    /// the run directory (all at once), so that rank 0's checkpoint can merge them. Returns rank
    /// 0's part of the Checkpoint call (`None` without ZeRO-1: rank 0 holds the whole state).
    async fn checkpoint_shards(
        &self,
        step: u64,
        cursor: DataCursor,
    ) -> Result<Option<DataParallel>> {
        if self.cfg.cluster.learner_zero_stage == 0 || self.cfg.cluster.learner_ranks < 2 {
            return Ok(None);
        }
        let ranks = self
            .learner_ranks()
            .map_err(|e| LearnerLost(e.to_string()))?;
        let d = secs(self.cfg.cluster.train_timeout_s);
        let mut calls = tokio::task::JoinSet::new();
        for (rank, (id, ep)) in ranks.iter().enumerate().skip(1) {
            let msg = CheckpointRequest {
                step,
                cursor: Some(cursor),
                data_parallel: self.data_parallel(rank, &ranks),
            };
            let mut learner = self.client.learner(self.client.lazy(ep)?);
            let id = id.clone();
            calls.spawn(async move {
                let r = with_deadline("Learner.Checkpoint", d, learner.checkpoint(request(msg, d)))
                    .await;
                (rank, id, r)
            });
        }
        while let Some(joined) = calls.join_next().await {
            let (rank, id, r) = joined.context("Checkpoint task")?;
            if let Err(s) = r {
                return Err(self.rank_failure("Checkpoint", step, rank, &id, s));
            }
        }
        Ok(self.data_parallel(0, &ranks))
    }

    /// A learner rank's failed `call` of `step`: a transport failure is a lost learner (recovery
    /// restarts every rank from the checkpoint); a refusal is the run's error.
    fn rank_failure(
        &self,
        call: &str,
        step: u64,
        rank: usize,
        id: &str,
        s: tonic::Status,
    ) -> anyhow::Error {
        if is_transport_failure(&s) {
            self.shared.registry().mark_lost(id);
            LearnerLost(format!(
                "{call} {step} on learner rank {rank}: {}",
                s.message()
            ))
            .into()
        } else {
            anyhow::anyhow!(
                "learner rank {rank} refused {call} {step}: {} ({:?})",
                s.message(),
                s.code()
            )
        }
    }

    /// TrainStep on every learner rank at once (each gets the whole batch and trains its shard;
    /// see laser_learner::data_parallel). One rank sends no data-parallel section, so the
    /// one-learner path is the plain one. Returns rank 0's answer once every rank agrees.
    async fn train(&self, step: u64, groups: &[RolloutGroup]) -> Result<TrainStepResponse> {
        let ranks = self
            .learner_ranks()
            .map_err(|e| LearnerLost(e.to_string()))?;
        let d = secs(self.cfg.cluster.train_timeout_s);
        let nccl_id = self.collective_nccl_id(&ranks);
        // Dropping the set aborts the calls still running.
        let mut calls = tokio::task::JoinSet::new();
        for (rank, (id, ep)) in ranks.iter().enumerate() {
            let mut data_parallel = self.data_parallel(rank, &ranks);
            if let (Some(dp), Some(unique_id)) = (data_parallel.as_mut(), nccl_id.as_deref()) {
                dp.nccl = Some(laser_proto::plane::collective_group(
                    unique_id, dp.rank, dp.world,
                ));
            }
            let msg = TrainStepRequest {
                step,
                groups: groups.to_vec(),
                data_parallel,
            };
            let mut learner = self.client.learner(self.client.lazy(ep)?);
            let id = id.clone();
            calls.spawn(async move {
                let r = with_deadline("Learner.TrainStep", d, learner.train_step(request(msg, d)))
                    .await;
                (rank, id, r)
            });
        }
        // A refusal (bad batch, out of order) is the run's error; a transport failure on any rank
        // is a lost learner (recover restarts every rank from the checkpoint). Answers are taken
        // as they come, so the first failure ends the step at once: the survivors may be waiting
        // for the lost rank's gradients, and recovery restarts them anyway.
        let mut out: Vec<Option<TrainStepResponse>> = vec![None; ranks.len()];
        while let Some(joined) = calls.join_next().await {
            let (rank, id, r) = joined.context("TrainStep task")?;
            match r {
                Ok(r) => out[rank] = Some(r.into_inner()),
                Err(s) => {
                    if nccl_id.is_some() {
                        // The redo from the checkpoint (and every later step) takes the ring.
                        tracing::warn!(
                            "TrainStep {step} over NCCL failed on learner rank {rank} ({}); \
                             the run's learner collective moves to the gRPC ring",
                            s.message()
                        );
                        self.collective
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .nccl_failure = Some(s.message().to_string());
                    }
                    return Err(self.rank_failure("TrainStep", step, rank, &id, s));
                }
            }
        }
        let mut out: Vec<TrainStepResponse> = out.into_iter().flatten().collect();
        if let Some(r) = out
            .iter()
            .position(|r| r.policy_version != out[0].policy_version)
        {
            bail!(
                "learner ranks disagree after TrainStep {step}: rank 0 is at policy version {}, rank {r} at {}",
                out[0].policy_version,
                out[r].policy_version
            );
        }
        Ok(out.swap_remove(0))
    }

    /// Runs to `run.max_steps`. Stops the local workers however it ends.
    pub async fn run(&mut self) -> Result<()> {
        let result = self.run_inner().await;
        self.shared
            .set_state(if result.is_ok() { "finished" } else { "failed" });
        if let Some(local) = self.local.as_mut() {
            local.stop_all(Duration::from_secs(5)).await;
        }
        result
    }

    pub async fn stop_workers(&mut self) {
        if let Some(local) = self.local.as_mut() {
            local.stop_all(Duration::from_secs(5)).await;
        }
    }

    async fn run_inner(&mut self) -> Result<()> {
        let (n_act, n_ver) = match self.cfg.cluster.mode {
            ClusterMode::Local => (
                self.cfg.cluster.actors as usize,
                self.cfg.cluster.verifiers as usize,
            ),
            ClusterMode::External => (
                self.cfg.cluster.actors.max(1) as usize,
                self.cfg.cluster.verifiers.max(1) as usize,
            ),
        };
        self.wait_for_workers(self.cfg.cluster.learner_ranks as usize, n_ver, n_act)
            .await?;
        self.supervising = true;
        let mut state = self.restore_point().await?;
        self.ledger.append(&[Entry::Start {
            step: state.step,
            policy_version: state.policy_version,
            batch_prompts: u64::from(self.cfg.algorithm.batch_prompts),
            async_mode: self.cfg.cluster.async_mode,
            max_off_policy_steps: self.cfg.cluster.max_off_policy_steps,
            learner_ranks: self.cfg.cluster.learner_ranks,
            unix_time: unix_now(),
        }])?;
        self.new_weights_epoch()?;
        self.tensorboard = Some(
            crate::tensorboard::EventWriter::open(&self.run_dir, state.step).with_context(
                || {
                    format!(
                        "{}",
                        self.run_dir.join(crate::tensorboard::TB_DIR).display()
                    )
                },
            )?,
        );
        self.shared.set_state("running");
        let bar = self.progress_bar(state.step);
        let mut step = state.step;
        let mut version = state.policy_version;
        let mut prefetched: Option<tokio::task::JoinHandle<Result<Collected>>> = None;
        self.maybe_evaluate(step, version, bar.as_ref()).await?;
        while step < self.cfg.run.max_steps {
            match self.step(step, version, &mut prefetched).await {
                Ok((new_version, row)) => {
                    version = new_version;
                    step += 1;
                    self.sample_peak_rss();
                    let line = format!(
                        "acc {:.3} reward {:.3} f1 {:.3} mse {:.4} len {:.1} {:.0} tok/s {:.1} s/step",
                        row.accuracy,
                        row.reward_mean,
                        row.self_verify_f1,
                        row.self_reward_mse,
                        row.mean_response_len,
                        row.gen_tokens_per_sec,
                        row.step_seconds
                    );
                    match &bar {
                        Some(b) if !b.is_hidden() => {
                            b.set_position(step);
                            b.set_message(line);
                        }
                        // No terminal to draw a bar on: one plain line per step.
                        _ => println!("step {step}/{} {line}", self.cfg.run.max_steps),
                    }
                    let last = step == self.cfg.run.max_steps;
                    let every = self.cfg.run.checkpoint_every;
                    if last || (every > 0 && step % every == 0) {
                        match self.checkpoint(step, version).await {
                            Ok(s) => state = s,
                            Err(e) if e.downcast_ref::<LearnerLost>().is_some() => {
                                (step, version) = self.recover(&mut prefetched, e).await?;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) if e.downcast_ref::<LearnerLost>().is_some() => {
                    (step, version) = self.recover(&mut prefetched, e).await?;
                }
                Err(e) => return Err(e),
            }
            self.maybe_evaluate(step, version, bar.as_ref()).await?;
        }
        if let Some(p) = prefetched.take() {
            p.abort();
        }
        if let Some(b) = &bar {
            b.finish();
        }
        tracing::info!(
            steps = step,
            version,
            checkpoint = state.step,
            "run finished"
        );
        Ok(())
    }

    /// Records the local workers' peak RSS so far.
    fn sample_peak_rss(&mut self) {
        let Some(local) = self.local.as_ref() else {
            return;
        };
        for (name, pid) in local.pids() {
            if let Some(kb) = peak_rss_kb(pid) {
                let e = self.peak_rss_kb.entry(name).or_default();
                *e = (*e).max(kb);
            }
        }
    }

    /// Peak RSS of each local worker (KiB), as sampled after every step and evaluation.
    pub fn peak_rss(&self) -> &std::collections::BTreeMap<String, u64> {
        &self.peak_rss_kb
    }

    fn progress_bar(&self, start: u64) -> Option<indicatif::ProgressBar> {
        if !self.show_progress {
            return None;
        }
        let b = indicatif::ProgressBar::new(self.cfg.run.max_steps);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] step {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_position(start);
        Some(b)
    }

    /// After a Start or Restored entry: the ledger's weights epoch, so that actors holding weights
    /// of the abandoned timeline (same version numbers, other weights) are updated first.
    fn new_weights_epoch(&self) -> Result<()> {
        let epoch = self.ledger.weights_epoch()?;
        if epoch != self.shared.registry().weights_epoch() {
            tracing::info!(
                epoch,
                "new weights epoch: every actor is updated before its next work"
            );
        }
        self.shared.registry().set_weights_epoch(epoch);
        Ok(())
    }

    /// A live learner that trained past the checkpoint (this coordinator restarted under it) is
    /// rolled back to it with Learner.Restore, every rank, as a learner restart would be.
    async fn restore_learners(&mut self, state: &RunState) -> Result<()> {
        let d = secs(self.cfg.cluster.train_timeout_s);
        for (id, ep) in self.learner_ranks()? {
            let mut learner = self.client.learner(self.client.lazy(&ep)?);
            let msg = RestoreRequest { step: state.step };
            let r = with_deadline("Learner.Restore", d, learner.restore(request(msg, d)))
                .await
                .map_err(|s| {
                    anyhow::anyhow!(
                        "learner {id} refused Restore to step {}: {} ({:?})",
                        state.step,
                        s.message(),
                        s.code()
                    )
                })?
                .into_inner();
            tracing::warn!(
                learner = id,
                step = r.step,
                version = r.policy_version,
                path = r.path,
                "learner rolled back to the checkpoint"
            );
            if let Some(w) = self.shared.registry().get_mut(&id) {
                w.policy_version = r.policy_version;
            }
        }
        Ok(())
    }

    /// Where this run (re)starts: the coordinator's state file must agree with the learner.
    async fn restore_point(&mut self) -> Result<RunState> {
        let state = RunState::read(&self.run_dir)?.unwrap_or_default();
        if self.learner()?.2 != state.policy_version {
            self.restore_learners(&state).await?;
        }
        let (_, _, learner_version) = self.learner()?;
        if learner_version != state.policy_version {
            bail!(
                "{}: records policy version {} at step {}, but the learner started at version {learner_version}; \
                 the checkpoint and the coordinator state disagree",
                self.run_dir.join(STATE_FILE).display(),
                state.policy_version,
                state.step
            );
        }
        let kept = self.metrics.truncate_from(state.step)?;
        *self.shared.history() = kept;
        heldout_eval::truncate_after(&self.run_dir, state.step)?;
        truncate_data_order(&self.run_dir, state.step)?;
        let mut run = self.shared.run_info();
        run.step = state.step;
        run.policy_version = state.policy_version;
        Ok(state)
    }

    fn plan(&self, step: u64, version: u64, learner_endpoint: String) -> CollectPlan {
        let a = &self.cfg.algorithm;
        let c = &self.cfg.cluster;
        let min_version = if c.async_mode {
            version.saturating_sub(c.max_off_policy_steps)
        } else {
            version
        };
        CollectPlan {
            step,
            groups: step_groups(&self.source, &self.cfg, step),
            sampling: SamplingConfig {
                n: a.group_size,
                temperature: a.temperature as f32,
                top_p: a.top_p as f32,
                max_response_tokens: a.max_response_tokens,
                seed: self.cfg.run.seed,
            },
            min_version,
            max_version: version,
            learner_endpoint,
            groups_per_request: c.groups_per_request as usize,
            generate_timeout: secs(c.generate_timeout_s),
            grade_timeout: secs(c.grade_timeout_s),
            weights_timeout: secs(c.weights_timeout_s),
            no_worker_timeout: secs(c.startup_timeout_s),
        }
    }

    /// One RL step. Returns the new policy version and the metrics row.
    async fn step(
        &mut self,
        step: u64,
        version: u64,
        prefetched: &mut Option<tokio::task::JoinHandle<Result<Collected>>>,
    ) -> Result<(u64, StepMetrics)> {
        let t0 = Instant::now();
        let (_, learner_ep, _) = self.learner().map_err(|e| LearnerLost(e.to_string()))?;
        let collected = match prefetched.take() {
            Some(h) => self.supervised(h).await?.context("collect task")??,
            None => {
                let work = collect(
                    self.shared.clone(),
                    self.client.clone(),
                    self.plan(step, version, learner_ep.clone()),
                );
                self.supervised(work).await??
            }
        };
        append_data_order(&self.run_dir, step, &collected.groups)?;
        let lives: Vec<Entry> = collected
            .lives
            .iter()
            .map(|group| Entry::Collected {
                step,
                group: group.clone(),
            })
            .collect();
        self.ledger.append(&lives)?;
        if self.cfg.cluster.async_mode && step + 1 < self.cfg.run.max_steps {
            // Actors start on step k+1 with the current weights while the learner trains step k;
            // the new version arrives by broadcast between their generations.
            let plan = self.plan(step + 1, version + 1, learner_ep.clone());
            let plan = CollectPlan {
                min_version: (version + 1).saturating_sub(self.cfg.cluster.max_off_policy_steps),
                ..plan
            };
            *prefetched = Some(tokio::spawn(collect(
                self.shared.clone(),
                self.client.clone(),
                plan,
            )));
        }

        // Train.
        let t_train = Instant::now();
        let resp = self.train(step, &collected.groups).await?;
        let train_seconds = t_train.elapsed().as_secs_f64();
        let new_version = resp.policy_version;
        self.ledger.append(&[Entry::Trained {
            step,
            version_before: version,
            version_after: new_version,
            group_ids: collected.groups.iter().map(|g| g.group_id).collect(),
        }])?;
        {
            let mut run = self.shared.run_info();
            run.step = step + 1;
            run.policy_version = new_version;
        }

        // Broadcast.
        let t_bc = Instant::now();
        let (bytes, updated) = if new_version != version {
            self.broadcast(new_version, &learner_ep).await
        } else {
            (0, 0)
        };
        let broadcast_seconds = if updated > 0 {
            t_bc.elapsed().as_secs_f64()
        } else {
            0.0
        };

        let stats = rollout_stats(&collected.groups, version);
        let mut row = stats.into_row(step);
        let ts = resp.stats.unwrap_or_default();
        row.policy_version = new_version;
        row.clip_fraction = ts.clip_fraction;
        row.loss = ts.loss;
        row.policy_loss = ts.policy_loss;
        row.grad_norm = ts.grad_norm;
        row.generate_seconds = collected.generate_seconds;
        row.verify_seconds = collected.verify_seconds;
        row.train_seconds = train_seconds;
        row.broadcast_seconds = broadcast_seconds;
        row.broadcast_bytes = bytes;
        row.learner_ranks = u64::from(self.cfg.cluster.learner_ranks);
        row.allreduce_seconds = resp.allreduce_seconds;
        row.allreduce_bytes = resp.allreduce_bytes;
        row.allreduce_gbps = if resp.allreduce_seconds > 0.0 {
            resp.allreduce_bytes as f64 / resp.allreduce_seconds / 1e9
        } else {
            0.0
        };
        row.broadcast_gbps = if broadcast_seconds > 0.0 {
            bytes as f64 / broadcast_seconds / 1e9
        } else {
            0.0
        };
        row.gen_tokens_per_sec = if collected.generate_seconds > 0.0 {
            collected.generated_tokens as f64 / collected.generate_seconds
        } else {
            0.0
        };
        row.actors_at_version = self
            .shared
            .registry()
            .alive(Role::Actor)
            .filter(|w| w.policy_version == new_version)
            .count() as u64;
        row.dropped_stale = collected.dropped_stale;
        row.redispatched = collected.redispatched;
        row.reward_errors = collected.reward_errors;
        row.step_seconds = t0.elapsed().as_secs_f64();
        row.unix_time = unix_now();
        self.metrics.append(&row)?;
        if let Some(tb) = self.tensorboard.as_mut() {
            // The row's step is the step trained; TensorBoard plots it after that step.
            tb.scalars(
                step + 1,
                row.unix_time,
                &crate::tensorboard::scalars("train", &serde_json::to_value(row)?),
            )?;
        }
        self.shared.publish(row);
        tracing::info!(
            step,
            version = new_version,
            accuracy = row.accuracy,
            f1 = row.self_verify_f1,
            secs = row.step_seconds,
            "step done"
        );
        Ok((new_version, row))
    }

    /// Tells every alive actor to take `version` (NCCL or the gRPC stream, see
    /// crate::weight_plane); returns (bytes moved, actors updated).
    async fn broadcast(&self, version: u64, learner_ep: &str) -> (u64, usize) {
        let learner_id = self
            .shared
            .registry()
            .alive(Role::Learner)
            .find(|w| w.endpoint == learner_ep)
            .map(|w| w.id.clone())
            .unwrap_or_default();
        let b = crate::weight_plane::broadcast(
            &self.shared,
            &self.client,
            self.cfg.cluster.weight_transport,
            secs(self.cfg.cluster.weights_timeout_s),
            version,
            &learner_id,
            learner_ep,
        )
        .await;
        (b.bytes, b.updated)
    }

    async fn checkpoint(&mut self, step: u64, version: u64) -> Result<RunState> {
        let (learner_id, learner_ep, _) = self.learner().map_err(|e| LearnerLost(e.to_string()))?;
        let d = secs(self.cfg.cluster.train_timeout_s);
        let mut learner = self.client.learner(self.client.lazy(&learner_ep)?);
        let (epoch, position) = self
            .source
            .cursor(step * u64::from(self.cfg.algorithm.batch_prompts));
        let cursor = DataCursor { epoch, position };
        let msg = CheckpointRequest {
            step,
            cursor: Some(cursor),
            data_parallel: self.checkpoint_shards(step, cursor).await?,
        };
        let r = match with_deadline("Learner.Checkpoint", d, learner.checkpoint(request(msg, d)))
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) if is_transport_failure(&s) => {
                self.shared.registry().mark_lost(&learner_id);
                return Err(LearnerLost(format!("Checkpoint {step}: {}", s.message())).into());
            }
            Err(s) => bail!(
                "learner refused Checkpoint {step}: {} ({:?})",
                s.message(),
                s.code()
            ),
        };
        if r.policy_version != version {
            bail!(
                "learner checkpointed version {} at step {step}, expected {version}",
                r.policy_version
            );
        }
        let state = RunState {
            step,
            policy_version: version,
        };
        state.write(&self.run_dir)?;
        self.ledger.append(&[Entry::Checkpointed {
            step,
            policy_version: version,
        }])?;
        tracing::info!(step, path = r.path, "checkpoint");
        Ok(state)
    }

    /// After a lost learner: restart it (local) or wait for it (external), then go back to the
    /// last checkpoint. Returns the (step, version) to continue from.
    async fn recover(
        &mut self,
        prefetched: &mut Option<tokio::task::JoinHandle<Result<Collected>>>,
        cause: anyhow::Error,
    ) -> Result<(u64, u64)> {
        if let Some(p) = prefetched.take() {
            p.abort();
        }
        self.learner_restarts += 1;
        if self.learner_restarts > self.cfg.cluster.learner_restarts {
            return Err(cause.context(format!(
                "the learner failed {} times (cluster.learner_restarts = {})",
                self.learner_restarts, self.cfg.cluster.learner_restarts
            )));
        }
        tracing::warn!("{cause}; recovering from the last checkpoint");
        {
            let mut reg = self.shared.registry();
            let ids: Vec<String> = reg.alive(Role::Learner).map(|w| w.id.clone()).collect();
            for id in ids {
                reg.mark_lost(&id);
            }
        }
        let ranks = self.cfg.cluster.learner_ranks;
        if let Some(local) = self.local.as_mut() {
            for rank in 0..ranks {
                local.restart(&format!("learner-{rank}")).await?;
            }
        }
        self.wait_for_workers(ranks as usize, 0, 0).await?;
        let state = self.restore_point().await?;
        self.ledger.append(&[Entry::Restored {
            step: state.step,
            policy_version: state.policy_version,
            cause: format!("{cause:#}"),
        }])?;
        self.new_weights_epoch()?;
        if let Some(tb) = self.tensorboard.as_mut() {
            tb.restart(state.step)?;
        }
        tracing::info!(
            step = state.step,
            version = state.policy_version,
            "redoing from checkpoint"
        );
        Ok((state.step, state.policy_version))
    }
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.create(true).write(true).truncate(true);
    #[cfg(unix)]
    o.mode(0o600);
    let mut f = o.open(path).with_context(|| path.display().to_string())?;
    f.write_all(text.as_bytes())
        .with_context(|| path.display().to_string())
}
