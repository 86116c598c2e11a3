//! The life of a worker process (actor, verifier, learner): bind, announce the address, register
//! with the coordinator and heartbeat, serve until SIGTERM or Ctrl-C, then leave cleanly. Every
//! role binary's `serve` subcommand is `WorkerArgs` + its services + [`run_worker`].
//!
//! Every flag of [`WorkerArgs`] can also come from the environment (`LASER_COORDINATOR`,
//! `LASER_WORKER_NAME`, `LASER_LISTEN`, `LASER_ADVERTISE`, ...), which is how the Kubernetes
//! manifests in `deploy/k8s` configure workers in external mode.
//!
//! Shutdown (SIGTERM, e.g. a pod being stopped): the worker starts *draining* ([`WorkerStatus`]):
//! its services refuse new work with UNAVAILABLE and end the work they hold (an actor ends its
//! Generate streams; the groups not yet streamed go back to the coordinator's queue). It then
//! deregisters (`Coordinator.Deregister`), so the coordinator re-dispatches at once instead of
//! waiting for missed heartbeats, lets in-flight RPCs finish for at most `--drain-timeout-s`, and
//! exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;

use laser_config::TokenSource;

use super::auth::ClusterToken;
use super::client::ClientOptions;
use super::deadline::{request, with_deadline};
use super::server::{RoleServer, ServerOptions};
use super::{RtError, TOKEN_ENV};
use crate::v1::{DeregisterRequest, HeartbeatRequest, RegisterRequest, Role, WeightPlaneCaps};

/// Command-line flags shared by every worker's `serve` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Address to listen on; port 0 picks a free port (announced on stdout and to the coordinator).
    #[arg(long, env = "LASER_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Address the coordinator should dial; default: the bound address. A bare host (no port, e.g.
    /// a pod IP) gets the bound port.
    #[arg(long, env = "LASER_ADVERTISE")]
    pub advertise: Option<String>,
    /// Coordinator to register with (host:port, e.g. the Service's DNS name). Without it the
    /// worker just serves.
    #[arg(long, env = "LASER_COORDINATOR")]
    pub coordinator: Option<String>,
    /// Stable worker name, e.g. actor-0 or the pod name.
    #[arg(long, env = "LASER_WORKER_NAME")]
    pub name: Option<String>,
    /// Environment variable holding the cluster token.
    #[arg(long, default_value = TOKEN_ENV)]
    pub token_env: String,
    /// File holding the cluster token (takes precedence over --token-env).
    #[arg(long, env = "LASER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    #[arg(long, env = "LASER_MAX_MESSAGE_MB", default_value_t = 64)]
    pub max_message_mb: u32,
    /// Deadline of Register, Heartbeat and Deregister calls, milliseconds.
    #[arg(long, env = "LASER_CONTROL_TIMEOUT_MS", default_value_t = 5000)]
    pub control_timeout_ms: u64,
    /// On SIGTERM: how long in-flight RPCs may take to finish after the work was handed back.
    /// Keep it below the pod's terminationGracePeriodSeconds.
    #[arg(long, env = "LASER_DRAIN_TIMEOUT_S", default_value_t = 10.0)]
    pub drain_timeout_s: f64,
}

impl WorkerArgs {
    pub fn token(&self) -> Result<ClusterToken, RtError> {
        let source = match &self.token_file {
            Some(p) => TokenSource::File(p.clone()),
            None => TokenSource::Env(self.token_env.clone()),
        };
        ClusterToken::load(&source)
    }

    pub fn server_options(&self, token: &ClusterToken) -> ServerOptions {
        let mut o = ServerOptions::new(token.clone());
        o.max_message_bytes = (self.max_message_mb as usize) << 20;
        o
    }

    pub fn client_options(&self, token: &ClusterToken) -> ClientOptions {
        let mut o = ClientOptions::new(token.clone());
        o.max_message_bytes = (self.max_message_mb as usize) << 20;
        o
    }
}

/// What a worker reports in its heartbeats; the role's services update it. It also carries the
/// drain signal: services check [`draining`](Self::draining) before taking work and watch
/// [`drained`](Self::drained) while holding it.
#[derive(Debug)]
pub struct WorkerStatus {
    pub policy_version: AtomicU64,
    /// The weights epoch of `policy_version` (see `UpdateWeightsRequest.weights_epoch`). Written
    /// after `policy_version` and read before it ([`WorkerStatus::weights`]), so a reader that
    /// sees a new epoch also sees its version.
    pub weights_epoch: AtomicU64,
    pub in_flight: AtomicU32,
    draining: AtomicBool,
    drain: tokio::sync::watch::Sender<bool>,
    /// How this worker can receive or send weights; sent with Register.
    pub weight_plane: std::sync::Mutex<WeightPlaneCaps>,
    /// Learner only: the data-parallel rank, sent with Register.
    pub learner_rank: AtomicU32,
}

impl Default for WorkerStatus {
    fn default() -> Self {
        Self {
            policy_version: AtomicU64::new(0),
            weights_epoch: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            draining: AtomicBool::new(false),
            drain: tokio::sync::watch::Sender::new(false),
            weight_plane: std::sync::Mutex::new(WeightPlaneCaps::default()),
            learner_rank: AtomicU32::new(0),
        }
    }
}

impl WorkerStatus {
    /// Swaps in the weights' (version, epoch): the version first, so that [`WorkerStatus::weights`]
    /// never pairs a new epoch with an old version.
    pub fn set_weights(&self, policy_version: u64, weights_epoch: u64) {
        self.policy_version.store(policy_version, Ordering::SeqCst);
        self.weights_epoch.store(weights_epoch, Ordering::SeqCst);
    }

    /// The (version, epoch) of the weights held: a torn read can only pair a new version with the
    /// old epoch, which the coordinator treats as unknown weights (refreshed), never as current.
    pub fn weights(&self) -> (u64, u64) {
        let epoch = self.weights_epoch.load(Ordering::SeqCst);
        (self.policy_version.load(Ordering::SeqCst), epoch)
    }
}

/// The status every service answers while its worker shuts down.
pub fn draining_status(what: &str) -> tonic::Status {
    tonic::Status::unavailable(format!(
        "worker is shutting down (SIGTERM): {what} handed back to the coordinator"
    ))
}

impl WorkerStatus {
    /// Probes this worker's weight data plane (NCCL or the gRPC stream), logs the choice and
    /// publishes it for Register. `rank0`: the broadcasting side, which makes the NCCL unique id.
    pub fn probe_weight_plane(&self, rank0: bool) -> WeightPlaneCaps {
        let plane = crate::plane::probe(crate::plane::cuda_device_from_env(), rank0);
        if plane.nccl {
            tracing::info!(
                device = plane.cuda_device,
                rank0,
                "weight data plane: NCCL available, gRPC stream as fallback"
            );
        } else {
            tracing::info!(
                reason = plane.nccl_unavailable_reason,
                "weight data plane: gRPC stream (NCCL not available)"
            );
        }
        *self.weight_plane.lock().unwrap_or_else(|p| p.into_inner()) = plane.clone();
        plane
    }

    /// True once the worker is shutting down: take no new work.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// First step of a shutdown: new RPCs are refused; work in progress goes on.
    pub fn refuse_new_work(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// True once work in progress is to be handed back (after [`hand_back`](Self::hand_back)).
    pub fn handing_back(&self) -> bool {
        *self.drain.borrow()
    }

    /// Second step: work in progress ends and goes back; every [`drained`](Self::drained) future
    /// resolves.
    pub fn hand_back(&self) {
        self.refuse_new_work();
        self.drain.send_replace(true);
    }

    /// Both steps at once.
    pub fn begin_drain(&self) {
        self.hand_back();
    }

    /// Resolves once draining has begun (at once if it already has).
    pub fn drained(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.drain.subscribe();
        async move {
            let _ = rx.wait_for(|d| *d).await;
        }
    }
}

/// Counts one in-flight unit of work while alive.
pub struct InFlight(Arc<WorkerStatus>);

impl InFlight {
    pub fn start(status: &Arc<WorkerStatus>) -> Self {
        status.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(status))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Line printed on stdout once the server is bound: `LASER_LISTENING <role> <addr>`.
pub const LISTENING_PREFIX: &str = "LASER_LISTENING";

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Binds, announces, registers (when `--coordinator` is given) and serves until a shutdown signal;
/// then drains, deregisters and returns (see the module docs).
pub async fn run_worker(
    role: Role,
    args: &WorkerArgs,
    token: &ClusterToken,
    server: RoleServer,
    capacity: u32,
    status: Arc<WorkerStatus>,
) -> Result<(), RtError> {
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| RtError::Endpoint {
            endpoint: args.listen.to_string(),
            message: format!("bind: {e}"),
        })?;
    let bound = listener
        .local_addr()
        .map_err(|e| RtError::Serve(e.to_string()))?;
    let advertise = advertise_address(args.advertise.as_deref(), bound);
    let role_name = role
        .as_str_name()
        .trim_start_matches("ROLE_")
        .to_ascii_lowercase();
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{role_name}-{}", bound.port()));
    println!("{LISTENING_PREFIX} {role_name} {bound}");
    tracing::info!(%bound, advertise, name, "serving {role_name}");

    let registered: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let membership = args.coordinator.clone().map(|coord| {
        let opts = args.client_options(token);
        let timeout = Duration::from_millis(args.control_timeout_ms);
        let reg = Registration {
            role,
            name: name.clone(),
            endpoint: advertise,
            capacity,
        };
        tokio::spawn(membership_loop(
            coord,
            opts,
            timeout,
            reg,
            status.clone(),
            registered.clone(),
        ))
    });

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let serve = server.serve(listener, async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    });
    tokio::pin!(serve);
    tokio::select! {
        r = &mut serve => return r,
        _ = shutdown_signal() => {}
    }

    // Drain: refuse new work, leave the membership (the coordinator re-queues what we hold), then
    // end the work in progress so nothing waits on us.
    let held = status.in_flight.load(Ordering::Relaxed);
    tracing::info!(name, in_flight = held, "shutdown signal: draining");
    status.refuse_new_work();
    if let Some(task) = membership {
        task.abort();
    }
    let id = registered.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let (Some(coord), Some(id)) = (args.coordinator.as_deref(), id) {
        deregister(coord, args, token, &id, held).await;
    }
    status.hand_back();
    let _ = stop_tx.send(true);
    let drain = Duration::from_secs_f64(args.drain_timeout_s.max(0.0));
    match tokio::time::timeout(drain, &mut serve).await {
        Ok(r) => r?,
        Err(_) => tracing::warn!(
            "in-flight requests still open after --drain-timeout-s = {}; exiting anyway",
            args.drain_timeout_s
        ),
    }
    tracing::info!(
        name,
        handed_back = held,
        "stopped cleanly: in-flight work handed back"
    );
    Ok(())
}

/// The endpoint to register: `--advertise` as given, a bare host with the bound port, or the bound
/// address itself.
pub fn advertise_address(advertise: Option<&str>, bound: SocketAddr) -> String {
    match advertise.map(str::trim).filter(|a| !a.is_empty()) {
        None => bound.to_string(),
        Some(a) if has_port(a) => a.to_string(),
        Some(a) if a.contains(':') && !a.starts_with('[') => format!("[{a}]:{}", bound.port()),
        Some(a) => format!("{a}:{}", bound.port()),
    }
}

fn has_port(a: &str) -> bool {
    if let Some(rest) = a.strip_prefix('[') {
        // [v6]:port
        return rest
            .split_once(']')
            .is_some_and(|(_, p)| p.starts_with(':'));
    }
    // host:port has exactly one colon; a bare IPv6 address has several.
    a.matches(':').count() == 1
}

/// Tells the coordinator we are leaving; failures are logged (the heartbeat timeout covers them).
async fn deregister(coord: &str, args: &WorkerArgs, token: &ClusterToken, id: &str, held: u32) {
    let opts = args.client_options(token);
    let timeout = Duration::from_millis(args.control_timeout_ms);
    let channel = match opts.lazy(coord) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("deregister: coordinator address: {e}");
            return;
        }
    };
    let mut client = opts.coordinator(channel);
    let msg = DeregisterRequest {
        worker_id: id.to_string(),
        reason: "SIGTERM".into(),
        in_flight: held,
    };
    match with_deadline(
        "Coordinator.Deregister",
        timeout,
        client.deregister(request(msg, timeout)),
    )
    .await
    {
        Ok(r) => tracing::info!(
            worker_id = id,
            known = r.get_ref().known,
            "deregistered from {coord}"
        ),
        Err(s) => tracing::warn!("deregister from {coord}: {}", s.message()),
    }
}

struct Registration {
    role: Role,
    name: String,
    endpoint: String,
    capacity: u32,
}

/// Registers, then heartbeats; re-registers whenever the coordinator does not know us (it
/// restarted, or declared us lost). Errors are logged and retried: a worker outlives blips.
async fn membership_loop(
    coordinator: String,
    opts: ClientOptions,
    timeout: Duration,
    reg: Registration,
    status: Arc<WorkerStatus>,
    registered: Arc<std::sync::Mutex<Option<String>>>,
) {
    let mut worker_id: Option<String> = None;
    let mut interval = Duration::from_millis(500);
    // A lazy channel reconnects by itself after the coordinator comes back.
    let channel = match opts.lazy(&coordinator) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("coordinator address: {e}");
            return;
        }
    };
    let mut client = opts.coordinator(channel);
    loop {
        match &worker_id {
            None => {
                let (policy_version, weights_epoch) = status.weights();
                let msg = RegisterRequest {
                    role: reg.role as i32,
                    name: reg.name.clone(),
                    endpoint: reg.endpoint.clone(),
                    capacity: reg.capacity,
                    policy_version,
                    weights_epoch,
                    weight_plane: Some(
                        status
                            .weight_plane
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .clone(),
                    ),
                    learner_rank: status.learner_rank.load(Ordering::Relaxed),
                };
                match with_deadline(
                    "Coordinator.Register",
                    timeout,
                    client.register(request(msg, timeout)),
                )
                .await
                {
                    Ok(r) => {
                        let r = r.into_inner();
                        tracing::info!(worker_id = r.worker_id, "registered with {coordinator}");
                        *registered.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(r.worker_id.clone());
                        worker_id = Some(r.worker_id);
                        interval =
                            Duration::from_millis(u64::from(r.heartbeat_interval_ms.max(50)));
                    }
                    Err(s) => tracing::warn!("register with {coordinator}: {}", s.message()),
                }
            }
            Some(id) => {
                let (policy_version, weights_epoch) = status.weights();
                let msg = HeartbeatRequest {
                    worker_id: id.clone(),
                    policy_version,
                    in_flight: status.in_flight.load(Ordering::Relaxed),
                    weights_epoch,
                };
                match with_deadline(
                    "Coordinator.Heartbeat",
                    timeout,
                    client.heartbeat(request(msg, timeout)),
                )
                .await
                {
                    Ok(r) if !r.get_ref().known => {
                        tracing::warn!("coordinator does not know {id}; registering again");
                        worker_id = None;
                        *registered.lock().unwrap_or_else(|p| p.into_inner()) = None;
                        continue;
                    }
                    Ok(_) => {}
                    Err(s) => tracing::warn!("heartbeat to {coordinator}: {}", s.message()),
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertise_fills_in_the_bound_port() {
        let bound: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        assert_eq!(advertise_address(None, bound), "0.0.0.0:50051");
        assert_eq!(advertise_address(Some(""), bound), "0.0.0.0:50051");
        assert_eq!(advertise_address(Some("10.1.2.3"), bound), "10.1.2.3:50051");
        assert_eq!(
            advertise_address(Some("actor-0.laser-actor:7000"), bound),
            "actor-0.laser-actor:7000"
        );
        assert_eq!(advertise_address(Some("fd00::5"), bound), "[fd00::5]:50051");
        assert_eq!(advertise_address(Some("[fd00::5]:9"), bound), "[fd00::5]:9");
    }

    #[tokio::test]
    async fn drained_resolves_after_begin_drain_even_for_late_subscribers() {
        let s = Arc::new(WorkerStatus::default());
        assert!(!s.draining());
        let early = s.drained();
        s.refuse_new_work();
        assert!(s.draining() && !s.handing_back());
        s.begin_drain();
        assert!(s.draining() && s.handing_back());
        tokio::time::timeout(Duration::from_secs(5), early)
            .await
            .expect("early waiter woken");
        tokio::time::timeout(Duration::from_secs(5), s.drained())
            .await
            .expect("late waiter resolves at once");
    }
}
