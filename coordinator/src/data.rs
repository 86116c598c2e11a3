//! The prompt source of a run: task `i` of the run depends only on (seed, i), so step `s` always
//! sees tasks `s * batch_prompts ..` and a resumed or rolled-back run replays the same data order.

use laser_proto::cluster::{ClusterConfig, DataSource, PromptTemplateKind};
use laser_proto::v1::PromptGroup;
use laser_verifier::Task;
use laser_verifier::rng::SplitMix64;
use laser_verifier::tasks::jsonl::{JsonlFields, load_jsonl};
use laser_verifier::tasks::synthetic::{SyntheticConfig, SyntheticTasks};
use laser_verifier::tasks::template::{Prompt, PromptTemplate};

pub enum PromptSource {
    Synthetic(SyntheticTasks),
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
            DataSource::Synthetic => {
                let sc = SyntheticConfig {
                    min_digits: d.min_digits,
                    max_digits: d.max_digits,
                    chain_length: d.chain_length,
                    ..SyntheticConfig::default()
                };
                PromptSource::Synthetic(
                    SyntheticTasks::new(sc, cfg.run.seed)
                        .map_err(|e| anyhow::anyhow!("data: {e}"))?,
                )
            }
            DataSource::Jsonl => {
                let path = d
                    .path
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("`data.path` is required"))?;
                let tasks = load_jsonl(path, &JsonlFields::default())
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

/// The prompt groups of `step`.
pub fn step_groups(source: &PromptSource, cfg: &ClusterConfig, step: u64) -> Vec<PromptGroup> {
    let b = cfg.algorithm.batch_prompts;
    let template = match cfg.data.template {
        PromptTemplateKind::PaperSuffix => PromptTemplate::PaperSuffix,
        PromptTemplateKind::Raw => PromptTemplate::Raw,
    };
    (0..b)
        .map(|i| {
            let id = group_id(step, b, i);
            let task = source.task(id);
            let prompt_text = match template.render(&task.question) {
                Prompt::Text(t) => t,
                Prompt::Chat(m) => m
                    .into_iter()
                    .map(|m| m.content)
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            PromptGroup {
                group_id: id,
                step,
                task_id: task.id,
                prompt_text,
                chat: Vec::new(),
                gold: task.gold,
            }
        })
        .collect()
}
