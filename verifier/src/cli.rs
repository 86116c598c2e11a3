//! The `verifier` command line as a library: its clap types and [`run`]; `src/main.rs` only parses
//! and calls [`run`].
//!
//! `verifier`: grade answers from the command line, or emit tasks.
//!
//! - `verifier grade --gold G --answer A [--json]`: one-off check.
//! - `verifier grade --batch`: JSONL `{"gold": ..., "answer": ...}` on stdin, one JSON grade per
//!   line on stdout, in order. A bad line yields `{"line": N, "error": ...}` in its place.
//! - `verifier grade ... --cluster cluster.toml [--data-source TAG]`: grade through the reward
//!   registry of the file's `[rewards]` (batch lines may carry their own `"data_source"`); the
//!   output is then a [`RewardResult`](crate::reward::RewardResult) (float reward, `error`).
//! - `verifier tasks synthetic|jsonl ...`: print tasks (and rendered prompts) as JSONL.
//!
//! - `verifier serve [--cluster cluster.toml]`: the gRPC Verifier service of the distributed
//!   runtime; with `--cluster`, items are graded by the reward their `data_source` is routed to.

use crate::reward::{RewardItem, RewardRegistry};
use crate::tasks::jsonl::{JsonlFields, load_jsonl};
use crate::tasks::synthetic::{ArithOp, SyntheticConfig, SyntheticTasks};
use crate::tasks::template::PromptTemplate;
use crate::{Grade, Grader, GraderConfig};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use laser_config::{ClusterConfig, RewardsSection};
use serde::Deserialize;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "verifier",
    version,
    about = "LaSeR verifier: math answer grading and task sources"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Grade an answer against a gold answer (or a JSONL batch on stdin).
    Grade(GradeArgs),
    /// Print tasks as JSONL: {"id", "question", "gold", "prompt"}.
    Tasks(TasksArgs),
    /// Serve the Verifier gRPC service (Grade in batches).
    Serve(ServeArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    worker: laser_proto::rt::WorkerArgs,
    #[command(flatten)]
    config: ConfigArgs,
    /// cluster.toml whose `[rewards]` routes items by data_source (default: math for all).
    #[arg(long)]
    cluster: Option<PathBuf>,
}

#[derive(Args)]
pub struct GradeArgs {
    /// Gold answer or full reference solution.
    #[arg(
        long,
        required_unless_present = "batch",
        conflicts_with = "batch",
        allow_hyphen_values = true
    )]
    gold: Option<String>,
    /// The response to grade.
    #[arg(
        long,
        required_unless_present = "batch",
        conflicts_with = "batch",
        allow_hyphen_values = true
    )]
    answer: Option<String>,
    /// Read {"gold", "answer"} JSONL from stdin, write one grade per line.
    #[arg(long)]
    batch: bool,
    /// Print the grade as JSON (batch mode always does).
    #[arg(long)]
    json: bool,
    /// cluster.toml whose `[rewards]` picks the reward by data_source.
    #[arg(long)]
    cluster: Option<PathBuf>,
    /// The items' data_source (batch lines may override it with their own "data_source").
    #[arg(long, requires = "cluster")]
    data_source: Option<String>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Args)]
pub struct ConfigArgs {
    /// Per-answer budget in milliseconds.
    #[arg(long, default_value_t = 2000)]
    budget_ms: u64,
    /// Relative tolerance for decimal answers.
    #[arg(long, default_value_t = 1e-6)]
    rel_tol: f64,
    /// Do not accept 0.5 for 50%.
    #[arg(long)]
    no_percent_decimal: bool,
    /// Do not fall back to the last number of the response.
    #[arg(long)]
    no_last_number: bool,
    /// Answers graded at once in batch mode (0: one per core).
    #[arg(long, default_value_t = 0)]
    parallelism: usize,
}

impl ConfigArgs {
    fn to_config(&self) -> Result<GraderConfig> {
        if !(self.rel_tol >= 0.0 && self.rel_tol < 1.0) {
            bail!("--rel-tol must be in [0, 1), got {}", self.rel_tol);
        }
        if self.budget_ms == 0 {
            bail!("--budget-ms must be positive");
        }
        Ok(GraderConfig {
            rel_tol: self.rel_tol,
            percent_equals_decimal: !self.no_percent_decimal,
            last_number_fallback: !self.no_last_number,
            parallelism: self.parallelism,
            budget: Duration::from_millis(self.budget_ms),
            ..GraderConfig::default()
        })
    }
}

#[derive(Args)]
pub struct TasksArgs {
    #[command(subcommand)]
    source: TaskSource,
    /// Prompt template for the "prompt" field.
    #[arg(long, value_enum, default_value_t = TemplateArg::Suffix, global = true)]
    template: TemplateArg,
    /// System message for --template chat.
    #[arg(long, global = true)]
    system: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TemplateArg {
    Suffix,
    Chat,
    Raw,
}

#[derive(Subcommand)]
pub enum TaskSource {
    /// Seeded synthetic arithmetic.
    Synthetic {
        #[arg(long, default_value_t = 10)]
        n: u64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 0)]
        start: u64,
        #[arg(long, default_value_t = 1)]
        min_digits: u32,
        #[arg(long, default_value_t = 2)]
        max_digits: u32,
        /// Operations, e.g. "+-*/".
        #[arg(long, default_value = "+-*")]
        ops: String,
        #[arg(long, default_value_t = 2)]
        chain_length: usize,
    },
    /// A JSONL dataset.
    Jsonl {
        path: PathBuf,
        /// Question field names, first present wins.
        #[arg(long, value_delimiter = ',', default_value = "question,prompt,problem")]
        question_field: Vec<String>,
        /// Answer field names, first present wins.
        #[arg(long, value_delimiter = ',', default_value = "answer,solution")]
        answer_field: Vec<String>,
    },
}

#[derive(Deserialize)]
struct BatchLine {
    gold: String,
    answer: String,
    /// Only read with `--cluster`; without it every line is math, as it always was.
    #[serde(default)]
    data_source: Option<String>,
}

/// `[rewards]` of a cluster.toml (with `LASER__…` overrides), checked. Only this section is
/// validated: a verifier needs no model path, and the coordinator validated the rest.
pub fn load_rewards(path: &std::path::Path) -> Result<RewardsSection> {
    let file = path.display().to_string();
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading --cluster {file}"))?;
    let cfg = ClusterConfig::from_toml_with_env(&text, &file, std::env::vars())?;
    cfg.rewards.validate().map_err(|e| anyhow!("{file}: {e}"))?;
    Ok(cfg.rewards)
}

fn registry(grader: Grader, cluster: Option<&std::path::Path>) -> Result<RewardRegistry> {
    let Some(path) = cluster else {
        return Ok(RewardRegistry::math_only(grader));
    };
    let section = load_rewards(path)?;
    RewardRegistry::new(grader, &section).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Grade(args) => grade(args),
        Command::Tasks(args) => tasks(args),
        Command::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    use laser_proto::rt::{RoleServer, WorkerStatus, run_worker};
    laser_proto::rt::init_tracing("info");
    let grader = Grader::new(args.config.to_config()?);
    let capacity = grader.parallelism() as u32;
    let rewards = registry(grader, args.cluster.as_deref())?;
    let token = args.worker.token()?;
    let opts = args.worker.server_options(&token);
    let status = std::sync::Arc::new(WorkerStatus::default());
    let service = crate::service::VerifierService::with_rewards(rewards, status.clone());
    let server = RoleServer::new(opts.clone()).service(opts.verifier(service));
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    rt.block_on(run_worker(
        laser_proto::v1::Role::Verifier,
        &args.worker,
        &token,
        server,
        capacity,
        status,
    ))?;
    Ok(())
}

fn grade(args: GradeArgs) -> Result<()> {
    let grader = Grader::new(args.config.to_config()?);
    let grading = match args.cluster.as_deref() {
        Some(path) => Grading::Routed(
            registry(grader, Some(path))?,
            args.data_source.clone().unwrap_or_default(),
        ),
        None => Grading::Math(grader),
    };
    if args.batch {
        return grade_batch(&grading);
    }
    let (Some(gold), Some(answer)) = (args.gold, args.answer) else {
        bail!("--gold and --answer are required without --batch");
    };
    let grader = match &grading {
        Grading::Math(grader) => grader,
        Grading::Routed(registry, data_source) => {
            let item = RewardItem {
                data_source,
                gold: &gold,
                response: &answer,
            };
            let r = registry
                .grade_items(&[item])
                .pop()
                .context("the registry returned no result")?;
            if args.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                let status = serde_json::to_value(r.status)?;
                println!(
                    "reward={} status={} extracted={}{}",
                    r.reward,
                    status.as_str().unwrap_or("?"),
                    r.extracted.as_deref().unwrap_or("-"),
                    r.error
                        .as_deref()
                        .map(|e| format!(" error={e}"))
                        .unwrap_or_default()
                );
            }
            return Ok(());
        }
    };
    let g = grader.grade(&gold, &answer);
    if args.json {
        println!("{}", serde_json::to_string(&g)?);
    } else {
        let status = serde_json::to_value(g.status)?;
        println!(
            "reward={} status={} extracted={}",
            g.reward,
            status.as_str().unwrap_or("?"),
            g.extracted.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

/// Lines graded together at most; a chunk is whatever stdin has ready, so an interactive
/// producer that waits for each answer still gets it at once.
const BATCH_CHUNK: usize = 256;

/// How `verifier grade` grades: math as always, or (`--cluster`) through the registry, with the
/// `--data-source` of lines that name none.
enum Grading {
    Math(Grader),
    Routed(RewardRegistry, String),
}

fn grade_batch(grading: &Grading) -> Result<()> {
    // A reader thread feeds lines through a channel so the grader can take every line that is
    // already available and grade them in parallel, without waiting for more input.
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<String>>(BATCH_CHUNK * 4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let failed = line.is_err();
            if tx.send(line).is_err() || failed {
                break;
            }
        }
    });
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut bad_lines = 0usize;
    let mut line_no = 0usize;
    while let Ok(first) = rx.recv() {
        let mut chunk = vec![first];
        while chunk.len() < BATCH_CHUNK {
            match rx.try_recv() {
                Ok(line) => chunk.push(line),
                Err(_) => break,
            }
        }
        let parsed: Vec<Result<BatchLine, String>> = chunk
            .into_iter()
            .map(|line| {
                line.map_err(|e| format!("unreadable input: {e}"))
                    .and_then(|l| {
                        serde_json::from_str::<BatchLine>(&l)
                            .map_err(|e| format!("invalid input: {e}"))
                    })
            })
            .collect();
        let good = parsed.iter().filter_map(|p| p.as_ref().ok());
        // Serialised per item so that the math output stays byte for byte what it was.
        let lines: Vec<String> = match grading {
            Grading::Math(grader) => {
                let pairs: Vec<(&str, &str)> = good
                    .map(|item| (item.gold.as_str(), item.answer.as_str()))
                    .collect();
                let grades: Vec<Grade> = grader.grade_batch(&pairs);
                grades
                    .iter()
                    .map(serde_json::to_string)
                    .collect::<Result<_, _>>()?
            }
            Grading::Routed(registry, data_source) => {
                let items: Vec<RewardItem<'_>> = good
                    .map(|item| RewardItem {
                        data_source: item.data_source.as_deref().unwrap_or(data_source),
                        gold: &item.gold,
                        response: &item.answer,
                    })
                    .collect();
                registry
                    .grade_items(&items)
                    .iter()
                    .map(serde_json::to_string)
                    .collect::<Result<_, _>>()?
            }
        };
        let mut grades = lines.into_iter();
        for item in &parsed {
            line_no += 1;
            match item {
                Ok(_) => {
                    let g = grades
                        .next()
                        .context("grading returned fewer grades than inputs")?;
                    out.write_all(g.as_bytes())?;
                }
                Err(message) => {
                    bad_lines += 1;
                    let message = format!("line {line_no}: {message}");
                    eprintln!("verifier: {message}");
                    serde_json::to_writer(
                        &mut out,
                        &serde_json::json!({ "line": line_no, "error": message }),
                    )?;
                }
            }
            writeln!(out)?;
        }
        // Flush per chunk so a consumer reading the pipe sees grades as they are made.
        out.flush()?;
    }
    if bad_lines > 0 {
        bail!("{bad_lines} input line(s) could not be graded");
    }
    Ok(())
}

fn parse_ops(s: &str) -> Result<Vec<ArithOp>> {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '+' => Ok(ArithOp::Add),
            '-' => Ok(ArithOp::Sub),
            '*' => Ok(ArithOp::Mul),
            '/' => Ok(ArithOp::Div),
            other => bail!("--ops: unknown operation {other:?} (use + - * /)"),
        })
        .collect()
}

fn tasks(args: TasksArgs) -> Result<()> {
    let template = match args.template {
        TemplateArg::Suffix => PromptTemplate::PaperSuffix,
        TemplateArg::Raw => PromptTemplate::Raw,
        TemplateArg::Chat => PromptTemplate::Chat {
            system: args.system.clone(),
        },
    };
    let list = match args.source {
        TaskSource::Synthetic {
            n,
            seed,
            start,
            min_digits,
            max_digits,
            ops,
            chain_length,
        } => {
            let config = SyntheticConfig {
                min_digits,
                max_digits,
                ops: parse_ops(&ops)?,
                chain_length,
            };
            SyntheticTasks::new(config, seed)?
                .starting_at(start)
                .take(n as usize)
                .collect::<Vec<_>>()
        }
        TaskSource::Jsonl {
            path,
            question_field,
            answer_field,
        } => {
            let fields = JsonlFields {
                question: question_field,
                answer: answer_field,
                ..JsonlFields::default()
            };
            load_jsonl(&path, &fields).with_context(|| format!("loading {}", path.display()))?
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for t in list {
        let prompt = template.render(&t.question);
        let line = serde_json::json!({ "id": t.id, "question": t.question, "gold": t.gold, "prompt": prompt });
        serde_json::to_writer(&mut out, &line)?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}
