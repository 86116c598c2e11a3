//! `actor`: rollout tools over laser-actor's library (generation and teacher-forced scoring).
//!
//! The commands live in [`laser_actor::cli`]; this binary parses and dispatches.

use anyhow::Result;
use clap::Parser;

fn main() -> Result<()> {
    laser_model::backend::keep_freed_memory();
    laser_actor::cli::run(laser_actor::cli::Cli::parse())
}
