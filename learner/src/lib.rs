//! laser-learner: the training half of LaSeR (see `../shared/LASER.md`).
//!
//! The learner receives scored groups from the verifiers (n samples per prompt, each with the rollout's
//! old log-probs, the verifier reward r_v and the rollout's self-reward r_s), turns them into advantages,
//! runs the model's teacher-forced scoring pass over `[prompt, response, z_c]`, and applies the GRPO +
//! LaSeR update: a PPO-clipped policy loss plus alpha times the class-reweighted MSE that pulls
//! r_s = beta_v * (log pi(z_c | x, y, EOS) - c_ref) towards r_v. New weights then go back to the actors.
//! This crate's algorithm core is model-independent: losses are functions of the log-prob tensors the
//! model produces, so they are tested against verl's own functions with leaf tensors. Modules:
//! [`config`] (hyper-parameters and warm-up phases), [`batch`] (validated training batches),
//! [`advantages`] (GRPO and self-reward advantages, plain Rust), [`loss`] (policy loss, MSE, aggregation
//! with global normalisers for exact gradient accumulation), [`optim`] (AdamW, global-norm clipping,
//! non-finite step skipping, learning-rate schedules), [`checkpoint`] (atomic run-directory layout),
//! [`learner`] (the [`Learner`]: micro-batched train and SFT steps, checkpoint save/resume) and
//! [`calibrate`] (c_ref from the reference model). The `learner` binary is a thin CLI over these;
//! [`service`] is the gRPC `Learner` service of the distributed runtime (`learner serve`), which wraps
//! the same [`Learner`].

pub mod advantages;
pub mod batch;
pub mod calibrate;
pub mod checkpoint;
pub mod config;
pub mod learner;
pub mod loss;
pub mod optim;
pub mod service;

pub use advantages::{GroupAdvantages, batch_advantages, group_advantages};
pub use batch::{BatchError, Group, Sample, TrainingBatch};
pub use calibrate::{Calibration, CalibrationRequest, calibrate};
pub use config::{ConfigError, KlEstimator, KlPenalty, LaserConfig, LossAggMode, Phase};
pub use learner::{
    Learner, LearnerConfig, LearnerError, SftExample, SftMetrics, StepMetrics, TrainBackend,
    config_changes, epoch_order, stored_config,
};
pub use loss::{
    LossContext, LossError, LossOutput, LossTargets, PolicyOutputs, StepNormalizers, laser_loss,
};
pub use optim::{LrSchedule, OptimConfig};
