//! The LaSeR last-token self-reward: r_s = beta_v * (log p(z_c | x, y, EOS) - c_ref).
//! The log-prob is read at the position whose input is EOS, i.e. one extra decode step after the
//! response ends; z_c itself is never sampled or fed.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SelfRewardConfig {
    /// The pre-specified token z_c (e.g. `<|vision_start|>` 151652 for Qwen2.5).
    pub token_id: u32,
    /// beta_v, the KL coefficient of the verification objective (paper: 0.1).
    pub beta_v: f32,
    /// c_ref: mean log p_ref(z_c | x, y, EOS) of the reference model, from calibration.
    pub c_ref: f32,
}

impl SelfRewardConfig {
    pub fn score(&self, logprob: f32) -> f32 {
        self.beta_v * (logprob - self.c_ref)
    }

    pub fn read(&self, logprob: f32) -> SelfReward {
        SelfReward {
            logprob,
            score: self.score(logprob),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SelfReward {
    /// log p(z_c | x, y, EOS)
    pub logprob: f32,
    /// r_s = beta_v * (logprob - c_ref)
    pub score: f32,
}
