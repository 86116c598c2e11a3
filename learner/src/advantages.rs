//! Sequence-level advantages, in plain Rust (they are computed once per step, before any tensor work).
//!
//! - A_v: GRPO's group z-score of the verifier rewards, (r_v - mean) / (std + eps) with the unbiased std,
//!   exactly verl's `compute_grpo_outcome_advantage` (a group of equal rewards gets zeros).
//! - A_s: the same z-score of the self-reward scores clamp(r_s, 0, 1), truncated samples scoring 0. A group
//!   whose score std is <= T carries no usable self-reward signal and falls back to A_s = A_v.
//! - A = (1 - tau) A_v + tau A_s once mixing is on (see [`laser_config::Phase`]), A = A_v before.
//!
//! The r_s used here is the ROLLOUT's self-reward (`Sample::self_reward`), which the actor read at the
//! slot right after EOS with the old policy. The released LaSeR code recomputes the old log-probs over a
//! padded sequence and reads the self-reward at a pad token instead of z_c; we never recompute r_s from
//! old log-prob tensors, so that bug cannot arise here.

use crate::batch::{Group, TrainingBatch};
use laser_config::{LaserConfig, Phase};

/// Unbiased (n - 1) standard deviation; 0 for fewer than two values.
pub fn unbiased_std(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 2 {
        return 0.0;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
    (ss / (n - 1) as f64).sqrt()
}

/// (v - mean) / (unbiased_std + eps) for each value. A single value has no baseline and gets 0
/// (validated batches never contain singleton groups).
pub fn group_zscore(values: &[f64], eps: f64) -> Vec<f64> {
    if values.len() < 2 {
        return vec![0.0; values.len()];
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let std = unbiased_std(values);
    values.iter().map(|v| (v - mean) / (std + eps)).collect()
}

/// The self-reward score each sample contributes to A_s: clamp(r_s, 0, 1), or 0 when truncated.
pub fn self_reward_scores(group: &Group) -> Vec<f64> {
    group
        .samples
        .iter()
        .map(|s| match (s.truncated, s.self_reward) {
            (false, Some(r_s)) => f64::from(r_s).clamp(0.0, 1.0),
            _ => 0.0,
        })
        .collect()
}

/// A_s for one group given its A_v: z-score of the scores, or A_v when the scores' std is <= T.
pub fn self_reward_advantages(
    scores: &[f64],
    verifier_advantages: &[f64],
    std_threshold: f64,
    eps: f64,
) -> Vec<f64> {
    if unbiased_std(scores) <= std_threshold {
        verifier_advantages.to_vec()
    } else {
        group_zscore(scores, eps)
    }
}

/// The advantages of one group, with their parts kept for metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupAdvantages {
    /// A_v, the GRPO advantage from verifier rewards.
    pub verifier: Vec<f64>,
    /// A_s, present when mixing is on.
    pub self_reward: Option<Vec<f64>>,
    /// What the policy loss uses.
    pub combined: Vec<f64>,
}

pub fn group_advantages(group: &Group, config: &LaserConfig, phase: Phase) -> GroupAdvantages {
    let rewards: Vec<f64> = group
        .samples
        .iter()
        .map(|s| f64::from(s.verifier_reward))
        .collect();
    let verifier = group_zscore(&rewards, config.advantage_eps);
    if !phase.advantage_mixing {
        return GroupAdvantages {
            combined: verifier.clone(),
            verifier,
            self_reward: None,
        };
    }
    let scores = self_reward_scores(group);
    let a_s = self_reward_advantages(
        &scores,
        &verifier,
        config.group_std_threshold,
        config.advantage_eps,
    );
    let tau = config.tau;
    let combined = verifier
        .iter()
        .zip(&a_s)
        .map(|(v, s)| (1.0 - tau) * v + tau * s)
        .collect();
    GroupAdvantages {
        verifier,
        self_reward: Some(a_s),
        combined,
    }
}

/// The combined advantage of every sample, in [`TrainingBatch::samples`] order.
pub fn batch_advantages(batch: &TrainingBatch, config: &LaserConfig, phase: Phase) -> Vec<f64> {
    batch
        .groups()
        .iter()
        .flat_map(|g| group_advantages(g, config, phase).combined)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::sample;

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
    }

    #[test]
    fn zscore_uses_unbiased_std_and_eps() {
        // Rewards 1,0,0,0: mean 0.25, unbiased var = (0.5625 + 3 * 0.0625) / 3 = 0.25, std = 0.5.
        let a = group_zscore(&[1.0, 0.0, 0.0, 0.0], 1e-6);
        let d = 0.5 + 1e-6;
        assert!(
            close(&a, &[0.75 / d, -0.25 / d, -0.25 / d, -0.25 / d]),
            "{a:?}"
        );
    }

    #[test]
    fn equal_rewards_give_zero_advantages() {
        assert_eq!(group_zscore(&[1.0; 5], 1e-6), vec![0.0; 5]);
        assert_eq!(group_zscore(&[0.0; 3], 1e-6), vec![0.0; 3]);
    }

    #[test]
    fn self_reward_scores_clamp_and_zero_truncated() {
        let group = Group {
            prompt_id: 0,
            samples: vec![
                sample(1.0, Some(1.7), 2),
                sample(0.0, Some(-0.3), 2),
                sample(0.0, None, 2),
                {
                    let mut s = sample(1.0, Some(0.4), 2);
                    s.truncated = true; // a truncated sample's r_s is ignored even if present
                    s
                },
            ],
        };
        assert_eq!(self_reward_scores(&group), vec![1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn mixing_combines_with_tau_and_falls_back_below_threshold() {
        let config = LaserConfig::default();
        let group = Group {
            prompt_id: 0,
            samples: vec![
                sample(1.0, Some(0.9), 2),
                sample(0.0, Some(0.2), 2),
                sample(1.0, Some(0.6), 2),
                sample(0.0, Some(0.1), 2),
            ],
        };
        let adv = group_advantages(&group, &config, Phase::FULL);
        let a_v = group_zscore(&[1.0, 0.0, 1.0, 0.0], 1e-6);
        let scores: Vec<f64> = [0.9f32, 0.2, 0.6, 0.1]
            .iter()
            .map(|&x| f64::from(x))
            .collect();
        let a_s = group_zscore(&scores, 1e-6);
        assert!(close(&adv.verifier, &a_v));
        assert!(close(adv.self_reward.as_ref().unwrap(), &a_s));
        let expected: Vec<f64> = a_v
            .iter()
            .zip(&a_s)
            .map(|(v, s)| 0.9 * v + 0.1 * s)
            .collect();
        assert!(close(&adv.combined, &expected));

        // Scores 0.50..0.53 have std ~0.013 <= T = 0.1: A_s falls back to A_v, so A = A_v.
        let flat = Group {
            prompt_id: 1,
            samples: vec![
                sample(1.0, Some(0.50), 2),
                sample(0.0, Some(0.51), 2),
                sample(1.0, Some(0.52), 2),
                sample(0.0, Some(0.53), 2),
            ],
        };
        let adv = group_advantages(&flat, &config, Phase::FULL);
        assert!(close(adv.self_reward.as_ref().unwrap(), &adv.verifier));
        assert!(close(&adv.combined, &adv.verifier));
    }

    #[test]
    fn before_mixing_the_advantage_is_a_v() {
        let group = Group {
            prompt_id: 0,
            samples: vec![sample(1.0, Some(0.0), 2), sample(0.0, Some(1.0), 2)],
        };
        let adv = group_advantages(&group, &LaserConfig::default(), Phase::GRPO);
        assert_eq!(adv.self_reward, None);
        assert_eq!(adv.combined, adv.verifier);
        let batch = TrainingBatch::new(vec![group.clone(), group]).unwrap();
        assert_eq!(
            batch_advantages(&batch, &LaserConfig::default(), Phase::GRPO).len(),
            4
        );
    }
}
