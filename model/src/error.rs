//! One error type for the whole model crate. Every variant names the file, tensor or field at fault,
//! because a user staring at "shape mismatch" with no name cannot fix anything.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid config: {message}")]
    Config { path: PathBuf, message: String },
    #[error(
        "{path}: unsupported architecture {architecture:?} (supported: Qwen2ForCausalLM, LlamaForCausalLM)"
    )]
    UnknownArchitecture { path: PathBuf, architecture: String },
    #[error("{file}: GGUF architecture {architecture:?} is not supported (supported: llama)")]
    UnsupportedGgufArchitecture { file: PathBuf, architecture: String },
    #[error("{file}: missing tensor `{tensor}`")]
    MissingTensor { file: PathBuf, tensor: String },
    #[error("{file}: tensor `{tensor}` has shape {actual:?}, expected {expected:?}")]
    TensorShape {
        file: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("{file}: tensor `{tensor}`: {message}")]
    TensorFormat {
        file: PathBuf,
        tensor: String,
        message: String,
    },
    #[error("{file}: {message}")]
    Format { file: PathBuf, message: String },
    #[error(
        "{file}: tensor `{tensor}` uses unsupported GGUF type {ggml_type} (supported: F32, F16, Q8_0, Q4_0, Q4_1)"
    )]
    UnsupportedQuantization {
        file: PathBuf,
        tensor: String,
        ggml_type: String,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    ChatTemplate(String),
    #[error(
        "prompt {index} has {len} tokens, which with max_new_tokens={max_new_tokens} exceeds the context of {context} tokens"
    )]
    PromptTooLong {
        index: usize,
        len: usize,
        max_new_tokens: usize,
        context: usize,
    },
    #[error("empty prompt batch: at least one prompt is required")]
    EmptyBatch,
    #[error("prompt {index} is empty: a prompt needs at least one token")]
    EmptyPrompt { index: usize },
    #[error("invalid generation option `{field}`: {message}")]
    InvalidOption {
        field: &'static str,
        message: String,
    },
    #[error("token id {id} is outside the vocabulary of {vocab_size}")]
    TokenOutOfRange { id: u32, vocab_size: usize },
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
