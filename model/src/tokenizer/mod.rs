//! The tokenizer: Hugging Face `tokenizer.json` through the `tokenizers` crate, the special tokens the
//! model ends and begins sequences with, and the chat template from `tokenizer_config.json` (or GGUF
//! metadata), rendered with minijinja the way transformers renders it with Jinja2.
//!
//! A GGUF file carries no `tokenizer.json`; [`Tokenizer::from_gguf`] rebuilds one from the vocabulary,
//! merges and token types in its metadata (see `gguf.rs`).

mod chat;
mod gguf;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ModelError, Result};

/// One chat turn, as transformers' `apply_chat_template` takes it: `{"role": ..., "content": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A text tokenizer with its special tokens and chat template.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Where it was loaded from, to name it in errors.
    source: PathBuf,
    chat_template: Option<String>,
    /// Why there is no chat template (e.g. a list of named templates without "default"), for the error.
    no_template_reason: Option<String>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    unk_token: Option<String>,
    pad_token: Option<String>,
    bos_token_id: Option<u32>,
    eos_token_ids: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("eos_token_ids", &self.eos_token_ids)
            .field("has_chat_template", &self.chat_template.is_some())
            .finish()
    }
}

impl Tokenizer {
    /// Wraps an already built `tokenizers::Tokenizer`; `source` names it in errors.
    pub fn from_tokenizers(inner: tokenizers::Tokenizer, source: impl Into<PathBuf>) -> Self {
        Self {
            inner,
            source: source.into(),
            chat_template: None,
            no_template_reason: None,
            bos_token: None,
            eos_token: None,
            unk_token: None,
            pad_token: None,
            bos_token_id: None,
            eos_token_ids: Vec::new(),
        }
    }

    /// Loads a bare `tokenizer.json`: no chat template and no bos/eos (see [`Tokenizer::from_hf_dir`]).
    pub fn from_file(tokenizer_json: &Path) -> Result<Self> {
        let bytes = std::fs::read(tokenizer_json).map_err(|e| ModelError::io(tokenizer_json, e))?;
        Self::from_json_bytes(&bytes, tokenizer_json)
    }

    /// Parses the contents of a `tokenizer.json`; `source` only names it in errors.
    pub fn from_json_bytes(bytes: &[u8], source: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| {
            ModelError::Tokenizer(format!(
                "{}: not a valid tokenizer.json: {e}",
                source.display()
            ))
        })?;
        Ok(Self::from_tokenizers(inner, source))
    }

    /// Loads a Hugging Face model directory: `tokenizer.json`, plus `tokenizer_config.json` when present
    /// (chat template, bos/eos tokens) and `chat_template.jinja` (newer transformers save it there).
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let mut tok = Self::from_file(&dir.join("tokenizer.json"))?;
        let config_path = dir.join("tokenizer_config.json");
        if config_path.exists() {
            let text = std::fs::read_to_string(&config_path)
                .map_err(|e| ModelError::io(&config_path, e))?;
            tok.apply_tokenizer_config(&text, &config_path)?;
        }
        let jinja_path = dir.join("chat_template.jinja");
        if tok.chat_template.is_none() && jinja_path.exists() {
            let template =
                std::fs::read_to_string(&jinja_path).map_err(|e| ModelError::io(&jinja_path, e))?;
            tok.set_chat_template(Some(template));
        }
        Ok(tok)
    }

    /// Reads the parts of a `tokenizer_config.json` we use: `chat_template` (a string, or the list form
    /// `[{"name", "template"}]` where "default" is used), and the special tokens `bos_token`,
    /// `eos_token`, `unk_token`, `pad_token` (strings or AddedToken objects `{"content": ...}`).
    pub fn apply_tokenizer_config(&mut self, text: &str, path: &Path) -> Result<()> {
        let err = |message: String| ModelError::Config {
            path: path.to_path_buf(),
            message,
        };
        let value: Value =
            serde_json::from_str(text).map_err(|e| err(format!("not valid JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| err("top level is not a JSON object".into()))?;

        match obj.get("chat_template") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) => self.set_chat_template(Some(t.clone())),
            Some(Value::Array(list)) => {
                let mut names = Vec::new();
                let mut default = None;
                for entry in list {
                    let name = entry.get("name").and_then(Value::as_str);
                    let template = entry.get("template").and_then(Value::as_str);
                    let (Some(name), Some(template)) = (name, template) else {
                        return Err(err(format!(
                            "field `chat_template`: list entries must be {{\"name\", \"template\"}} objects, got {entry}"
                        )));
                    };
                    if name == "default" {
                        default = Some(template.to_string());
                    }
                    names.push(name.to_string());
                }
                match default {
                    Some(t) => self.set_chat_template(Some(t)),
                    None => {
                        self.chat_template = None;
                        self.no_template_reason = Some(format!(
                            "{} lists named chat templates {names:?} but none is called \"default\"",
                            path.display()
                        ));
                    }
                }
            }
            Some(other) => {
                return Err(err(format!(
                    "field `chat_template` must be a string or a list of named templates, got {other}"
                )));
            }
        }

        let token_field = |name: &str| -> Result<Option<String>> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(v @ Value::Object(o)) => match o.get("content").and_then(Value::as_str) {
                    Some(s) => Ok(Some(s.to_string())),
                    None => Err(err(format!(
                        "field `{name}`: AddedToken object without a string `content`: {v}"
                    ))),
                },
                Some(v) => Err(err(format!(
                    "field `{name}` must be a string or an AddedToken object, got {v}"
                ))),
            }
        };
        let bos = token_field("bos_token")?;
        let eos = token_field("eos_token")?;
        self.unk_token = token_field("unk_token")?.or(self.unk_token.take());
        self.pad_token = token_field("pad_token")?.or(self.pad_token.take());
        if let Some(bos) = bos {
            self.set_bos_token(&bos)?;
        }
        if let Some(eos) = eos {
            self.set_eos_token(&eos)?;
        }
        Ok(())
    }

    /// Sets the BOS token by its text; it must be in the vocabulary.
    pub fn set_bos_token(&mut self, token: &str) -> Result<()> {
        self.bos_token_id = Some(self.require_token(token, "bos_token")?);
        self.bos_token = Some(token.to_string());
        Ok(())
    }

    /// Sets the EOS token by its text (it becomes the first of the EOS ids); it must be in the vocabulary.
    pub fn set_eos_token(&mut self, token: &str) -> Result<()> {
        let id = self.require_token(token, "eos_token")?;
        self.eos_token = Some(token.to_string());
        self.eos_token_ids.retain(|&e| e != id);
        self.eos_token_ids.insert(0, id);
        Ok(())
    }

    /// Adds another id that ends generation (e.g. `<|eot_id|>` next to `<|end_of_text|>`).
    pub fn add_eos_token_id(&mut self, id: u32) -> Result<()> {
        self.check_id(id)?;
        if !self.eos_token_ids.contains(&id) {
            self.eos_token_ids.push(id);
        }
        Ok(())
    }

    fn require_token(&self, token: &str, field: &str) -> Result<u32> {
        self.inner.token_to_id(token).ok_or_else(|| {
            ModelError::Tokenizer(format!(
                "{}: {field} {token:?} is not in the vocabulary",
                self.source.display()
            ))
        })
    }

    fn check_id(&self, id: u32) -> Result<()> {
        // `get_vocab_size` builds the whole vocabulary map (151k entries for Qwen), so it is only
        // computed for the error; the per-id lookup is a cheap index into the model's vocabulary.
        if self.inner.id_to_token(id).is_some() {
            Ok(())
        } else {
            Err(ModelError::TokenOutOfRange {
                id,
                vocab_size: self.vocab_size(),
            })
        }
    }

    /// Replaces the chat template (None removes it).
    pub fn set_chat_template(&mut self, template: Option<String>) {
        self.chat_template = template;
        self.no_template_reason = None;
    }

    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Token ids of `text`. With `add_special_tokens`, the tokenizer's post-processor adds what it is
    /// configured to (e.g. a BOS); special tokens written in the text are matched either way.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self.inner.encode(text, add_special_tokens).map_err(|e| {
            ModelError::Tokenizer(format!("{}: encoding failed: {e}", self.source.display()))
        })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`; every id must be in the vocabulary.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        for &id in ids {
            self.check_id(id)?;
        }
        self.inner.decode(ids, skip_special_tokens).map_err(|e| {
            ModelError::Tokenizer(format!("{}: decoding failed: {e}", self.source.display()))
        })
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of ids the tokenizer can produce, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Ids that end a sequence; the `eos_token` first.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_token_id
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// Where this tokenizer was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Renders the chat template for `messages`, as transformers'
    /// `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)` does.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.apply_chat_template_with(messages, add_generation_prompt, &serde_json::Map::new())
    }

    /// [`Tokenizer::apply_chat_template`] with extra template variables, like transformers' keyword
    /// arguments (e.g. `{"enable_thinking": false}` for Qwen3).
    pub fn apply_chat_template_with(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        extra: &serde_json::Map<String, Value>,
    ) -> Result<String> {
        let template = self.chat_template.as_deref().ok_or_else(|| {
            ModelError::ChatTemplate(self.no_template_reason.clone().unwrap_or_else(|| {
                format!(
                    "{} has no chat template (no `chat_template` in tokenizer_config.json, \
                     chat_template.jinja or GGUF `tokenizer.chat_template`)",
                    self.source.display()
                )
            }))
        })?;
        chat::render(
            template,
            &chat::SpecialTokens {
                bos_token: self.bos_token.as_deref(),
                eos_token: self.eos_token.as_deref(),
                unk_token: self.unk_token.as_deref(),
                pad_token: self.pad_token.as_deref(),
            },
            messages,
            add_generation_prompt,
            extra,
        )
    }
}
