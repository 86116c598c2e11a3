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

/// Special tokens tried, in order, as z_c when none is configured: the project's own tokenizers
/// reserve `<|verify|>`; Qwen2.5 has `<|vision_start|>` (the paper's choice); Llama-3 has reserved
/// tokens; SmolLM2's `<empty_output>` never appears in chat data.
pub const TOKEN_CANDIDATES: &[&str] = &[
    "<|verify|>",
    "<|vision_start|>",
    "<|reserved_special_token_0|>",
    "<empty_output>",
];

/// Resolves z_c: `explicit` (a token's text or a numeric id), else the first of
/// [`TOKEN_CANDIDATES`] in the vocabulary. The one resolver actors and the learner share, so both
/// read the self-reward at the same token.
pub fn resolve_token(tokenizer: &crate::Tokenizer, explicit: Option<&str>) -> crate::Result<u32> {
    let bad = |message: String| crate::ModelError::InvalidOption {
        field: "self_reward_token",
        message,
    };
    let vocab = tokenizer.vocab_size();
    match explicit {
        Some(s) => {
            let id = match s.trim().parse::<u32>() {
                Ok(id) => id,
                Err(_) => tokenizer
                    .token_to_id(s)
                    .ok_or_else(|| bad(format!("{s:?} is not in the vocabulary")))?,
            };
            if id as usize >= vocab {
                return Err(bad(format!("id {id} is outside the vocabulary of {vocab}")));
            }
            Ok(id)
        }
        None => TOKEN_CANDIDATES
            .iter()
            .find_map(|t| tokenizer.token_to_id(t))
            .ok_or_else(|| {
                bad(format!(
                    "none of {TOKEN_CANDIDATES:?} is in the vocabulary; name one (a token or an id)"
                ))
            }),
    }
}
