//! `learner`: a thin command line over the laser-learner library (local, single-process use; the gRPC
//! service of the distributed runtime wraps the same `Learner`).
//!
//!   learner init       --out DIR [--seed S --hidden-size H --layers L]  the embedded tiny model
//!   learner calibrate  --model M --data FILE --n 300 --run-dir D     c_ref into D/c_ref.json
//!   learner sft        --model M --data FILE --out DIR               supervised warm start
//!   learner rollout    --model M --data FILE --run-dir D --out B     sample + grade one step batch
//!   learner train-fixed --model M --batch B --steps N --run-dir D    GRPO + LaSeR steps on that batch
//!   learner serve --cluster cluster.toml [worker flags]               the gRPC Learner service
//!
//! The commands live in [`laser_learner::commands`]; this binary parses and dispatches.

use anyhow::Result;
use clap::Parser;

fn main() -> Result<()> {
    laser_model::backend::keep_freed_memory();
    laser_proto::rt::init_tracing("info");
    laser_learner::commands::run(laser_learner::commands::Cli::parse())
}
