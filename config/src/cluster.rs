//! `[cluster]`: how the workers are started and reached (mode, counts, addresses, the cluster
//! token, TLS, message limits, deadlines), and the runtime settings laser-proto's `rt` takes as is
//! (`TokenSource`, `TlsFiles`, `TransportPref`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClusterMode {
    /// The coordinator spawns every worker as a child process on loopback.
    #[default]
    Local,
    /// Workers are started elsewhere (Kubernetes) and register themselves.
    External,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    pub mode: ClusterMode,
    pub actors: u32,
    pub verifiers: u32,
    /// Data-parallel learner ranks. Each trains its shard of the step's groups; a ring all-reduce
    /// over gRPC sums the gradients, so every rank applies the one-rank update. Rank 0 checkpoints
    /// and serves the weights.
    pub learner_ranks: u32,
    /// 1: ZeRO stage 1 across the learner ranks: each keeps and updates the AdamW moments of its
    /// own share of the parameters only (about 1/learner_ranks of them), then the ranks gather
    /// the updated parameters. Checkpoints stay whole (the same files as one learner's). 0: every
    /// rank holds the whole optimiser state.
    pub learner_zero_stage: u32,
    /// Address the coordinator listens on (Register, Heartbeat, Monitor).
    pub listen: String,
    /// Address workers use to reach the coordinator; default: `listen`.
    pub advertise: Option<String>,
    /// Where the coordinator serves Prometheus `GET /metrics` (e.g. "0.0.0.0:9464"; port 0 picks
    /// one, written to run_dir/metrics.addr); unset: not served.
    pub metrics_listen: Option<String>,
    /// Cluster token. Local mode without one makes a fresh token per run.
    pub token: Option<TokenSource>,
    pub tls: Option<TlsFiles>,
    pub max_message_mb: u32,
    /// Async mode: actors generate step k+1 while the learner trains step k.
    #[serde(rename = "async")]
    pub async_mode: bool,
    /// Async bound: a rollout made with weights older than this many versions is dropped.
    pub max_off_policy_steps: u64,
    /// Compute threads (rayon's pool, which burn-flex and its gemm run on) of each learner process
    /// started in local mode, warm start included; 0: one per core. Results do not depend on it.
    /// Workers started elsewhere (Kubernetes) take RAYON_NUM_THREADS from their own environment, or
    /// one thread per CPU of their container.
    pub learner_threads: u32,
    /// Compute threads of each local actor; 0: one per core.
    pub actor_threads: u32,
    pub heartbeat_ms: u64,
    /// A worker silent for this long is lost; its in-flight work is re-dispatched.
    pub worker_timeout_ms: u64,
    /// Prompt groups per Generate call.
    pub groups_per_request: u32,
    pub verify_batch: u32,
    /// Per-RPC deadlines, seconds.
    pub generate_timeout_s: f64,
    pub grade_timeout_s: f64,
    pub train_timeout_s: f64,
    pub weights_timeout_s: f64,
    pub control_timeout_s: f64,
    /// How long to wait for the workers to register at start.
    pub startup_timeout_s: f64,
    /// Directory of the worker binaries in local mode; default: the coordinator's own directory.
    pub bin_dir: Option<PathBuf>,
    /// Restarts of a lost learner in local mode before the run fails.
    pub learner_restarts: u32,
    /// Restarts of each local actor or verifier that dies during the run, before the run fails
    /// (local mode; on Kubernetes the Deployments restart pods).
    pub worker_restarts: u32,
    /// Weight data plane: "auto" (NCCL when the learner and every actor can use it, else the gRPC
    /// stream), "grpc", or "nccl" (wanted; falls back to gRPC with a warning). See laser_proto::plane.
    pub weight_transport: TransportPref,
    /// The learner ranks' gradient collective: "auto" (NCCL when every rank can use it, else the
    /// gRPC ring), "grpc", or "nccl" (wanted; falls back to the ring with a warning).
    pub learner_collective: TransportPref,
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            mode: ClusterMode::Local,
            actors: 2,
            verifiers: 1,
            learner_ranks: 1,
            learner_zero_stage: 0,
            listen: "127.0.0.1:0".into(),
            advertise: None,
            metrics_listen: None,
            token: None,
            tls: None,
            max_message_mb: 64,
            async_mode: false,
            max_off_policy_steps: 1,
            learner_threads: 0,
            actor_threads: 0,
            heartbeat_ms: 500,
            worker_timeout_ms: 5000,
            groups_per_request: 1,
            verify_batch: 64,
            generate_timeout_s: 600.0,
            grade_timeout_s: 60.0,
            train_timeout_s: 1800.0,
            weights_timeout_s: 300.0,
            control_timeout_s: 10.0,
            startup_timeout_s: 120.0,
            bin_dir: None,
            learner_restarts: 3,
            worker_restarts: 10,
            weight_transport: TransportPref::Auto,
            learner_collective: TransportPref::Auto,
        }
    }
}

/// Environment variable that carries the cluster token to workers by default. Local mode passes
/// the token to its children this way, never on the command line (which `ps` shows).
pub const TOKEN_ENV: &str = "LASER_CLUSTER_TOKEN";

/// Where the token comes from (`cluster.token`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenSource {
    /// Name of an environment variable holding the token.
    Env(String),
    /// A file whose contents (trimmed) are the token, e.g. a mounted Kubernetes secret.
    File(PathBuf),
}

impl Default for TokenSource {
    fn default() -> Self {
        TokenSource::Env(TOKEN_ENV.to_string())
    }
}

/// PEM files for TLS (external mode, `cluster.tls`). `client_ca` turns on mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

/// `cluster.weight_transport` and `cluster.learner_collective`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportPref {
    /// NCCL when every party can use it, else the gRPC stream.
    #[default]
    Auto,
    /// Always the gRPC stream.
    Grpc,
    /// NCCL wanted; when some party cannot use it, the gRPC stream is used and the reason is
    /// logged as a warning (never a failure).
    Nccl,
}
