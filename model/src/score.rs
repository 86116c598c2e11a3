//! The teacher-forced scoring pass: for (prompt, response) pairs, the log-prob of every response
//! token and the self-reward log-prob log p(z_c | x, y, EOS), in one forward pass. This is the
//! function the learner trains through, so it returns tensors that stay in the autodiff graph.
//!
//! Layout: prompts left-padded to `pmax`, responses right-padded to `rmax`, so response token t of
//! every row sits at column `pmax + t`. The hidden state at column `pmax - 1 + t` predicts response
//! token t; the one at `pmax - 1 + len` (whose input is the last response token, EOS) predicts the
//! token after EOS, where z_c is read. Causal attention keeps right padding from touching anything.

use burn::tensor::activation::log_softmax;
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
    let seq = pmax + rmax;
    let mut batch = ForwardBatch {
        batch: b,
        seq,
        tokens: Vec::with_capacity(b * seq),
        positions: Vec::with_capacity(b * seq),
        left_pad: Vec::with_capacity(b),
    };
    // targets[row, t] for t in 0..=rmax: response tokens, then z_c at t == len, then 0.
    let mut targets = Vec::with_capacity(b * (rmax + 1));
    let mut mask = Vec::with_capacity(b * rmax);
    let mut readout_col = Vec::with_capacity(b);
    for it in items {
        let (p, r) = (it.prompt.len(), it.response.len());
        let pad = pmax - p;
        batch.left_pad.push(pad);
        batch.tokens.extend(std::iter::repeat_n(0, pad));
        batch.tokens.extend_from_slice(it.prompt);
        batch.tokens.extend_from_slice(it.response);
        batch.tokens.extend(std::iter::repeat_n(0, rmax - r));
        batch.positions.extend(std::iter::repeat_n(0, pad));
        batch.positions.extend(0..p + rmax);
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
    let hidden = model.hidden_states(&batch, None);
    let hidden = hidden.slice([0..b, pmax - 1..seq, 0..h]); // [b, rmax + 1, h]
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
    if let Some(picked) = crate::fused_grad::log_softmax_gather(&logits, targets) {
        return picked;
    }
    let rows = targets.len();
    let ids: Vec<i32> = targets.iter().map(|&t| t as i32).collect();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [rows, 1]), &logits.device());
    log_softmax(logits, 1).gather(1, ids).reshape([rows])
}
