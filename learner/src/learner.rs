//! The [`Learner`]: the policy being trained, its optimiser and the step counter, with one method per
//! kind of update. [`Learner::train_step`] is the GRPO + LaSeR step over a [`TrainingBatch`]:
//!
//! 1. advantages for the step's phase (A_v, or A mixed with the rollout's self-rewards);
//! 2. the batch is cut into micro-batches of `micro_batch_size` sequences; each gets ONE teacher-forced
//!    forward pass ([`laser_model::score`]) that yields both the response log-probs (policy-gradient
//!    positions, EOS included) and log pi(z_c | x, y, EOS) at the slot after the response;
//! 3. each micro-batch loss is its exact share of the step loss (step-level normalisers, see
//!    [`crate::loss`]), so summing the micro-batch gradients gives the full-batch gradient;
//! 4. one optimiser step: global-norm clipping, AdamW, and a skip (counted, logged) when the loss or the
//!    gradient norm is not finite.
//!
//! [`Learner::sft_step`] runs cross-entropy on (prompt, response) pairs through the same machinery.
//! Checkpoints ([`Learner::save_checkpoint`], [`Learner::resume`]) hold the model in Hugging Face layout,
//! the AdamW moments, the counters, the RNG and the data cursor, so a resumed run continues exactly.

use std::fs::File;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::record::AdaptorRecord;
use burn::optim::{
    AdamW, AdamWState, AdaptiveMomentumState, GradientsAccumulator, GradientsParams, Optimizer,
};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use laser_model::weights::{HostTensor, WeightMap, safetensors};
use laser_model::{ModelError, ScoreItem, Tokenizer, Transformer, score};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::advantages::group_advantages;
use crate::batch::{BatchError, Sample, TrainingBatch};
use crate::checkpoint::{
    CheckpointError, CompleteCheckpoint, DataCursor, RngState, RunDir, TrainerState, atomic_write,
};
use crate::loss::{
    LossContext, LossError, LossOutput, LossTargets, PolicyOutputs, StepNormalizers, laser_loss,
};
use laser_config::OptimError;
use laser_config::{ConfigError, LearnerConfig, Phase};

use crate::optim::{LearnerOptimizer, StepOutcome};

/// File names inside a checkpoint directory, next to the HF model files written by
/// [`laser_model::pretrained::save`].
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const LEARNER_CONFIG_FILE: &str = "learner_config.json";

#[derive(Debug, thiserror::Error)]
pub enum LearnerError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Loss(#[from] LossError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Optim(#[from] OptimError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("model: {0}")]
    Model(#[from] ModelError),
    #[error("invalid learner config: `{field}`: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{path}: {message}")]
    Resume {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("no complete checkpoint in {0}")]
    NoCheckpoint(std::path::PathBuf),
}

/// What one [`Learner::train_step`] did, summed over its micro-batches (each value is the step value).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepMetrics {
    /// The optimiser step this was (0-based); the phase is decided by it.
    pub step: u64,
    pub phase: Phase,
    pub applied: bool,
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    pub total_loss: f64,
    pub policy_loss: f64,
    pub clip_fraction: f64,
    pub clip_fraction_lower: f64,
    pub ppo_kl: f64,
    /// L_mse (not multiplied by alpha), reported in every phase.
    pub self_reward_mse: f64,
    pub kl_loss: Option<f64>,
    pub sequences: usize,
    pub response_tokens: usize,
    pub micro_batches: usize,
    /// Mean combined advantage over sequences (0 for GRPO up to rounding).
    pub mean_advantage: f64,
    /// Steps skipped so far because of a non-finite loss or gradient norm.
    pub skipped_steps: u64,
}

/// One supervised pair; `response` normally ends with EOS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftExample {
    pub prompt: Vec<u32>,
    pub response: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SftMetrics {
    pub step: u64,
    pub applied: bool,
    pub lr: f64,
    pub grad_norm: f64,
    /// Mean negative log-likelihood per response token.
    pub loss: f64,
    pub tokens: usize,
    pub skipped_steps: u64,
}

/// The loss parts of one step, summed over its micro-batches (so each is the full-batch value).
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub struct StepLoss {
    pub step: u64,
    pub phase: Phase,
    pub total: f64,
    pub policy: f64,
    pub clip_fraction: f64,
    pub clip_fraction_lower: f64,
    pub ppo_kl: f64,
    pub self_reward_mse: f64,
    pub kl: Option<f64>,
    pub micro_batches: usize,
    pub mean_advantage: f64,
}

fn scalar<B: burn::tensor::backend::Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_scalar().elem::<f64>()
}

impl StepLoss {
    fn add<B: AutodiffBackend>(&mut self, out: &LossOutput<B>) {
        self.total += scalar(out.total.clone().detach());
        self.policy += scalar(out.policy.loss.clone().detach());
        self.clip_fraction += scalar(out.policy.clip_fraction.clone());
        self.clip_fraction_lower += scalar(out.policy.clip_fraction_lower.clone());
        self.ppo_kl += scalar(out.policy.ppo_kl.clone());
        self.self_reward_mse += scalar(out.self_reward_mse.clone().detach());
        if let Some(kl) = &out.kl_loss {
            *self.kl.get_or_insert(0.0) += scalar(kl.clone().detach());
        }
    }
}

/// The policy under training plus everything needed to continue training it.
pub struct Learner<B: AutodiffBackend> {
    model: Transformer<B>,
    /// Frozen reference policy for the optional KL penalty.
    reference: Option<Transformer<B::InnerBackend>>,
    tokenizer: Option<Tokenizer>,
    optimizer: LearnerOptimizer<B, Transformer<B>>,
    /// ZeRO-1: the parameters (visiting order) whose AdamW moments this rank keeps; `None`: all.
    owned_state: Option<Vec<bool>>,
    config: LearnerConfig,
    rng: ChaCha8Rng,
    data_cursor: DataCursor,
    policy_version: u64,
}

impl<B: AutodiffBackend> Learner<B> {
    /// A fresh learner at step 0. `reference` is required exactly when a KL penalty is configured.
    pub fn new(
        model: Transformer<B>,
        tokenizer: Option<Tokenizer>,
        reference: Option<Transformer<B::InnerBackend>>,
        config: LearnerConfig,
    ) -> Result<Self, LearnerError> {
        validate_config(&config, &model, reference.is_some())?;
        let optimizer = LearnerOptimizer::new(config.optim.clone())?;
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        Ok(Self {
            model,
            reference,
            tokenizer,
            optimizer,
            owned_state: None,
            config,
            rng,
            data_cursor: DataCursor {
                epoch: 0,
                position: 0,
            },
            policy_version: 0,
        })
    }

    pub fn model(&self) -> &Transformer<B> {
        &self.model
    }

    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        self.tokenizer.as_ref()
    }

    pub fn config(&self) -> &LearnerConfig {
        &self.config
    }

    /// Optimiser steps taken (skipped ones included).
    pub fn step(&self) -> u64 {
        self.optimizer.step_count()
    }

    pub fn skipped_steps(&self) -> u64 {
        self.optimizer.skipped_steps()
    }

    /// Bumped by every applied update: the version the actors' weights are tagged with.
    pub fn policy_version(&self) -> u64 {
        self.policy_version
    }

    pub fn data_cursor(&self) -> DataCursor {
        self.data_cursor
    }

    pub fn set_data_cursor(&mut self, cursor: DataCursor) {
        self.data_cursor = cursor;
    }

    /// The learner's RNG (checkpointed): use it for anything random in the training loop.
    pub fn rng_mut(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// The phase the next step runs in.
    pub fn phase(&self) -> Phase {
        self.config.laser.phase(self.step())
    }

    /// One GRPO + LaSeR update over `batch` (see the module docs).
    pub fn train_step(&mut self, batch: &TrainingBatch) -> Result<StepMetrics, LearnerError> {
        let (grads, loss) = self.gradients(batch)?;
        let outcome = self.apply(loss.total, grads);
        Ok(self.step_metrics(&loss, outcome, batch))
    }

    /// The metrics row of a step whose loss parts are `loss` (summed over the whole batch) and
    /// whose update did `outcome`.
    pub(crate) fn step_metrics(
        &self,
        loss: &StepLoss,
        outcome: StepOutcome,
        batch: &TrainingBatch,
    ) -> StepMetrics {
        let (applied, lr, grad_norm) = outcome_parts(outcome);
        StepMetrics {
            step: loss.step,
            phase: loss.phase,
            applied,
            lr,
            grad_norm,
            total_loss: loss.total,
            policy_loss: loss.policy,
            clip_fraction: loss.clip_fraction,
            clip_fraction_lower: loss.clip_fraction_lower,
            ppo_kl: loss.ppo_kl,
            self_reward_mse: loss.self_reward_mse,
            kl_loss: loss.kl,
            sequences: batch.num_samples(),
            response_tokens: batch.num_response_tokens(),
            micro_batches: loss.micro_batches,
            mean_advantage: loss.mean_advantage,
            skipped_steps: self.skipped_steps(),
        }
    }

    /// The accumulated gradients of the step loss over `batch` (summed over micro-batches, each already
    /// normalised by step-level counts) and the loss parts, without touching the model or optimiser.
    pub fn gradients(
        &self,
        batch: &TrainingBatch,
    ) -> Result<(GradientsParams, StepLoss), LearnerError> {
        self.gradients_of(
            batch,
            0..batch.groups().len(),
            StepNormalizers::from_batch(batch),
        )
    }

    /// The share of the step's gradients and loss parts that the groups `groups` of `batch` carry,
    /// with `normalizers` counted over the whole step batch: summing the shares of disjoint group
    /// ranges that cover the batch gives [`Self::gradients`] of the batch (the data-parallel split).
    /// `mean_advantage` is the range's advantage sum over the step's sequence count, so it adds
    /// up the same way.
    pub fn gradients_of(
        &self,
        batch: &TrainingBatch,
        groups: std::ops::Range<usize>,
        normalizers: StepNormalizers,
    ) -> Result<(GradientsParams, StepLoss), LearnerError> {
        let step = self.step();
        let phase = self.config.laser.phase(step);
        let shard = &batch.groups()[groups];
        let advantages: Vec<f64> = shard
            .iter()
            .flat_map(|g| group_advantages(g, &self.config.laser, phase).combined)
            .collect();
        let context = LossContext {
            normalizers,
            c_ref: self.config.c_ref,
            phase,
        };
        let samples: Vec<&Sample> = shard.iter().flat_map(|g| g.samples.iter()).collect();
        let device = self.model.device();

        let mut accumulator = GradientsAccumulator::<Transformer<B>>::new();
        let mut sums = StepLoss {
            step,
            phase,
            mean_advantage: advantages.iter().sum::<f64>() / normalizers.sequences.max(1) as f64,
            ..StepLoss::default()
        };
        let mb = self.config.micro_batch_size;
        for (chunk_index, chunk) in samples.chunks(mb).enumerate() {
            let start = chunk_index * mb;
            let items: Vec<ScoreItem<'_>> = chunk
                .iter()
                .map(|s| ScoreItem {
                    prompt: &s.prompt_tokens,
                    response: &s.response_tokens,
                })
                .collect();
            // One forward pass: response log-probs (PG positions) and the z_c slot after the response.
            let scored = score(&self.model, &items, self.config.self_reward_token)?;
            let mut targets =
                LossTargets::from_samples(chunk, &advantages[start..start + chunk.len()], &device)?;
            if let Some(reference) = &self.reference {
                let ref_scored = score(reference, &items, self.config.self_reward_token)?;
                targets.ref_logprobs = Some(Tensor::from_inner(ref_scored.response_logprobs));
            }
            let outputs = PolicyOutputs {
                response_logprobs: scored.response_logprobs,
                self_reward_logprob: scored.self_reward_logprob,
                entropy: None,
            };
            let loss = laser_loss(&outputs, &targets, &context, &self.config.laser)?;
            sums.add(&loss);
            let grads = GradientsParams::from_grads(loss.total.backward(), &self.model);
            accumulator.accumulate(&self.model, grads);
            sums.micro_batches += 1;
        }
        Ok((accumulator.grads(), sums))
    }

    /// One supervised step: mean token cross-entropy of the responses given the prompts, with the same
    /// micro-batching (normalised by the step's token count) and optimiser as [`Self::train_step`].
    pub fn sft_step(&mut self, examples: &[SftExample]) -> Result<SftMetrics, LearnerError> {
        if examples.is_empty() {
            return Err(LearnerError::Invalid {
                field: "examples",
                message: "an SFT step needs at least one example".into(),
            });
        }
        let step = self.step();
        let tokens: usize = examples.iter().map(|e| e.response.len()).sum();
        let mut accumulator = GradientsAccumulator::<Transformer<B>>::new();
        let mut total = 0.0;
        for chunk in examples.chunks(self.config.micro_batch_size) {
            let items: Vec<ScoreItem<'_>> = chunk
                .iter()
                .map(|e| ScoreItem {
                    prompt: &e.prompt,
                    response: &e.response,
                })
                .collect();
            let scored = score(&self.model, &items, self.config.self_reward_token)?;
            // Padding log-probs are already 0 in `response_logprobs`; the mask makes that explicit.
            let nll = (scored.response_logprobs * scored.response_mask)
                .sum()
                .neg()
                .div_scalar(tokens.max(1) as f64);
            total += scalar(nll.clone().detach());
            let grads = GradientsParams::from_grads(nll.backward(), &self.model);
            accumulator.accumulate(&self.model, grads);
        }
        let outcome = self.apply(total, accumulator.grads());
        let (applied, lr, grad_norm) = outcome_parts(outcome);
        Ok(SftMetrics {
            step,
            applied,
            lr,
            grad_norm,
            loss: total,
            tokens,
            skipped_steps: self.skipped_steps(),
        })
    }

    /// One optimiser step from the step's gradients (clipping, AdamW, the non-finite guard).
    /// ZeRO-1's [`Self::apply`]: updates only the parameters marked in `owned` (module visiting
    /// order) and keeps AdamW moments for those alone; the caller gathers the others.
    pub(crate) fn apply_owned(
        &mut self,
        loss: f64,
        grads: GradientsParams,
        owned: &[bool],
    ) -> StepOutcome {
        if self.owned_state.as_deref() != Some(owned) {
            // First sharded step (or a new share): drop the moments another rank now keeps.
            self.optimizer.retain_owned_state(&self.model, owned);
            self.owned_state = Some(owned.to_vec());
        }
        self.step_model(|optimizer, model| optimizer.step_owned(model, loss, grads, owned))
    }

    /// Which parameters this learner keeps AdamW moments for, when it is a ZeRO-1 rank.
    pub fn owned_state(&self) -> Option<&[bool]> {
        self.owned_state.as_deref()
    }

    /// Mutable access to the model for the data-parallel parameter gather.
    pub(crate) fn replace_model(&mut self, f: impl FnOnce(Transformer<B>) -> Transformer<B>) {
        self.model = f(self.model.clone());
    }

    pub(crate) fn apply(&mut self, loss: f64, grads: GradientsParams) -> StepOutcome {
        self.step_model(|optimizer, model| optimizer.step(model, loss, grads))
    }

    /// One optimiser step of the model; an applied one is a new policy version.
    fn step_model(
        &mut self,
        step: impl FnOnce(
            &mut LearnerOptimizer<B, Transformer<B>>,
            Transformer<B>,
        ) -> (Transformer<B>, StepOutcome),
    ) -> StepOutcome {
        let (model, outcome) = step(&mut self.optimizer, self.model.clone());
        self.model = model;
        if matches!(outcome, StepOutcome::Applied { .. }) {
            self.policy_version += 1;
        }
        outcome
    }

    /// Writes a complete checkpoint for the current step into `run_dir` (atomically), then keeps the
    /// newest `keep_last_checkpoints`. Contents: HF `model.safetensors` + `config.json` (+ tokenizer),
    /// `optimizer.safetensors` (AdamW moments), `learner_config.json`, `trainer_state.json`.
    pub fn save_checkpoint(&self, run_dir: &RunDir) -> Result<CompleteCheckpoint, LearnerError> {
        self.save_checkpoint_merging(run_dir, 1)
    }

    /// [`Self::save_checkpoint`] on rank 0 of `world` ZeRO-1 ranks: the AdamW moments this rank
    /// does not keep come from the shares ranks 1..world wrote first
    /// ([`Self::write_optimizer_share`]), so the checkpoint is the same as one learner's.
    pub fn save_checkpoint_merging(
        &self,
        run_dir: &RunDir,
        world: u32,
    ) -> Result<CompleteCheckpoint, LearnerError> {
        let (mut moments, mut times) = self.optimizer_state();
        if self.owned_state.is_some() {
            let shares = run_dir.optimizer_shares_dir(self.step());
            for rank in 1..world {
                merge_share(&mut moments, &mut times, &shares, rank)?;
            }
        }
        let writer = run_dir.begin_checkpoint(self.step())?;
        laser_model::pretrained::save(&self.model, self.tokenizer.as_ref(), writer.dir())?;
        safetensors::save_file(&moments, &writer.dir().join(OPTIMIZER_FILE))?;
        let learner_state = LearnerFile {
            config: self.config.clone(),
            adam_times: times,
        };
        let json = serde_json::to_vec_pretty(&learner_state).expect("learner config serialises");
        writer.write_file(LEARNER_CONFIG_FILE, &json)?;
        sync_files(writer.dir())?;
        crate::failpoint::hit(crate::failpoint::CHECKPOINT_WRITE);
        let state = TrainerState {
            format_version: TrainerState::FORMAT_VERSION,
            step: self.step(),
            policy_version: self.policy_version,
            data_cursor: self.data_cursor,
            c_ref: self.config.c_ref,
            rng: RngState {
                seed: self.config.seed,
                stream: self.rng.get_stream(),
                word_pos: self.rng.get_word_pos(),
            },
            skipped_steps: self.skipped_steps(),
            lr_schedule: self.config.optim.lr_schedule,
        };
        let complete = writer.commit(&state)?;
        run_dir.rotate(self.config.keep_last_checkpoints)?;
        run_dir.remove_optimizer_shares(self.step())?;
        Ok(complete)
    }

    /// ZeRO-1, ranks other than 0: writes the AdamW moments this rank keeps, for the current step,
    /// into `run_dir`'s shares of that step (the moments, then their step counts: the counts'
    /// file marks a whole share). Returns the share's directory.
    pub fn write_optimizer_share(
        &self,
        run_dir: &RunDir,
        rank: u32,
    ) -> Result<PathBuf, LearnerError> {
        let dir = run_dir.optimizer_shares_dir(self.step());
        std::fs::create_dir_all(&dir).map_err(|source| CheckpointError::Io {
            path: dir.clone(),
            source,
        })?;
        let (moments, times) = self.optimizer_state();
        let tensors = dir.join(format!("rank-{rank}.safetensors"));
        let part = dir.join(format!("rank-{rank}.safetensors.part"));
        safetensors::save_file(&moments, &part)?;
        File::open(&part)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&part, &tensors))
            .map_err(|source| CheckpointError::Io {
                path: tensors.clone(),
                source,
            })?;
        let json = serde_json::to_vec(&times).expect("step counts serialise");
        atomic_write(&dir.join(format!("rank-{rank}.json")), &json)?;
        Ok(dir)
    }

    /// Continues from the newest complete checkpoint of `run_dir`. The reference model (KL penalty) is
    /// not part of a checkpoint; pass it again.
    pub fn resume(
        run_dir: &RunDir,
        device: &B::Device,
        reference: Option<Transformer<B::InnerBackend>>,
    ) -> Result<(Self, CompleteCheckpoint), LearnerError> {
        let checkpoint = run_dir
            .latest_complete()?
            .ok_or_else(|| LearnerError::NoCheckpoint(run_dir.root().to_path_buf()))?;
        let learner = Self::load_checkpoint(&checkpoint, device, reference, None)?;
        Ok((learner, checkpoint))
    }

    /// Loads one complete checkpoint directory. `config` replaces the configuration stored with
    /// it (see [`stored_config`] and [`config_changes`]); `None` keeps the stored one. z_c cannot
    /// change within a run, and c_ref always comes from the checkpoint.
    pub fn load_checkpoint(
        checkpoint: &CompleteCheckpoint,
        device: &B::Device,
        reference: Option<Transformer<B::InnerBackend>>,
        config: Option<LearnerConfig>,
    ) -> Result<Self, LearnerError> {
        let dir = &checkpoint.path;
        let state = checkpoint.trainer_state()?;
        let file = read_learner_file(dir)?;
        let config = match config {
            Some(c) if c.self_reward_token != file.config.self_reward_token => {
                return Err(LearnerError::Resume {
                    path: dir.join(LEARNER_CONFIG_FILE),
                    message: format!(
                        "self_reward_token {} differs from the run's {}: z_c cannot change within a run",
                        c.self_reward_token, file.config.self_reward_token
                    ),
                });
            }
            Some(c) => c,
            None => file.config,
        };
        let pretrained = laser_model::pretrained::load::<B>(dir, device)?;
        let mut learner = Self::new(pretrained.model, pretrained.tokenizer, reference, config)?;
        learner.optimizer = LearnerOptimizer::new(learner.config.optim.clone())?
            .with_counters(state.step, state.skipped_steps);
        let moments = safetensors::load_file(&dir.join(OPTIMIZER_FILE))?;
        learner.load_optimizer_state(moments, &file.adam_times, &dir.join(OPTIMIZER_FILE))?;
        learner.config.c_ref = state.c_ref;
        learner.policy_version = state.policy_version;
        learner.data_cursor = state.data_cursor;
        let mut rng = ChaCha8Rng::seed_from_u64(state.rng.seed);
        rng.set_stream(state.rng.stream);
        rng.set_word_pos(state.rng.word_pos);
        learner.rng = rng;
        Ok(learner)
    }

    /// AdamW moments by parameter index (module visiting order), and each parameter's step count.
    fn optimizer_state(&self) -> (WeightMap, Vec<Option<usize>>) {
        let records = self.optimizer.adamw().to_record();
        let mut visitor = CollectMoments::<B> {
            records: &records,
            index: 0,
            moments: WeightMap::new(OPTIMIZER_FILE),
            times: Vec::new(),
        };
        self.model.visit(&mut visitor);
        (visitor.moments, visitor.times)
    }

    fn load_optimizer_state(
        &mut self,
        mut moments: WeightMap,
        times: &[Option<usize>],
        path: &Path,
    ) -> Result<(), LearnerError> {
        let mut visitor = RestoreMoments::<B> {
            moments: &mut moments,
            times,
            index: 0,
            records: Vec::new(),
            error: None,
        };
        self.model.visit(&mut visitor);
        if let Some(e) = visitor.error {
            return Err(LearnerError::Resume {
                path: path.to_path_buf(),
                message: e,
            });
        }
        if visitor.index != times.len() {
            return Err(LearnerError::Resume {
                path: path.to_path_buf(),
                message: format!(
                    "checkpoint has optimiser state for {} parameters, the model has {}",
                    times.len(),
                    visitor.index
                ),
            });
        }
        let records: AdamRecords<B> = visitor.records.into_iter().collect();
        self.optimizer.load_adamw_record(records);
        Ok(())
    }
}

/// Fills the moments `times` lacks from rank `rank`'s share in `dir` (ZeRO-1: each parameter's
/// moments live on exactly one rank; one never stepped has none anywhere).
fn merge_share(
    moments: &mut WeightMap,
    times: &mut [Option<usize>],
    dir: &Path,
    rank: u32,
) -> Result<(), LearnerError> {
    let counts = dir.join(format!("rank-{rank}.json"));
    let bad = |message: String| LearnerError::Resume {
        path: counts.clone(),
        message,
    };
    let bytes = std::fs::read(&counts).map_err(|e| {
        bad(format!(
            "rank {rank}'s share of the optimiser state is missing ({e}): a ZeRO-1 checkpoint needs every rank's"
        ))
    })?;
    let theirs: Vec<Option<usize>> =
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if theirs.len() != times.len() {
        return Err(bad(format!(
            "share has {} parameters, the model {}",
            theirs.len(),
            times.len()
        )));
    }
    let mut share = safetensors::load_file(&dir.join(format!("rank-{rank}.safetensors")))?;
    for (i, (mine, their)) in times.iter_mut().zip(theirs).enumerate() {
        if mine.is_some() || their.is_none() {
            continue;
        }
        for part in ["moment_1", "moment_2", "max_moment_2"] {
            let name = format!("{i}.{part}");
            if let Some(t) = share.tensors.remove(&name) {
                moments.insert(name, t);
            }
        }
        *mine = their;
    }
    Ok(())
}

/// `learner_config.json`: the config plus AdamW's per-parameter step counts (the moments are tensors).
#[derive(Debug, Serialize, Deserialize)]
struct LearnerFile {
    config: LearnerConfig,
    adam_times: Vec<Option<usize>>,
}

fn read_learner_file(dir: &Path) -> Result<LearnerFile, LearnerError> {
    let path = dir.join(LEARNER_CONFIG_FILE);
    let bytes = std::fs::read(&path).map_err(|e| LearnerError::Resume {
        path: path.clone(),
        message: e.to_string(),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| LearnerError::Resume {
        path,
        message: e.to_string(),
    })
}

/// The learner configuration stored with a checkpoint.
pub fn stored_config(checkpoint: &CompleteCheckpoint) -> Result<LearnerConfig, LearnerError> {
    Ok(read_learner_file(&checkpoint.path)?.config)
}

/// Every field that differs between two configurations, as `path: old -> new` (e.g.
/// `laser.alpha: 0.1 -> 1.0`), in field order; empty when they are equal.
pub fn config_changes(old: &LearnerConfig, new: &LearnerConfig) -> Vec<String> {
    fn walk(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                for (k, va) in x {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(&p, va, y.get(k).unwrap_or(&serde_json::Value::Null), out);
                }
            }
            _ if a != b => out.push(format!("{path}: {a} -> {b}")),
            _ => {}
        }
    }
    let (Ok(a), Ok(b)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        return vec!["(configuration not serialisable)".into()];
    };
    let mut out = Vec::new();
    walk("", &a, &b, &mut out);
    out
}

/// The order in which an epoch visits `n` examples: a Fisher-Yates shuffle seeded by (seed, epoch), so
/// it can be recomputed on resume from the checkpointed data cursor alone.
pub fn epoch_order(seed: u64, epoch: u64, n: usize) -> Vec<usize> {
    use rand_chacha::rand_core::RngCore;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

fn outcome_parts(outcome: StepOutcome) -> (bool, f64, f64) {
    match outcome {
        StepOutcome::Applied { lr, grad_norm } => (true, lr, grad_norm),
        StepOutcome::Skipped { grad_norm, .. } => (false, 0.0, grad_norm),
    }
}

fn validate_config<B: AutodiffBackend>(
    config: &LearnerConfig,
    model: &Transformer<B>,
    has_reference: bool,
) -> Result<(), LearnerError> {
    config.laser.validate()?;
    config.optim.validate()?;
    if config.micro_batch_size == 0 {
        return Err(LearnerError::Invalid {
            field: "micro_batch_size",
            message: "must be >= 1".into(),
        });
    }
    if !config.c_ref.is_finite() {
        return Err(LearnerError::Invalid {
            field: "c_ref",
            message: format!("{} is not finite", config.c_ref),
        });
    }
    let vocab = model.config.vocab_size;
    if config.self_reward_token as usize >= vocab {
        return Err(LearnerError::Invalid {
            field: "self_reward_token",
            message: format!(
                "token {} is outside the model's vocabulary of {vocab}",
                config.self_reward_token
            ),
        });
    }
    if config.laser.entropy_coef > 0.0 {
        return Err(LearnerError::Invalid {
            field: "laser.entropy_coef",
            message: "the scoring pass does not return per-token entropy yet; the entropy bonus must be 0".into(),
        });
    }
    if config.laser.kl_penalty.is_some() != has_reference {
        return Err(LearnerError::Invalid {
            field: "laser.kl_penalty",
            message: if has_reference {
                "a reference model was given but no KL penalty is configured".into()
            } else {
                "a KL penalty needs a frozen reference model".into()
            },
        });
    }
    Ok(())
}

/// fsyncs every file of a checkpoint directory (the model files are written by laser-model).
fn sync_files(dir: &Path) -> Result<(), CheckpointError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CheckpointError::Io { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        if path.is_file() {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io(&path))?;
        }
    }
    Ok(())
}

/// burn's AdamW record: moments keyed by parameter id (ids are per process, hence our index keys on disk).
type AdamRecords<B> =
    <OptimizerAdaptor<AdamW, Transformer<B>, B> as Optimizer<Transformer<B>, B>>::Record;

fn host<B: burn::tensor::backend::Backend, const D: usize>(t: Tensor<B, D>) -> HostTensor {
    let shape = t.dims().to_vec();
    let data = t
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("float tensor converts to f32");
    HostTensor::new(shape, data)
}

struct CollectMoments<'a, B: AutodiffBackend> {
    records: &'a AdamRecords<B>,
    index: usize,
    moments: WeightMap,
    times: Vec<Option<usize>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for CollectMoments<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let time = self.records.get(&param.id).map(|record| {
            let state: AdamWState<B::InnerBackend, D> = record.clone().into_state();
            let i = self.index;
            self.moments
                .insert(format!("{i}.moment_1"), host(state.momentum.moment_1));
            self.moments
                .insert(format!("{i}.moment_2"), host(state.momentum.moment_2));
            if let Some(max) = state.momentum.max_moment_2 {
                self.moments.insert(format!("{i}.max_moment_2"), host(max));
            }
            state.momentum.time
        });
        self.times.push(time);
        self.index += 1;
    }
}

struct RestoreMoments<'a, B: AutodiffBackend> {
    moments: &'a mut WeightMap,
    times: &'a [Option<usize>],
    index: usize,
    records: Vec<(ParamId, AdaptorRecord<AdamW, B>)>,
    error: Option<String>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for RestoreMoments<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let i = self.index;
        self.index += 1;
        if self.error.is_some() {
            return;
        }
        let Some(&Some(time)) = self.times.get(i) else {
            return;
        };
        let max_name = format!("{i}.max_moment_2");
        let has_max = self.moments.contains(&max_name);
        let value = param.val();
        let shape = value.dims();
        let device = value.device();
        let mut take = |name: String| -> Option<Tensor<B::InnerBackend, D>> {
            match self.moments.take(&name, &shape) {
                Ok(t) => Some(Tensor::from_data(TensorData::new(t.data, t.shape), &device)),
                Err(e) => {
                    self.error = Some(e.to_string());
                    None
                }
            }
        };
        let (Some(moment_1), Some(moment_2)) =
            (take(format!("{i}.moment_1")), take(format!("{i}.moment_2")))
        else {
            return;
        };
        // AMSGrad's running maximum, present only when that variant is used.
        let max_moment_2 = if has_max { take(max_name) } else { None };
        let state = AdamWState {
            momentum: AdaptiveMomentumState {
                time,
                moment_1,
                moment_2,
                max_moment_2,
            },
        };
        self.records
            .push((param.id, AdaptorRecord::from_state(state)));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn epoch_order_is_a_reproducible_permutation_that_changes_per_epoch() {
        let a = super::epoch_order(7, 0, 50);
        assert_eq!(a, super::epoch_order(7, 0, 50));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(a, super::epoch_order(7, 1, 50));
        assert_ne!(a, super::epoch_order(8, 0, 50));
        assert!(super::epoch_order(1, 0, 0).is_empty());
    }
}
