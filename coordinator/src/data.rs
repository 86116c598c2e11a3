//! The prompt source of a run: task `i` of the run depends only on (seed, i), so step `s` always
//! sees tasks `s * batch_prompts ..` and a resumed or rolled-back run replays the same data order.
//! Also the warm start's generated problems ([`sft_tasks`]), which the held-out set leaves out, and
//! `run_dir/data_order.jsonl`, the audit of the task ids each step trained on.

use std::path::Path;

use anyhow::Context;
use laser_config::{ClusterConfig, DataSource, PromptTemplateKind, TaskLevel};
use laser_proto::v1::{PromptGroup, RolloutGroup};
use laser_verifier::Task;
use laser_verifier::rng::SplitMix64;
use laser_verifier::tasks::jsonl::{JsonlFields, load_jsonl};
use laser_verifier::tasks::parquet::load_parquet;
use laser_verifier::tasks::synthetic::{ArithOp, SyntheticConfig, SyntheticTasks};
use laser_verifier::tasks::template::{Prompt, PromptTemplate};
use serde::{Deserialize, Serialize};

/// `[data.columns]` over the reader's defaults.
pub fn dataset_fields(cfg: &ClusterConfig) -> JsonlFields {
    let c = &cfg.data.columns;
    let d = JsonlFields::default();
    JsonlFields {
        question: c.question.clone().unwrap_or(d.question),
        answer: c.answer.clone().unwrap_or(d.answer),
        id: c.id.clone().unwrap_or(d.id),
        data_source: c.data_source.clone().unwrap_or(d.data_source),
    }
}

pub enum PromptSource {
    Synthetic(SyntheticMix),
    /// A dataset, reshuffled per epoch with the run seed.
    Jsonl {
        tasks: Vec<Task>,
        seed: u64,
    },
}

impl PromptSource {
    pub fn from_config(cfg: &ClusterConfig) -> anyhow::Result<Self> {
        let d = &cfg.data;
        Ok(match d.source {
            DataSource::Synthetic => PromptSource::Synthetic(
                SyntheticMix::new(&d.levels(), cfg.run.seed)
                    .map_err(|e| anyhow::anyhow!("data: {e}"))?,
            ),
            DataSource::Jsonl | DataSource::Parquet => {
                let path = d
                    .path
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("`data.path` is required"))?;
                let fields = dataset_fields(cfg);
                let tasks = match d.source {
                    DataSource::Parquet => load_parquet(path, &fields),
                    _ => load_jsonl(path, &fields),
                }
                .map_err(|e| anyhow::anyhow!("data.path: {e}"))?;
                PromptSource::Jsonl {
                    tasks,
                    seed: cfg.run.seed,
                }
            }
        })
    }

    /// Task number `index` of the run.
    pub fn task(&self, index: u64) -> Task {
        match self {
            PromptSource::Synthetic(s) => s.task(index),
            PromptSource::Jsonl { tasks, seed } => {
                let n = tasks.len() as u64;
                let (epoch, pos) = (index / n, index % n);
                tasks[permutation_index(n, *seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15), pos)
                    as usize]
                    .clone()
            }
        }
    }

    /// (epoch, position) of task `index`, the learner checkpoint's data cursor.
    pub fn cursor(&self, index: u64) -> (u64, u64) {
        match self {
            PromptSource::Synthetic(_) => (0, index),
            PromptSource::Jsonl { tasks, .. } => {
                (index / tasks.len() as u64, index % tasks.len() as u64)
            }
        }
    }
}

/// Synthetic tasks from a weighted mix of difficulty levels. Task `i` depends only on (seed, i): its
/// level is drawn from (seed, i), then the level's generator makes task `i`. A single level is
/// exactly that level's stream.
#[derive(Debug, Clone)]
pub struct SyntheticMix {
    /// (cumulative weight, generator).
    levels: Vec<(f64, SyntheticTasks)>,
    seed: u64,
}

/// "+-*" as operators.
pub fn parse_ops(ops: &str) -> Result<Vec<ArithOp>, String> {
    ops.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '+' => Ok(ArithOp::Add),
            '-' => Ok(ArithOp::Sub),
            '*' => Ok(ArithOp::Mul),
            '/' => Ok(ArithOp::Div),
            _ => Err(format!("ops {ops:?}: unknown operator {c:?}")),
        })
        .collect()
}

impl SyntheticMix {
    pub fn new(levels: &[TaskLevel], seed: u64) -> Result<Self, String> {
        if levels.is_empty() {
            return Err("no task levels".into());
        }
        let mut total = 0.0;
        let mut out = Vec::with_capacity(levels.len());
        for l in levels {
            let sc = SyntheticConfig {
                min_digits: l.min_digits,
                max_digits: l.max_digits,
                chain_length: l.chain_length,
                ops: parse_ops(&l.ops)?,
            };
            total += l.weight;
            out.push((
                total,
                SyntheticTasks::new(sc, seed).map_err(|e| e.to_string())?,
            ));
        }
        Ok(Self { levels: out, seed })
    }

    pub fn task(&self, index: u64) -> Task {
        if self.levels.len() == 1 {
            return self.levels[0].1.task(index);
        }
        let total = self.levels.last().map_or(1.0, |l| l.0);
        let mut rng = SplitMix64::new(self.seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407));
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let level = self
            .levels
            .iter()
            .find(|(cum, _)| u < *cum)
            .unwrap_or(&self.levels[self.levels.len() - 1]);
        level.1.task(index)
    }
}

/// The prompt text of a question under the run's template (the actor adds the chat template).
pub fn render_prompt(cfg: &ClusterConfig, question: &str) -> String {
    let template = match cfg.data.template {
        PromptTemplateKind::PaperSuffix => PromptTemplate::PaperSuffix,
        PromptTemplateKind::Raw => PromptTemplate::Raw,
    };
    match template.render(question) {
        Prompt::Text(t) => t,
        Prompt::Chat(m) => m
            .into_iter()
            .map(|m| m.content)
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// Position `pos` of a seeded Fisher-Yates permutation of 0..n.
fn permutation_index(n: u64, seed: u64, pos: u64) -> u64 {
    let mut perm: Vec<u64> = (0..n).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n as usize).rev() {
        let j = rng.range_u64(0, i as u64) as usize;
        perm.swap(i, j);
    }
    perm[pos as usize]
}

/// The group id of prompt `i` of step `step`: unique within a run, stable across retries.
pub fn group_id(step: u64, batch_prompts: u32, i: u32) -> u64 {
    step * u64::from(batch_prompts) + u64::from(i)
}

/// The prompt group of `task`: a dataset's own chat prompt (verl) is used as is, a bare
/// question gets the run's template.
pub fn prompt_group(cfg: &ClusterConfig, task: Task, group_id: u64, step: u64) -> PromptGroup {
    let prompt_text = if task.chat.is_empty() {
        render_prompt(cfg, &task.question)
    } else {
        task.question.clone()
    };
    PromptGroup {
        group_id,
        step,
        task_id: task.id,
        prompt_text,
        chat: task
            .chat
            .into_iter()
            .map(|m| laser_proto::v1::ChatMessage {
                role: m.role,
                content: m.content,
            })
            .collect(),
        gold: task.gold,
        data_source: task.data_source,
    }
}

/// The prompt groups of `step`.
pub fn step_groups(source: &PromptSource, cfg: &ClusterConfig, step: u64) -> Vec<PromptGroup> {
    let b = cfg.algorithm.batch_prompts;
    (0..b)
        .map(|i| {
            let id = group_id(step, b, i);
            prompt_group(cfg, source.task(id), id, step)
        })
        .collect()
}

/// The warm start's generated problems: the task stream, its seed and how many it takes.
pub fn sft_tasks(cfg: &ClusterConfig) -> anyhow::Result<(SyntheticMix, u64, u64)> {
    let w = &cfg.warmstart;
    let seed = w.seed.unwrap_or(cfg.run.seed.wrapping_add(1000));
    let levels = if w.mix.is_empty() {
        cfg.data.levels()
    } else {
        w.mix.clone()
    };
    let mix = SyntheticMix::new(&levels, seed).map_err(|e| anyhow::anyhow!("warmstart: {e}"))?;
    Ok((mix, seed, w.steps * u64::from(w.batch_size)))
}

/// `run_dir/data_order.jsonl`: the task ids each step trained on (audit of the data order).
pub const DATA_ORDER_FILE: &str = "data_order.jsonl";

/// One row of [`DATA_ORDER_FILE`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataOrderRow {
    pub step: u64,
    pub group_ids: Vec<u64>,
    pub task_ids: Vec<String>,
}

/// Appends the groups of `step` to [`DATA_ORDER_FILE`].
pub fn append_data_order(run_dir: &Path, step: u64, groups: &[RolloutGroup]) -> anyhow::Result<()> {
    use std::io::Write;
    let row = DataOrderRow {
        step,
        group_ids: groups.iter().map(|g| g.group_id).collect(),
        task_ids: groups.iter().map(|g| g.task_id.clone()).collect(),
    };
    let p = run_dir.join(DATA_ORDER_FILE);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .with_context(|| p.display().to_string())?;
    writeln!(f, "{}", serde_json::to_string(&row)?).with_context(|| p.display().to_string())
}

/// The rows of [`DATA_ORDER_FILE`] (none when it does not exist); a bad line is an error naming
/// it.
pub fn read_data_order(run_dir: &Path) -> anyhow::Result<Vec<DataOrderRow>> {
    let p = run_dir.join(DATA_ORDER_FILE);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| p.display().to_string()),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}", p.display(), i + 1)))
        .collect()
}

/// Keeps the rows of the steps before `first_dropped` (a rolled-back run redoes the rest).
pub fn truncate_data_order(run_dir: &Path, first_dropped: u64) -> anyhow::Result<()> {
    let p = run_dir.join(DATA_ORDER_FILE);
    let Ok(text) = std::fs::read_to_string(&p) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<DataOrderRow>(l).is_ok_and(|r| r.step < first_dropped))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&p, kept).with_context(|| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(digits: u32, chain: usize, weight: f64) -> TaskLevel {
        TaskLevel {
            min_digits: digits,
            max_digits: digits,
            chain_length: chain,
            ops: "+-*".into(),
            weight,
        }
    }

    #[test]
    fn one_level_is_that_levels_stream() {
        let l = level(2, 2, 1.0);
        let mix = SyntheticMix::new(std::slice::from_ref(&l), 5).unwrap();
        let plain = SyntheticTasks::new(
            SyntheticConfig {
                min_digits: 2,
                max_digits: 2,
                chain_length: 2,
                ..SyntheticConfig::default()
            },
            5,
        )
        .unwrap();
        for i in 0..50 {
            assert_eq!(mix.task(i), plain.task(i));
        }
    }

    #[test]
    fn mix_follows_weights_and_is_a_function_of_seed_and_index() {
        let mix = SyntheticMix::new(&[level(1, 1, 1.0), level(1, 2, 3.0)], 9).unwrap();
        let again = SyntheticMix::new(&[level(1, 1, 1.0), level(1, 2, 3.0)], 9).unwrap();
        let n = 4000;
        let mut two_ops = 0;
        for i in 0..n {
            let t = mix.task(i);
            assert_eq!(t, again.task(i));
            // "Compute a op b." has 2 operands; 2 ops give 3.
            let operators = t
                .question
                .split_whitespace()
                .filter(|w| ["+", "-", "*"].contains(w))
                .count();
            assert!((1..=2).contains(&operators), "{}", t.question);
            two_ops += usize::from(operators == 2);
        }
        let share = two_ops as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.04, "share of level 2: {share}");
        assert!(parse_ops("+x").is_err());
        assert_eq!(parse_ops("+/").unwrap(), [ArithOp::Add, ArithOp::Div]);
    }
}
