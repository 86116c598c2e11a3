//! laser-coordinator: the conductor of a LaSeR run.
//!
//! `coordinator --cluster cluster.toml` reads the run's configuration ([`laser_config`]),
//! starts the workers (local mode: child processes on loopback; external mode: workers register
//! themselves), and runs the RL loop in [`runner`]: prompt groups to actors by load, rollouts to
//! verifiers ([`collect`]), scored batches to the learner, new weights back to the actors. It keeps
//! the run directory (metrics.jsonl, checkpoints via the learner, logs, state for `--resume`) and
//! serves the read-only Monitor API that `laserctl` ([`ctl`]) talks to. The main job's five phases
//! (init, warm start, c_ref calibration, RL, report) are [`phases`]; held-out evaluation through
//! the cluster is [`heldout_eval`], its metric functions [`eval_metrics`], and `coordinator eval`
//! on a checkpoint [`checkpoint_eval`]; every group's life, checkpoint and rollback goes to the
//! append-only [`ledger`], which `coordinator audit` checks; the same recipe over training seeds [`seed_summary`]; maj@k and the r_s-weighted vote against k
//! [`kcurve`].

pub mod checkpoint_eval;
pub mod collect;
pub mod ctl;
pub mod data;
pub mod eval_metrics;
pub mod fault;
pub mod heldout_eval;
pub mod kcurve;
pub mod ledger;
pub mod local;
pub mod metrics;
pub mod phases;
pub mod plots;
pub mod registry;
pub mod runner;
pub mod seed_summary;
pub mod service;
pub mod summary;
pub mod telemetry;
pub mod tensorboard;
pub mod weight_plane;
