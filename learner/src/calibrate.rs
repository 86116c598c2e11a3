//! Calibration of c_ref (LASER.md): sample (x, y) pairs from the reference (initial) model and average
//! log pi_ref(z_c | x, y, EOS) over them. The result is stored in the run directory (`c_ref.json`),
//! where the actors and the learner read it ([`laser_config::CRef`]: the file, its reading and
//! writing); it is computed once, before training.

use burn::tensor::backend::Backend;
use laser_config::CRef;
use laser_model::{
    GenerationRequest, SamplingParams, SelfRewardConfig, Tokenizer, Transformer, generate,
};

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error(transparent)]
    Model(#[from] laser_model::ModelError),
    #[error(
        "calibration needs at least {needed} EOS-terminated samples, got {got} ({truncated} truncated); raise max_new_tokens"
    )]
    TooFewSamples {
        needed: usize,
        got: usize,
        truncated: usize,
    },
}

/// What to sample for calibration.
#[derive(Debug, Clone)]
pub struct CalibrationRequest {
    /// Tokenised prompts; they are cycled until `samples` responses exist.
    pub prompts: Vec<Vec<u32>>,
    /// Number of (x, y) pairs (paper: ~300).
    pub samples: usize,
    /// Samples drawn per prompt in one generation call.
    pub per_prompt: usize,
    pub params: SamplingParams,
    pub eos_token_ids: Vec<u32>,
    pub self_reward_token: u32,
}

/// Samples from `model` and returns the statistics of log pi_ref(z_c | x, y, EOS). `on_progress` gets
/// (done, total) after each generation call.
pub fn calibrate<B: Backend>(
    model: &Transformer<B>,
    tokenizer: Option<&Tokenizer>,
    request: &CalibrationRequest,
    model_name: &str,
    mut on_progress: impl FnMut(usize, usize),
) -> Result<CRef, CalibrationError> {
    if request.prompts.is_empty() || request.samples == 0 || request.per_prompt == 0 {
        return Err(CalibrationError::TooFewSamples {
            needed: 2,
            got: 0,
            truncated: 0,
        });
    }
    // beta_v = 1, c_ref = 0: the read-out's score is the raw log-prob.
    let readout = SelfRewardConfig {
        token_id: request.self_reward_token,
        beta_v: 1.0,
        c_ref: 0.0,
    };
    let mut logprobs = Vec::with_capacity(request.samples);
    let mut drawn = 0usize;
    let mut truncated = 0usize;
    let mut call = 0u64;
    let prompts_per_call = 8usize;
    while drawn < request.samples {
        let first = (call as usize * prompts_per_call) % request.prompts.len();
        let prompts: Vec<Vec<u32>> = (0..prompts_per_call)
            .map(|i| request.prompts[(first + i) % request.prompts.len()].clone())
            .collect();
        let params = SamplingParams {
            seed: request.params.seed.wrapping_add(call),
            ..request.params.clone()
        };
        let req = GenerationRequest {
            prompts,
            n: request.per_prompt,
            params,
            eos_token_ids: request.eos_token_ids.clone(),
            self_reward: Some(readout),
        };
        let (samples, _) = generate(model, tokenizer, &req)?;
        for s in samples {
            if drawn == request.samples {
                break;
            }
            drawn += 1;
            match s.self_reward {
                Some(r) => logprobs.push(f64::from(r.logprob)),
                None => truncated += 1,
            }
        }
        call += 1;
        on_progress(drawn, request.samples);
    }
    if logprobs.len() < 2 {
        return Err(CalibrationError::TooFewSamples {
            needed: 2,
            got: logprobs.len(),
            truncated,
        });
    }
    let n = logprobs.len() as f64;
    let mean = logprobs.iter().sum::<f64>() / n;
    let std = (logprobs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    Ok(CRef {
        c_ref: mean,
        std,
        samples: logprobs.len(),
        truncated,
        self_reward_token: request.self_reward_token,
        model: model_name.to_string(),
    })
}
