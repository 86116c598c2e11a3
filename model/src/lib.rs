//! laser-model: the policy network shared by the rollout actors and the learner.
//!
//! It holds a Qwen2/Llama-family decoder written against burn's `Backend` trait, Hugging Face and GGUF
//! weight I/O, the tokenizer with chat templates, the KV-cache generation engine with sampling, and the
//! LaSeR self-reward read-out: one extra decode step after EOS that reads log p(z_c | x, y).
//! The actor calls `generate`; the learner trains through the teacher-forced `score` pass.
//!
//! The model's hand-written kernels (decode-step matmul and attention on burn-flex, the learner's
//! fused ops with their own backward on `Autodiff<burn-flex>`, the AVX2/AVX-512 code) sit behind one
//! boundary, [`kernels`]: one function per op that takes and returns burn tensors, chooses its kernel
//! by backend and CPU features and falls back to burn's ops itself. The rest of the crate calls only
//! those functions; only `kernels::{MASKED, DecodeLayout, masked_softmax, bench_api}` are public.

pub mod backend;
pub mod cache;
pub mod config;
pub mod device_sampling;
pub mod error;
pub mod generate;
#[cfg(test)]
mod gradient_parity;
pub mod kernels;
pub mod pretrained;
pub mod sampling;
pub mod score;
pub mod self_reward;
pub mod tiny;
pub mod tokenizer;
pub mod transformer;
pub mod weights;

pub use config::{Architecture, ModelConfig};
pub use error::{ModelError, Result};
pub use generate::{
    FinishReason, GenerationRequest, GenerationStats, Sample, SamplerPlacement, generate,
    generate_with,
};
pub use pretrained::Pretrained;
pub use sampling::SamplingParams;
pub use score::{ScoreItem, ScoreOutput, score};
pub use self_reward::{SelfReward, SelfRewardConfig};
pub use tokenizer::{ChatMessage, Tokenizer};
pub use transformer::Transformer;
