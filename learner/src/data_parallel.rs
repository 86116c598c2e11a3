//! Data parallelism: N learner ranks train one policy with the same update as one rank.
//!
//! Every rank gets the whole step batch and trains the shard of whole GRPO groups that
//! [`shard_groups`] gives it (contiguous, balanced by response tokens). Its gradients are its
//! share of the one-rank gradient, because every loss term divides by counts over the WHOLE batch
//! ([`StepNormalizers::from_batch`]): the shares' sum is the one-rank gradient, so the all-reduce
//! is a plain sum (no reweighting by token counts). [`ShardGradients`] flattens the gradients and
//! the loss parts into one f32 buffer, in the model's parameter order, for that sum; after it,
//! [`apply_summed`] runs clipping and AdamW on every rank alike, so all ranks hold the same
//! weights. The sum itself travels over `laser_proto::collective` (ring all-reduce, gRPC).

use std::ops::Range;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};

use crate::batch::TrainingBatch;
use crate::learner::{Learner, LearnerError, StepLoss, StepMetrics};
use crate::loss::StepNormalizers;

/// The groups of `batch` that `rank` of `world` trains: contiguous, cut where the cumulative
/// response-token count crosses `rank / world` of the total, so ranks get near-equal work. A rank
/// may get no group (fewer groups than ranks); its gradient is then zero.
pub fn shard_groups(batch: &TrainingBatch, rank: usize, world: usize) -> Range<usize> {
    let sizes: Vec<usize> = batch
        .groups()
        .iter()
        .map(|g| {
            g.samples
                .iter()
                .map(|s| s.response_tokens.len().max(1))
                .sum()
        })
        .collect();
    let owner = contiguous_owners(&sizes, world);
    let groups: Vec<usize> = (0..sizes.len()).filter(|&i| owner[i] == rank).collect();
    match (groups.first(), groups.last()) {
        (Some(&a), Some(&b)) => a..b + 1,
        _ => {
            // Empty shard: an empty range placed where the rank's groups would be.
            let at = (0..sizes.len())
                .find(|&i| owner[i] > rank)
                .unwrap_or(sizes.len());
            at..at
        }
    }
}

/// The rank of each item when `world` ranks take contiguous runs of items of these `sizes`:
/// item i goes to the rank whose equal share of the total holds the midpoint of its span.
pub fn contiguous_owners(sizes: &[usize], world: usize) -> Vec<usize> {
    let total: usize = sizes.iter().sum();
    let mut before = 0;
    sizes
        .iter()
        .map(|&size| {
            let mid2 = 2 * before + size;
            before += size;
            ((mid2 * world) / (2 * total.max(1))).min(world - 1)
        })
        .collect()
}

/// ZeRO-1: whether `rank` of `world` owns each float parameter of `model` (module visiting
/// order): contiguous runs balanced by element count, so each rank keeps the AdamW moments of
/// about 1/world of the model.
pub fn zero1_owned<B: AutodiffBackend, M: Module<B>>(
    model: &M,
    rank: usize,
    world: usize,
) -> Vec<bool> {
    contiguous_owners(&param_sizes(model), world)
        .into_iter()
        .map(|owner| owner == rank)
        .collect()
}

/// ZeRO-1: the element range of the flattened parameters (visiting order) that each rank owns,
/// by rank ([`zero1_owned`]'s runs; a rank that owns no parameter gets an empty range).
pub fn zero1_segments<B: AutodiffBackend, M: Module<B>>(
    model: &M,
    world: usize,
) -> Vec<Range<usize>> {
    let sizes = param_sizes(model);
    let owners = contiguous_owners(&sizes, world);
    let mut segments = Vec::with_capacity(world);
    let mut at = 0;
    for rank in 0..world {
        let start = at;
        for (size, _) in sizes.iter().zip(&owners).filter(|(_, o)| **o == rank) {
            at += size;
        }
        segments.push(start..at);
    }
    segments
}

/// Element counts of the float parameters in module visiting order.
fn param_sizes<B: AutodiffBackend, M: Module<B>>(model: &M) -> Vec<usize> {
    struct Sizes(Vec<usize>);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Sizes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.shape().num_elements());
        }
    }
    let mut sizes = Sizes(Vec::new());
    model.visit(&mut sizes);
    sizes.0
}

/// The loss parts carried after the gradients in the all-reduce buffer.
const LOSS_PARTS: usize = 9;

/// One rank's share of a step: gradients and loss parts in one f32 buffer.
pub struct ShardGradients {
    /// Every float parameter's gradient (zeros where it has none), in module visiting order, then
    /// the [`LOSS_PARTS`] loss parts.
    pub buffer: Vec<f32>,
    step_loss: StepLoss,
}

impl ShardGradients {
    /// Gradient elements (the model's float parameter count).
    pub fn gradient_len(&self) -> usize {
        self.buffer.len() - LOSS_PARTS
    }
}

/// Computes `rank`'s share of the step over `batch` (see the module docs).
pub fn shard_gradients<B: AutodiffBackend>(
    learner: &Learner<B>,
    batch: &TrainingBatch,
    rank: usize,
    world: usize,
) -> Result<ShardGradients, LearnerError> {
    let range = shard_groups(batch, rank, world);
    let (grads, loss) = learner.gradients_of(batch, range, StepNormalizers::from_batch(batch))?;
    let mut flatten = Flatten::<B> {
        grads: &grads,
        out: Vec::new(),
        _b: std::marker::PhantomData,
    };
    learner.model().visit(&mut flatten);
    let mut buffer = flatten.out;
    buffer.extend(
        [
            loss.total,
            loss.policy,
            loss.clip_fraction,
            loss.clip_fraction_lower,
            loss.ppo_kl,
            loss.self_reward_mse,
            loss.kl.unwrap_or(0.0),
            loss.mean_advantage,
            loss.micro_batches as f64,
        ]
        .map(|v| v as f32),
    );
    Ok(ShardGradients {
        buffer,
        step_loss: loss,
    })
}

/// What [`apply_summed`] leaves to do.
pub enum Update {
    /// Every rank holds the new weights.
    Done(StepMetrics),
    /// ZeRO-1: this rank updated its own parameters; `buffer` holds them (zeros elsewhere) for an
    /// all-gather of every rank's segment, then [`finish_gather`].
    Gather(ParamGather),
}

/// A ZeRO-1 rank's updated parameters, on their way to the other ranks.
pub struct ParamGather {
    /// The flattened parameters: this rank's own segment holds its updated values.
    pub buffer: Vec<f32>,
    /// Each rank's segment of `buffer` ([`zero1_segments`]), for the all-gather.
    pub segments: Vec<Range<usize>>,
    owned: Vec<bool>,
    metrics: StepMetrics,
}

/// The update from `summed`: this rank's [`ShardGradients`] whose buffer now holds the all-reduced
/// sum of every rank's buffer (the step and phase stay this rank's own). Identical on every rank.
/// With `zero1 = Some((rank, world))` the rank updates only the parameters it owns
/// ([`zero1_owned`]) and returns them to be gathered.
pub fn apply_summed<B: AutodiffBackend>(
    learner: &mut Learner<B>,
    summed: ShardGradients,
    batch: &TrainingBatch,
    zero1: Option<(usize, usize)>,
) -> Result<Update, LearnerError> {
    let own = summed;
    let summed = &own.buffer;
    let n = own.gradient_len();
    let parts: Vec<f64> = summed[n..].iter().map(|&v| v as f64).collect();
    let loss = StepLoss {
        step: own.step_loss.step,
        phase: own.step_loss.phase,
        total: parts[0],
        policy: parts[1],
        clip_fraction: parts[2],
        clip_fraction_lower: parts[3],
        ppo_kl: parts[4],
        self_reward_mse: parts[5],
        kl: own.step_loss.kl.map(|_| parts[6]),
        mean_advantage: parts[7],
        micro_batches: parts[8].round() as usize,
    };
    let mut unflatten = Unflatten {
        flat: &summed[..n],
        at: 0,
        grads: GradientsParams::new(),
    };
    learner.model().visit(&mut unflatten);
    let Some((rank, world)) = zero1 else {
        let outcome = learner.apply(loss.total, unflatten.grads);
        return Ok(Update::Done(learner.step_metrics(&loss, outcome, batch)));
    };
    let owned = zero1_owned(learner.model(), rank, world);
    let outcome = learner.apply_owned(loss.total, unflatten.grads, &owned);
    let metrics = learner.step_metrics(&loss, outcome, batch);
    // A skipped step (the same decision on every rank: the norm is global) changed nothing.
    if !metrics.applied {
        return Ok(Update::Done(metrics));
    }
    let mut values = OwnedValues::<B> {
        owned: &owned,
        index: 0,
        out: Vec::new(),
        _b: std::marker::PhantomData,
    };
    learner.model().visit(&mut values);
    Ok(Update::Gather(ParamGather {
        buffer: values.out,
        segments: zero1_segments(learner.model(), world),
        owned,
        metrics,
    }))
}

/// ZeRO-1, after the gather: `gathered.buffer` holds every rank's updated parameters (copied from
/// their owners, so the bits are the owner's); this rank takes the ones it does not own.
pub fn finish_gather<B: AutodiffBackend>(
    learner: &mut Learner<B>,
    gathered: ParamGather,
) -> StepMetrics {
    let ParamGather {
        buffer,
        owned,
        metrics,
        ..
    } = gathered;
    learner.replace_model(|model| {
        model.map(&mut TakeGathered {
            flat: &buffer,
            owned: &owned,
            index: 0,
            at: 0,
        })
    });
    metrics
}

/// Flattens the parameters in visiting order: the owned ones' values, zeros for the rest.
struct OwnedValues<'a, B: AutodiffBackend> {
    owned: &'a [bool],
    index: usize,
    out: Vec<f32>,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for OwnedValues<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let numel = param.shape().num_elements();
        if self.owned[self.index] {
            let data = param.val().into_data().convert::<f32>();
            self.out
                .extend_from_slice(data.as_slice::<f32>().expect("f32 parameter data"));
        } else {
            self.out.resize(self.out.len() + numel, 0.0);
        }
        self.index += 1;
    }
}

/// Replaces every parameter this rank does not own with its gathered value (same id, so the
/// optimiser state and the autodiff tracking are unchanged).
struct TakeGathered<'a> {
    flat: &'a [f32],
    owned: &'a [bool],
    index: usize,
    at: usize,
}

impl<B: AutodiffBackend> ModuleMapper<B> for TakeGathered<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let numel = param.shape().num_elements();
        let range = self.at..self.at + numel;
        self.at += numel;
        let own = self.owned[self.index];
        self.index += 1;
        if own {
            return param;
        }
        let values = self.flat[range].to_vec();
        param.map(|tensor| {
            let require_grad = tensor.is_require_grad();
            let fresh = Tensor::<B, D>::from_data(
                TensorData::new(values, tensor.shape()),
                &tensor.device(),
            );
            if require_grad {
                fresh.require_grad()
            } else {
                fresh
            }
        })
    }
}

struct Flatten<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    out: Vec<f32>,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let numel = param.shape().num_elements();
        match self.grads.get::<B::InnerBackend, D>(param.id) {
            Some(g) => {
                let data = g.into_data().convert::<f32>();
                self.out
                    .extend_from_slice(data.as_slice::<f32>().expect("f32 gradient data"));
            }
            None => self.out.resize(self.out.len() + numel, 0.0),
        }
    }
}

struct Unflatten<'a> {
    flat: &'a [f32],
    at: usize,
    grads: GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Unflatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let shape = param.shape();
        let numel = shape.num_elements();
        let values = self.flat[self.at..self.at + numel].to_vec();
        self.at += numel;
        let grad = Tensor::<B::InnerBackend, D>::from_data(
            TensorData::new(values, shape),
            &param.val().device(),
        );
        self.grads.register::<B::InnerBackend, D>(param.id, grad);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Group;
    use crate::batch::tests::sample;

    fn batch(lens: &[usize]) -> TrainingBatch {
        TrainingBatch::new(
            lens.iter()
                .enumerate()
                .map(|(i, &n)| Group {
                    prompt_id: i as u64,
                    samples: vec![sample(1.0, Some(0.5), n), sample(0.0, Some(0.1), n)],
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn shards_are_contiguous_disjoint_and_cover_every_group() {
        for lens in [
            vec![3, 3, 3, 3],
            vec![1, 9, 1, 1, 1],
            vec![5],
            vec![2, 2, 2],
        ] {
            let b = batch(&lens);
            for world in 1..=5 {
                let mut next = 0;
                for rank in 0..world {
                    let r = shard_groups(&b, rank, world);
                    assert_eq!(r.start, next, "{lens:?} world {world} rank {rank}");
                    next = r.end;
                }
                assert_eq!(next, lens.len(), "{lens:?} world {world}");
            }
        }
        // Balanced by tokens: equal groups split evenly.
        assert_eq!(shard_groups(&batch(&[3, 3, 3, 3]), 0, 2), 0..2);
        assert_eq!(shard_groups(&batch(&[3, 3, 3, 3]), 1, 2), 2..4);
    }
}
