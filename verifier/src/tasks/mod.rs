//! Task sources: where prompts and their gold answers come from.

pub mod jsonl;
pub mod sft;
pub mod synthetic;
pub mod template;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One problem: the question shown to the policy and the gold answer the verifier grades against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub question: String,
    pub gold: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: no tasks")]
    Empty { path: PathBuf },
    #[error("invalid task config: {0}")]
    Config(String),
}
