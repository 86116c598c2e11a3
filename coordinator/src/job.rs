//! The main job, `coordinator --cluster cluster.toml`: every phase from nothing to a trained,
//! evaluated and summarised policy. Each phase records itself in `run_dir/phases.json` when it
//! completes, so `--resume` skips what is done (and the RL phase resumes from its checkpoint).
//!
//! 1. `init` (`model.init = "tiny"`): `learner init` writes the embedded tiny model to
//!    `run_dir/init_model`.
//! 2. `warmstart` (`warmstart.steps > 0`): SFT pairs for the synthetic tasks (a fraction with a
//!    deliberate slip) in `run_dir/sft_data.jsonl`, then `learner sft` (checkpoints in
//!    `run_dir/warmstart/`) writes `run_dir/sft_model`.
//! 3. `calibrate` (no `algorithm.c_ref`): `learner calibrate` on the RL start model writes
//!    `run_dir/c_ref.json`, which the learner and the actors read.
//! 4. `rl`: the [`Runner`] on the RL start model, with held-out evaluations at step 0, every
//!    `run.eval_every` steps and at the end (`run_dir/eval.jsonl`).
//! 5. `report`: PNG plots in `run_dir/plots/` and `run_dir/summary.md`.
//!
//! The coordinator stays thin: the phases that need the model run as `learner` child processes
//! (local mode), like the workers, with their output in `run_dir/logs/<phase>.log`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use laser_config::{CRef, ClusterConfig, ClusterMode, ModelInit, PromptTemplateKind};
use laser_verifier::tasks::sft::{SftDataConfig, sft_pair};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use crate::data::{PromptSource, sft_tasks};
use crate::heldout_eval::{self, EvalRow, EvalSet};
use crate::local::{LocalCluster, threads_env};
use crate::runner::{Runner, StartOptions, peak_rss_kb};
use crate::summary::{RunSummary, write_summary};

pub const PHASES_FILE: &str = "phases.json";
pub const INIT_MODEL_DIR: &str = "init_model";
pub const SFT_MODEL_DIR: &str = "sft_model";
pub const SFT_DATA_FILE: &str = "sft_data.jsonl";
/// `learner sft`'s checkpoints (kept apart from the RL learner's `checkpoints/`).
pub const WARMSTART_DIR: &str = "warmstart";
pub const CALIBRATION_PROMPTS_FILE: &str = "calibration_prompts.jsonl";
pub const PLOTS_DIR: &str = "plots";
pub const SUMMARY_FILE: &str = "summary.md";
/// Samples per prompt of the c_ref calibration.
pub const CALIBRATION_PER_PROMPT: usize = 4;

/// What a completed phase recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseRecord {
    pub seconds: f64,
    /// Peak RSS of the phase's processes, KiB: the largest single process, and (RL) the sum over
    /// the processes that ran together.
    pub peak_rss_kb: u64,
    #[serde(default)]
    pub peak_rss_sum_kb: u64,
    #[serde(default)]
    pub info: serde_json::Map<String, Value>,
}

impl PhaseRecord {
    /// A phase run by one process since `started`: its peak is both the largest and the sum.
    fn one_process(
        started: Instant,
        peak_rss_kb: u64,
        info: serde_json::Map<String, Value>,
    ) -> Self {
        Self {
            seconds: started.elapsed().as_secs_f64(),
            peak_rss_kb,
            peak_rss_sum_kb: peak_rss_kb,
            info,
        }
    }
}

/// `run_dir/phases.json`: the completed phases, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases(pub BTreeMap<String, PhaseRecord>);

impl Phases {
    pub fn read(run_dir: &Path) -> Result<Self> {
        let p = run_dir.join(PHASES_FILE);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| p.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| p.display().to_string()),
        }
    }

    fn write(&self, run_dir: &Path) -> Result<()> {
        let p = run_dir.join(PHASES_FILE);
        let tmp = run_dir.join(format!("{PHASES_FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| tmp.display().to_string())?;
        std::fs::rename(&tmp, &p).with_context(|| p.display().to_string())
    }

    pub fn done(&self, phase: &str) -> bool {
        self.0.contains_key(phase)
    }

    fn complete(&mut self, run_dir: &Path, phase: &str, record: PhaseRecord) -> Result<()> {
        self.0.insert(phase.to_string(), record);
        self.write(run_dir)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct JobOptions {
    pub resume: bool,
    pub show_progress: bool,
}

/// Where the job's files went.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub run_dir: PathBuf,
    pub summary: PathBuf,
    pub plots: Vec<PathBuf>,
}

fn learner_template(cfg: &ClusterConfig) -> &'static str {
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
fn bar(show: bool, len: u64, what: &str) -> Option<indicatif::ProgressBar> {
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
async fn run_learner(
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

/// The SFT pairs of the warm start as JSONL (question, response, answer, correct).
pub fn write_sft_data(cfg: &ClusterConfig, path: &Path) -> Result<(usize, usize)> {
    use std::io::Write;
    let w = &cfg.warmstart;
    let (mix, seed, n) = sft_tasks(cfg)?;
    let data = SftDataConfig {
        wrong_fraction: w.wrong_fraction,
        seed,
        ..SftDataConfig::default()
    };
    let tmp = path.with_extension("jsonl.tmp");
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| tmp.display().to_string())?,
    );
    let mut wrong = 0;
    for i in 0..n {
        let pair = sft_pair(&mix.task(i), i, &data).map_err(|e| anyhow::anyhow!("{e}"))?;
        wrong += usize::from(!pair.correct);
        writeln!(f, "{}", serde_json::to_string(&pair)?)?;
    }
    f.flush()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| path.display().to_string())?;
    Ok((n as usize, wrong))
}

/// Prompts for the c_ref calibration: the first training tasks (`id`, `question`, `answer`).
fn write_calibration_prompts(cfg: &ClusterConfig, path: &Path, prompts: usize) -> Result<()> {
    let source = PromptSource::from_config(cfg)?;
    let text: String = (0..prompts as u64)
        .map(|i| {
            let t = source.task(i);
            serde_json::json!({"id": t.id, "question": t.question, "answer": t.gold}).to_string()
                + "\n"
        })
        .collect();
    std::fs::write(path, text).with_context(|| path.display().to_string())
}

fn self_reward_token_args(cfg: &ClusterConfig) -> Vec<String> {
    match &cfg.model.self_reward_token {
        Some(t) => vec!["--self-reward-token".into(), t.clone()],
        None => Vec::new(),
    }
}

fn own_peak_rss_kb() -> u64 {
    peak_rss_kb(std::process::id()).unwrap_or(0)
}

/// Runs the whole job (see the module docs).
pub async fn run_job(cfg: ClusterConfig, opts: JobOptions) -> Result<JobOutcome> {
    let t_job = Instant::now();
    let run_dir = cfg.run.dir.clone();
    let started = run_dir.join(PHASES_FILE).exists() || Runner::has_run(&run_dir);
    if started && !opts.resume {
        bail!(
            "run.dir {:?} already holds a run; pass --resume to continue it, or set another run.dir",
            run_dir.display().to_string()
        );
    }
    if opts.resume && !started {
        bail!(
            "--resume: {:?} holds no run to continue",
            run_dir.display().to_string()
        );
    }
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("creating run.dir {}", run_dir.display()))?;
    let mut phases = Phases::read(&run_dir)?;
    let local = cfg.cluster.mode == ClusterMode::Local;
    if !local && (cfg.model.init.is_some() || cfg.warmstart.steps > 0) {
        bail!(
            "model.init and warmstart run `learner` on the coordinator's machine, so they need cluster.mode = \"local\"; \
             in external mode prepare the model first and set model.path"
        );
    }
    let bin_dir = match &cfg.cluster.bin_dir {
        Some(d) => d.clone(),
        None => LocalCluster::default_bin_dir()?,
    };
    let template = learner_template(&cfg);

    // 1. init.
    let mut model_path = match (cfg.model.init, &cfg.model.path) {
        (Some(ModelInit::Tiny), _) => {
            let out = run_dir.join(INIT_MODEL_DIR);
            if !phases.done("init") {
                let t0 = Instant::now();
                let t = &cfg.model.tiny;
                let args: Vec<String> = [
                    "init".to_string(),
                    "--out".into(),
                    out.display().to_string(),
                    "--seed".into(),
                    cfg.run.seed.to_string(),
                    "--hidden-size".into(),
                    t.hidden_size.to_string(),
                    "--layers".into(),
                    t.num_hidden_layers.to_string(),
                    "--heads".into(),
                    t.num_attention_heads.to_string(),
                    "--kv-heads".into(),
                    t.num_key_value_heads.to_string(),
                    "--intermediate-size".into(),
                    t.intermediate_size.to_string(),
                    "--max-position-embeddings".into(),
                    t.max_position_embeddings.to_string(),
                ]
                .into();
                println!("[1/5] init: the tiny model -> {}", out.display());
                let (json, peak) = run_learner(
                    &bin_dir,
                    &run_dir,
                    "init",
                    &args,
                    cfg.cluster.learner_threads,
                    |_| {},
                )
                .await?;
                let mut info = serde_json::Map::new();
                if let Some(v) = json.iter().find(|v| v.get("params").is_some()) {
                    info.insert("params".into(), v["params"].clone());
                    info.insert("vocab_size".into(), v["vocab_size"].clone());
                }
                phases.complete(&run_dir, "init", PhaseRecord::one_process(t0, peak, info))?;
            } else {
                println!("[1/5] init: done ({})", out.display());
            }
            out
        }
        (None, Some(p)) => {
            println!("[1/5] init: model.path = {}", p.display());
            p.clone()
        }
        (None, None) => bail!("`model.path` is required (or set model.init = \"tiny\")"),
    };

    // 2. warm start.
    if cfg.warmstart.steps > 0 {
        let out = run_dir.join(SFT_MODEL_DIR);
        if !phases.done("warmstart") {
            let w = &cfg.warmstart;
            let t0 = Instant::now();
            let mut info = serde_json::Map::new();
            let data = match &w.path {
                Some(p) => p.clone(),
                None => {
                    let p = run_dir.join(SFT_DATA_FILE);
                    if !p.exists() {
                        let (n, wrong) = write_sft_data(&cfg, &p)?;
                        info.insert("pairs".into(), n.into());
                        info.insert("wrong_pairs".into(), wrong.into());
                    }
                    p
                }
            };
            let mut args: Vec<String> = vec![
                "sft".into(),
                "--backend".into(),
                cfg.model.backend.to_string(),
                "--model".into(),
                model_path.display().to_string(),
                "--data".into(),
                data.display().to_string(),
                "--out".into(),
                out.display().to_string(),
                "--steps".into(),
                w.steps.to_string(),
                "--batch-size".into(),
                w.batch_size.to_string(),
                "--micro-batch-size".into(),
                w.micro_batch_size.to_string(),
                "--lr".into(),
                w.lr.to_string(),
                "--warmup-steps".into(),
                w.warmup_steps.to_string(),
                "--min-lr-ratio".into(),
                w.min_lr_ratio.to_string(),
                "--max-response-tokens".into(),
                w.max_response_tokens.to_string(),
                "--seed".into(),
                w.seed
                    .unwrap_or(cfg.run.seed.wrapping_add(1000))
                    .to_string(),
                "--run-dir".into(),
                run_dir.join(WARMSTART_DIR).display().to_string(),
                "--checkpoint-every".into(),
                w.checkpoint_every.max(1).to_string(),
                "--template".into(),
                template.into(),
            ];
            if w.cosine {
                args.push("--cosine".into());
            }
            args.extend(self_reward_token_args(&cfg));
            println!(
                "[2/5] warm start: {} SFT steps of {} sequences (lr {}, {}) -> {}",
                w.steps,
                w.batch_size,
                w.lr,
                if w.cosine { "cosine" } else { "constant" },
                out.display()
            );
            let b = bar(opts.show_progress, w.steps, "warm-start SFT");
            let every = (w.steps / 20).max(1);
            let mut last_loss = f64::NAN;
            let (_, peak) = run_learner(
                &bin_dir,
                &run_dir,
                "warmstart",
                &args,
                cfg.cluster.learner_threads,
                |v| {
                    let (Some(step), Some(loss)) = (v["step"].as_u64(), v["loss"].as_f64()) else {
                        return;
                    };
                    last_loss = loss;
                    let done = step + 1;
                    match &b {
                        Some(b) => {
                            b.set_position(done);
                            b.set_message(format!(
                                "loss {loss:.4} lr {:.2e}",
                                v["lr"].as_f64().unwrap_or(0.0)
                            ));
                        }
                        None if done % every == 0 || done == w.steps => {
                            println!("  sft step {done}/{} loss {loss:.4}", w.steps)
                        }
                        None => {}
                    }
                },
            )
            .await?;
            if let Some(b) = b {
                b.finish();
            }
            info.insert("steps".into(), w.steps.into());
            if last_loss.is_finite() {
                info.insert("final_loss".into(), last_loss.into());
            }
            phases.complete(
                &run_dir,
                "warmstart",
                PhaseRecord::one_process(t0, peak, info),
            )?;
        } else {
            println!("[2/5] warm start: done ({})", out.display());
        }
        model_path = out;
    } else {
        println!("[2/5] warm start: skipped (warmstart.steps = 0)");
    }

    // 3. c_ref.
    match cfg.algorithm.c_ref {
        Some(c) => println!("[3/5] c_ref = {c} (algorithm.c_ref)"),
        None if !local => {
            println!("[3/5] c_ref: the workers read it from run.dir/c_ref.json (external mode)")
        }
        None if phases.done("calibrate") => println!("[3/5] c_ref: done"),
        None => {
            let t0 = Instant::now();
            let n = cfg.algorithm.calibration_samples as usize;
            let prompts_path = run_dir.join(CALIBRATION_PROMPTS_FILE);
            write_calibration_prompts(&cfg, &prompts_path, n.div_ceil(CALIBRATION_PER_PROMPT))?;
            let mut args: Vec<String> = vec![
                "calibrate".into(),
                "--backend".into(),
                cfg.model.backend.to_string(),
                "--model".into(),
                model_path.display().to_string(),
                "--data".into(),
                prompts_path.display().to_string(),
                "--n".into(),
                n.to_string(),
                "--run-dir".into(),
                run_dir.display().to_string(),
                "--samples-per-prompt".into(),
                CALIBRATION_PER_PROMPT.to_string(),
                "--max-new-tokens".into(),
                cfg.algorithm.max_response_tokens.to_string(),
                "--temperature".into(),
                cfg.algorithm.temperature.to_string(),
                "--seed".into(),
                cfg.run.seed.to_string(),
                "--template".into(),
                template.into(),
            ];
            args.extend(self_reward_token_args(&cfg));
            println!(
                "[3/5] calibrating c_ref on {n} samples of {}",
                model_path.display()
            );
            let b = bar(opts.show_progress, n as u64, "calibrating c_ref");
            let (_, peak) = run_learner(
                &bin_dir,
                &run_dir,
                "calibrate",
                &args,
                cfg.cluster.learner_threads,
                |v| {
                    if let (Some(b), Some(done)) = (&b, v["calibrated"].as_u64()) {
                        b.set_position(done);
                    }
                },
            )
            .await?;
            if let Some(b) = b {
                b.finish();
            }
            let c = read_c_ref(&run_dir).context("calibration wrote no c_ref.json")?;
            println!(
                "  c_ref = {c:.4} -> {}",
                run_dir.join("c_ref.json").display()
            );
            phases.complete(
                &run_dir,
                "calibrate",
                PhaseRecord::one_process(
                    t0,
                    peak,
                    serde_json::Map::from_iter([("c_ref".to_string(), c.into())]),
                ),
            )?;
        }
    }

    // 4. RL.
    let mut rl_cfg = cfg.clone();
    rl_cfg.model.path = Some(model_path.clone());
    rl_cfg.model.init = None;
    rl_cfg.validate("the RL phase's configuration")?;
    // RL is done when its state reached run.max_steps and the final evaluation exists; a larger
    // --max-steps on --resume continues it.
    let rl_done = crate::runner::RunState::read(&run_dir)?
        .is_some_and(|s| s.step >= cfg.run.max_steps)
        && (EvalSet::from_config(&cfg)?.is_none()
            || heldout_eval::read_rows(&run_dir)?
                .iter()
                .any(|r| r.step == cfg.run.max_steps));
    if !rl_done {
        let t0 = Instant::now();
        let resume = Runner::has_run(&run_dir);
        println!(
            "[4/5] RL: {} steps of {} prompts x {} samples ({}) from {}{}",
            cfg.run.max_steps,
            cfg.algorithm.batch_prompts,
            cfg.algorithm.group_size,
            if cfg.algorithm.laser {
                "GRPO + LaSeR"
            } else {
                "plain GRPO"
            },
            model_path.display(),
            if resume { ", resumed" } else { "" }
        );
        let (mut runner, server, stop) = Runner::launch(
            rl_cfg,
            StartOptions {
                resume: Some(resume),
                learner: true,
                show_progress: opts.show_progress,
                announce: true,
            },
        )
        .await?;
        let result = runner.run().await;
        let _ = stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        result?;
        let peaks = runner.peak_rss();
        let mut info = serde_json::Map::new();
        info.insert(
            "peak_rss_kb_by_process".into(),
            serde_json::to_value(peaks).unwrap_or_default(),
        );
        info.insert("resumed".into(), resume.into());
        let own = own_peak_rss_kb();
        // Sessions of a resumed run add up.
        let before = phases.0.get("rl").cloned().unwrap_or_default();
        phases.complete(
            &run_dir,
            "rl",
            PhaseRecord {
                seconds: before.seconds + t0.elapsed().as_secs_f64(),
                peak_rss_kb: peaks
                    .values()
                    .copied()
                    .max()
                    .unwrap_or(0)
                    .max(own)
                    .max(before.peak_rss_kb),
                peak_rss_sum_kb: (peaks.values().sum::<u64>() + own).max(before.peak_rss_sum_kb),
                info,
            },
        )?;
    } else {
        println!("[4/5] RL: done");
    }

    // 5. Report.
    println!("[5/5] report");
    let outcome = write_report(&cfg, &run_dir, &phases, t_job.elapsed().as_secs_f64())?;
    println!("plots:   {}", run_dir.join(PLOTS_DIR).display());
    println!("summary: {}", outcome.summary.display());
    Ok(outcome)
}

fn read_c_ref(run_dir: &Path) -> Option<f64> {
    CRef::read(run_dir).ok().flatten().map(|c| c.c_ref)
}

fn mb(kb: u64) -> String {
    format!("{:.0} MB", kb as f64 / 1024.0)
}

fn minutes(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}

/// Plots and the markdown summary of the run in `run_dir`.
pub fn write_report(
    cfg: &ClusterConfig,
    run_dir: &Path,
    phases: &Phases,
    session_seconds: f64,
) -> Result<JobOutcome> {
    let train_rows = crate::plots::read_rows(&run_dir.join(crate::metrics::METRICS_FILE))?;
    let eval_rows = crate::plots::read_rows(&run_dir.join(heldout_eval::EVAL_FILE))?;
    let plots = crate::plots::write_run_plots(&run_dir.join(PLOTS_DIR), &train_rows, &eval_rows)?;
    let evals: Vec<(u64, crate::eval_metrics::EvalReport)> = heldout_eval::read_rows(run_dir)?
        .into_iter()
        .map(|r| (r.step, r.report))
        .collect();

    let mut facts: Vec<(String, String)> = Vec::new();
    let model = match (cfg.model.init, &cfg.model.path) {
        (Some(ModelInit::Tiny), _) => {
            let t = &cfg.model.tiny;
            format!(
                "laser_model::tiny (hidden {}, {} layers, {}/{} heads, ff {}), seed {}",
                t.hidden_size,
                t.num_hidden_layers,
                t.num_attention_heads,
                t.num_key_value_heads,
                t.intermediate_size,
                cfg.run.seed
            )
        }
        (None, Some(p)) => p.display().to_string(),
        (None, None) => "–".into(),
    };
    facts.push(("model".into(), model));
    if let Some(p) = phases.0.get("init").and_then(|r| r.info.get("params")) {
        let params = p.as_f64().unwrap_or(0.0);
        facts.push(("parameters".into(), format!("{:.2}M", params / 1e6)));
    }
    facts.push((
        "algorithm".into(),
        if cfg.algorithm.laser {
            format!(
                "GRPO + LaSeR (reasoning warm-up {} steps, self-rewarding warm-up {} steps, alpha {}, beta_v {})",
                cfg.algorithm.reasoning_warmup_steps,
                cfg.algorithm.self_rewarding_warmup_steps,
                cfg.algorithm.alpha,
                cfg.algorithm.beta_v
            )
        } else {
            "plain GRPO (algorithm.laser = false)".into()
        },
    ));
    facts.push((
        "RL steps".into(),
        format!(
            "{} of {} ({} prompts x {} samples, lr {})",
            train_rows.len(),
            cfg.run.max_steps,
            cfg.algorithm.batch_prompts,
            cfg.algorithm.group_size,
            cfg.algorithm.lr
        ),
    ));
    if let Some(w) = phases.0.get("warmstart") {
        facts.push((
            "warm start".into(),
            format!(
                "{} SFT steps, final loss {}",
                w.info.get("steps").and_then(Value::as_u64).unwrap_or(0),
                w.info
                    .get("final_loss")
                    .and_then(Value::as_f64)
                    .map_or("–".into(), |l| format!("{l:.4}"))
            ),
        ));
    }
    let c_ref = cfg.algorithm.c_ref.or_else(|| read_c_ref(run_dir));
    facts.push((
        "c_ref".into(),
        c_ref.map_or("–".into(), |c| format!("{c:.4}")),
    ));
    if let Ok(Some(set)) = EvalSet::from_config(cfg) {
        facts.push((
            "held-out set".into(),
            format!("{}, k = {}", set.description, cfg.eval.k),
        ));
    }
    let mut total = 0.0;
    for name in ["init", "warmstart", "calibrate", "rl"] {
        if let Some(r) = phases.0.get(name) {
            total += r.seconds;
            let mem = if r.peak_rss_sum_kb > r.peak_rss_kb {
                format!(
                    "peak RSS {} summed over its processes (largest {})",
                    mb(r.peak_rss_sum_kb),
                    mb(r.peak_rss_kb)
                )
            } else {
                format!("peak RSS {}", mb(r.peak_rss_kb))
            };
            facts.push((
                format!("phase {name}"),
                format!("{}, {mem}", minutes(r.seconds)),
            ));
        }
    }
    facts.push((
        "wall time".into(),
        format!(
            "{} over the phases (this session: {})",
            minutes(total),
            minutes(session_seconds)
        ),
    ));
    facts.push((
        "machine".into(),
        format!(
            "{} CPUs available",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
    ));
    let summary_path = run_dir.join(SUMMARY_FILE);
    let rel_plots: Vec<String> = plots
        .iter()
        .filter_map(|p| p.strip_prefix(run_dir).ok())
        .map(|p| p.display().to_string())
        .collect();
    write_summary(
        &summary_path,
        &RunSummary {
            title: format!(
                "LaSeR run: {}",
                run_dir
                    .file_name()
                    .map_or("run".into(), |n| n.to_string_lossy().into_owned())
            ),
            facts,
            evals,
            train_rows,
            plots: rel_plots,
        },
    )
    .with_context(|| summary_path.display().to_string())?;
    Ok(JobOutcome {
        run_dir: run_dir.to_path_buf(),
        summary: summary_path,
        plots,
    })
}

/// `coordinator eval`: what to evaluate and how.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub checkpoint: PathBuf,
    /// JSONL problems; none: the configuration's held-out set.
    pub data: Option<PathBuf>,
    pub k: u32,
    pub problems: Option<u32>,
    pub c_ref: Option<f64>,
    pub actors: u32,
    pub out_dir: Option<PathBuf>,
    pub show_progress: bool,
    /// Evaluations of the same problems, repeat r sampling with seed eval_seed + r (at least 1).
    pub repeats: u32,
}

/// c_ref for a checkpoint: `c_ref.json` in it or in one of its three nearest ancestors (a run
/// directory holds it beside `checkpoints/step-N/`).
pub fn find_c_ref(checkpoint: &Path) -> Option<(f64, PathBuf)> {
    CRef::find_near(checkpoint).map(|(c, path)| (c.c_ref, path))
}

/// Standalone evaluation of a model directory on a mini local cluster (actors + 1 verifier, no
/// learner), through the same path as the job's evaluations: one row per repeat (repeat 0
/// samples as a training run's evaluation does).
pub async fn eval_checkpoint(mut cfg: ClusterConfig, o: EvalOptions) -> Result<Vec<EvalRow>> {
    if o.repeats == 0 {
        bail!("--repeats 0: evaluate at least once");
    }
    if !o.checkpoint.exists() {
        bail!("--checkpoint {}: no such directory", o.checkpoint.display());
    }
    cfg.model.path = Some(o.checkpoint.clone());
    cfg.model.init = None;
    cfg.cluster.mode = ClusterMode::Local;
    cfg.cluster.actors = o.actors.max(1);
    cfg.cluster.verifiers = 1;
    cfg.cluster.token = None;
    cfg.cluster.listen = "127.0.0.1:0".into();
    cfg.cluster.advertise = None;
    cfg.eval.enabled = true;
    cfg.eval.k = o.k;
    if let Some(d) = &o.data {
        cfg.data.eval_path = Some(d.clone());
        // A file given on the command line is evaluated whole unless --problems says otherwise.
        cfg.eval.problems = 0;
    }
    if let Some(n) = o.problems {
        cfg.eval.problems = n;
    }
    cfg.algorithm.c_ref = match (o.c_ref, cfg.algorithm.c_ref) {
        (Some(c), _) => Some(c),
        (None, Some(c)) => Some(c),
        (None, None) => match find_c_ref(&o.checkpoint) {
            Some((c, from)) => {
                tracing::info!(c_ref = c, from = %from.display(), "c_ref");
                Some(c)
            }
            None => bail!(
                "no c_ref for {}: pass --c-ref, or keep the run's c_ref.json beside its checkpoints",
                o.checkpoint.display()
            ),
        },
    };
    let scratch = o
        .out_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("laser-eval-{}", std::process::id())));
    std::fs::create_dir_all(&scratch).with_context(|| scratch.display().to_string())?;
    cfg.run.dir = scratch.clone();
    cfg.validate("coordinator eval")?;
    if EvalSet::from_config(&cfg)?.is_none() {
        bail!("nothing to evaluate: pass --data FILE (a JSONL with question and answer fields)");
    }
    let (mut runner, server, stop) = Runner::launch(
        cfg.clone(),
        StartOptions {
            resume: None,
            learner: false,
            show_progress: o.show_progress,
            announce: false,
        },
    )
    .await?;
    let result = async {
        runner
            .wait_for_workers(0, 1, cfg.cluster.actors as usize)
            .await?;
        if let Some(set) = runner.eval_set() {
            eprintln!(
                "evaluating {} on {} with k = {}{}",
                o.checkpoint.display(),
                set.description,
                cfg.eval.k,
                if o.repeats > 1 {
                    format!(", {} sampling seeds", o.repeats)
                } else {
                    String::new()
                }
            );
        }
        let mut rows = Vec::with_capacity(o.repeats as usize);
        for repeat in 0..u64::from(o.repeats) {
            rows.push(runner.evaluate_repeat(0, 0, repeat).await?);
        }
        anyhow::Ok(rows)
    }
    .await;
    runner.stop_workers().await;
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    let rows = result?;
    if o.out_dir.is_some() {
        for row in &rows {
            heldout_eval::append_row(&scratch, row)?;
        }
    } else {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(rows)
}

/// `coordinator compare RUN...`: each run's first and last evaluation.
pub fn compare_runs(runs: &[PathBuf]) -> Result<Vec<(String, Option<EvalRow>, EvalRow)>> {
    runs.iter()
        .map(|dir| {
            let rows = heldout_eval::read_rows(dir)?;
            let last = rows.last().cloned().with_context(|| {
                format!(
                    "{}: no evaluations ({} is empty or missing)",
                    dir.display(),
                    heldout_eval::EVAL_FILE
                )
            })?;
            let first = (rows.len() > 1).then(|| rows[0].clone());
            let name = dir.file_name().map_or_else(
                || dir.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            Ok((name, first, last))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> ClusterConfig {
        ClusterConfig::from_toml_with_env(text, "t", Vec::new()).unwrap()
    }

    #[test]
    fn sft_data_has_the_configured_slips_and_size() {
        let dir = std::env::temp_dir().join(format!("laser-job-sft-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = cfg(
            "[model]\ninit = \"tiny\"\n[warmstart]\nsteps = 25\nbatch_size = 8\nwrong_fraction = 0.5\n\
             [[warmstart.mix]]\nmax_digits = 1\nchain_length = 1\n[[warmstart.mix]]\nchain_length = 2\n",
        );
        let p = dir.join(SFT_DATA_FILE);
        let (n, wrong) = write_sft_data(&c, &p).unwrap();
        assert_eq!(n, 200);
        assert!((60..140).contains(&wrong), "{wrong} of 200 wrong");
        let rows: Vec<Value> = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 200);
        for r in &rows {
            assert!(r["question"].as_str().unwrap().starts_with("Compute "));
            assert!(r["response"].as_str().unwrap().contains("\\boxed{"));
            // The response reaches the gold answer exactly when it is marked correct.
            let grade = laser_verifier::Grader::new(Default::default()).grade(
                r["answer"].as_str().unwrap(),
                r["response"].as_str().unwrap(),
            );
            assert_eq!(grade.reward == 1, r["correct"].as_bool().unwrap(), "{r}");
        }
        // The same config writes the same file.
        let again = dir.join("again.jsonl");
        write_sft_data(&c, &again).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&again).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn phases_round_trip_and_c_ref_is_found_above_a_checkpoint() {
        let dir = std::env::temp_dir().join(format!("laser-job-phases-{}", std::process::id()));
        let ckpt = dir.join("checkpoints").join("step-000004");
        std::fs::create_dir_all(&ckpt).unwrap();
        let mut p = Phases::read(&dir).unwrap();
        assert!(!p.done("init"));
        p.complete(
            &dir,
            "init",
            PhaseRecord {
                seconds: 1.5,
                ..Default::default()
            },
        )
        .unwrap();
        let again = Phases::read(&dir).unwrap();
        assert!(again.done("init"));
        assert_eq!(again, p);
        assert!(find_c_ref(&ckpt).is_none());
        std::fs::write(dir.join("c_ref.json"), r#"{"c_ref": -6.5}"#).unwrap();
        assert_eq!(find_c_ref(&ckpt).unwrap().0, -6.5);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
