//! Algorithm hyper-parameters of the GRPO + LaSeR update, with the paper's defaults (LASER.md), and the
//! warm-up schedule that decides which parts of the loss are active at a given step. The learner
//! takes [`LaserConfig`] as is (inside [`crate::LearnerConfig`]).

use serde::{Deserialize, Serialize};

/// How a per-token loss matrix is reduced to a scalar, as in verl's `agg_loss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum LossAggMode {
    /// Sum over all valid response tokens of the step batch, divided by their count (verl's default).
    #[default]
    #[serde(rename = "token-mean")]
    TokenMean,
    /// Per sequence: mean over its tokens; then the mean over sequences.
    #[serde(rename = "seq-mean-token-mean")]
    SeqMeanTokenMean,
    /// Per sequence: sum over its tokens; then the mean over sequences.
    #[serde(rename = "seq-mean-token-sum")]
    SeqMeanTokenSum,
}

/// KL estimator against the frozen reference policy, named as in verl's `kl_penalty`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KlEstimator {
    /// k1: log pi - log pi_ref (verl "kl").
    #[serde(rename = "kl")]
    K1,
    /// k3: exp(log pi_ref - log pi) - (log pi_ref - log pi) - 1, clamped like verl (verl "low_var_kl").
    #[serde(rename = "low_var_kl")]
    K3,
}

/// Optional KL loss term: `coef * agg(kl_estimator(log pi, log pi_ref))`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KlPenalty {
    pub estimator: KlEstimator,
    pub coef: f64,
}

/// Hyper-parameters of one LaSeR training step. Defaults are the paper's (verl GRPO defaults plus
/// LaSeR's beta_v, alpha, tau and T).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LaserConfig {
    /// beta_v: scale of the self-reward score r_s = beta_v * (log pi(z_c) - c_ref).
    pub beta_v: f64,
    /// alpha: weight of the self-reward MSE in the total loss.
    pub alpha: f64,
    /// tau: weight of the self-reward advantage in the mixed advantage.
    pub tau: f64,
    /// T: a group whose clamped self-rewards have (unbiased) std <= T falls back to A_s = A_v.
    pub group_std_threshold: f64,
    /// Added to the group std in both z-scores (verl's epsilon).
    pub advantage_eps: f64,
    /// Lower PPO clip range: ratios below 1 - clip_ratio_low are clipped.
    pub clip_ratio_low: f64,
    /// Upper PPO clip range (clip-higher when larger than `clip_ratio_low`).
    pub clip_ratio_high: f64,
    /// Dual-clip bound c (> 1) applied to tokens with negative advantage.
    pub clip_ratio_c: f64,
    pub loss_agg_mode: LossAggMode,
    /// KL loss against a frozen reference model; off by default.
    pub kl_penalty: Option<KlPenalty>,
    /// Entropy bonus coefficient; the loss subtracts `entropy_coef * agg(entropy)`.
    pub entropy_coef: f64,
    /// Steps of plain GRPO before the self-reward MSE is switched on.
    pub reasoning_warmup_steps: u64,
    /// Further steps, after the MSE starts, before self-reward advantages are mixed in.
    pub self_rewarding_warmup_steps: u64,
    /// LaSeR on: the warm-ups above lead to the self-reward MSE and advantage mixing. Off
    /// (`algorithm.laser = false`): plain GRPO at every step. Written only when off, so a LaSeR
    /// run's stored learner configuration reads as before.
    #[serde(skip_serializing_if = "is_true")]
    pub self_reward: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Default for LaserConfig {
    fn default() -> Self {
        Self {
            beta_v: 0.1,
            alpha: 0.1,
            tau: 0.1,
            group_std_threshold: 0.1,
            advantage_eps: 1e-6,
            clip_ratio_low: 0.2,
            clip_ratio_high: 0.2,
            clip_ratio_c: 3.0,
            loss_agg_mode: LossAggMode::TokenMean,
            kl_penalty: None,
            entropy_coef: 0.0,
            reasoning_warmup_steps: 200,
            self_rewarding_warmup_steps: 200,
            self_reward: true,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid learner config: `{field}` = {value}: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub value: f64,
    pub reason: &'static str,
}

impl LaserConfig {
    /// Checks every field; the first violation is reported by name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let checks: [(&'static str, f64, bool, &'static str); 9] = [
            ("beta_v", self.beta_v, self.beta_v > 0.0, "must be > 0"),
            ("alpha", self.alpha, self.alpha >= 0.0, "must be >= 0"),
            (
                "tau",
                self.tau,
                (0.0..=1.0).contains(&self.tau),
                "must be in [0, 1]",
            ),
            (
                "group_std_threshold",
                self.group_std_threshold,
                self.group_std_threshold >= 0.0,
                "must be >= 0",
            ),
            (
                "advantage_eps",
                self.advantage_eps,
                self.advantage_eps > 0.0,
                "must be > 0",
            ),
            (
                "clip_ratio_low",
                self.clip_ratio_low,
                self.clip_ratio_low > 0.0 && self.clip_ratio_low < 1.0,
                "must be in (0, 1)",
            ),
            (
                "clip_ratio_high",
                self.clip_ratio_high,
                self.clip_ratio_high > 0.0,
                "must be > 0",
            ),
            (
                "clip_ratio_c",
                self.clip_ratio_c,
                self.clip_ratio_c > 1.0,
                "dual-clip bound must be > 1",
            ),
            (
                "entropy_coef",
                self.entropy_coef,
                self.entropy_coef >= 0.0,
                "must be >= 0",
            ),
        ];
        for (field, value, ok, reason) in checks {
            // NaN fails every comparison above, so it is rejected too.
            if !ok || !value.is_finite() {
                return Err(ConfigError {
                    field,
                    value,
                    reason,
                });
            }
        }
        if let Some(kl) = self.kl_penalty
            && !(kl.coef >= 0.0 && kl.coef.is_finite())
        {
            return Err(ConfigError {
                field: "kl_penalty.coef",
                value: kl.coef,
                reason: "must be >= 0",
            });
        }
        Ok(())
    }

    /// Which LaSeR parts are active at optimizer step `step` (0-based count of completed steps).
    pub fn phase(&self, step: u64) -> Phase {
        if !self.self_reward {
            return Phase::GRPO;
        }
        let mse_from = self.reasoning_warmup_steps;
        let mixing_from = mse_from.saturating_add(self.self_rewarding_warmup_steps);
        Phase {
            self_reward_mse: step >= mse_from,
            advantage_mixing: step >= mixing_from,
        }
    }
}

/// The parts of the LaSeR objective switched on at a step. Plain GRPO has both off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Phase {
    /// The alpha-weighted self-reward MSE is part of the loss.
    pub self_reward_mse: bool,
    /// Advantages are A = (1 - tau) A_v + tau A_s instead of A_v.
    pub advantage_mixing: bool,
}

impl Phase {
    /// Both parts on: what a run looks like after its warm-ups.
    pub const FULL: Phase = Phase {
        self_reward_mse: true,
        advantage_mixing: true,
    };
    /// Plain GRPO.
    pub const GRPO: Phase = Phase {
        self_reward_mse: false,
        advantage_mixing: false,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_papers() {
        let c = LaserConfig::default();
        assert_eq!(
            (c.beta_v, c.alpha, c.tau, c.group_std_threshold),
            (0.1, 0.1, 0.1, 0.1)
        );
        assert_eq!(
            (c.clip_ratio_low, c.clip_ratio_high, c.clip_ratio_c),
            (0.2, 0.2, 3.0)
        );
        assert_eq!(c.loss_agg_mode, LossAggMode::TokenMean);
        assert_eq!(c.kl_penalty, None);
        assert_eq!(c.entropy_coef, 0.0);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn warmup_phases_switch_at_the_configured_steps() {
        let c = LaserConfig {
            reasoning_warmup_steps: 3,
            self_rewarding_warmup_steps: 2,
            ..Default::default()
        };
        let phases: Vec<Phase> = (0..7).map(|s| c.phase(s)).collect();
        assert_eq!(&phases[..3], &[Phase::GRPO; 3]);
        let mse_only = Phase {
            self_reward_mse: true,
            advantage_mixing: false,
        };
        assert_eq!(&phases[3..5], &[mse_only; 2]);
        assert_eq!(&phases[5..], &[Phase::FULL; 2]);
        let none = LaserConfig {
            reasoning_warmup_steps: 0,
            self_rewarding_warmup_steps: 0,
            ..Default::default()
        };
        assert_eq!(none.phase(0), Phase::FULL);
        let off = LaserConfig {
            self_reward: false,
            ..none
        };
        assert_eq!(off.phase(0), Phase::GRPO);
        assert_eq!(off.phase(u64::MAX), Phase::GRPO);
    }

    #[test]
    fn invalid_fields_are_named() {
        let c = LaserConfig {
            clip_ratio_c: 1.0,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "clip_ratio_c");
        let c = LaserConfig {
            tau: f64::NAN,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "tau");
        let c = LaserConfig {
            kl_penalty: Some(KlPenalty {
                estimator: KlEstimator::K3,
                coef: -1.0,
            }),
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "kl_penalty.coef");
    }

    #[test]
    fn serde_uses_verl_names_and_fills_defaults() {
        let c: LaserConfig =
            serde_json::from_str(r#"{"loss_agg_mode": "seq-mean-token-sum", "kl_penalty": {"estimator": "low_var_kl", "coef": 0.01}}"#)
                .unwrap();
        assert_eq!(c.loss_agg_mode, LossAggMode::SeqMeanTokenSum);
        assert_eq!(
            c.kl_penalty,
            Some(KlPenalty {
                estimator: KlEstimator::K3,
                coef: 0.01
            })
        );
        assert_eq!(c.alpha, 0.1);
        assert!(serde_json::from_str::<LaserConfig>(r#"{"alhpa": 0.1}"#).is_err());
        assert!(c.self_reward);
        let on = serde_json::to_value(LaserConfig::default()).unwrap();
        assert!(on.get("self_reward").is_none(), "{on}");
    }
}
