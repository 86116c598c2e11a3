//! `coordinator --cluster cluster.toml [--resume] [--max-steps N]`: runs a LaSeR training job (init,
//! warm start, c_ref calibration, RL with held-out evaluations, plots and summary; see
//! `laser_coordinator::phases`).
//!
//! `coordinator eval --checkpoint DIR --data FILE --k 8`: evaluates a model directory.
//! `coordinator compare RUN_A RUN_B`: the final evaluations of runs side by side; `coordinator
//! compare --seeds ROOT`: the same over training seeds, as mean ± standard error.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use laser_config::ClusterConfig;
use laser_coordinator::checkpoint_eval::{self, EvalOptions};
use laser_coordinator::heldout_eval;
use laser_coordinator::kcurve;
use laser_coordinator::phases::{self, JobOptions};
use laser_coordinator::seed_summary;

#[derive(Parser)]
#[command(
    name = "coordinator",
    version,
    about = "Run a LaSeR training job described by cluster.toml",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The run's configuration; `LASER__SECTION__KEY` environment variables override it.
    #[arg(long, default_value = "cluster.toml")]
    cluster: PathBuf,
    /// Continue the run in run.dir: completed phases are skipped, RL resumes from its last
    /// checkpoint with the same data order.
    #[arg(long)]
    resume: bool,
    /// Override run.max_steps.
    #[arg(long)]
    max_steps: Option<u64>,
    /// Override run.dir.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Start RL from this model directory (e.g. another run's sft_model): replaces model.path and
    /// model.init, and skips the warm start.
    #[arg(long)]
    model: Option<PathBuf>,
    /// No progress bars (plain lines only).
    #[arg(long)]
    no_progress: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate a model directory (a checkpoint, or any HF model directory) on held-out problems:
    /// k samples per problem through a local actor, graded by a local verifier.
    Eval {
        /// Model directory (config.json, model.safetensors, tokenizer.json), e.g.
        /// RUN/checkpoints/step-000100 or RUN/sft_model.
        #[arg(long)]
        checkpoint: PathBuf,
        /// JSONL problems (question + answer fields); default: the configuration's held-out set.
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, default_value_t = 8)]
        k: u32,
        /// Evaluate the first N problems (synthetic: draw N).
        #[arg(long)]
        problems: Option<u32>,
        /// Sampling, template and algorithm settings (default: built-in defaults). Its model
        /// section is replaced by --checkpoint.
        #[arg(long)]
        cluster: Option<PathBuf>,
        /// c_ref of the self-reward (default: c_ref.json in the checkpoint or above it).
        #[arg(long)]
        c_ref: Option<f64>,
        #[arg(long, default_value_t = 1)]
        actors: u32,
        /// Keep the mini cluster's directory (logs, eval.jsonl, eval_samples/step-000000.jsonl with
        /// every graded sample) here.
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Evaluate N times with other sampling seeds (the same problems) and report each
        /// metric's mean and standard error: one evaluation of 128 problems moves by a few
        /// problems from seed to seed. Repeat 0 is the plain evaluation.
        #[arg(long, default_value_t = 1)]
        repeats: u32,
        /// Print the report as JSON (with --repeats: {"rows": [...], "summary": {...}}).
        #[arg(long)]
        json: bool,
    },
    /// The inference-time-scaling curve: maj@k, r_s-weighted maj@k and best-of-k for k = 1, 2,
    /// 4, ... from an evaluation's saved samples (eval.save_samples); writes RUN/plots/kcurve.png.
    Kcurve {
        /// Run directories (each with eval_samples/).
        #[arg(required = true, num_args = 1..)]
        runs: Vec<PathBuf>,
        /// The evaluation at this training step (default: each run's last saved one).
        #[arg(long)]
        step: Option<u64>,
        /// Also draw all runs into one PNG here.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Print the final evaluations of runs side by side (e.g. LaSeR vs plain GRPO).
    Compare {
        /// Run directories (each with an eval.jsonl).
        #[arg(required_unless_present = "seeds", num_args = 1..)]
        runs: Vec<PathBuf>,
        /// Instead of runs: ROOT/seed-S/LEG (scripts/ablation --seeds N), every final metric as
        /// mean ± standard error over the seeds, per leg, and the legs' paired difference.
        #[arg(long, value_name = "ROOT", conflicts_with = "runs")]
        seeds: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Prove from a run directory's ledger (ledger.jsonl) that every scheduled prompt group was
    /// trained exactly once, in the recorded data order, never staler than the run allows, across
    /// every restart and rollback. Exit status 1 when a problem is found.
    Audit {
        /// The run directory (run.dir; the RL run's, e.g. runs/default).
        run_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Convert a task file (JSONL or parquet, read with the default column mapping) into a
    /// parquet file in verl's layout (data_source, prompt messages, reward_model.ground_truth,
    /// extra_info), e.g. to share one dataset between verl and this trainer.
    ToVerlParquet {
        input: PathBuf,
        output: PathBuf,
        /// `data_source` of rows that have none.
        #[arg(long, default_value = "math")]
        data_source: String,
        /// `extra_info.split`.
        #[arg(long, default_value = "train")]
        split: String,
        /// Prompt of rows without chat messages: the question under this template.
        #[arg(long, value_enum, default_value_t = TemplateChoice::PaperSuffix)]
        template: TemplateChoice,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TemplateChoice {
    PaperSuffix,
    Raw,
}

fn main() -> std::process::ExitCode {
    laser_proto::rt::init_tracing("info");
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Eval {
            checkpoint,
            data,
            k,
            problems,
            cluster,
            c_ref,
            actors,
            out_dir,
            repeats,
            json,
        }) => eval(
            cluster,
            EvalOptions {
                checkpoint,
                data,
                k,
                problems,
                c_ref,
                actors,
                out_dir,
                show_progress: !cli.no_progress,
                repeats,
            },
            json,
        ),
        Some(Command::Kcurve {
            runs,
            step,
            out,
            json,
        }) => kcurve(&runs, step, out.as_deref(), json),
        Some(Command::Compare {
            seeds: Some(root),
            json,
            ..
        }) => compare_seeds(&root, json),
        Some(Command::Compare { runs, json, .. }) => compare(&runs, json),
        Some(Command::Audit { run_dir, json }) => audit(&run_dir, json),
        Some(Command::ToVerlParquet {
            input,
            output,
            data_source,
            split,
            template,
        }) => to_verl_parquet(&input, &output, &data_source, &split, template),
        None => train(cli),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn train(cli: Cli) -> Result<std::process::ExitCode> {
    let mut cfg = ClusterConfig::load(&cli.cluster)?;
    if let Some(n) = cli.max_steps {
        cfg.run.max_steps = n;
    }
    if let Some(d) = cli.run_dir {
        cfg.run.dir = d;
    }
    if let Some(m) = cli.model {
        cfg.model.path = Some(m);
        cfg.model.init = None;
        cfg.warmstart.steps = 0;
    }
    cfg.validate(&cli.cluster.display().to_string())?;
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    rt.block_on(async move {
        let opts = JobOptions {
            resume: cli.resume,
            show_progress: !cli.no_progress,
        };
        // Dropping the job on Ctrl-C/SIGTERM kills its children (kill_on_drop, PDEATHSIG).
        let outcome = tokio::select! {
            r = phases::run_job(cfg, opts) => Some(r),
            _ = laser_proto::rt::worker::shutdown_signal() => None,
        };
        Ok(match outcome {
            Some(Ok(_)) => std::process::ExitCode::SUCCESS,
            Some(Err(e)) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
            None => {
                eprintln!("interrupted: workers stopped; continue with --resume");
                std::process::ExitCode::from(130)
            }
        })
    })
}

fn eval(cluster: Option<PathBuf>, o: EvalOptions, json: bool) -> Result<std::process::ExitCode> {
    let cfg = match &cluster {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
            ClusterConfig::from_toml_with_env(&text, &p.display().to_string(), std::env::vars())?
        }
        // Every section at its defaults (plus LASER__ overrides).
        None => ClusterConfig::from_toml_with_env("", "defaults", std::env::vars())?,
    };
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    let rows = rt.block_on(checkpoint_eval::eval_checkpoint(cfg, o))?;
    let reports: Vec<_> = rows.iter().map(|r| r.report.clone()).collect();
    let (seconds, tokens) = rows.iter().fold((0.0, 0), |(s, t), r| {
        (s + r.seconds, t + r.generated_tokens)
    });
    match (rows.as_slice(), heldout_eval::summarize_repeats(&reports)) {
        ([row], _) if json => println!("{}", serde_json::to_string_pretty(row)?),
        ([row], _) => print!("{}", heldout_eval::report_table(&row.report)),
        (_, Some(summary)) if json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"rows": rows, "summary": summary}))?
        ),
        (_, Some(summary)) => print!(
            "{}",
            heldout_eval::repeat_table(&summary, reports[0].problems, reports[0].k)
        ),
        (_, None) => anyhow::bail!("no evaluation ran"),
    }
    if !json {
        println!("({seconds:.1} s, {tokens} tokens generated)");
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn kcurve(
    runs: &[PathBuf],
    step: Option<u64>,
    out: Option<&std::path::Path>,
    json: bool,
) -> Result<std::process::ExitCode> {
    let mut curves = Vec::new();
    for run in runs {
        let c = kcurve::run_kcurve(run, step)?;
        let name = run.file_name().map_or_else(
            || run.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let png = run.join("plots").join("kcurve.png");
        kcurve::write_kcurve_plot(&png, &[(name.clone(), c.clone())])?;
        if !json {
            print!("{}", kcurve::kcurve_table(&name, &c));
            println!("plot: {}", png.display());
        }
        curves.push((name, c));
    }
    if let Some(out) = out {
        kcurve::write_kcurve_plot(out, &curves)?;
        if !json {
            println!("plot of all runs: {}", out.display());
        }
    }
    if json {
        let v: Vec<_> = curves.iter().map(|(_, c)| c).collect();
        match v.as_slice() {
            [one] => println!("{}", serde_json::to_string_pretty(one)?),
            many => println!("{}", serde_json::to_string_pretty(many)?),
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn compare_seeds(root: &std::path::Path, json: bool) -> Result<std::process::ExitCode> {
    let c = seed_summary::compare_seeds(root)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        print!("{}", seed_summary::seed_table(&c));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn to_verl_parquet(
    input: &std::path::Path,
    output: &std::path::Path,
    data_source: &str,
    split: &str,
    template: TemplateChoice,
) -> Result<std::process::ExitCode> {
    use laser_verifier::tasks::jsonl::JsonlFields;
    use laser_verifier::tasks::parquet::{load_tasks, write_verl_parquet};
    use laser_verifier::tasks::template::{Prompt, PromptTemplate};
    let mut tasks = load_tasks(input, &JsonlFields::default())?;
    for t in &mut tasks {
        if t.data_source.is_empty() {
            t.data_source = data_source.to_string();
        }
    }
    let template = match template {
        TemplateChoice::PaperSuffix => PromptTemplate::PaperSuffix,
        TemplateChoice::Raw => PromptTemplate::Raw,
    };
    write_verl_parquet(
        output,
        &tasks,
        |t| match template.render(&t.question) {
            Prompt::Text(text) => text,
            Prompt::Chat(m) => m
                .into_iter()
                .map(|m| m.content)
                .collect::<Vec<_>>()
                .join("\n"),
        },
        split,
    )?;
    println!(
        "{}: {} rows in verl's layout",
        output.display(),
        tasks.len()
    );
    Ok(std::process::ExitCode::SUCCESS)
}

fn audit(run_dir: &std::path::Path, json: bool) -> Result<std::process::ExitCode> {
    let a = laser_coordinator::ledger::audit(run_dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&a)?);
    } else {
        println!("{}", a);
    }
    Ok(if a.ok() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

fn compare(runs: &[PathBuf], json: bool) -> Result<std::process::ExitCode> {
    let rows = checkpoint_eval::compare_runs(runs)?;
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, first, last)| {
                serde_json::json!({"run": name, "first": first, "final": last})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", heldout_eval::compare_table(&rows));
    }
    Ok(std::process::ExitCode::SUCCESS)
}
