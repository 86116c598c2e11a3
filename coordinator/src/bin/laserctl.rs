//! `laserctl status|workers|watch [--json]`: the monitoring client of a running coordinator.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use laser_config::TokenSource;
use laser_coordinator::ctl;
use laser_coordinator::runner::{ADDR_FILE, TOKEN_FILE};
use laser_proto::rt::{
    ClientOptions, ClusterToken, TOKEN_ENV, next_within, request, with_deadline,
};
use laser_proto::v1::{GetStatusRequest, ListWorkersRequest, WatchMetricsRequest};

#[derive(Parser)]
#[command(name = "laserctl", version, about = "Inspect a running LaSeR cluster")]
struct Cli {
    /// Coordinator address (host:port). Default: read from <run-dir>/coordinator.addr.
    #[arg(long, global = true)]
    addr: Option<String>,
    /// Run directory of a local run (finds its address and token).
    #[arg(long, global = true, default_value = "runs/default")]
    run_dir: PathBuf,
    /// File holding the cluster token. Default: $LASER_CLUSTER_TOKEN, else <run-dir>/token.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Deadline of each call, seconds.
    #[arg(long, global = true, default_value_t = 10.0)]
    timeout: f64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run state, step, versions, worker counts and the last step's metrics.
    Status,
    /// Every worker with role, state, endpoint, weights version and load.
    Workers,
    /// Stream step metrics as they are recorded (from --from-step), until the run ends.
    Watch {
        #[arg(long, default_value_t = 0)]
        from_step: u64,
        /// Stop after this many rows.
        #[arg(long)]
        limit: Option<usize>,
    },
}

fn main() -> std::process::ExitCode {
    laser_proto::rt::init_tracing("warn");
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn token(cli: &Cli) -> Result<ClusterToken> {
    if let Some(f) = &cli.token_file {
        return Ok(ClusterToken::from_file(f)?);
    }
    if std::env::var_os(TOKEN_ENV).is_some() {
        return Ok(ClusterToken::load(&TokenSource::Env(TOKEN_ENV.into()))?);
    }
    let f = cli.run_dir.join(TOKEN_FILE);
    if f.exists() {
        return Ok(ClusterToken::from_file(&f)?);
    }
    bail!("no cluster token: pass --token-file, set {TOKEN_ENV}, or point --run-dir at a local run")
}

async fn run(cli: Cli) -> Result<()> {
    let addr = match &cli.addr {
        Some(a) => a.clone(),
        None => {
            let p = cli.run_dir.join(ADDR_FILE);
            std::fs::read_to_string(&p)
                .with_context(|| format!("{} (pass --addr or --run-dir)", p.display()))?
                .trim()
                .to_string()
        }
    };
    let opts = ClientOptions::new(token(&cli)?);
    let d = Duration::from_secs_f64(cli.timeout.max(0.1));
    let mut monitor = opts.monitor(opts.connect(&addr).await?);
    match cli.command {
        Command::Status => {
            let s = with_deadline(
                "Monitor.GetStatus",
                d,
                monitor.get_status(request(GetStatusRequest {}, d)),
            )
            .await?
            .into_inner();
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&ctl::status_json(&s))?);
            } else {
                print!("{}", ctl::status_table(&s));
            }
        }
        Command::Workers => {
            let w = with_deadline(
                "Monitor.ListWorkers",
                d,
                monitor.list_workers(request(ListWorkersRequest {}, d)),
            )
            .await?
            .into_inner()
            .workers;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&ctl::workers_json(&w))?);
            } else {
                print!("{}", ctl::workers_table(&w));
            }
        }
        Command::Watch { from_step, limit } => {
            // The stream lives as long as the run; the deadline applies to opening it and to
            // the wait for each row (a step can be slow, so the idle limit is generous).
            let mut stream = with_deadline(
                "Monitor.WatchMetrics",
                d,
                monitor.watch_metrics(WatchMetricsRequest { from_step }),
            )
            .await?
            .into_inner();
            let idle = Duration::from_secs(3600);
            let mut n = 0;
            while let Some(row) = next_within("Monitor.WatchMetrics", idle, &mut stream).await? {
                if cli.json {
                    println!("{}", serde_json::to_string(&row)?);
                } else {
                    println!("{}", ctl::metrics_line(&row));
                }
                n += 1;
                if limit.is_some_and(|l| n >= l) {
                    break;
                }
            }
        }
    }
    Ok(())
}
