//! The learner's input: scored groups of rollouts. A [`TrainingBatch`] can only be built through
//! [`TrainingBatch::new`], which validates everything the loss later relies on, so bad data from an actor
//! or verifier becomes an error naming the group, sample and field instead of a NaN loss or a panic.

use serde::{Deserialize, Serialize};

/// One rollout: a response sampled for a prompt, with what the actor and verifier recorded about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub prompt_tokens: Vec<u32>,
    /// Response tokens, ending with EOS unless `truncated`. The z_c slot is not part of them.
    pub response_tokens: Vec<u32>,
    /// log pi_old(y_t | x, y_<t) from the rollout, one per response token.
    pub old_logprobs: Vec<f32>,
    /// Verifier reward r_v in [0, 1]; LaSeR's MSE classes are correct (r_v >= 0.5) and incorrect.
    pub verifier_reward: f32,
    /// The rollout's self-reward r_s = beta_v * (log pi_old(z_c | x, y, EOS) - c_ref). `None` exactly when
    /// the actor could not read it, i.e. for truncated responses (no EOS, so no z_c slot).
    pub self_reward: Option<f32>,
    /// No EOS before the length limit: excluded from the MSE, scored 0 in the self-reward advantage.
    pub truncated: bool,
    /// Version of the weights that sampled this response.
    pub policy_version: u64,
}

impl Sample {
    /// The MSE class: correct when r_v >= 0.5.
    pub fn is_correct(&self) -> bool {
        self.verifier_reward >= 0.5
    }
}

/// The n samples drawn for one prompt; GRPO normalises rewards within a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub prompt_id: u64,
    pub samples: Vec<Sample>,
}

/// Why a batch was rejected. Indices are 0-based positions in the batch.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    #[error("training batch has no groups")]
    NoGroups,
    #[error("group {group} (prompt {prompt_id}) has no samples")]
    EmptyGroup { group: usize, prompt_id: u64 },
    #[error(
        "group {group} (prompt {prompt_id}) has 1 sample; GRPO needs at least 2 per group to form a baseline"
    )]
    SingletonGroup { group: usize, prompt_id: u64 },
    #[error("group {group} sample {sample}: `{field}` is empty")]
    EmptyField {
        group: usize,
        sample: usize,
        field: &'static str,
    },
    #[error(
        "group {group} sample {sample}: `old_logprobs` has {logprobs} entries but `response_tokens` has {tokens}"
    )]
    LengthMismatch {
        group: usize,
        sample: usize,
        tokens: usize,
        logprobs: usize,
    },
    #[error("group {group} sample {sample}: `{field}` is not finite ({value})")]
    NonFinite {
        group: usize,
        sample: usize,
        field: &'static str,
        value: f32,
    },
    #[error("group {group} sample {sample}: `old_logprobs[{position}]` is not finite ({value})")]
    NonFiniteLogprob {
        group: usize,
        sample: usize,
        position: usize,
        value: f32,
    },
    #[error("group {group} sample {sample}: `verifier_reward` = {value} is outside [0, 1]")]
    RewardOutOfRange {
        group: usize,
        sample: usize,
        value: f32,
    },
    #[error(
        "group {group} sample {sample}: `self_reward` is missing for a response that ended with EOS \
         (only truncated responses may lack it)"
    )]
    MissingSelfReward { group: usize, sample: usize },
}

/// A validated step batch: at least one group, every group with >= 2 samples, every sample consistent.
/// Deserialising (`{"groups": [...]}`) runs the same validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "UncheckedBatch")]
pub struct TrainingBatch {
    groups: Vec<Group>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UncheckedBatch {
    groups: Vec<Group>,
}

impl TryFrom<UncheckedBatch> for TrainingBatch {
    type Error = BatchError;
    fn try_from(raw: UncheckedBatch) -> Result<Self, BatchError> {
        TrainingBatch::new(raw.groups)
    }
}

impl TrainingBatch {
    pub fn new(groups: Vec<Group>) -> Result<Self, BatchError> {
        if groups.is_empty() {
            return Err(BatchError::NoGroups);
        }
        for (g, group) in groups.iter().enumerate() {
            match group.samples.len() {
                0 => {
                    return Err(BatchError::EmptyGroup {
                        group: g,
                        prompt_id: group.prompt_id,
                    });
                }
                1 => {
                    return Err(BatchError::SingletonGroup {
                        group: g,
                        prompt_id: group.prompt_id,
                    });
                }
                _ => {}
            }
            for (s, sample) in group.samples.iter().enumerate() {
                validate_sample(g, s, sample)?;
            }
        }
        Ok(Self { groups })
    }

    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// All samples, group by group: the order of every per-sample vector in this crate.
    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.groups.iter().flat_map(|g| g.samples.iter())
    }

    pub fn num_samples(&self) -> usize {
        self.groups.iter().map(|g| g.samples.len()).sum()
    }

    /// Response tokens over the batch: the policy-gradient positions (EOS included, z_c slot not).
    pub fn num_response_tokens(&self) -> usize {
        self.samples().map(|s| s.response_tokens.len()).sum()
    }

    /// (N_c, N_i): correct and incorrect non-truncated samples, the MSE's class counts.
    pub fn class_counts(&self) -> (usize, usize) {
        self.samples()
            .filter(|s| !s.truncated)
            .fold((0, 0), |(c, i), s| {
                if s.is_correct() {
                    (c + 1, i)
                } else {
                    (c, i + 1)
                }
            })
    }
}

fn validate_sample(group: usize, sample: usize, s: &Sample) -> Result<(), BatchError> {
    if s.prompt_tokens.is_empty() {
        return Err(BatchError::EmptyField {
            group,
            sample,
            field: "prompt_tokens",
        });
    }
    if s.response_tokens.is_empty() {
        return Err(BatchError::EmptyField {
            group,
            sample,
            field: "response_tokens",
        });
    }
    if s.old_logprobs.len() != s.response_tokens.len() {
        return Err(BatchError::LengthMismatch {
            group,
            sample,
            tokens: s.response_tokens.len(),
            logprobs: s.old_logprobs.len(),
        });
    }
    if let Some((position, &value)) = s
        .old_logprobs
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite())
    {
        return Err(BatchError::NonFiniteLogprob {
            group,
            sample,
            position,
            value,
        });
    }
    if !s.verifier_reward.is_finite() {
        return Err(BatchError::NonFinite {
            group,
            sample,
            field: "verifier_reward",
            value: s.verifier_reward,
        });
    }
    if !(0.0..=1.0).contains(&s.verifier_reward) {
        return Err(BatchError::RewardOutOfRange {
            group,
            sample,
            value: s.verifier_reward,
        });
    }
    match s.self_reward {
        Some(value) if !value.is_finite() => Err(BatchError::NonFinite {
            group,
            sample,
            field: "self_reward",
            value,
        }),
        None if !s.truncated => Err(BatchError::MissingSelfReward { group, sample }),
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(r_v: f32, r_s: Option<f32>, len: usize) -> Sample {
        Sample {
            prompt_tokens: vec![1, 2, 3],
            response_tokens: (10..10 + len as u32).collect(),
            old_logprobs: vec![-0.5; len],
            verifier_reward: r_v,
            self_reward: r_s,
            truncated: r_s.is_none(),
            policy_version: 7,
        }
    }

    fn one_group(samples: Vec<Sample>) -> Result<TrainingBatch, BatchError> {
        TrainingBatch::new(vec![Group {
            prompt_id: 42,
            samples,
        }])
    }

    #[test]
    fn valid_batch_counts_tokens_and_classes() {
        let batch = TrainingBatch::new(vec![
            Group {
                prompt_id: 0,
                samples: vec![sample(1.0, Some(0.9), 3), sample(0.0, None, 5)],
            },
            Group {
                prompt_id: 1,
                samples: vec![sample(1.0, Some(0.2), 2), sample(0.0, Some(0.1), 4)],
            },
        ])
        .unwrap();
        assert_eq!(batch.num_samples(), 4);
        assert_eq!(batch.num_response_tokens(), 14);
        // The truncated incorrect sample is not counted.
        assert_eq!(batch.class_counts(), (2, 1));
    }

    #[test]
    fn rejects_empty_batch_empty_group_and_singleton_group() {
        assert_eq!(TrainingBatch::new(vec![]), Err(BatchError::NoGroups));
        assert_eq!(
            one_group(vec![]),
            Err(BatchError::EmptyGroup {
                group: 0,
                prompt_id: 42
            })
        );
        let err = one_group(vec![sample(1.0, Some(0.5), 2)]).unwrap_err();
        assert_eq!(
            err,
            BatchError::SingletonGroup {
                group: 0,
                prompt_id: 42
            }
        );
        assert!(err.to_string().contains("at least 2"), "{err}");
    }

    #[test]
    fn rejects_length_mismatch_naming_both_lengths() {
        let mut bad = sample(1.0, Some(0.5), 4);
        bad.old_logprobs.pop();
        let err = one_group(vec![sample(0.0, Some(0.1), 2), bad]).unwrap_err();
        assert_eq!(
            err,
            BatchError::LengthMismatch {
                group: 0,
                sample: 1,
                tokens: 4,
                logprobs: 3
            }
        );
        assert!(err.to_string().contains("old_logprobs"));
    }

    #[test]
    fn rejects_non_finite_rewards_and_logprobs() {
        for (field, value) in [
            ("verifier_reward", f32::NAN),
            ("verifier_reward", f32::INFINITY),
        ] {
            let mut bad = sample(1.0, Some(0.5), 2);
            bad.verifier_reward = value;
            let err = one_group(vec![bad, sample(0.0, Some(0.1), 2)]).unwrap_err();
            assert!(
                matches!(err, BatchError::NonFinite { field: f, sample: 0, .. } if f == field),
                "{err}"
            );
        }
        let bad = sample(1.0, Some(f32::NEG_INFINITY), 2);
        let err = one_group(vec![sample(0.0, Some(0.1), 2), bad]).unwrap_err();
        assert!(
            matches!(
                err,
                BatchError::NonFinite {
                    field: "self_reward",
                    sample: 1,
                    ..
                }
            ),
            "{err}"
        );
        let mut bad = sample(1.0, Some(0.5), 3);
        bad.old_logprobs[2] = f32::NAN;
        let err = one_group(vec![bad, sample(0.0, Some(0.1), 2)]).unwrap_err();
        assert!(
            matches!(err, BatchError::NonFiniteLogprob { position: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn deserialising_validates() {
        let good = TrainingBatch::new(vec![Group {
            prompt_id: 3,
            samples: vec![sample(1.0, Some(0.5), 2), sample(0.0, None, 3)],
        }])
        .unwrap();
        let json = serde_json::to_string(&good).unwrap();
        assert_eq!(serde_json::from_str::<TrainingBatch>(&json).unwrap(), good);
        let singleton = r#"{"groups": [{"prompt_id": 9, "samples": [{"prompt_tokens": [1], "response_tokens": [2],
            "old_logprobs": [-0.1], "verifier_reward": 1.0, "self_reward": 0.3, "truncated": false, "policy_version": 0}]}]}"#;
        let err = serde_json::from_str::<TrainingBatch>(singleton)
            .unwrap_err()
            .to_string();
        assert!(err.contains("group 0 (prompt 9) has 1 sample"), "{err}");
    }

    #[test]
    fn rejects_out_of_range_reward_empty_fields_and_missing_self_reward() {
        let err =
            one_group(vec![sample(2.0, Some(0.5), 2), sample(0.0, Some(0.1), 2)]).unwrap_err();
        assert!(matches!(err, BatchError::RewardOutOfRange { .. }), "{err}");
        let mut bad = sample(1.0, Some(0.5), 2);
        bad.prompt_tokens.clear();
        let err = one_group(vec![bad, sample(0.0, Some(0.1), 2)]).unwrap_err();
        assert_eq!(
            err,
            BatchError::EmptyField {
                group: 0,
                sample: 0,
                field: "prompt_tokens"
            }
        );
        let err =
            one_group(vec![sample(0.0, Some(0.1), 0), sample(0.0, Some(0.1), 2)]).unwrap_err();
        assert_eq!(
            err,
            BatchError::EmptyField {
                group: 0,
                sample: 0,
                field: "response_tokens"
            }
        );
        let mut bad = sample(1.0, None, 2);
        bad.truncated = false;
        let err = one_group(vec![sample(0.0, Some(0.1), 2), bad]).unwrap_err();
        assert_eq!(
            err,
            BatchError::MissingSelfReward {
                group: 0,
                sample: 1
            }
        );
    }
}
