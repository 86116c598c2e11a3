//! `[run]`, `[warmstart]` and `[eval]`: the run directory and the job's phases around RL.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::TaskLevel;

/// `[warmstart]`: supervised fine-tuning before RL (the job's phase 2), on step-by-step solutions of
/// the synthetic tasks of which `wrong_fraction` carry a deliberate slip, so that RL starts from a
/// deliberately imperfect policy. Writes `run_dir/sft_model`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarmstartSection {
    /// Optimiser steps; 0 skips the warm start.
    pub steps: u64,
    /// Sequences per step.
    pub batch_size: u32,
    pub micro_batch_size: u32,
    pub lr: f64,
    pub warmup_steps: u64,
    /// Cosine decay from `lr` to `min_lr_ratio * lr` at the last step; off: constant after warm-up.
    pub cosine: bool,
    pub min_lr_ratio: f64,
    /// Fraction of solutions with a deliberate slip.
    pub wrong_fraction: f64,
    /// Responses are cut to this many tokens (EOS included).
    pub max_response_tokens: u32,
    /// Seed of the SFT problems and slips; default: run.seed + 1000 (disjoint from RL's run.seed).
    pub seed: Option<u64>,
    /// Difficulty levels of the SFT problems; empty: the RL task levels (`data`).
    pub mix: Vec<TaskLevel>,
    /// An SFT JSONL (question + response fields) to use instead of generating one.
    pub path: Option<PathBuf>,
    pub checkpoint_every: u64,
}

impl Default for WarmstartSection {
    fn default() -> Self {
        Self {
            steps: 0,
            batch_size: 32,
            micro_batch_size: 32,
            lr: 3e-3,
            warmup_steps: 20,
            cosine: true,
            min_lr_ratio: 0.1,
            wrong_fraction: 0.3,
            max_response_tokens: 256,
            seed: None,
            mix: Vec::new(),
            path: None,
            checkpoint_every: 100,
        }
    }
}

/// `[eval]`: held-out evaluation through the actors and verifiers, at step 0 (the RL start), every
/// `run.eval_every` steps and at the end; rows go to `run_dir/eval.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalSection {
    pub enabled: bool,
    /// Samples per problem (the k of maj@k).
    pub k: u32,
    /// Held-out synthetic problems to draw (a `data.eval_path` file: its first N; 0 = all).
    pub problems: u32,
    /// Seed of the held-out problems and of their sampling; default: run.seed + 2000.
    pub seed: Option<u64>,
    pub temperature: f64,
    pub top_p: f64,
    /// Default: algorithm.max_response_tokens.
    pub max_response_tokens: Option<u32>,
    /// Write every graded sample of each evaluation to `run_dir/eval_samples/step-N.jsonl`
    /// (text, extracted answer, correctness, r_s), for inspecting the self-verifier.
    pub save_samples: bool,
}

impl Default for EvalSection {
    fn default() -> Self {
        Self {
            enabled: true,
            k: 8,
            problems: 64,
            seed: None,
            temperature: 1.0,
            top_p: 1.0,
            max_response_tokens: None,
            save_samples: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSection {
    pub dir: PathBuf,
    pub seed: u64,
    pub max_steps: u64,
    pub checkpoint_every: u64,
    /// Held-out evaluation every this many steps (besides step 0 and the end, see `[eval]`);
    /// 0: only at step 0 and at the end.
    pub eval_every: u64,
    pub keep_checkpoints: usize,
}

impl Default for RunSection {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("runs/default"),
            seed: 0,
            max_steps: 100,
            checkpoint_every: 10,
            eval_every: 0,
            keep_checkpoints: 3,
        }
    }
}

/// Name of the resolved copy a run keeps (and local children and `--resume` read).
pub const RESOLVED_FILE: &str = "cluster.resolved.toml";
