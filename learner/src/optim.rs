//! The optimiser step: AdamW (burn's) behind our own global-norm gradient clipping, a guard that skips
//! any step whose loss or gradient norm is not finite, and learning-rate schedules as verl defines them.
//!
//! burn's `GradientClipping::Norm` clips each parameter tensor separately; verl (via torch's
//! `clip_grad_norm_`) clips by the norm over ALL parameters, which keeps the update direction. So we
//! compute the global L2 norm ourselves with a `ModuleVisitor` and scale every gradient by
//! `min(1, max_norm / (norm + 1e-6))`, as torch does.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};
use serde::{Deserialize, Serialize};

/// Learning-rate schedule as a pure function of the step, so resuming needs only the step number.
/// Both follow verl's `get_constant_schedule_with_warmup` / `get_cosine_schedule_with_warmup`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// `lr * step / warmup_steps` during warm-up (0 at step 0, as in verl), then `lr`.
    Constant { lr: f64, warmup_steps: u64 },
    /// Warm-up from `min_lr_ratio * lr` to `lr`, then a half cosine down to `min_lr_ratio * lr` at
    /// `total_steps` (and held there after).
    Cosine {
        lr: f64,
        warmup_steps: u64,
        total_steps: u64,
        min_lr_ratio: f64,
    },
}

impl LrSchedule {
    /// The learning rate for optimizer step `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        match *self {
            LrSchedule::Constant { lr, warmup_steps } => {
                if step < warmup_steps {
                    lr * step as f64 / warmup_steps.max(1) as f64
                } else {
                    lr
                }
            }
            LrSchedule::Cosine {
                lr,
                warmup_steps,
                total_steps,
                min_lr_ratio,
            } => {
                if step < warmup_steps {
                    let warm = step as f64 / warmup_steps.max(1) as f64;
                    return lr * (min_lr_ratio + (1.0 - min_lr_ratio) * warm);
                }
                let span = total_steps.saturating_sub(warmup_steps).max(1) as f64;
                let progress = ((step - warmup_steps) as f64 / span).min(1.0);
                let coef = (1.0 - min_lr_ratio) * 0.5;
                let intercept = (1.0 + min_lr_ratio) * 0.5;
                lr * ((std::f64::consts::PI * progress).cos() * coef + intercept).max(0.0)
            }
        }
    }

    fn validate(&self) -> Result<(), OptimError> {
        let (lr, ratio) = match *self {
            LrSchedule::Constant { lr, .. } => (lr, 0.0),
            LrSchedule::Cosine {
                lr, min_lr_ratio, ..
            } => (lr, min_lr_ratio),
        };
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(OptimError::Invalid {
                field: "lr_schedule.lr",
                value: lr,
            });
        }
        if !(0.0..=1.0).contains(&ratio) {
            return Err(OptimError::Invalid {
                field: "lr_schedule.min_lr_ratio",
                value: ratio,
            });
        }
        Ok(())
    }
}

/// Optimiser hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    pub lr_schedule: LrSchedule,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
    /// Global-norm clip threshold (verl's `grad_clip`, default 1.0); `None` disables clipping.
    pub max_grad_norm: Option<f64>,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            // LASER.md: lr 1e-6 for 7B models; a tiny model needs a larger one, set per run.
            lr_schedule: LrSchedule::Constant {
                lr: 1e-6,
                warmup_steps: 0,
            },
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.01,
            max_grad_norm: Some(1.0),
        }
    }
}

impl OptimConfig {
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig::new()
            .with_beta_1(self.beta_1)
            .with_beta_2(self.beta_2)
            .with_epsilon(self.epsilon)
            .with_weight_decay(self.weight_decay)
    }

    pub fn validate(&self) -> Result<(), OptimError> {
        self.lr_schedule.validate()?;
        for (field, value, ok) in [
            ("beta_1", self.beta_1, (0.0..1.0).contains(&self.beta_1)),
            ("beta_2", self.beta_2, (0.0..1.0).contains(&self.beta_2)),
            ("epsilon", self.epsilon, self.epsilon > 0.0),
            ("weight_decay", self.weight_decay, self.weight_decay >= 0.0),
        ] {
            if !ok {
                return Err(OptimError::Invalid {
                    field,
                    value: f64::from(value),
                });
            }
        }
        if let Some(max) = self.max_grad_norm
            && !(max > 0.0 && max.is_finite())
        {
            return Err(OptimError::Invalid {
                field: "max_grad_norm",
                value: max,
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptimError {
    #[error("invalid optimiser config: `{field}` = {value}")]
    Invalid { field: &'static str, value: f64 },
}

struct SquaredNorm<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
            // Sum on the device; one host sync for the whole module.
            let sq = grad.square().sum();
            self.sum = Some(match self.sum.take() {
                Some(acc) => acc + sq,
                None => sq,
            });
        }
    }
}

/// L2 norm over every parameter gradient of `module` (params without a gradient count as 0).
pub fn global_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> f64 {
    let mut visitor = SquaredNorm::<B> { grads, sum: None };
    module.visit(&mut visitor);
    visitor
        .sum
        .map_or(0.0, |s| s.into_scalar().elem::<f64>().sqrt())
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads
                .register::<B::InnerBackend, D>(param.id, grad.mul_scalar(self.factor));
        }
    }
}

/// Multiplies every parameter gradient of `module` by `factor`.
pub fn scale_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    mut grads: GradientsParams,
    factor: f64,
) -> GradientsParams {
    module.visit(&mut Scale {
        grads: &mut grads,
        factor,
    });
    grads
}

/// torch's `clip_grad_norm_`: returns the gradients scaled by `min(1, max_norm / (norm + 1e-6))` and the
/// norm before clipping. A non-finite norm is returned with the gradients untouched, for the caller to
/// reject.
pub fn clip_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: GradientsParams,
    max_norm: f64,
) -> (GradientsParams, f64) {
    let norm = global_grad_norm::<B, M>(module, &grads);
    if !norm.is_finite() {
        return (grads, norm);
    }
    let factor = max_norm / (norm + 1e-6);
    if factor < 1.0 {
        (scale_grads::<B, M>(module, grads, factor), norm)
    } else {
        (grads, norm)
    }
}

/// What [`LearnerOptimizer::step`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepOutcome {
    Applied {
        lr: f64,
        grad_norm: f64,
    },
    /// Nothing was applied; the optimiser state is unchanged.
    Skipped {
        loss: f64,
        grad_norm: f64,
    },
}

/// AdamW with global-norm clipping, the learning-rate schedule and non-finite step skipping.
pub struct LearnerOptimizer<B: AutodiffBackend, M: AutodiffModule<B>> {
    adamw: OptimizerAdaptor<AdamW, M, B>,
    config: OptimConfig,
    step: u64,
    skipped_steps: u64,
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> LearnerOptimizer<B, M> {
    pub fn new(config: OptimConfig) -> Result<Self, OptimError> {
        config.validate()?;
        Ok(Self {
            adamw: config.adamw().init(),
            config,
            step: 0,
            skipped_steps: 0,
        })
    }

    /// Restores the counters saved in a checkpoint (the AdamW moments are restored separately, through
    /// [`Self::load_adamw_record`]).
    pub fn with_counters(mut self, step: u64, skipped_steps: u64) -> Self {
        self.step = step;
        self.skipped_steps = skipped_steps;
        self
    }

    /// Optimizer steps taken so far, skipped ones included (the learning-rate schedule's clock).
    pub fn step_count(&self) -> u64 {
        self.step
    }

    pub fn skipped_steps(&self) -> u64 {
        self.skipped_steps
    }

    pub fn config(&self) -> &OptimConfig {
        &self.config
    }

    pub fn adamw(&self) -> &OptimizerAdaptor<AdamW, M, B> {
        &self.adamw
    }

    /// Replaces the AdamW moments (keyed by the CURRENT model's parameter ids), e.g. from a checkpoint.
    pub fn load_adamw_record(
        &mut self,
        record: <OptimizerAdaptor<AdamW, M, B> as Optimizer<M, B>>::Record,
    ) {
        let adamw = std::mem::replace(&mut self.adamw, self.config.adamw().init());
        self.adamw = adamw.load_record(record);
    }

    /// One update from the accumulated gradients of the step and its total loss. A non-finite loss or
    /// gradient norm skips the update (logged, counted); the step counter advances either way, like
    /// verl's scheduler, so the learning-rate schedule stays aligned with the data.
    pub fn step(&mut self, module: M, loss: f64, grads: GradientsParams) -> (M, StepOutcome) {
        let step = self.step;
        self.step += 1;
        let (grads, grad_norm) = match self.config.max_grad_norm {
            Some(max) if loss.is_finite() => clip_grad_norm::<B, M>(&module, grads, max),
            _ => {
                let norm = if loss.is_finite() {
                    global_grad_norm::<B, M>(&module, &grads)
                } else {
                    f64::NAN
                };
                (grads, norm)
            }
        };
        if !loss.is_finite() || !grad_norm.is_finite() {
            self.skipped_steps += 1;
            tracing::warn!(
                step,
                loss,
                grad_norm,
                skipped_steps = self.skipped_steps,
                "non-finite loss or gradient norm: skipping the update"
            );
            return (module, StepOutcome::Skipped { loss, grad_norm });
        }
        let lr = self.config.lr_schedule.lr_at(step);
        let module = self.adamw.step(lr, module, grads);
        (module, StepOutcome::Applied { lr, grad_norm })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::tensor::TensorData;

    type TB = crate::learner::TrainBackend;

    #[derive(Module, Debug)]
    struct Two<B: burn::tensor::backend::Backend> {
        a: Param<Tensor<B, 1>>,
        b: Param<Tensor<B, 2>>,
    }

    fn two() -> Two<TB> {
        let device = Default::default();
        Two {
            a: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![1.0f32, 2.0], [2]),
                &device,
            )),
            b: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![1.0f32; 4], [2, 2]),
                &device,
            )),
        }
    }

    /// Gradients of sum(c_a * a) + sum(c_b * b): d/da = c_a, d/db = c_b.
    fn grads(m: &Two<TB>, c_a: f32, c_b: f32) -> GradientsParams {
        let loss = m.a.val().mul_scalar(c_a).sum() + m.b.val().mul_scalar(c_b).sum();
        GradientsParams::from_grads::<TB, _>(loss.backward(), m)
    }

    fn grad_values<const D: usize>(g: &GradientsParams, p: &Param<Tensor<TB, D>>) -> Vec<f32> {
        g.get::<<TB as AutodiffBackend>::InnerBackend, D>(p.id)
            .unwrap()
            .into_data()
            .convert::<f32>()
            .into_vec()
            .unwrap()
    }

    #[test]
    fn schedules_follow_verl() {
        let c = LrSchedule::Constant {
            lr: 1.0,
            warmup_steps: 4,
        };
        assert_eq!(
            (0..6).map(|s| c.lr_at(s)).collect::<Vec<_>>(),
            vec![0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
        );
        let cos = LrSchedule::Cosine {
            lr: 1.0,
            warmup_steps: 2,
            total_steps: 12,
            min_lr_ratio: 0.1,
        };
        assert!((cos.lr_at(0) - 0.1).abs() < 1e-12);
        assert!((cos.lr_at(1) - 0.55).abs() < 1e-12);
        assert!((cos.lr_at(2) - 1.0).abs() < 1e-12);
        assert!(
            (cos.lr_at(7) - 0.55).abs() < 1e-12,
            "half way down the cosine: {}",
            cos.lr_at(7)
        );
        assert!((cos.lr_at(12) - 0.1).abs() < 1e-12);
        assert!((cos.lr_at(100) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn clipping_uses_the_global_norm_and_keeps_the_direction() {
        let m = two();
        // |d/da| = 3 * sqrt(2), |d/db| = 4 * 2: global norm sqrt(18 + 64) = sqrt(82).
        let g = grads(&m, 3.0, 4.0);
        assert!((global_grad_norm::<TB, _>(&m, &g) - 82f64.sqrt()).abs() < 1e-5);
        let (clipped, norm) = clip_grad_norm::<TB, _>(&m, g, 1.0);
        assert!((norm - 82f64.sqrt()).abs() < 1e-5);
        let scale = 1.0 / (82f64.sqrt() + 1e-6);
        for v in grad_values(&clipped, &m.a) {
            assert!((f64::from(v) - 3.0 * scale).abs() < 1e-6);
        }
        for v in grad_values(&clipped, &m.b) {
            assert!((f64::from(v) - 4.0 * scale).abs() < 1e-6);
        }
        assert!((global_grad_norm::<TB, _>(&m, &clipped) - 1.0).abs() < 1e-5);
        // Below the threshold nothing changes.
        let (same, _) = clip_grad_norm::<TB, _>(&m, grads(&m, 0.1, 0.1), 1.0);
        assert_eq!(grad_values(&same, &m.a), vec![0.1, 0.1]);
    }

    #[test]
    fn non_finite_gradient_norm_skips_the_update_with_a_finite_loss() {
        let mut opt = LearnerOptimizer::<TB, Two<TB>>::new(OptimConfig {
            lr_schedule: LrSchedule::Constant {
                lr: 0.1,
                warmup_steps: 0,
            },
            ..Default::default()
        })
        .unwrap();
        let m = two();
        let (m, outcome) = opt.step(m, 1.0, grads(&two(), f32::INFINITY, 1.0));
        // The gradients above belong to another module instance (other ids): none applies. Use ours.
        assert!(matches!(outcome, StepOutcome::Applied { .. }));
        let g = grads(&m, f32::INFINITY, 1.0);
        let (m, outcome) = opt.step(m, 1.0, g);
        assert!(
            matches!(outcome, StepOutcome::Skipped { .. }),
            "{outcome:?}"
        );
        assert_eq!((opt.step_count(), opt.skipped_steps()), (2, 1));
        let a: Vec<f32> = m.a.val().into_data().convert::<f32>().into_vec().unwrap();
        assert_eq!(
            a,
            vec![1.0, 2.0],
            "a skipped step leaves the parameters alone"
        );
        let g = grads(&m, 1.0, 1.0);
        let (m, outcome) = opt.step(m, 1.0, g);
        assert!(matches!(outcome, StepOutcome::Applied { .. }));
        let a: Vec<f32> = m.a.val().into_data().convert::<f32>().into_vec().unwrap();
        assert!(a[0] < 1.0, "a finite step after a skip is applied: {a:?}");
    }

    #[test]
    fn invalid_config_fields_are_named() {
        let bad = OptimConfig {
            beta_2: 1.0,
            ..Default::default()
        };
        assert_eq!(
            bad.validate(),
            Err(OptimError::Invalid {
                field: "beta_2",
                value: 1.0
            })
        );
        let bad = OptimConfig {
            lr_schedule: LrSchedule::Constant {
                lr: f64::NAN,
                warmup_steps: 0,
            },
            ..Default::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(OptimError::Invalid {
                field: "lr_schedule.lr",
                ..
            })
        ));
    }
}
