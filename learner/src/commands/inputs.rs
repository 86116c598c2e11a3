//! What the subcommands read: the model with its tokenizer and z_c, prompts and SFT pairs from JSONL.

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use laser_model::{ChatMessage, Pretrained, Tokenizer};
use laser_verifier::tasks::jsonl::{JsonlFields, load_jsonl};
use laser_verifier::tasks::template::{Prompt, PromptTemplate};

use super::{ModelArgs, TemplateArg};
use crate::SftExample;

pub(super) fn run_path(p: &Path) -> String {
    p.display().to_string()
}

/// The model on `device` (any backend: the inference one for sampling, `Autodiff<B>` to train),
/// its tokenizer and z_c.
pub fn load<B: Backend>(
    args: &ModelArgs,
    device: &B::Device,
) -> Result<(Pretrained<B>, Tokenizer, u32)> {
    let pretrained = laser_model::pretrained::load::<B>(&args.model, device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let (tokenizer, z_c) = tokenizer_and_token(
        args,
        pretrained.tokenizer.clone(),
        pretrained.model.config.vocab_size,
    )?;
    Ok((pretrained, tokenizer, z_c))
}

pub fn tokenizer_and_token(
    args: &ModelArgs,
    from_model: Option<Tokenizer>,
    vocab: usize,
) -> Result<(Tokenizer, u32)> {
    let tokenizer = match &args.tokenizer {
        Some(path) if path.is_dir() => Tokenizer::from_hf_dir(path)?,
        Some(path) => Tokenizer::from_file(path)?,
        None => from_model.with_context(|| {
            format!(
                "{} has no tokenizer.json; pass --tokenizer",
                args.model.display()
            )
        })?,
    };
    let z_c =
        laser_model::self_reward::resolve_token(&tokenizer, args.self_reward_token.as_deref())?;
    if z_c as usize >= vocab {
        bail!("self-reward token {z_c} is outside the model's vocabulary of {vocab}");
    }
    Ok((tokenizer, z_c))
}

pub fn render(tokenizer: &Tokenizer, template: TemplateArg, question: &str) -> Result<Vec<u32>> {
    let template = match template {
        TemplateArg::Paper => PromptTemplate::PaperSuffix,
        TemplateArg::Chat => PromptTemplate::Chat { system: None },
        TemplateArg::Raw => PromptTemplate::Raw,
    };
    Ok(match template.render(question) {
        Prompt::Text(text) => tokenizer.encode(&text, true)?,
        Prompt::Chat(messages) => {
            let messages: Vec<ChatMessage> = messages
                .into_iter()
                .map(|m| ChatMessage::new(m.role, m.content))
                .collect();
            let text = tokenizer.apply_chat_template(&messages, true)?;
            tokenizer.encode(&text, false)?
        }
    })
}

/// (prompt tokens, gold answer) for up to `limit` tasks of a JSONL file.
pub fn prompts_from_jsonl(
    data: &Path,
    tokenizer: &Tokenizer,
    template: TemplateArg,
    limit: usize,
) -> Result<Vec<(Vec<u32>, String)>> {
    let tasks = load_jsonl(data, &JsonlFields::default())?;
    if tasks.is_empty() {
        bail!("{}: no tasks", data.display());
    }
    tasks
        .iter()
        .take(limit)
        .map(|t| Ok((render(tokenizer, template, &t.question)?, t.gold.clone())))
        .collect()
}

/// SFT pairs: prompt from the question field, response = the full response/answer/solution text + EOS.
pub fn sft_examples(
    data: &Path,
    tokenizer: &Tokenizer,
    template: TemplateArg,
    eos: u32,
    max_response_tokens: usize,
) -> Result<Vec<SftExample>> {
    let file = std::fs::File::open(data).with_context(|| format!("opening {}", data.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}", data.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: invalid JSON", data.display(), i + 1))?;
        let field = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| value.get(*n).and_then(|v| v.as_str()).map(str::to_owned))
        };
        let question = field(&["question", "prompt", "problem"]).with_context(|| {
            format!(
                "{}:{}: no question/prompt/problem field",
                data.display(),
                i + 1
            )
        })?;
        let answer = field(&["response", "answer", "solution"]).with_context(|| {
            format!(
                "{}:{}: no response/answer/solution field",
                data.display(),
                i + 1
            )
        })?;
        let prompt = render(tokenizer, template, &question)?;
        let mut response = tokenizer.encode(&answer, false)?;
        response.truncate(max_response_tokens.saturating_sub(1));
        response.push(eos);
        out.push(SftExample { prompt, response });
    }
    if out.is_empty() {
        bail!("{}: no examples", data.display());
    }
    Ok(out)
}
