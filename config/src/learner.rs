//! [`LearnerConfig`]: everything that configures the learner besides the model, as the learner
//! takes it ([`LaserConfig`] and [`OptimConfig`] inside), stored with every checkpoint
//! (`learner_config.json`). [`ClusterConfig::learner_config`] is the one place where cluster.toml's
//! flat `[algorithm]` and `[run]` keys become these typed settings.

use serde::{Deserialize, Serialize};

use crate::ClusterConfig;
use crate::laser::LaserConfig;
use crate::optim::{LrSchedule, OptimConfig};

/// Everything that configures a learner besides the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LearnerConfig {
    pub laser: LaserConfig,
    pub optim: OptimConfig,
    /// Sequences per forward/backward pass. The update does not depend on it (up to float rounding).
    pub micro_batch_size: usize,
    /// z_c, the token whose log-prob after EOS is the self-reward.
    pub self_reward_token: u32,
    /// c_ref from calibration.
    pub c_ref: f64,
    /// Complete checkpoints kept by `Learner::save_checkpoint` (at least 1 is always kept).
    pub keep_last_checkpoints: usize,
    /// Seed of the learner's RNG (data order in the CLI loops).
    pub seed: u64,
}

impl Default for LearnerConfig {
    fn default() -> Self {
        Self {
            laser: LaserConfig::default(),
            optim: OptimConfig::default(),
            micro_batch_size: 8,
            self_reward_token: 0,
            c_ref: -23.0,
            keep_last_checkpoints: 3,
            seed: 0,
        }
    }
}

impl ClusterConfig {
    /// The learner's settings for this run, from `[algorithm]` and `[run]`. z_c and c_ref are
    /// resolved by the caller (the same resolvers the actors use).
    pub fn learner_config(&self, self_reward_token: u32, c_ref: f64) -> LearnerConfig {
        let a = &self.algorithm;
        LearnerConfig {
            laser: LaserConfig {
                beta_v: a.beta_v,
                alpha: a.alpha,
                tau: a.tau,
                group_std_threshold: a.std_threshold,
                clip_ratio_low: a.clip_ratio_low,
                clip_ratio_high: a.clip_ratio_high,
                clip_ratio_c: a.clip_ratio_c,
                reasoning_warmup_steps: a.reasoning_warmup_steps,
                self_rewarding_warmup_steps: a.self_rewarding_warmup_steps,
                // `laser = false` is plain GRPO: the self-reward phases never start.
                self_reward: a.laser,
                ..LaserConfig::default()
            },
            optim: OptimConfig {
                lr_schedule: if a.cosine {
                    LrSchedule::Cosine {
                        lr: a.lr,
                        warmup_steps: 0,
                        total_steps: self.run.max_steps,
                        min_lr_ratio: a.min_lr_ratio,
                    }
                } else {
                    LrSchedule::Constant {
                        lr: a.lr,
                        warmup_steps: 0,
                    }
                },
                weight_decay: a.weight_decay as f32,
                max_grad_norm: (a.grad_clip > 0.0).then_some(a.grad_clip),
                ..OptimConfig::default()
            },
            micro_batch_size: a.micro_batch_size as usize,
            self_reward_token,
            c_ref,
            keep_last_checkpoints: self.run.keep_checkpoints.max(1),
            seed: self.run.seed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(toml: &str) -> ClusterConfig {
        ClusterConfig::from_toml_with_env(toml, "test.toml", std::iter::empty()).unwrap()
    }

    #[test]
    fn rl_learning_rate_follows_algorithm_cosine_over_max_steps() {
        let constant = cluster("[algorithm]\nlr = 2e-4\n").learner_config(0, -10.0);
        let s = &constant.optim.lr_schedule;
        assert_eq!((s.lr_at(0), s.lr_at(99)), (2e-4, 2e-4));

        let cosine = cluster(
            "[algorithm]\nlr = 2e-4\ncosine = true\nmin_lr_ratio = 0.1\n[run]\nmax_steps = 100\n",
        )
        .learner_config(0, -10.0);
        let s = &cosine.optim.lr_schedule;
        assert!((s.lr_at(0) - 2e-4).abs() < 1e-12);
        // Halfway: the mean of the peak and the floor.
        assert!((s.lr_at(50) - 1.1e-4).abs() < 1e-6, "{}", s.lr_at(50));
        assert!((s.lr_at(100) - 2e-5).abs() < 1e-9, "{}", s.lr_at(100));
    }

    #[test]
    fn micro_batch_size_comes_from_algorithm() {
        let c = cluster("[algorithm]\nmicro_batch_size = 3\n").learner_config(0, -10.0);
        assert_eq!(c.micro_batch_size, 3);
    }

    #[test]
    fn laser_off_is_an_explicit_flag_not_a_sentinel() {
        let on = cluster("[algorithm]\n").learner_config(0, -10.0);
        assert!(on.laser.self_reward);
        assert_eq!(on.laser.reasoning_warmup_steps, 200);
        let off = cluster("[algorithm]\nlaser = false\n").learner_config(0, -10.0);
        assert!(!off.laser.self_reward);
        assert_eq!(off.laser.reasoning_warmup_steps, 200);
        assert!(!off.laser.phase(1_000_000).self_reward_mse);
    }
}
