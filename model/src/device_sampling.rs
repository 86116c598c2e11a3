//! Sampling on the model's device: temperature, top-k, top-p and greedy, the sampled token's
//! untempered log-prob and the LaSeR read-out's log p(z_c), all as backend-generic tensor ops on
//! one step's `[rows, vocab]` logits. Only the token ids, their log-probs and the read-out
//! log-probs (three numbers per row) cross to the host, instead of the whole vocabulary per row:
//! what a GPU actor needs, where the logits copy dominated a decode step (issue 25).
//!
//! The draws are the host sampler's ([`crate::sampling::sample_token`]): the host keeps one RNG per
//! sample and draws the same uniform per sampled token, and the device applies the same rule to
//! it: the kept set (top-k by logit, ties to the lower index; then the smallest prefix by
//! probability whose mass reaches top-p, ties to the lower index), walked in vocabulary order by
//! inverse CDF (blocks of 256 tokens, then tokens). Both agree token for token except where f32
//! (device) and f64 (host) sums put a uniform or the nucleus boundary on opposite sides of a
//! token: none of 192 draws on vocabularies up to 1,000; on a flat 49k-token distribution 1-9%,
//! depending on the CPU (the tests check each such draw is a rounding). A peaked LM distribution is
//! far from that worst case.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::sampling::SamplingParams;

/// One decode step's draws, one entry per logits row.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceDraws {
    pub tokens: Vec<u32>,
    /// log pi(token) under the untempered policy.
    pub logprobs: Vec<f32>,
    /// log p(readout_token) per row, when a read-out token was given.
    pub readout_logprobs: Option<Vec<f32>>,
}

/// Draws one token per row of `logits` (`[rows, vocab]`) with the uniform `uniforms[row]` in
/// [0, 1) (ignored when greedy), and reads log p(`readout_token`) for every row.
pub fn sample_rows<B: Backend>(
    logits: Tensor<B, 2>,
    params: &SamplingParams,
    uniforms: &[f64],
    readout_token: Option<u32>,
) -> DeviceDraws {
    let [rows, vocab] = logits.dims();
    let device = logits.device();
    let log_probs = log_softmax(logits.clone(), 1);
    let tokens: Tensor<B, 2, Int> = if params.temperature == 0.0 {
        logits.argmax(1)
    } else {
        assert_eq!(uniforms.len(), rows, "one uniform per row");
        let scaled = logits * (1.0 / params.temperature);
        let max = scaled.clone().max_dim(1);
        let mut probs = (scaled.clone() - max).exp();
        if params.top_k > 0 && params.top_k < vocab {
            probs = probs * top_k_mask(scaled, params.top_k);
        }
        if params.top_p < 1.0 {
            let keep = top_p_mask(probs.clone(), params.top_p);
            probs = probs * keep;
        }
        let u: Vec<f32> = uniforms.iter().map(|&u| u as f32).collect();
        let u = Tensor::<B, 1>::from_data(TensorData::new(u, [rows]), &device).reshape([rows, 1]);
        inverse_cdf(probs, u)
    };
    let logprobs = log_probs.clone().gather(1, tokens.clone());
    let readout = readout_token.map(|t| log_probs.slice([0..rows, t as usize..t as usize + 1]));
    DeviceDraws {
        tokens: tokens
            .into_data()
            .convert::<i64>()
            .into_vec::<i64>()
            .expect("int tensor converts to i64")
            .into_iter()
            .map(|t| t as u32)
            .collect(),
        logprobs: to_vec(logprobs),
        readout_logprobs: readout.map(to_vec),
    }
}

/// Tokens per block of the two-level inverse-CDF walk: an f32 running sum over a whole 49k
/// vocabulary drifts by about 1e-3 of the total, which moved one draw in eight of a flat
/// distribution to another token; block sums of 256 keep both levels' sums short, like the host
/// sampler's own blocks.
const BLOCK: usize = 256;

/// The token of each row where the inclusive cumulative mass of `probs` (unnormalised, `[rows,
/// vocab]`) first exceeds `u` (`[rows, 1]`, in [0, 1)) times the row's total, walking blocks of
/// [`BLOCK`] first, then tokens within the block. Rounding past a block's or the row's last kept
/// token lands on that token, as on the host.
fn inverse_cdf<B: Backend>(probs: Tensor<B, 2>, u: Tensor<B, 2>) -> Tensor<B, 2, Int> {
    let [rows, vocab] = probs.dims();
    let device = probs.device();
    let blocks = vocab.div_ceil(BLOCK);
    let padded = if blocks * BLOCK > vocab {
        Tensor::cat(
            vec![
                probs,
                Tensor::zeros([rows, blocks * BLOCK - vocab], &device),
            ],
            1,
        )
    } else {
        probs
    };
    let per_block = padded.reshape([rows, blocks, BLOCK]);
    let block_mass = per_block.clone().sum_dim(2).reshape([rows, blocks]);
    let block_cum = block_mass.clone().cumsum(1);
    let total = block_cum.clone().slice([0..rows, blocks - 1..blocks]);
    let target = u * total;
    let block_index = Tensor::<B, 1, Int>::arange(0..blocks as i64, &device).reshape([1, blocks]);
    let last_block = (block_mass.clone().greater_elem(0.0).int() * block_index).max_dim(1);
    let block = block_cum
        .clone()
        .lower_equal(target.clone())
        .int()
        .sum_dim(1)
        .min_pair(last_block);
    // The mass left to walk inside the chosen block.
    let before = block_cum.gather(1, block.clone()) - block_mass.gather(1, block.clone());
    let residual = target - before;
    let within = per_block
        .gather(
            1,
            block.clone().reshape([rows, 1, 1]).expand([rows, 1, BLOCK]),
        )
        .reshape([rows, BLOCK]);
    let token_index = Tensor::<B, 1, Int>::arange(0..BLOCK as i64, &device).reshape([1, BLOCK]);
    let last_in_block = (within.clone().greater_elem(0.0).int() * token_index).max_dim(1);
    let offset = within
        .cumsum(1)
        .lower_equal(residual)
        .int()
        .sum_dim(1)
        .min_pair(last_in_block);
    block * BLOCK as i64 + offset
}

/// The inclusive running sum along dim 1 as block sums of [`BLOCK`] plus sums within the block,
/// so that no f32 sum runs over more than a few hundred terms (see [`BLOCK`]).
fn blocked_cumsum<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let [rows, vocab] = x.dims();
    let blocks = vocab.div_ceil(BLOCK);
    let padded = if blocks * BLOCK > vocab {
        Tensor::cat(
            vec![
                x.clone(),
                Tensor::zeros([rows, blocks * BLOCK - vocab], &x.device()),
            ],
            1,
        )
    } else {
        x
    };
    let per_block = padded.reshape([rows, blocks, BLOCK]);
    let mass = per_block.clone().sum_dim(2);
    let offsets = mass.clone().cumsum(1) - mass;
    (per_block.cumsum(2) + offsets)
        .reshape([rows, blocks * BLOCK])
        .slice([0..rows, 0..vocab])
}

/// 1 for the `k` largest entries of each row (ties to the lower index), else 0.
fn top_k_mask<B: Backend>(scaled: Tensor<B, 2>, k: usize) -> Tensor<B, 2> {
    let [rows, _] = scaled.dims();
    let threshold = scaled.clone().topk(k, 1).slice([0..rows, k - 1..k]);
    let count = Tensor::<B, 2, Int>::full([rows, 1], k as i64, &scaled.device());
    prefix_with_ties(scaled, threshold, count)
}

/// 1 for the smallest set of most probable entries whose mass reaches `top_p` of the row's
/// (ties to the lower index; always at least one), else 0.
fn top_p_mask<B: Backend>(probs: Tensor<B, 2>, top_p: f32) -> Tensor<B, 2> {
    let [rows, _] = probs.dims();
    let sorted = probs.clone().sort_descending(1);
    let total = sorted.clone().sum_dim(1);
    // Entry j is kept iff the mass strictly before it is below top_p (so entry 0 always is).
    let before = (blocked_cumsum(sorted.clone()) - sorted.clone()) / total;
    let kept = before.lower_elem(top_p).int().sum_dim(1);
    let last = sorted.gather(1, kept.clone() - 1);
    prefix_with_ties(probs, last.reshape([rows, 1]), kept)
}

/// 1 for the entries above `threshold` (the row's `count`-th largest value) and for as many of
/// the lowest-index entries equal to it as make `count` kept in all, else 0. Exact whatever order
/// an (unstable) device sort left the ties in.
fn prefix_with_ties<B: Backend>(
    values: Tensor<B, 2>,
    threshold: Tensor<B, 2>,
    count: Tensor<B, 2, Int>,
) -> Tensor<B, 2> {
    let above = values.clone().greater(threshold.clone());
    let equal = values.equal(threshold);
    let ties_needed = count - above.clone().int().sum_dim(1);
    let tie_rank = equal.clone().int().cumsum(1);
    let tie_kept = equal.int() * tie_rank.lower_equal(ties_needed).int();
    (above.int() + tie_kept).float()
}

fn to_vec<B: Backend>(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("float tensor converts to f32")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuDevice};
    use crate::sampling::{log_sum_exp, sample_rng, sample_token};
    use rand::Rng;

    /// Logits with a spread like a language model's: a few large, a long tail, and (from `ties`)
    /// repeated values so that the top-k and top-p boundaries fall inside ties.
    fn logits(rows: usize, vocab: usize, ties: bool) -> Vec<f32> {
        let mut rng = sample_rng(99, vocab as u64);
        (0..rows * vocab)
            .map(|_| {
                let x: f32 = rng.random::<f32>();
                let l = 8.0 * x.powi(6) - 4.0 * x;
                if ties { (l * 2.0).round() / 2.0 } else { l }
            })
            .collect()
    }

    /// The device path (burn's generic ops on burn-flex, none of the CPU kernels) against the host
    /// sampler, row by row from the same RNG state.
    fn check(params: SamplingParams, vocab: usize, ties: bool, readout: Option<u32>) {
        let rows = 48;
        let host_logits = logits(rows, vocab, ties);
        let device = CpuDevice::default();
        let t = Tensor::<Cpu, 2>::from_data(
            TensorData::new(host_logits.clone(), [rows, vocab]),
            &device,
        );
        let mut mismatches = 0;
        for draw in 0..4u64 {
            let mut host_rngs: Vec<_> = (0..rows).map(|r| sample_rng(draw, r as u64)).collect();
            let mut device_rngs = host_rngs.clone();
            let uniforms: Vec<f64> = device_rngs
                .iter_mut()
                .map(|rng| {
                    if params.temperature == 0.0 {
                        0.0
                    } else {
                        rng.random::<f64>()
                    }
                })
                .collect();
            let got = sample_rows(t.clone(), &params, &uniforms, readout);
            for r in 0..rows {
                let row = &host_logits[r * vocab..(r + 1) * vocab];
                let (token, lp) = sample_token(row, &params, &mut host_rngs[r]);
                if got.tokens[r] != token {
                    // Not the host's draw: it must be the host rule's draw at a nucleus mass or
                    // uniform one f32 rounding away, or it is a bug.
                    assert!(
                        within_rounding(row, &params, uniforms[r], got.tokens[r]),
                        "{params:?}, vocab {vocab}, ties {ties}, row {r}, u {}: device token {} \
                         is no rounding of the host rule's {token}",
                        uniforms[r],
                        got.tokens[r]
                    );
                    mismatches += 1;
                    continue;
                }
                assert!(
                    (got.logprobs[r] - lp).abs() < 2e-5,
                    "{params:?} row {r}: {} vs {lp}",
                    got.logprobs[r]
                );
                if let Some(z) = readout {
                    let want = row[z as usize] - log_sum_exp(row);
                    let lp = got.readout_logprobs.as_ref().unwrap()[r];
                    assert!((lp - want).abs() < 2e-5, "read-out row {r}: {lp} vs {want}");
                }
            }
        }
        // On vocabularies up to 1,000 the two agree on every draw. On a flat 49,152-token row each
        // token holds ~2e-5 of the mass, about the f32 error of the running sums, so a few draws
        // land on a neighbour (2-6 of 192 on a Xeon, 18 on an AMD EPYC: the sums' rounding differs
        // with the CPU's vector width); each one was checked above to be a rounding, not a rule.
        if vocab <= 1000 {
            assert_eq!(
                mismatches,
                0,
                "{params:?}, vocab {vocab}, ties {ties}: {mismatches} of {} draws differ",
                4 * rows
            );
        }
    }

    /// Relative error allowed in the device's top-p threshold and uniform: the worst-case bound of
    /// an f32 running sum over n terms is n * 2^-24 of the sum; the blocked sums run over at most
    /// 256 + 192 terms on a 49k vocabulary, 2.7e-5.
    const ROUNDING: f64 = 3e-5;

    /// Whether the host rule draws `token` from `row` at some nucleus mass within [`ROUNDING`] of
    /// `params.top_p` (a kept-set boundary a rounding away; probed at nine points, finer than one
    /// token's share of a 49k row) and some uniform within [`ROUNDING`] of `u`. The walk is monotone
    /// in the uniform, so the tokens drawn over [u - d, u + d] are those between its two ends.
    fn within_rounding(row: &[f32], params: &SamplingParams, u: f64, token: u32) -> bool {
        if params.temperature == 0.0 {
            return false;
        }
        let steps: Vec<f64> = if params.top_p < 1.0 {
            (-4..=4).map(|i| f64::from(i) * ROUNDING / 4.0).collect()
        } else {
            vec![0.0]
        };
        let token = token as usize;
        steps.iter().any(|d| {
            let top_p = (f64::from(params.top_p) * (1.0 + d)) as f32;
            let draw = |u: f64| {
                let u = u.clamp(0.0, 1.0 - f64::EPSILON);
                crate::sampling::filtered_token(row, params, top_p.min(1.0), u)
            };
            (draw(u - ROUNDING)..=draw(u + ROUNDING)).contains(&token)
        })
    }

    fn params(temperature: f32, top_k: usize, top_p: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            ..SamplingParams::default()
        }
    }

    #[test]
    fn device_draws_equal_the_host_sampler() {
        for vocab in [7, 1000, 49_152] {
            for ties in [false, true] {
                check(params(1.0, 0, 1.0), vocab, ties, Some(3));
                check(params(0.7, 0, 1.0), vocab, ties, None);
                check(params(0.0, 0, 1.0), vocab, ties, Some(5));
                check(params(0.8, 5, 1.0), vocab, ties, None);
                check(params(1.0, 0, 0.9), vocab, ties, None);
                check(params(0.8, 50, 0.9), vocab, ties, Some(1));
            }
        }
    }

    #[test]
    fn top_k_and_top_p_masks_keep_ties_by_lower_index() {
        let device = CpuDevice::default();
        let x = Tensor::<Cpu, 2>::from_data([[1.0, 3.0, 3.0, 0.0, 3.0]], &device);
        let k2 = to_vec(top_k_mask(x.clone(), 2));
        assert_eq!(k2, vec![0.0, 1.0, 1.0, 0.0, 0.0]);
        let k4 = to_vec(top_k_mask(x, 4));
        assert_eq!(k4, vec![1.0, 1.0, 1.0, 0.0, 1.0]);
        // probabilities 0.3, 0.3, 0.3, 0.1: the mass before the third 0.3 is 0.6 < 0.65, so three
        // are kept; at 0.5 only two (the lower indices), at 0.1 one.
        let p = Tensor::<Cpu, 2>::from_data([[0.1, 0.3, 0.3, 0.3]], &device);
        assert_eq!(
            to_vec(top_p_mask(p.clone(), 0.65)),
            vec![0.0, 1.0, 1.0, 1.0]
        );
        assert_eq!(to_vec(top_p_mask(p.clone(), 0.5)), vec![0.0, 1.0, 1.0, 0.0]);
        assert_eq!(to_vec(top_p_mask(p, 0.1)), vec![0.0, 1.0, 0.0, 0.0]);
    }
}
