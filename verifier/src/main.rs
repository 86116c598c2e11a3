//! `verifier`: grade answers from the command line, or emit tasks.
//!
//! The commands live in [`laser_verifier::cli`]; this binary parses and dispatches.

use anyhow::Result;
use clap::Parser;

fn main() -> Result<()> {
    laser_verifier::cli::run(laser_verifier::cli::Cli::parse())
}
