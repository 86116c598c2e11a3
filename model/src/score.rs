//! The teacher-forced scoring pass: for (prompt, response) pairs, the log-prob of every response
//! token and the self-reward log-prob log p(z_c | x, y, EOS), from one pass over the batch (in two
//! forward calls, see below). This is the function the learner trains through, so it returns
//! tensors that stay in the autodiff graph.
//!
//! Layout: two passes through the model. The prefix pass runs each distinct prompt once, all but
//! its last token, left-padded to `pmax - 1`, into a KV cache; the cache rows are then repeated for
//! the items that share a prompt (GRPO scores n samples per prompt), as the actors fork one
//! prefill. The suffix pass runs, per item, the prompt's last token and the response, right-padded
//! to `rmax`, over that cache: its column t (the input is response token t - 1, or the prompt's
//! last token at t = 0) predicts response token t, and column `len` (input: the last response
//! token, EOS) predicts the token after EOS, where z_c is read. Gradients reach the shared prompt
//! through the cache (its rows' gradients add up over the items). Causal attention keeps right
//! padding from touching anything; the prompts' left padding is masked as keys.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{ModelError, Result};
use crate::transformer::{ForwardBatch, Transformer};

/// One sequence to score. `response` normally ends with EOS; a truncated one does not, and then the
/// self-reward slot is read after its last token anyway (the learner masks it out).
#[derive(Debug, Clone, Copy)]
pub struct ScoreItem<'a> {
    pub prompt: &'a [u32],
    pub response: &'a [u32],
}

pub struct ScoreOutput<B: Backend> {
    /// `[batch, rmax]`: log pi(response[t] | prompt, response[..t]); 0 beyond a row's length.
    pub response_logprobs: Tensor<B, 2>,
    /// `[batch, rmax]`: 1 where `t < response.len()`, else 0.
    pub response_mask: Tensor<B, 2>,
    /// `[batch]`: log pi(z_c | prompt, response) read right after the response's last token.
    pub self_reward_logprob: Tensor<B, 1>,
    /// Response lengths, for host-side bookkeeping.
    pub response_lens: Vec<usize>,
}

/// Scores a batch. `self_reward_token` is z_c; without it the read-out column scores token 0.
pub fn score<B: Backend>(
    model: &Transformer<B>,
    items: &[ScoreItem<'_>],
    self_reward_token: u32,
) -> Result<ScoreOutput<B>> {
    if items.is_empty() {
        return Err(ModelError::EmptyBatch);
    }
    let cfg = &model.config;
    for (index, it) in items.iter().enumerate() {
        if it.prompt.is_empty() {
            return Err(ModelError::EmptyPrompt { index });
        }
        if it.response.is_empty() {
            return Err(ModelError::InvalidOption {
                field: "response",
                message: format!("response {index} is empty; there is nothing to score"),
            });
        }
        let len = it.prompt.len() + it.response.len();
        if len > cfg.max_position_embeddings {
            return Err(ModelError::PromptTooLong {
                index,
                len: it.prompt.len(),
                max_new_tokens: it.response.len(),
                context: cfg.max_position_embeddings,
            });
        }
        if let Some(&id) = it
            .prompt
            .iter()
            .chain(it.response)
            .chain(std::iter::once(&self_reward_token))
            .find(|&&t| t as usize >= cfg.vocab_size)
        {
            return Err(ModelError::TokenOutOfRange {
                id,
                vocab_size: cfg.vocab_size,
            });
        }
    }
    let b = items.len();
    let pmax = items.iter().map(|i| i.prompt.len()).max().unwrap_or(0);
    let rmax = items.iter().map(|i| i.response.len()).max().unwrap_or(0);
    // Distinct prompts in order of first appearance, and each item's.
    let mut prompts: Vec<&[u32]> = Vec::new();
    let mut prompt_of = Vec::with_capacity(b);
    for it in items {
        let at = prompts
            .iter()
            .position(|p| *p == it.prompt)
            .unwrap_or_else(|| {
                prompts.push(it.prompt);
                prompts.len() - 1
            });
        prompt_of.push(at);
    }
    // The prefix pass: every prompt but its last token, left-padded to `prefix` columns.
    let prefix = pmax - 1;
    let mut cache = model.new_cache(prompts.len(), prefix + rmax + 1);
    if prefix > 0 {
        let mut batch = ForwardBatch {
            batch: prompts.len(),
            seq: prefix,
            tokens: Vec::with_capacity(prompts.len() * prefix),
            positions: Vec::with_capacity(prompts.len() * prefix),
            left_pad: Vec::with_capacity(prompts.len()),
        };
        for p in &prompts {
            let pad = pmax - p.len();
            batch.left_pad.push(pad);
            batch.tokens.extend(std::iter::repeat_n(0, pad));
            batch.tokens.extend_from_slice(&p[..p.len() - 1]);
            batch.positions.extend(std::iter::repeat_n(0, pad));
            batch.positions.extend(0..p.len() - 1);
        }
        // Only the cached keys and values are needed; the prompts' own outputs are not.
        let _ = model.hidden_states(&batch, Some(&mut cache));
    }
    cache.select_rows(&prompt_of);

    // The suffix pass: the prompt's last token, then the response.
    let seq = rmax + 1;
    let mut batch = ForwardBatch {
        batch: b,
        seq,
        tokens: Vec::with_capacity(b * seq),
        positions: Vec::with_capacity(b * seq),
        left_pad: Vec::with_capacity(b),
    };
    // targets[row, t] for t in 0..=rmax: response tokens, then z_c at t == len, then 0.
    let mut targets = Vec::with_capacity(b * seq);
    let mut mask = Vec::with_capacity(b * rmax);
    let mut readout_col = Vec::with_capacity(b);
    for it in items {
        let (p, r) = (it.prompt.len(), it.response.len());
        batch.left_pad.push(pmax - p);
        batch.tokens.push(it.prompt[p - 1]);
        batch.tokens.extend_from_slice(it.response);
        batch.tokens.extend(std::iter::repeat_n(0, rmax - r));
        batch.positions.extend(p - 1..p + rmax);
        for t in 0..=rmax {
            let target = match t.cmp(&r) {
                std::cmp::Ordering::Less => it.response[t],
                std::cmp::Ordering::Equal => self_reward_token,
                std::cmp::Ordering::Greater => 0,
            };
            targets.push(target);
        }
        mask.extend((0..rmax).map(|t| if t < r { 1.0f32 } else { 0.0 }));
        readout_col.push(r as i32);
    }

    let device = model.device();
    let h = cfg.hidden_size;
    let hidden = model.hidden_states(&batch, Some(&mut cache)); // [b, rmax + 1, h]
    let logits = model.logits(hidden.reshape([b * (rmax + 1), h]));
    let picked = token_logprobs(logits, &targets).reshape([b, rmax + 1]);
    let readout_col = Tensor::<B, 2, Int>::from_data(TensorData::new(readout_col, [b, 1]), &device);
    let self_reward_logprob = picked.clone().gather(1, readout_col).reshape([b]);
    let response_mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [b, rmax]), &device);
    let response_logprobs = picked.slice([0..b, 0..rmax]) * response_mask.clone();
    Ok(ScoreOutput {
        response_logprobs,
        response_mask,
        self_reward_logprob,
        response_lens: items.iter().map(|i| i.response.len()).collect(),
    })
}

/// `log_softmax(logits)[row, targets[row]]` for `logits` `[rows, vocab]`: one fused op on burn-flex
/// (and its autodiff), burn's log-softmax and gather elsewhere.
pub fn token_logprobs<B: Backend>(logits: Tensor<B, 2>, targets: &[u32]) -> Tensor<B, 1> {
    crate::kernels::log_softmax_gather(logits, targets)
}
