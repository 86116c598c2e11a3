//! The GRPO + LaSeR loss as a function of the tensors the model's teacher-forced scoring pass produces.
//!
//! Policy loss: verl's `compute_policy_loss` (vanilla PPO clip with clip-higher `clip_ratio_low` /
//! `clip_ratio_high`, and dual-clip bound c on negative-advantage tokens), reduced as verl's `agg_loss`.
//! Optional terms as verl's actor adds them: `- entropy_coef * agg(entropy)` and
//! `+ kl.coef * agg(kl_penalty(log pi, log pi_ref))`. LaSeR adds `alpha * L_mse` with
//! `L_mse = 1/(N_c+N_i) * sum_i w_i (r_s,i - r_v,i)^2` over non-truncated samples, where
//! `r_s = beta_v * (log pi(z_c | x, y, EOS) - c_ref)` and `w = (N_c+N_i)/(2 N_c)` for correct,
//! `(N_c+N_i)/(2 N_i)` for incorrect samples (0 for an empty class).
//!
//! # Normalisation and gradient accumulation
//! Every mean is taken with a normaliser of the WHOLE step batch ([`StepNormalizers`]), never of the
//! micro-batch: token-mean divides the micro-batch's masked token sum by the step's response-token count,
//! the seq-mean modes divide the micro-batch's sum of per-sequence losses by the step's sequence count, and
//! the MSE uses the step's N_c and N_i. Each micro-batch loss is therefore that micro-batch's exact share
//! of the full-batch loss: the sum of micro-batch losses (and of their gradients) equals the loss (and
//! gradient) of one forward pass over the whole batch, whatever the split. Accumulate gradients by
//! summing; do not divide by the number of micro-batches. (verl instead takes each micro-batch's own
//! token-mean and divides by the number of micro-batches, which weights tokens unequally when micro-batches
//! hold different token counts; with one micro-batch both agree.) The metrics (clip fractions, ppo_kl) are
//! normalised the same way, so they add up over micro-batches too.
//!
//! Padded positions are masked with `mask_fill` before any arithmetic, so garbage (even NaN) in padding of
//! the model's outputs cannot reach the loss or the gradients.

use burn::tensor::{Bool, Tensor, TensorData, backend::Backend};

use crate::batch::{Sample, TrainingBatch};
use laser_config::{KlEstimator, LaserConfig, LossAggMode, Phase};

/// verl clamps the log-ratio (and k3's log-ratio) to this range before exponentiating.
const LOG_RATIO_CLAMP: f64 = 20.0;
/// verl clamps the k3 estimate to [-10, 10].
const K3_CLAMP: f64 = 10.0;

/// Counts over the whole step batch that every micro-batch loss divides by (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepNormalizers {
    /// Valid response tokens (policy-gradient positions, EOS included) in the step batch.
    pub response_tokens: usize,
    /// Sequences in the step batch.
    pub sequences: usize,
    /// N_c: non-truncated samples with r_v >= 0.5.
    pub n_correct: usize,
    /// N_i: non-truncated samples with r_v < 0.5.
    pub n_incorrect: usize,
}

impl StepNormalizers {
    pub fn from_batch(batch: &TrainingBatch) -> Self {
        let (n_correct, n_incorrect) = batch.class_counts();
        Self {
            response_tokens: batch.num_response_tokens(),
            sequences: batch.num_samples(),
            n_correct,
            n_incorrect,
        }
    }

    /// Per-sample MSE weight divided by (N_c + N_i): 1/(2 N_c) for correct, 1/(2 N_i) for incorrect.
    fn mse_class_weights(&self) -> (f64, f64) {
        let per_class = |n: usize| if n == 0 { 0.0 } else { 1.0 / (2.0 * n as f64) };
        (per_class(self.n_correct), per_class(self.n_incorrect))
    }
}

/// What the model's scoring pass returns for a micro-batch of B sequences laid out as
/// `[prompt, response (EOS-terminated unless truncated), z_c]`.
#[derive(Debug, Clone)]
pub struct PolicyOutputs<B: Backend> {
    /// [B, L]: log pi_theta(y_t | x, y_<t) per response token (EOS included), right-padded to L.
    pub response_logprobs: Tensor<B, 2>,
    /// [B]: log pi_theta(z_c | x, y, EOS), read at the position whose input is EOS. Ignored for truncated
    /// samples.
    pub self_reward_logprob: Tensor<B, 1>,
    /// [B, L]: per-token entropy of pi_theta, needed only when `entropy_coef > 0`.
    pub entropy: Option<Tensor<B, 2>>,
}

/// Everything the loss needs that does not depend on the current parameters.
#[derive(Debug, Clone)]
pub struct LossTargets<B: Backend> {
    /// [B, L]: the rollout's log-probs, right-padded like `response_logprobs`.
    pub old_logprobs: Tensor<B, 2>,
    /// [B, L]: true at response positions (EOS included), false at padding. Never covers the z_c slot.
    pub response_mask: Tensor<B, 2, Bool>,
    /// [B]: sequence-level advantages (A, or A_v before mixing), broadcast over the tokens.
    pub advantages: Tensor<B, 1>,
    /// [B]: verifier rewards r_v.
    pub verifier_rewards: Tensor<B, 1>,
    /// [B]: truncated samples (no EOS), excluded from the MSE.
    pub truncated: Tensor<B, 1, Bool>,
    /// [B, L]: frozen reference log-probs, needed only with a KL penalty.
    pub ref_logprobs: Option<Tensor<B, 2>>,
}

impl<B: Backend> LossTargets<B> {
    /// Targets for a micro-batch, right-padded to its longest response. `advantages[i]` belongs to
    /// `samples[i]`. The model's `response_logprobs` must use the same width.
    pub fn from_samples(
        samples: &[&Sample],
        advantages: &[f64],
        device: &B::Device,
    ) -> Result<Self, LossError> {
        if samples.is_empty() {
            return Err(LossError::EmptyMicroBatch);
        }
        if advantages.len() != samples.len() {
            return Err(LossError::Shape {
                tensor: "advantages",
                expected: vec![samples.len()],
                actual: vec![advantages.len()],
            });
        }
        let b = samples.len();
        let width = samples
            .iter()
            .map(|s| s.response_tokens.len())
            .max()
            .unwrap_or(0);
        let mut old = vec![0f32; b * width];
        let mut mask = vec![false; b * width];
        for (i, s) in samples.iter().enumerate() {
            let row = i * width;
            old[row..row + s.old_logprobs.len()].copy_from_slice(&s.old_logprobs);
            mask[row..row + s.response_tokens.len()].fill(true);
        }
        let floats = |v: Vec<f32>| Tensor::<B, 1>::from_data(TensorData::new(v, [b]), device);
        Ok(Self {
            old_logprobs: Tensor::from_data(TensorData::new(old, [b, width]), device),
            response_mask: Tensor::from_data(TensorData::new(mask, [b, width]), device),
            advantages: floats(advantages.iter().map(|&a| a as f32).collect()),
            verifier_rewards: floats(samples.iter().map(|s| s.verifier_reward).collect()),
            truncated: Tensor::from_data(
                TensorData::new(samples.iter().map(|s| s.truncated).collect(), [b]),
                device,
            ),
            ref_logprobs: None,
        })
    }
}

/// Step-level inputs of a micro-batch loss.
#[derive(Debug, Clone, Copy)]
pub struct LossContext {
    pub normalizers: StepNormalizers,
    /// c_ref from calibration: the mean of log pi_ref(z_c | x, y, EOS).
    pub c_ref: f64,
    pub phase: Phase,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LossError {
    #[error("micro-batch has no samples")]
    EmptyMicroBatch,
    #[error("`{tensor}` has shape {actual:?}, expected {expected:?}")]
    Shape {
        tensor: &'static str,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("step normaliser `{name}` is 0; the step batch has nothing to average over")]
    ZeroNormalizer { name: &'static str },
    #[error("entropy_coef > 0 but the model outputs carry no `entropy` tensor")]
    MissingEntropy,
    #[error("a KL penalty is configured but the targets carry no `ref_logprobs` tensor")]
    MissingRefLogprobs,
}

/// The PPO-clip policy loss of a micro-batch and its metrics, each this micro-batch's share of the step
/// value (all scalars, shape [1]).
#[derive(Debug, Clone)]
pub struct PolicyLoss<B: Backend> {
    pub loss: Tensor<B, 1>,
    /// verl's `pg_clipfrac`: share of tokens where the clipped term is strictly larger than the unclipped.
    pub clip_fraction: Tensor<B, 1>,
    /// verl's `pg_clipfrac_lower`: share of negative-advantage tokens bounded by the dual clip.
    pub clip_fraction_lower: Tensor<B, 1>,
    /// verl's `ppo_kl`: token mean of log pi_old - log pi.
    pub ppo_kl: Tensor<B, 1>,
}

/// The loss of one micro-batch: `total` is what to call `backward` on.
#[derive(Debug, Clone)]
pub struct LossOutput<B: Backend> {
    pub total: Tensor<B, 1>,
    pub policy: PolicyLoss<B>,
    /// L_mse share (not multiplied by alpha). Computed in every phase for monitoring; part of `total` only
    /// when `phase.self_reward_mse`.
    pub self_reward_mse: Tensor<B, 1>,
    pub kl_loss: Option<Tensor<B, 1>>,
    pub entropy_loss: Option<Tensor<B, 1>>,
}

/// Reduces a [B, L] loss matrix to this micro-batch's share of the step's aggregate (verl's `agg_loss`
/// with step normalisers). Masked positions contribute exactly 0.
pub fn aggregate_loss<B: Backend>(
    loss_mat: Tensor<B, 2>,
    mask: Tensor<B, 2, Bool>,
    mode: LossAggMode,
    normalizers: &StepNormalizers,
) -> Tensor<B, 1> {
    let masked = loss_mat.mask_fill(mask.clone().bool_not(), 0.0);
    match mode {
        LossAggMode::TokenMean => masked.sum().div_scalar(normalizers.response_tokens as f64),
        LossAggMode::SeqMeanTokenSum => masked.sum().div_scalar(normalizers.sequences as f64),
        LossAggMode::SeqMeanTokenMean => {
            // Every sequence has >= 1 token in a validated batch; the clamp only keeps padded rows finite.
            let tokens = mask.float().sum_dim(1).clamp_min(1.0);
            (masked.sum_dim(1) / tokens)
                .sum()
                .div_scalar(normalizers.sequences as f64)
        }
    }
}

/// verl's `compute_policy_loss` (vanilla). `advantages` is per sequence, [B].
pub fn policy_loss<B: Backend>(
    logprobs: Tensor<B, 2>,
    old_logprobs: Tensor<B, 2>,
    advantages: Tensor<B, 1>,
    mask: Tensor<B, 2, Bool>,
    config: &LaserConfig,
    normalizers: &StepNormalizers,
) -> PolicyLoss<B> {
    let dims = logprobs.dims();
    let padding = mask.clone().bool_not();
    let adv = advantages.unsqueeze_dim::<2>(1).expand(dims);
    let negative_adv = adv.clone().lower_elem(0.0);

    let log_ratio = (logprobs.mask_fill(padding.clone(), 0.0)
        - old_logprobs.mask_fill(padding, 0.0))
    .clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP);
    let ratio = log_ratio.clone().exp();
    let neg_adv = adv.neg();
    let pg_losses1 = neg_adv.clone() * ratio.clone();
    let clipped_ratio = ratio.clamp(1.0 - config.clip_ratio_low, 1.0 + config.clip_ratio_high);
    let pg_losses2 = neg_adv.clone() * clipped_ratio;
    // torch.maximum(pg_losses1, pg_losses2): on ties both carry the same value and gradient.
    let upper_clipped = pg_losses2.clone().greater(pg_losses1.clone());
    let clip_pg_losses1 = pg_losses1.mask_where(upper_clipped.clone(), pg_losses2);
    // Dual clip: a negative-advantage token's loss is bounded by -A * c (a constant, so no gradient).
    let pg_losses3 = neg_adv.mul_scalar(config.clip_ratio_c).detach();
    let lower_clipped = clip_pg_losses1.clone().greater(pg_losses3.clone());
    let clip_pg_losses2 = clip_pg_losses1
        .clone()
        .mask_where(lower_clipped.clone(), pg_losses3);
    let pg_losses = clip_pg_losses1.mask_where(negative_adv.clone(), clip_pg_losses2);

    let token_share = |values: Tensor<B, 2>| {
        aggregate_loss(values, mask.clone(), LossAggMode::TokenMean, normalizers).detach()
    };
    PolicyLoss {
        loss: aggregate_loss(pg_losses, mask.clone(), config.loss_agg_mode, normalizers),
        clip_fraction: token_share(upper_clipped.float()),
        clip_fraction_lower: token_share(lower_clipped.bool_and(negative_adv).float()),
        ppo_kl: token_share(log_ratio.neg()),
    }
}

/// verl's `kl_penalty` for the "kl" (k1) and "low_var_kl" (k3) estimators, per token.
pub fn kl_penalty<B: Backend>(
    logprobs: Tensor<B, 2>,
    ref_logprobs: Tensor<B, 2>,
    estimator: KlEstimator,
) -> Tensor<B, 2> {
    match estimator {
        KlEstimator::K1 => logprobs - ref_logprobs,
        KlEstimator::K3 => {
            let kl = (ref_logprobs - logprobs).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP);
            (kl.clone().exp() - kl)
                .sub_scalar(1.0)
                .clamp(-K3_CLAMP, K3_CLAMP)
        }
    }
}

/// This micro-batch's share of the class-reweighted LaSeR MSE (see the module docs).
pub fn self_reward_mse<B: Backend>(
    self_reward_logprob: Tensor<B, 1>,
    verifier_rewards: Tensor<B, 1>,
    truncated: Tensor<B, 1, Bool>,
    beta_v: f64,
    c_ref: f64,
    normalizers: &StepNormalizers,
) -> Tensor<B, 1> {
    let self_reward = self_reward_logprob.sub_scalar(c_ref).mul_scalar(beta_v);
    // Truncated samples have no z_c slot: zero their residual before squaring so whatever the model put
    // there (possibly non-finite) reaches neither the loss nor the gradient.
    let residual = (self_reward - verifier_rewards.clone()).mask_fill(truncated.clone(), 0.0);
    let (w_correct, w_incorrect) = normalizers.mse_class_weights();
    let correct = verifier_rewards.greater_equal_elem(0.5);
    let weights = correct
        .float()
        .mul_scalar(w_correct - w_incorrect)
        .add_scalar(w_incorrect)
        .mask_fill(truncated, 0.0);
    (residual.square() * weights).sum()
}

/// The total loss of one micro-batch: policy loss (+ KL, - entropy) + alpha * L_mse when the phase has it.
pub fn laser_loss<B: Backend>(
    outputs: &PolicyOutputs<B>,
    targets: &LossTargets<B>,
    context: &LossContext,
    config: &LaserConfig,
) -> Result<LossOutput<B>, LossError> {
    check_shapes(outputs, targets)?;
    let norms = &context.normalizers;
    if norms.response_tokens == 0 {
        return Err(LossError::ZeroNormalizer {
            name: "response_tokens",
        });
    }
    if norms.sequences == 0 {
        return Err(LossError::ZeroNormalizer { name: "sequences" });
    }
    let mask = targets.response_mask.clone();
    let padding = mask.clone().bool_not();
    let policy = policy_loss(
        outputs.response_logprobs.clone(),
        targets.old_logprobs.clone(),
        targets.advantages.clone(),
        mask.clone(),
        config,
        norms,
    );
    let mut total = policy.loss.clone();

    let entropy_loss = if config.entropy_coef > 0.0 {
        let entropy = outputs.entropy.clone().ok_or(LossError::MissingEntropy)?;
        let loss = aggregate_loss(
            entropy.mask_fill(padding.clone(), 0.0),
            mask.clone(),
            config.loss_agg_mode,
            norms,
        );
        total = total - loss.clone().mul_scalar(config.entropy_coef);
        Some(loss)
    } else {
        None
    };

    let kl_loss = match config.kl_penalty {
        Some(kl) => {
            let reference = targets
                .ref_logprobs
                .clone()
                .ok_or(LossError::MissingRefLogprobs)?;
            let per_token = kl_penalty(
                outputs
                    .response_logprobs
                    .clone()
                    .mask_fill(padding.clone(), 0.0),
                reference.mask_fill(padding, 0.0),
                kl.estimator,
            );
            let loss = aggregate_loss(per_token, mask, config.loss_agg_mode, norms);
            total = total + loss.clone().mul_scalar(kl.coef);
            Some(loss)
        }
        None => None,
    };

    let mse = self_reward_mse(
        outputs.self_reward_logprob.clone(),
        targets.verifier_rewards.clone(),
        targets.truncated.clone(),
        config.beta_v,
        context.c_ref,
        norms,
    );
    if context.phase.self_reward_mse {
        total = total + mse.clone().mul_scalar(config.alpha);
    }
    Ok(LossOutput {
        total,
        policy,
        self_reward_mse: mse,
        kl_loss,
        entropy_loss,
    })
}

fn check_shapes<B: Backend>(
    outputs: &PolicyOutputs<B>,
    targets: &LossTargets<B>,
) -> Result<(), LossError> {
    let matrix = targets.response_mask.dims().to_vec();
    let batch = vec![matrix[0]];
    if matrix[0] == 0 {
        return Err(LossError::EmptyMicroBatch);
    }
    let mut checks: Vec<(&'static str, Vec<usize>, &Vec<usize>)> = vec![
        (
            "response_logprobs",
            outputs.response_logprobs.dims().to_vec(),
            &matrix,
        ),
        (
            "old_logprobs",
            targets.old_logprobs.dims().to_vec(),
            &matrix,
        ),
        (
            "self_reward_logprob",
            outputs.self_reward_logprob.dims().to_vec(),
            &batch,
        ),
        ("advantages", targets.advantages.dims().to_vec(), &batch),
        (
            "verifier_rewards",
            targets.verifier_rewards.dims().to_vec(),
            &batch,
        ),
        ("truncated", targets.truncated.dims().to_vec(), &batch),
    ];
    if let Some(e) = &outputs.entropy {
        checks.push(("entropy", e.dims().to_vec(), &matrix));
    }
    if let Some(r) = &targets.ref_logprobs {
        checks.push(("ref_logprobs", r.dims().to_vec(), &matrix));
    }
    for (tensor, actual, expected) in checks {
        if &actual != expected {
            return Err(LossError::Shape {
                tensor,
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(())
}
