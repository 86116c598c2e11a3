//! The autodiff backend the learner trains on by default (a leaf module: the optimiser, the learner
//! and the service all name it).

/// burn-flex on CPU, with autodiff.
pub type TrainBackend = burn::backend::Autodiff<laser_model::backend::Cpu>;
