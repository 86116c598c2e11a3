//! Runtime pieces shared by every role: one way to authenticate, limit, time out, serve and dial.
//!
//! - [`auth`]: the cluster token (never printed), its constant-time check on servers, and the
//!   `authorization: Bearer` header on clients.
//! - [`server`]: [`server::RoleServer`] serves a role's services behind the token check, with size
//!   limits, tonic-health (open, no token) and tonic-reflection.
//! - [`client`]: dialing with connect deadlines and typed, authenticated, size-limited clients.
//! - [`deadline`]: per-RPC deadlines, enforced on both ends.

pub mod auth;
pub mod client;
pub mod deadline;
pub mod server;
pub mod worker;

pub use auth::{AttachToken, ClusterToken, RequireToken, constant_time_eq};
pub use client::{AuthedChannel, ClientOptions};
pub use deadline::{next_within, request, with_deadline};
pub use server::{RoleServer, ServerOptions};
pub use worker::{InFlight, WorkerArgs, WorkerStatus, run_worker};

/// Default cap on one gRPC message, both directions. Weight chunks are far smaller (4 MiB); the
/// largest control message is a TrainStep batch.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Environment variable that carries the cluster token to workers by default. Local mode passes
/// the token to its children this way, never on the command line (which `ps` shows).
pub const TOKEN_ENV: &str = laser_config::TOKEN_ENV;

#[derive(Debug, thiserror::Error)]
pub enum RtError {
    #[error("cluster token: {0}")]
    Token(String),
    #[error("endpoint {endpoint:?}: {message}")]
    Endpoint { endpoint: String, message: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("gRPC server: {0}")]
    Serve(String),
}

/// Logs go to stderr (stdout stays free for `--json` output); `RUST_LOG` overrides `default`.
pub fn init_tracing(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // No colour codes in log files (local mode sends worker stderr to run_dir/logs).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
