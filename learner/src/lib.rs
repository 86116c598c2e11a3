//! laser-learner: the training half of LaSeR (see `../shared/LASER.md`).
//!
//! The learner receives scored groups from the verifiers (n samples per prompt, each with the rollout's
//! old log-probs, the verifier reward r_v and the rollout's self-reward r_s), turns them into advantages,
//! runs the model's teacher-forced scoring pass over `[prompt, response, z_c]`, and applies the GRPO +
//! LaSeR update: a PPO-clipped policy loss plus alpha times the class-reweighted MSE that pulls
//! r_s = beta_v * (log pi(z_c | x, y, EOS) - c_ref) towards r_v. New weights then go back to the actors.
//! This crate's algorithm core is model-independent: losses are functions of the log-prob tensors the
//! model produces, so they are tested against verl's own functions with leaf tensors. Modules:
//! [`batch`] (validated training batches),
//! [`advantages`] (GRPO and self-reward advantages, plain Rust), [`loss`] (policy loss, MSE, aggregation
//! with global normalisers for exact gradient accumulation), [`optim`] (AdamW, global-norm clipping,
//! non-finite step skipping), [`checkpoint`] (atomic run-directory layout),
//! [`data_parallel`] (the data-parallel split of a step over learner ranks and the update from
//! the all-reduced gradients), [`learner`] (the [`Learner`]: micro-batched train and SFT steps, checkpoint save/resume) and
//! [`calibrate`] (c_ref from the reference model), [`sft`] (the supervised warm-start loop) and
//! [`commands`] (the `learner` command line as a library; the binary only parses and dispatches),
//! [`failpoint`] (named pauses where the fault tests kill the learner);
//! [`service`] is the gRPC `Learner` service of the distributed runtime (`learner serve`), which wraps
//! the same [`Learner`]. Its settings ([`laser_config::LearnerConfig`] with the LaSeR hyper-parameters,
//! warm-up phases, optimiser and learning-rate schedule) are defined in laser-config, which builds
//! them from cluster.toml; the learner takes them as is.

pub mod advantages;
pub mod backend;
pub mod batch;
pub mod calibrate;
pub mod checkpoint;
pub mod commands;
pub mod data_parallel;
pub mod failpoint;
pub mod learner;
pub mod loss;
pub mod optim;
pub mod service;
pub mod sft;

pub use advantages::{GroupAdvantages, batch_advantages, group_advantages};
pub use backend::TrainBackend;
pub use batch::{BatchError, Group, Sample, TrainingBatch};
pub use calibrate::{CalibrationRequest, calibrate};
pub use learner::{
    Learner, LearnerError, SftExample, SftMetrics, StepMetrics, config_changes, epoch_order,
    stored_config,
};
pub use loss::{
    LossContext, LossError, LossOutput, LossTargets, PolicyOutputs, StepNormalizers, laser_loss,
};
