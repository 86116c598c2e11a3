//! `coordinator --cluster cluster.toml [--resume] [--max-steps N]`: runs a LaSeR training job.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use laser_coordinator::runner::Runner;
use laser_proto::cluster::ClusterConfig;

#[derive(Parser)]
#[command(
    name = "coordinator",
    version,
    about = "Run a LaSeR training job described by cluster.toml"
)]
struct Cli {
    /// The run's configuration; `LASER__SECTION__KEY` environment variables override it.
    #[arg(long, default_value = "cluster.toml")]
    cluster: PathBuf,
    /// Continue the run in run.dir from its last checkpoint, with the same data order.
    #[arg(long)]
    resume: bool,
    /// Override run.max_steps.
    #[arg(long)]
    max_steps: Option<u64>,
    /// Override run.dir.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// No progress bar (logs only).
    #[arg(long)]
    no_progress: bool,
}

fn main() -> std::process::ExitCode {
    laser_proto::rt::init_tracing("info");
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<std::process::ExitCode> {
    let mut cfg = ClusterConfig::load(&cli.cluster)?;
    if let Some(n) = cli.max_steps {
        cfg.run.max_steps = n;
    }
    if let Some(d) = cli.run_dir {
        cfg.run.dir = d;
    }
    cfg.validate(&cli.cluster.display().to_string())?;
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    rt.block_on(async move {
        let (mut runner, server, stop) = Runner::start(cfg, cli.resume, !cli.no_progress).await?;
        let outcome = tokio::select! {
            r = runner.run() => Some(r),
            _ = laser_proto::rt::worker::shutdown_signal() => None,
        };
        let code = match outcome {
            Some(Ok(())) => std::process::ExitCode::SUCCESS,
            Some(Err(e)) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
            None => {
                eprintln!("interrupted: stopping workers");
                runner.stop_workers().await;
                std::process::ExitCode::from(130)
            }
        };
        // Let watchers see the end of the run, then stop serving.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let _ = stop.send(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
        Ok(code)
    })
}
