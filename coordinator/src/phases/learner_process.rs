//! The `learner` child processes of the model phases (init, warm start, calibration): started
//! with their output in `logs/<phase>.log`, their JSON progress lines passed to the phase, their
//! peak RSS measured; and the progress bars those lines drive.

use std::io::IsTerminal;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use laser_config::{ClusterConfig, PromptTemplateKind};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use crate::local::threads_env;
use crate::runner::peak_rss_kb;

pub(super) fn learner_template(cfg: &ClusterConfig) -> &'static str {
    match (cfg.model.chat, cfg.data.template) {
        (true, _) => "chat",
        (false, PromptTemplateKind::PaperSuffix) => "paper",
        (false, PromptTemplateKind::Raw) => "raw",
    }
}

fn progress_style(template: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

/// A progress bar, or `None` without a terminal (then phases print plain lines).
pub(super) fn bar(show: bool, len: u64, what: &str) -> Option<indicatif::ProgressBar> {
    if !show || !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(len);
    b.set_style(progress_style(&format!(
        "{{elapsed_precise}} [{{bar:30}}] {what} {{pos}}/{{len}} {{msg}}"
    )));
    Some(b)
}

/// Runs `learner ARGS` to completion with its output in `logs/<name>.log`; each JSON line it prints
/// on stdout goes to `on_json`. Returns the JSON lines and the child's peak RSS (KiB).
pub(super) async fn run_learner(
    bin_dir: &Path,
    run_dir: &Path,
    name: &str,
    args: &[String],
    threads: u32,
    mut on_json: impl FnMut(&Value),
) -> Result<(Vec<Value>, u64)> {
    let program = bin_dir.join("learner");
    if !program.exists() {
        bail!(
            "{}: learner binary not found (build it with `cargo build --release --bins`, or set cluster.bin_dir)",
            program.display()
        );
    }
    let log_dir = run_dir.join("logs");
    std::fs::create_dir_all(&log_dir).with_context(|| log_dir.display().to_string())?;
    let log_path = log_dir.join(format!("{name}.log"));
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| log_path.display().to_string())?;
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(args)
        .envs(threads_env(threads))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.try_clone()?)
        .kill_on_drop(true);
    #[cfg(target_os = "linux")]
    unsafe {
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec here.
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    tracing::info!(phase = name, log = %log_path.display(), "learner {}", args.join(" "));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let pid = child.id().unwrap_or(0);
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("child stdout")?).lines();
    let mut json = Vec::new();
    let mut peak = 0u64;
    let mut log = log;
    let mut poll = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line.with_context(|| format!("reading {name}'s output"))? else {
                    break;
                };
                use std::io::Write;
                let _ = writeln!(log, "{line}");
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v.is_object()
                {
                    on_json(&v);
                    json.push(v);
                }
            }
            _ = poll.tick() => {
                peak = peak.max(peak_rss_kb(pid).unwrap_or(0));
            }
        }
    }
    peak = peak.max(peak_rss_kb(pid).unwrap_or(0));
    // The learner reports its own VmHWM as it exits (polling misses short-lived processes).
    if let Some(kb) = json.iter().rev().find_map(|v| v["peak_rss_kb"].as_u64()) {
        peak = peak.max(kb);
    }
    let status = child.wait().await?;
    if !status.success() {
        // anyhow's report: "Error: ..." then its causes, before any backtrace.
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let error: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("Error:"))
            .take_while(|l| !l.starts_with("Stack backtrace"))
            .filter(|l| !l.trim().is_empty())
            .collect();
        bail!(
            "phase {name}: learner exited with {status}: {}\nsee {}",
            if error.is_empty() {
                "(no error message)".to_string()
            } else {
                error.join(" ")
            },
            log_path.display()
        );
    }
    Ok((json, peak))
}

pub(super) fn self_reward_token_args(cfg: &ClusterConfig) -> Vec<String> {
    match &cfg.model.self_reward_token {
        Some(t) => vec!["--self-reward-token".into(), t.clone()],
        None => Vec::new(),
    }
}

pub(super) fn own_peak_rss_kb() -> u64 {
    peak_rss_kb(std::process::id()).unwrap_or(0)
}
