//! laser-model: the policy network shared by the rollout actors and the learner.
//!
//! It holds a Qwen2/Llama-family decoder written against burn's `Backend` trait, Hugging Face and GGUF
//! weight I/O, the tokenizer with chat templates, the KV-cache generation engine with sampling, and the
//! LaSeR self-reward read-out: one extra decode step after EOS that reads log p(z_c | x, y).
//! The actor calls `generate`; the learner trains through the teacher-forced `score` pass.

pub mod backend;
pub mod cache;
pub mod config;
pub mod error;
pub mod fused;
pub mod fused_grad;
pub mod generate;
pub mod pretrained;
pub mod sampling;
pub mod score;
pub mod self_reward;
pub mod small_matmul;
pub mod tiny;
pub mod tokenizer;
pub mod transformer;
pub mod weights;

pub use config::{Architecture, ModelConfig};
pub use error::{ModelError, Result};
pub use generate::{FinishReason, GenerationRequest, GenerationStats, Sample, generate};
pub use pretrained::Pretrained;
pub use sampling::SamplingParams;
pub use score::{ScoreItem, ScoreOutput, score};
pub use self_reward::{SelfReward, SelfRewardConfig};
pub use tokenizer::{ChatMessage, Tokenizer};
pub use transformer::Transformer;
