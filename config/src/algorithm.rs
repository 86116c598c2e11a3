//! `[algorithm]`: the GRPO + LaSeR hyper-parameters of the RL phase.

use serde::{Deserialize, Serialize};

/// GRPO + LaSeR hyper-parameters (LASER.md). Defaults are the paper's, except the learning rate,
/// which a tiny model needs larger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlgorithmSection {
    /// LaSeR on (self-reward MSE and advantage mixing); off is plain GRPO.
    pub laser: bool,
    /// Samples per prompt (n).
    pub group_size: u32,
    /// Prompts per training step.
    pub batch_prompts: u32,
    /// Sequences per forward/backward pass of the learner; the step's gradient is accumulated over
    /// its micro-batches (verl's `ppo_micro_batch_size_per_gpu`). Larger is faster while it fits
    /// in memory; the result is the same up to float rounding.
    pub micro_batch_size: u32,
    pub lr: f64,
    /// Cosine decay of the RL learning rate from `lr` to `min_lr_ratio * lr` at `run.max_steps`;
    /// off: constant.
    pub cosine: bool,
    pub min_lr_ratio: f64,
    pub weight_decay: f64,
    pub grad_clip: f64,
    pub beta_v: f64,
    pub alpha: f64,
    pub tau: f64,
    /// T: group std threshold of the self-reward advantage.
    pub std_threshold: f64,
    /// c_ref; none: calibrated before training.
    pub c_ref: Option<f64>,
    pub reasoning_warmup_steps: u64,
    pub self_rewarding_warmup_steps: u64,
    pub clip_ratio_low: f64,
    pub clip_ratio_high: f64,
    pub clip_ratio_c: f64,
    pub max_prompt_tokens: u32,
    pub max_response_tokens: u32,
    pub temperature: f64,
    pub top_p: f64,
    /// (x, y) pairs sampled from the RL start model to calibrate c_ref when `c_ref` is not set.
    pub calibration_samples: u32,
}

impl Default for AlgorithmSection {
    fn default() -> Self {
        Self {
            laser: true,
            group_size: 8,
            batch_prompts: 8,
            micro_batch_size: 8,
            lr: 1e-6,
            cosine: false,
            min_lr_ratio: 0.1,
            weight_decay: 0.01,
            grad_clip: 1.0,
            beta_v: 0.1,
            alpha: 0.1,
            tau: 0.1,
            std_threshold: 0.1,
            c_ref: None,
            reasoning_warmup_steps: 200,
            self_rewarding_warmup_steps: 200,
            clip_ratio_low: 0.2,
            clip_ratio_high: 0.2,
            clip_ratio_c: 3.0,
            max_prompt_tokens: 512,
            max_response_tokens: 1024,
            temperature: 1.0,
            top_p: 1.0,
            calibration_samples: 256,
        }
    }
}
