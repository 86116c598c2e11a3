//! laser-actor: the rollout side of LaSeR. An actor holds a copy of the policy, samples n solutions
//! per prompt with the KV-cache engine of laser-model, and reads each solution's last-token
//! self-reward right after its EOS. Here live the plain functions behind the `actor` binary's
//! tools; the gRPC service wraps the same functions.

pub mod cli;
pub mod service;

use std::path::Path;

use burn::tensor::backend::Backend;
use laser_model::backend::Cpu;
use laser_model::{
    ChatMessage, GenerationRequest, ModelError, Pretrained, SamplingParams, ScoreItem,
    SelfRewardConfig, Tokenizer,
};
use serde::Serialize;

/// The paper's constants: beta_v = 0.1, c_ref = -23.0 (Qwen2.5). Calibrate for other models.
pub const DEFAULT_BETA_V: f32 = 0.1;
pub const DEFAULT_C_REF: f32 = -23.0;

#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{0}")]
    Usage(String),
}

pub type Result<T> = std::result::Result<T, ActorError>;

/// Loads a model on `device` of backend `B` (the binary picks `B` from `model.backend`).
pub fn load<B: Backend>(model: &Path, device: &B::Device) -> Result<Pretrained<B>> {
    Ok(laser_model::pretrained::load::<B>(model, device)?)
}

pub fn load_cpu(model: &Path) -> Result<Pretrained<Cpu>> {
    load::<Cpu>(model, &Default::default())
}

fn tokenizer<B: Backend>(p: &Pretrained<B>) -> Result<&Tokenizer> {
    p.tokenizer.as_ref().ok_or_else(|| {
        ActorError::Usage("the model has no tokenizer (tokenizer.json or GGUF metadata)".into())
    })
}

/// Encodes a user prompt, through the chat template when `chat` is set.
pub fn encode_prompt(tok: &Tokenizer, prompt: &str, chat: bool) -> Result<Vec<u32>> {
    if chat {
        let text = tok.apply_chat_template(&[ChatMessage::user(prompt)], true)?;
        // The template already holds any BOS it wants.
        Ok(tok.encode(&text, false)?)
    } else {
        Ok(tok.encode(prompt, true)?)
    }
}

/// Encodes a group's prompt: its own chat messages when the dataset gave some (verl's `prompt`),
/// through the chat template when `chat` is set (without one, the turns' text joined), else its
/// `prompt_text` as [`encode_prompt`] does.
pub fn encode_group_prompt(
    tok: &Tokenizer,
    group: &laser_proto::v1::PromptGroup,
    chat: bool,
) -> Result<Vec<u32>> {
    if group.chat.is_empty() {
        return encode_prompt(tok, &group.prompt_text, chat);
    }
    if chat {
        let messages: Vec<ChatMessage> = group
            .chat
            .iter()
            .map(|m| ChatMessage::new(m.role.clone(), m.content.clone()))
            .collect();
        let text = tok.apply_chat_template(&messages, true)?;
        Ok(tok.encode(&text, false)?)
    } else {
        let text: Vec<&str> = group.chat.iter().map(|m| m.content.as_str()).collect();
        Ok(tok.encode(&text.join("\n\n"), true)?)
    }
}

#[derive(Debug, Clone)]
pub struct GenerateArgs {
    pub prompt: String,
    pub chat: bool,
    pub n: usize,
    pub params: SamplingParams,
    pub self_reward_token: Option<String>,
    pub beta_v: f32,
    pub c_ref: f32,
}

#[derive(Debug, Serialize)]
pub struct GeneratedSample {
    pub index: usize,
    pub text: String,
    pub token_ids: Vec<u32>,
    pub finish_reason: laser_model::FinishReason,
    pub self_reward_logprob: Option<f32>,
    pub self_reward: Option<f32>,
    pub sum_logprob: f32,
}

pub fn generate<B: Backend>(
    p: &Pretrained<B>,
    args: &GenerateArgs,
) -> Result<Vec<GeneratedSample>> {
    let tok = tokenizer(p)?;
    let prompt = encode_prompt(tok, &args.prompt, args.chat)?;
    let token_id = laser_model::self_reward::resolve_token(tok, args.self_reward_token.as_deref())?;
    let req = GenerationRequest {
        prompts: vec![prompt],
        n: args.n,
        params: args.params.clone(),
        eos_token_ids: p.eos_token_ids(),
        self_reward: Some(SelfRewardConfig {
            token_id,
            beta_v: args.beta_v,
            c_ref: args.c_ref,
        }),
    };
    let (samples, _) = laser_model::generate(&p.model, Some(tok), &req)?;
    Ok(samples
        .into_iter()
        .map(|s| GeneratedSample {
            index: s.sample_index,
            sum_logprob: s.logprobs.iter().sum(),
            text: s.text,
            token_ids: s.tokens,
            finish_reason: s.finish_reason,
            self_reward_logprob: s.self_reward.map(|r| r.logprob),
            self_reward: s.self_reward.map(|r| r.score),
        })
        .collect())
}

#[derive(Debug, Serialize)]
pub struct ScoreReport {
    pub prompt_token_ids: Vec<u32>,
    pub response_token_ids: Vec<u32>,
    pub response_logprobs: Vec<f32>,
    pub self_reward_token_id: u32,
    pub self_reward_logprob: f32,
    pub self_reward: f32,
}

/// Teacher-forced scoring of one (prompt, response); EOS is appended to the response unless it
/// already ends with one, so the z_c slot is the position right after EOS.
pub fn score<B: Backend>(
    p: &Pretrained<B>,
    prompt: &str,
    response: &str,
    chat: bool,
    self_reward_token: Option<&str>,
    beta_v: f32,
    c_ref: f32,
) -> Result<ScoreReport> {
    let tok = tokenizer(p)?;
    let prompt_ids = encode_prompt(tok, prompt, chat)?;
    let mut response_ids = tok.encode(response, false)?;
    let eos = p.eos_token_ids();
    let Some(&eos_id) = eos.first() else {
        return Err(ActorError::Usage("the model defines no EOS token".into()));
    };
    if response_ids.last().is_none_or(|t| !eos.contains(t)) {
        response_ids.push(eos_id);
    }
    let token_id = laser_model::self_reward::resolve_token(tok, self_reward_token)?;
    let out = laser_model::score(
        &p.model,
        &[ScoreItem {
            prompt: &prompt_ids,
            response: &response_ids,
        }],
        token_id,
    )?;
    let response_logprobs: Vec<f32> = out
        .response_logprobs
        .into_data()
        .into_vec::<f32>()
        .map_err(|e| ActorError::Usage(format!("reading log-probs: {e:?}")))?;
    let self_reward_logprob = out
        .self_reward_logprob
        .into_data()
        .into_vec::<f32>()
        .map_err(|e| ActorError::Usage(format!("reading log-probs: {e:?}")))?[0];
    let sr = SelfRewardConfig {
        token_id,
        beta_v,
        c_ref,
    };
    Ok(ScoreReport {
        prompt_token_ids: prompt_ids,
        response_token_ids: response_ids,
        response_logprobs,
        self_reward_token_id: token_id,
        self_reward_logprob,
        self_reward: sr.score(self_reward_logprob),
    })
}
