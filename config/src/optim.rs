//! Optimiser hyper-parameters of the learner (AdamW, global-norm clipping) and the learning-rate
//! schedules as verl defines them, as pure functions of the step so that resuming needs only the
//! step number. The learner builds burn's AdamW from [`OptimConfig`].

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

    pub fn validate(&self) -> Result<(), OptimError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
