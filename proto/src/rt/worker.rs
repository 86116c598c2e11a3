//! The life of a worker process (actor, verifier, learner): bind, announce the address, register
//! with the coordinator and heartbeat, serve until SIGTERM or Ctrl-C. Every role binary's `serve`
//! subcommand is `WorkerArgs` + its services + [`run_worker`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;

use super::auth::{ClusterToken, TokenSource};
use super::client::ClientOptions;
use super::deadline::{request, with_deadline};
use super::server::{RoleServer, ServerOptions};
use super::{RtError, TOKEN_ENV};
use crate::v1::{HeartbeatRequest, RegisterRequest, Role};

/// Command-line flags shared by every worker's `serve` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Address to listen on; port 0 picks a free port (announced on stdout and to the coordinator).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Address the coordinator should dial; default: the bound address.
    #[arg(long)]
    pub advertise: Option<String>,
    /// Coordinator to register with (host:port). Without it the worker just serves.
    #[arg(long)]
    pub coordinator: Option<String>,
    /// Stable worker name, e.g. actor-0 or the pod name.
    #[arg(long)]
    pub name: Option<String>,
    /// Environment variable holding the cluster token.
    #[arg(long, default_value = TOKEN_ENV)]
    pub token_env: String,
    /// File holding the cluster token (takes precedence over --token-env).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    pub max_message_mb: u32,
    /// Deadline of Register and Heartbeat calls, milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub control_timeout_ms: u64,
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

/// What a worker reports in its heartbeats; the role's services update it.
#[derive(Debug, Default)]
pub struct WorkerStatus {
    pub policy_version: AtomicU64,
    pub in_flight: AtomicU32,
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

/// Binds, announces, registers (when `--coordinator` is given) and serves until a shutdown signal.
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
    let advertise = args.advertise.clone().unwrap_or_else(|| bound.to_string());
    let role_name = role
        .as_str_name()
        .trim_start_matches("ROLE_")
        .to_ascii_lowercase();
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{role_name}-{}", bound.port()));
    println!("{LISTENING_PREFIX} {role_name} {bound}");
    tracing::info!(%bound, name, "serving {role_name}");

    if let Some(coord) = args.coordinator.clone() {
        let opts = args.client_options(token);
        let timeout = Duration::from_millis(args.control_timeout_ms);
        let reg = Registration {
            role,
            name,
            endpoint: advertise,
            capacity,
        };
        tokio::spawn(membership_loop(coord, opts, timeout, reg, status));
    }
    server.serve(listener, shutdown_signal()).await
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
                let msg = RegisterRequest {
                    role: reg.role as i32,
                    name: reg.name.clone(),
                    endpoint: reg.endpoint.clone(),
                    capacity: reg.capacity,
                    policy_version: status.policy_version.load(Ordering::Relaxed),
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
                        worker_id = Some(r.worker_id);
                        interval =
                            Duration::from_millis(u64::from(r.heartbeat_interval_ms.max(50)));
                    }
                    Err(s) => tracing::warn!("register with {coordinator}: {}", s.message()),
                }
            }
            Some(id) => {
                let msg = HeartbeatRequest {
                    worker_id: id.clone(),
                    policy_version: status.policy_version.load(Ordering::Relaxed),
                    in_flight: status.in_flight.load(Ordering::Relaxed),
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
