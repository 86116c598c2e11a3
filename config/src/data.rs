//! `[data]`: the training tasks (synthetic levels, or a JSONL or parquet file with a column
//! mapping) and the held-out set.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One difficulty level of the synthetic tasks (`[[data.mix]]`, `[[warmstart.mix]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskLevel {
    /// Digits per operand, inclusive range.
    pub min_digits: u32,
    pub max_digits: u32,
    /// Operations per problem.
    pub chain_length: usize,
    /// Operators drawn from, e.g. "+-*" (`/` gives fractions).
    pub ops: String,
    /// Relative share of the level in the mix.
    pub weight: f64,
}

impl Default for TaskLevel {
    fn default() -> Self {
        Self {
            min_digits: 1,
            max_digits: 1,
            chain_length: 1,
            ops: "+-*".into(),
            weight: 1.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// The built-in seeded arithmetic tasks.
    #[default]
    Synthetic,
    /// A JSONL file (`data.path`).
    Jsonl,
    /// A parquet file (`data.path`), e.g. verl's `train.parquet`.
    Parquet,
}

/// `[data.columns]`: which columns hold each part of a task, for JSONL and parquet alike. Each
/// is a list of candidates (the first present wins) and a name may be a dotted path into nested
/// columns (`reward_model.ground_truth`). Unset: the defaults, which read verl's layout and the
/// common flat layouts (`question`/`prompt`/`problem`, `answer`/`solution`, `id`, `data_source`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataColumns {
    /// A string column, or chat messages (`[{role, content}]`, used as the prompt as is).
    pub question: Option<Vec<String>>,
    pub answer: Option<Vec<String>>,
    pub id: Option<Vec<String>>,
    /// The dataset tag that picks the verifier's reward.
    pub data_source: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PromptTemplateKind {
    /// question + the paper's "put your final answer within \boxed{}" suffix.
    #[default]
    PaperSuffix,
    Raw,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSection {
    pub source: DataSource,
    pub path: Option<PathBuf>,
    /// Column mapping of `path` and `eval_path` (JSONL or parquet).
    pub columns: DataColumns,
    pub template: PromptTemplateKind,
    /// Synthetic tasks: digits per operand and operations per problem (used when `mix` is empty).
    pub min_digits: u32,
    pub max_digits: u32,
    pub chain_length: usize,
    /// Synthetic tasks: operators drawn from (used when `mix` is empty).
    pub ops: String,
    /// Synthetic tasks as a weighted mix of difficulty levels; empty: the single level above.
    pub mix: Vec<TaskLevel>,
    /// Held-out evaluation set (JSONL, or parquet by its `.parquet` extension). None: synthetic runs draw `eval.problems` held-out
    /// problems with a seed disjoint from training; JSONL runs skip evaluation.
    pub eval_path: Option<PathBuf>,
}

impl DataSection {
    /// The synthetic task levels: `mix`, or the single level of min_digits/max_digits/chain_length.
    pub fn levels(&self) -> Vec<TaskLevel> {
        if self.mix.is_empty() {
            vec![TaskLevel {
                min_digits: self.min_digits,
                max_digits: self.max_digits,
                chain_length: self.chain_length,
                ops: self.ops.clone(),
                weight: 1.0,
            }]
        } else {
            self.mix.clone()
        }
    }
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            source: DataSource::Synthetic,
            path: None,
            columns: DataColumns::default(),
            template: PromptTemplateKind::PaperSuffix,
            min_digits: 1,
            max_digits: 2,
            chain_length: 2,
            ops: "+-*".into(),
            mix: Vec::new(),
            eval_path: None,
        }
    }
}
