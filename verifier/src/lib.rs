//! laser-verifier: the reward side of LaSeR training. A verifier worker receives an actor's
//! response and the task's gold solution, extracts the final answer (`\boxed{}`, "final answer
//! is", `#### 42`, LaTeX, last number), normalises the LaTeX, and decides equivalence (exact
//! rationals, tolerances, symbolic checks, sets, intervals, matrices, equations). The 0/1 result is
//! the verifier reward r_v that the learner's GRPO advantages and the self-reward MSE target use.
//! Grading is bounded: every answer has a budget enforced both by input limits and by a worker
//! thread with a hard deadline, so a pathological answer never stalls a batch.
//! [`Grader::grade_batch`] grades a batch in parallel, one budget per answer; it is what the
//! `verifier grade --batch` CLI runs and what the gRPC `verifier serve` of the distributed runtime
//! wraps. Math grading is plain functions on strings: no network, no model.
//! Beyond math, [`reward`] is the reward registry of cluster.toml's `[rewards]`: per `data_source`
//! (verl's dataset tag) math (the default), exact match, a regex, or an external reward process
//! speaking JSON lines under a deadline and a memory bound (docs/REWARDS.md).
//!
//! The crate also holds the prompt side: task sources ([`tasks::synthetic`], [`tasks::jsonl`]) and
//! prompt templates ([`tasks::template`]) that the coordinator hands to the actors.
//!
//! ```
//! use laser_verifier::{Grader, GraderConfig, Status};
//! let grader = Grader::new(GraderConfig::default());
//! let g = grader.grade("\\frac{1}{2}", "So the probability is \\boxed{0.5}.");
//! assert_eq!((g.reward, g.status), (1, Status::Correct));
//! let batch = grader.grade_batch(&[("7", "\\boxed{7}"), ("7", "I am not sure.")]);
//! assert_eq!(batch[1].status, Status::NoAnswer);
//! ```

pub mod budget;
pub mod cli;
pub mod equiv;
pub mod eval;
pub mod expr;
pub mod extract;
pub mod grade;
pub mod normalize;
pub mod number;
pub mod reward;
pub mod rng;
pub mod service;
pub mod tasks;

pub use grade::{Grade, Grader, GraderConfig, Status, grade_inline};
pub use tasks::{Task, TaskError};
