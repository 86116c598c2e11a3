//! `[data]`: the training tasks (synthetic levels or a JSONL file) and the held-out set.

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
    pub template: PromptTemplateKind,
    /// Synthetic tasks: digits per operand and operations per problem (used when `mix` is empty).
    pub min_digits: u32,
    pub max_digits: u32,
    pub chain_length: usize,
    /// Synthetic tasks: operators drawn from (used when `mix` is empty).
    pub ops: String,
    /// Synthetic tasks as a weighted mix of difficulty levels; empty: the single level above.
    pub mix: Vec<TaskLevel>,
    /// Held-out evaluation set (JSONL). None: synthetic runs draw `eval.problems` held-out
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
