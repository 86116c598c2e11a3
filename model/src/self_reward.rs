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

/// File name of the calibration result inside a run directory (written by `learner calibrate`).
pub const C_REF_FILE: &str = "c_ref.json";

/// The calibration result, as stored in `RUN/c_ref.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// c_ref: mean of log pi_ref(z_c | x, y, EOS) over the EOS-terminated samples.
    pub c_ref: f64,
    /// Unbiased standard deviation of those log-probs.
    pub std: f64,
    /// Samples the mean is over.
    pub samples: usize,
    /// Samples that hit the length limit (no EOS, so no read-out); not part of the mean.
    pub truncated: usize,
    pub self_reward_token: u32,
    /// Where the reference model came from.
    pub model: String,
}

/// Reads `RUN/c_ref.json`; `Ok(None)` when the run has no calibration yet.
pub fn read_calibration(run_dir: &std::path::Path) -> crate::Result<Option<Calibration>> {
    let path = run_dir.join(C_REF_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(crate::ModelError::io(path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| crate::ModelError::Format {
            file: path,
            message: format!("not a calibration file: {e}"),
        })
}

/// c_ref for a run: the configured value, else the calibrated one in `RUN/c_ref.json`. Neither is
/// an error that says how to get one; there is no silent default, because a c_ref from another
/// model shifts every self-reward.
pub fn resolve_c_ref(configured: Option<f64>, run_dir: &std::path::Path) -> crate::Result<f64> {
    if let Some(c) = configured {
        return Ok(c);
    }
    match read_calibration(run_dir)? {
        Some(c) => Ok(c.c_ref),
        None => Err(crate::ModelError::InvalidOption {
            field: "c_ref",
            message: format!(
                "not configured (algorithm.c_ref) and {} does not exist; run `learner calibrate --run-dir {}` or set algorithm.c_ref",
                run_dir.join(C_REF_FILE).display(),
                run_dir.display()
            ),
        }),
    }
}
