//! Task sources: where prompts and their gold answers come from.

pub mod jsonl;
pub mod parquet;
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
    /// The dataset tag that picks the verifier's reward (verl's `data_source`); empty: default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data_source: String,
    /// The dataset's own chat prompt (verl's `prompt` messages), used as is; empty: `question`
    /// under the run's template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chat: Vec<template::ChatMessage>,
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
    #[error("{path}: row {row}: {message}")]
    Row {
        path: PathBuf,
        row: usize,
        message: String,
    },
    #[error("{path}: no tasks")]
    Empty { path: PathBuf },
    #[error("invalid task config: {0}")]
    Config(String),
}
