//! Prompt templates: the paper's instruction suffix, as plain text or as chat messages.
//!
//! The chat form is a list of `{role, content}` messages; turning it into tokens with the model's
//! Jinja chat template is the tokenizer's job (laser-model), not this crate's.

use serde::{Deserialize, Serialize};

/// The instruction appended to every question in the LaSeR paper.
pub const PAPER_SUFFIX: &str =
    " Please reason step by step, and put your final answer within \\boxed{}.";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// A rendered prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Chat(Vec<ChatMessage>),
}

/// How a question becomes a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PromptTemplate {
    /// question + [`PAPER_SUFFIX`], as plain text (base models).
    #[default]
    PaperSuffix,
    /// A user turn holding question + [`PAPER_SUFFIX`], after an optional system turn
    /// (instruction-tuned models).
    Chat { system: Option<String> },
    /// The question unchanged.
    Raw,
}

impl PromptTemplate {
    pub fn render(&self, question: &str) -> Prompt {
        let question = question.trim_end();
        match self {
            PromptTemplate::PaperSuffix => Prompt::Text(format!("{question}{PAPER_SUFFIX}")),
            PromptTemplate::Raw => Prompt::Text(question.to_string()),
            PromptTemplate::Chat { system } => {
                let mut messages = Vec::with_capacity(2);
                if let Some(s) = system {
                    messages.push(ChatMessage {
                        role: "system".into(),
                        content: s.clone(),
                    });
                }
                messages.push(ChatMessage {
                    role: "user".into(),
                    content: format!("{question}{PAPER_SUFFIX}"),
                });
                Prompt::Chat(messages)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_suffix_is_exact() {
        let p = PromptTemplate::PaperSuffix.render("What is 1+1?\n");
        assert_eq!(
            p,
            Prompt::Text(
                "What is 1+1? Please reason step by step, and put your final answer within \\boxed{}.".into()
            )
        );
    }

    #[test]
    fn chat_template_produces_messages() {
        let p = PromptTemplate::Chat {
            system: Some("You are a helpful assistant.".into()),
        }
        .render("Q");
        let Prompt::Chat(m) = p else {
            panic!("expected chat messages")
        };
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].role.as_str(), m[1].role.as_str()), ("system", "user"));
        assert!(m[1].content.starts_with("Q Please reason"));
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.starts_with("[{\"role\":\"system\""));
        let Prompt::Chat(m) = (PromptTemplate::Chat { system: None }).render("Q") else {
            panic!("expected chat")
        };
        assert_eq!(m.len(), 1);
    }
}
