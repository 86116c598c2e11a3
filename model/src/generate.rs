//! The generation engine: batched prompts of different lengths with a KV cache, sampling, stop
//! conditions, and the LaSeR read-out folded into the decode loop.
//!
//! Layout: unique prompts are left-padded to a common length and prefilled once; the cache rows are
//! then forked into `n` samples per prompt. Every decode step feeds one token per live row. A row
//! that samples EOS stays for exactly one more step, in which its EOS is fed and the log-prob of z_c
//! is read from that step's logits; it never samples again. Rows that are done are dropped from the
//! cache, so finished sequences stop costing compute.
//!
//! Two placements of the sampler (`SamplerPlacement`): on the host (burn-flex: each step's logits
//! are host memory already) or on the device (`device_sampling`; a GPU: only token ids, log-probs
//! and log p(z_c) cross). The device path also keeps shapes stable for compiled kernels: attention
//! reads the cache in buckets of 64 columns, and the batch shrinks only by powers of two, padding
//! rows filling it in between.

use std::time::Instant;

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::sampling::{SamplingParams, log_sum_exp, sample_rng, sample_token};
use crate::self_reward::{SelfReward, SelfRewardConfig};
use crate::tokenizer::Tokenizer;
use crate::transformer::{ForwardBatch, Transformer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    Eos,
    Length,
    Stop,
}

/// Where a decode step's token is drawn. Both give the same draws from the same seed
/// (`device_sampling`'s tests); they differ in what crosses to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerPlacement {
    /// Every step's full-vocabulary logits are copied to the host and sampled there
    /// (`sampling`): the fast path on burn-flex, where "the device" is the host.
    Host,
    /// The logits stay on the device; only token ids, their log-probs and log p(z_c) come back
    /// (`device_sampling`): the path for a GPU.
    Device,
}

impl SamplerPlacement {
    /// Host on burn-flex, device everywhere else.
    pub fn for_backend<B: Backend>() -> Self {
        if std::any::TypeId::of::<B>() == std::any::TypeId::of::<crate::backend::Cpu>() {
            Self::Host
        } else {
            Self::Device
        }
    }
}

#[derive(Debug, Clone)]
pub struct GenerationRequest {
    pub prompts: Vec<Vec<u32>>,
    /// Samples per prompt (GRPO's group size).
    pub n: usize,
    pub params: SamplingParams,
    /// Token ids that end a sequence.
    pub eos_token_ids: Vec<u32>,
    /// When set, every EOS-terminated sample gets its self-reward read out.
    pub self_reward: Option<SelfRewardConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub prompt_index: usize,
    /// Index among the samples of its prompt.
    pub sample_index: usize,
    /// Generated tokens, including the final EOS when `finish_reason` is `Eos`.
    pub tokens: Vec<u32>,
    /// log pi(token) under the untempered policy, one per generated token.
    pub logprobs: Vec<f32>,
    /// Decoded text (special tokens skipped; a matched stop string is cut). Empty without tokenizer.
    pub text: String,
    pub finish_reason: FinishReason,
    /// Present iff `finish_reason` is `Eos` and the request asked for the read-out.
    pub self_reward: Option<SelfReward>,
}

/// Counters a benchmark or the actor's metrics want.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationStats {
    pub prefill_tokens: usize,
    pub decode_steps: usize,
    /// Rows fed to the model across all decode steps (generated tokens + read-out rows).
    pub decode_rows: usize,
    /// Of `decode_rows`, the rows that only existed for the self-reward read-out.
    pub readout_rows: usize,
    /// Rows fed only to keep the batch at its bucket (device placement), not in `decode_rows`.
    pub padding_rows: usize,
    /// Wall time of the prefill forward pass (including the prompt logits' copy to the host).
    pub prefill_seconds: f64,
    /// Wall time of the whole generation (prefill, decode, sampling, decoding text).
    pub total_seconds: f64,
    /// An upper bound on the read-out's share of `total_seconds`: each decode forward's time split
    /// evenly over its rows, summed over read-out rows, plus the host-side log p(z_c) work. Even
    /// splitting overstates a row's marginal cost (the weights are read once per step, however
    /// many rows), so the true cost is lower.
    pub readout_seconds: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum RowState {
    Generating,
    /// Sampled EOS; the next forward feeds it and reads z_c.
    ReadoutPending,
    Done,
}

struct Row {
    prompt_index: usize,
    sample_index: usize,
    prompt_len: usize,
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    rng: rand::rngs::StdRng,
    state: RowState,
    finish: FinishReason,
    text: String,
    self_reward: Option<SelfReward>,
}

/// Checks a request against the model before any compute is spent.
pub fn validate_request<B: Backend>(model: &Transformer<B>, req: &GenerationRequest) -> Result<()> {
    req.params.validate()?;
    if req.prompts.is_empty() {
        return Err(ModelError::EmptyBatch);
    }
    if req.n == 0 {
        return Err(ModelError::InvalidOption {
            field: "n",
            message: "samples per prompt must be at least 1".into(),
        });
    }
    let cfg = &model.config;
    let context = cfg.max_position_embeddings;
    for (index, p) in req.prompts.iter().enumerate() {
        if p.is_empty() {
            return Err(ModelError::EmptyPrompt { index });
        }
        if let Some(&id) = p.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(ModelError::TokenOutOfRange {
                id,
                vocab_size: cfg.vocab_size,
            });
        }
        if p.len() + req.params.max_new_tokens > context {
            return Err(ModelError::PromptTooLong {
                index,
                len: p.len(),
                max_new_tokens: req.params.max_new_tokens,
                context,
            });
        }
    }
    if let Some(sr) = &req.self_reward
        && sr.token_id as usize >= cfg.vocab_size
    {
        return Err(ModelError::TokenOutOfRange {
            id: sr.token_id,
            vocab_size: cfg.vocab_size,
        });
    }
    Ok(())
}

/// Generates `n` samples for each prompt. Samples come back grouped by prompt, in order. Draws
/// on the host or the device as [`SamplerPlacement::for_backend`] says.
pub fn generate<B: Backend>(
    model: &Transformer<B>,
    tokenizer: Option<&Tokenizer>,
    req: &GenerationRequest,
) -> Result<(Vec<Sample>, GenerationStats)> {
    generate_with(model, tokenizer, req, SamplerPlacement::for_backend::<B>())
}

/// [`generate`] with the sampler's placement chosen by the caller.
pub fn generate_with<B: Backend>(
    model: &Transformer<B>,
    tokenizer: Option<&Tokenizer>,
    req: &GenerationRequest,
    placement: SamplerPlacement,
) -> Result<(Vec<Sample>, GenerationStats)> {
    validate_request(model, req)?;
    let started = Instant::now();
    let params = &req.params;
    if !params.stop_strings.is_empty() && tokenizer.is_none() {
        return Err(ModelError::InvalidOption {
            field: "stop_strings",
            message: "stop strings need a tokenizer to decode the text".into(),
        });
    }
    let mut stats = GenerationStats::default();
    let vocab = model.config.vocab_size;

    // Prefill each distinct prompt once, left-padded to a common length.
    let num_prompts = req.prompts.len();
    let pmax = req.prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut batch = ForwardBatch {
        batch: num_prompts,
        seq: pmax,
        tokens: Vec::with_capacity(num_prompts * pmax),
        positions: Vec::with_capacity(num_prompts * pmax),
        left_pad: Vec::with_capacity(num_prompts),
    };
    for p in &req.prompts {
        let pad = pmax - p.len();
        batch
            .tokens
            .extend(std::iter::repeat_n(0, pad).chain(p.iter().copied()));
        batch
            .positions
            .extend(std::iter::repeat_n(0, pad).chain(0..p.len()));
        batch.left_pad.push(pad);
    }
    stats.prefill_tokens = req.prompts.iter().map(Vec::len).sum();
    let mut cache = model.new_cache(num_prompts, pmax + params.max_new_tokens + 1);
    if placement == SamplerPlacement::Device {
        cache = cache.with_column_bucket(COLUMN_BUCKET);
    }
    let hidden = model.hidden_states(&batch, Some(&mut cache));
    let h = model.config.hidden_size;
    let last = hidden
        .slice([0..num_prompts, pmax - 1..pmax, 0..h])
        .reshape([num_prompts, h]);
    let prompt_logits = model.logits(last);
    let prompt_logits = match placement {
        SamplerPlacement::Host => StepLogits::Host(to_host(prompt_logits)),
        SamplerPlacement::Device => StepLogits::Device(prompt_logits),
    };
    stats.prefill_seconds = started.elapsed().as_secs_f64();

    // Fork: row r is sample (r % n) of prompt (r / n).
    let n = req.n;
    let fork: Vec<usize> = (0..num_prompts * n).map(|r| r / n).collect();
    if n > 1 {
        cache.select_rows(&fork);
    }
    let mut rows: Vec<Row> = fork
        .iter()
        .enumerate()
        .map(|(r, &p)| Row {
            prompt_index: p,
            sample_index: r % n,
            prompt_len: req.prompts[p].len(),
            tokens: Vec::new(),
            logprobs: Vec::new(),
            rng: sample_rng(params.seed, r as u64),
            state: RowState::Generating,
            finish: FinishReason::Length,
            text: String::new(),
            self_reward: None,
        })
        .collect();
    // `live[i]` is the row held in cache row i (logits row i belongs to it); `None` is a padding
    // row that keeps the batch at its bucket (device placement only, see `batch_width`).
    let mut live: Vec<Option<usize>> = (0..rows.len()).map(Some).collect();
    let mut logits = match prompt_logits {
        StepLogits::Host(l) => StepLogits::Host(
            fork.iter()
                .flat_map(|&p| l[p * vocab..(p + 1) * vocab].iter().copied())
                .collect(),
        ),
        StepLogits::Device(l) => StepLogits::Device(if n > 1 {
            let index: Vec<i64> = fork.iter().map(|&p| p as i64).collect();
            let index = burn::tensor::Tensor::<B, 1, burn::tensor::Int>::from_data(
                burn::tensor::TensorData::new(index, [fork.len()]),
                &l.device(),
            );
            l.select(0, index)
        } else {
            l
        }),
    };

    loop {
        match &logits {
            StepLogits::Host(logits) => {
                for (i, r) in live.iter().enumerate() {
                    let Some(r) = *r else { continue };
                    let row_logits = &logits[i * vocab..(i + 1) * vocab];
                    let row = &mut rows[r];
                    match row.state {
                        RowState::Done => {}
                        RowState::ReadoutPending => {
                            let t = Instant::now();
                            let sr = req.self_reward.expect("read-out pending implies a config");
                            let lp = row_logits[sr.token_id as usize] - log_sum_exp(row_logits);
                            finish_readout(row, req, lp);
                            stats.readout_seconds += t.elapsed().as_secs_f64();
                        }
                        RowState::Generating => {
                            let (token, lp) = sample_token(row_logits, params, &mut row.rng);
                            advance_row(row, token, lp, req, tokenizer)?;
                        }
                    }
                }
            }
            StepLogits::Device(logits) => {
                // The same uniform draw per sampled token as the host sampler.
                let sampling = params.temperature != 0.0;
                let uniforms: Vec<f64> = live
                    .iter()
                    .map(|&r| {
                        let Some(r) = r else { return 0.0 };
                        let row = &mut rows[r];
                        if sampling && row.state == RowState::Generating {
                            rand::Rng::random::<f64>(&mut row.rng)
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let draws = crate::device_sampling::sample_rows(
                    logits.clone(),
                    params,
                    &uniforms,
                    req.self_reward.map(|sr| sr.token_id),
                );
                for (i, r) in live.iter().enumerate() {
                    let Some(r) = *r else { continue };
                    let row = &mut rows[r];
                    match row.state {
                        RowState::Done => {}
                        RowState::ReadoutPending => {
                            let lp = draws.readout_logprobs.as_ref().expect("read-out asked")[i];
                            finish_readout(row, req, lp);
                        }
                        RowState::Generating => {
                            advance_row(row, draws.tokens[i], draws.logprobs[i], req, tokenizer)?;
                        }
                    }
                }
            }
        }
        let keep: Vec<usize> = (0..live.len())
            .filter(|&i| live[i].is_some_and(|r| rows[r].state != RowState::Done))
            .collect();
        if keep.is_empty() {
            break;
        }
        let width = batch_width(placement, keep.len(), live.len());
        if width == live.len() {
            for slot in live.iter_mut() {
                if slot.is_some_and(|r| rows[r].state == RowState::Done) {
                    *slot = None;
                }
            }
        } else {
            // Compact to the live rows, padded to the batch bucket with copies of the first.
            let mut select = keep.clone();
            select.resize(width, keep[0]);
            cache.select_rows(&select);
            live = keep
                .iter()
                .map(|&i| live[i])
                .chain(std::iter::repeat_n(None, width - keep.len()))
                .collect();
        }

        // Feed each live row its last token (for read-out rows, the EOS).
        let mut step = ForwardBatch {
            batch: live.len(),
            seq: 1,
            tokens: Vec::with_capacity(live.len()),
            positions: Vec::with_capacity(live.len()),
            left_pad: Vec::with_capacity(live.len()),
        };
        let mut step_readouts = 0;
        for &r in &live {
            let Some(r) = r else {
                // A padding row: any token at the last column; its output is never read.
                step.tokens.push(0);
                step.positions.push(pmax);
                step.left_pad.push(0);
                stats.padding_rows += 1;
                continue;
            };
            let row = &rows[r];
            step.tokens
                .push(*row.tokens.last().expect("a live row has sampled a token"));
            step.positions.push(row.prompt_len + row.tokens.len() - 1);
            step.left_pad.push(pmax - row.prompt_len);
            if row.state == RowState::ReadoutPending {
                step_readouts += 1;
            }
        }
        stats.decode_steps += 1;
        stats.decode_rows += live.len() - live.iter().filter(|r| r.is_none()).count();
        stats.readout_rows += step_readouts;
        let t = Instant::now();
        let hidden = model.hidden_states(&step, Some(&mut cache));
        let step_logits = model.logits(hidden.reshape([live.len(), h]));
        logits = match placement {
            SamplerPlacement::Host => StepLogits::Host(to_host(step_logits)),
            SamplerPlacement::Device => StepLogits::Device(step_logits),
        };
        if step_readouts > 0 {
            stats.readout_seconds +=
                t.elapsed().as_secs_f64() * step_readouts as f64 / live.len() as f64;
        }
    }

    if let Some(tok) = tokenizer {
        for row in rows.iter_mut().filter(|r| r.finish != FinishReason::Stop) {
            row.text = tok.decode(&row.tokens, true)?;
        }
    }
    let samples = rows
        .into_iter()
        .map(|row| Sample {
            prompt_index: row.prompt_index,
            sample_index: row.sample_index,
            tokens: row.tokens,
            logprobs: row.logprobs,
            text: row.text,
            finish_reason: row.finish,
            self_reward: row.self_reward,
        })
        .collect();
    stats.total_seconds = started.elapsed().as_secs_f64();
    Ok((samples, stats))
}

/// Key columns per attention bucket on the device path: a decode step's shapes change once per
/// 64 steps instead of every step.
const COLUMN_BUCKET: usize = 64;

/// The decode batch once `live` of `current` rows are still generating. On the host, exactly the
/// live rows (finished ones stop costing compute at once). On the device, the batch shrinks only
/// to the next power of two at or above `live`, the freed rows padding it, so a batch of 64 has at
/// most 7 distinct shapes however its rows finish.
fn batch_width(placement: SamplerPlacement, live: usize, current: usize) -> usize {
    match placement {
        SamplerPlacement::Host => live,
        SamplerPlacement::Device => live.next_power_of_two().min(current),
    }
}

/// A step's logits, `[live rows, vocab]`: copied to the host, or left on the device.
enum StepLogits<B: Backend> {
    Host(Vec<f32>),
    Device(burn::tensor::Tensor<B, 2>),
}

/// Ends a row whose EOS was just fed: its self-reward from log p(z_c | x, y).
fn finish_readout(row: &mut Row, req: &GenerationRequest, zc_logprob: f32) {
    let sr = req
        .self_reward
        .expect("read-out pending implies a self-reward config");
    row.self_reward = Some(sr.read(zc_logprob));
    row.state = RowState::Done;
}

/// Advances a generating row by its sampled `token` (with its untempered log-prob).
fn advance_row(
    row: &mut Row,
    token: u32,
    logprob: f32,
    req: &GenerationRequest,
    tokenizer: Option<&Tokenizer>,
) -> Result<()> {
    let params = &req.params;
    row.tokens.push(token);
    row.logprobs.push(logprob);

    if req.eos_token_ids.contains(&token) {
        row.finish = FinishReason::Eos;
        row.state = if req.self_reward.is_some() {
            RowState::ReadoutPending
        } else {
            RowState::Done
        };
    } else if row.tokens.len() >= params.max_new_tokens {
        row.finish = FinishReason::Length;
        row.state = RowState::Done;
    }
    // Stop strings need the text every step; otherwise it is decoded once at the end.
    if let (Some(tok), false) = (tokenizer, params.stop_strings.is_empty())
        && row.state == RowState::Generating
    {
        let text = tok.decode(&row.tokens, true)?;
        if let Some(cut) = params
            .stop_strings
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
        {
            row.text = text[..cut].to_string();
            row.finish = FinishReason::Stop;
            row.state = RowState::Done;
        }
    }
    Ok(())
}

fn to_host<B: Backend>(t: burn::tensor::Tensor<B, 2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("float tensor converts to f32")
}
