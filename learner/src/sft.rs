//! Supervised fine-tuning (the warm start before RL, `learner sft`): epochs of cross-entropy steps
//! over (prompt, response) pairs in a seeded per-epoch order, with the data cursor checkpointed so
//! that a resumed run sees exactly the remaining examples.

use burn::tensor::backend::AutodiffBackend;

use crate::checkpoint::{DataCursor, RunDir};
use crate::learner::{Learner, LearnerError, SftExample, SftMetrics, epoch_order};

/// How long an SFT run lasts and how often it checkpoints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SftPlan {
    /// Sequences per optimiser step (at least 1).
    pub batch_size: usize,
    /// Epochs over the examples, unless `steps` is set.
    pub epochs: usize,
    /// Exactly this many optimiser steps (cycling through epochs); overrides `epochs`.
    pub steps: Option<u64>,
    /// Checkpoint every this many steps (and at the last one) when there is a run directory.
    pub checkpoint_every: u64,
}

impl SftPlan {
    pub fn steps_per_epoch(&self, examples: usize) -> usize {
        examples.div_ceil(self.batch_size.max(1))
    }

    /// The step count of the whole run (the length of a cosine schedule).
    pub fn total_steps(&self, examples: usize) -> u64 {
        self.steps
            .unwrap_or((self.epochs * self.steps_per_epoch(examples)) as u64)
    }
}

/// Trains `learner` on `examples` until the plan is done (from wherever its step and data cursor
/// stand), checkpointing into `run`; `on_step` sees every step's metrics.
pub fn run_sft<B: AutodiffBackend>(
    learner: &mut Learner<B>,
    examples: &[SftExample],
    plan: &SftPlan,
    run: Option<&RunDir>,
    mut on_step: impl FnMut(&SftMetrics),
) -> Result<(), LearnerError> {
    let batch_size = plan.batch_size.max(1);
    let steps_per_epoch = plan.steps_per_epoch(examples.len());
    let total_steps = plan.total_steps(examples.len());
    // The data cursor (epoch, position in that epoch's order) is checkpointed; the order is a
    // pure function of (seed, epoch), so a resumed run sees exactly the remaining examples.
    let more = |l: &Learner<B>| match plan.steps {
        Some(n) => l.step() < n,
        None => (l.data_cursor().epoch as usize) < plan.epochs,
    };
    while more(learner) {
        let cursor = learner.data_cursor();
        let order = epoch_order(learner.config().seed, cursor.epoch, examples.len());
        let start = cursor.position as usize;
        let end = (start + batch_size).min(examples.len());
        let batch: Vec<SftExample> = order[start..end]
            .iter()
            .map(|&j| examples[j].clone())
            .collect();
        let m = learner.sft_step(&batch)?;
        tracing::info!(
            epoch = cursor.epoch,
            step = start / batch_size + 1,
            of = steps_per_epoch,
            loss = m.loss,
            grad_norm = m.grad_norm,
            "sft"
        );
        on_step(&m);
        learner.set_data_cursor(if end == examples.len() {
            DataCursor {
                epoch: cursor.epoch + 1,
                position: 0,
            }
        } else {
            DataCursor {
                epoch: cursor.epoch,
                position: end as u64,
            }
        });
        if let Some(run) = run
            && (learner.step().is_multiple_of(plan.checkpoint_every.max(1))
                || learner.step() == total_steps)
        {
            learner.save_checkpoint(run)?;
        }
    }
    Ok(())
}
