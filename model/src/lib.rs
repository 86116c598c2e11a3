//! laser-model: the policy network shared by the rollout actors and the learner.
//!
//! It holds a Qwen2/Llama-family decoder written against burn's `Backend` trait, Hugging Face and GGUF
//! weight I/O, the tokenizer with chat templates, the KV-cache generation engine with sampling, and the
//! LaSeR self-reward read-out: one extra decode step after EOS that reads log p(z_c | x, y).
//! The actor calls `generate`; the learner trains through the teacher-forced `score` pass.

pub mod config;
pub mod error;
pub mod weights;

pub use config::{Architecture, ModelConfig};
pub use error::{ModelError, Result};
