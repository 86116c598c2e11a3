//! Host-side token sampling: temperature, top-k, top-p, greedy at temperature 0, with one seeded RNG
//! per sample so a sample's tokens do not depend on which other sequences share its batch.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{ModelError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Nucleus mass in (0, 1]; 1 disables it.
    pub top_p: f32,
    /// Keep the k most likely tokens; 0 disables it.
    pub top_k: usize,
    pub max_new_tokens: usize,
    pub seed: u64,
    /// Generation stops once the decoded text contains one of these; it is cut from the text.
    pub stop_strings: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: 256,
            seed: 0,
            stop_strings: Vec::new(),
        }
    }
}

impl SamplingParams {
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            max_new_tokens,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |field, message: String| Err(ModelError::InvalidOption { field, message });
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(
                "temperature",
                format!("must be >= 0, got {}", self.temperature),
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", format!("must be in (0, 1], got {}", self.top_p));
        }
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens", "must be at least 1".into());
        }
        if self.stop_strings.iter().any(|s| s.is_empty()) {
            return bad(
                "stop_strings",
                "an empty stop string would stop at once".into(),
            );
        }
        Ok(())
    }
}

/// The RNG of sample `index` of a request seeded with `seed` (SplitMix64 mixing of both).
pub fn sample_rng(seed: u64, index: u64) -> StdRng {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

/// log-sum-exp of a row, stable.
pub fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = logits.iter().map(|&x| ((x - max) as f64).exp()).sum();
    max + sum.ln() as f32
}

/// Picks the next token from one row of logits. Returns the token and its log-probability under
/// the untempered policy (what PPO's ratio needs), whatever temperature/top-k/top-p chose it.
pub fn sample_token(logits: &[f32], params: &SamplingParams, rng: &mut StdRng) -> (u32, f32) {
    if params.temperature == 1.0 && params.top_k == 0 && params.top_p >= 1.0 {
        return sample_plain(logits, rng);
    }
    let lse = log_sum_exp(logits);
    let token = if params.temperature == 0.0 {
        argmax(logits)
    } else {
        sample_filtered(logits, params, rng)
    };
    (token as u32, logits[token] - lse)
}

/// Probabilities per block of the plain sampler's two-level walk.
const SAMPLE_BLOCK: usize = 256;

/// Untempered, unfiltered sampling (the RL default), in one vectorised pass: `exp(x - max)` in f32
/// with the 8-lane `exp` (within 2 ulp of libm), summed in f64 per block of [`SAMPLE_BLOCK`]
/// tokens; the inverse-CDF walk then steps over whole blocks before it walks one. The general path
/// (`log_sum_exp` + `sample_filtered`, f64 `exp` per token and a walk over the whole vocabulary)
/// took 5.4 ms per decode step at batch 32 on SmolLM2's 49,152 tokens, one thread (BENCHMARKS.md,
/// session 12). Same distribution; the log-prob agrees with the general path's to about 1e-6.
fn sample_plain(logits: &[f32], rng: &mut StdRng) -> (u32, f32) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        // Degenerate rows (all -inf, or a +inf/NaN logit): keep the general path's behaviour.
        let lse = log_sum_exp(logits);
        let token = sample_filtered(logits, &SamplingParams::default(), rng);
        return (token as u32, logits[token] - lse);
    }
    thread_local! {
        static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f64>)> =
            const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }
    SCRATCH.with_borrow_mut(|(probs, blocks)| {
        probs.resize(logits.len(), 0.0);
        crate::kernels::softmax_numerators(logits, max, probs);
        blocks.clear();
        blocks.extend(probs.chunks(SAMPLE_BLOCK).map(block_sum));
        let total: f64 = blocks.iter().sum();
        let lse = max + total.ln() as f32;
        let mut u = rng.random::<f64>() * total;
        let mut block = blocks.len() - 1;
        for (b, &mass) in blocks.iter().enumerate() {
            if u < mass {
                block = b;
                break;
            }
            u -= mass;
        }
        let start = block * SAMPLE_BLOCK;
        let within = &probs[start..(start + SAMPLE_BLOCK).min(probs.len())];
        // Rounding can leave `u` just past the block's last token: take its last likely one.
        let mut token = within
            .iter()
            .rposition(|&p| p > 0.0)
            .unwrap_or(within.len() - 1);
        for (i, &p) in within.iter().enumerate() {
            let p = f64::from(p);
            if u < p {
                token = i;
                break;
            }
            u -= p;
        }
        let token = start + token;
        (token as u32, logits[token] - lse)
    })
}

/// Sum of a block of probabilities in f64, eight independent partial sums (so the adds pipeline).
fn block_sum(block: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = block.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&p| f64::from(p)).sum();
    for c in chunks {
        for (a, &p) in acc.iter_mut().zip(c) {
            *a += f64::from(p);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// First index of the maximum, as torch.argmax.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// The general sampler: the kept set (top-k by logit, then the top-p nucleus by probability, ties
/// to the lower index), walked in vocabulary order by inverse CDF from one uniform draw, the rule
/// [`crate::device_sampling::sample_rows`] applies on the device.
fn sample_filtered(logits: &[f32], params: &SamplingParams, rng: &mut StdRng) -> usize {
    filtered_token(logits, params, params.top_p, rng.random::<f64>())
}

/// [`sample_filtered`] for a given nucleus mass `top_p` and uniform `u` in [0, 1): the rule
/// itself, which the device sampler's tests also probe at thresholds a rounding away.
pub(crate) fn filtered_token(logits: &[f32], params: &SamplingParams, top_p: f32, u: f64) -> usize {
    let inv_t = 1.0 / params.temperature;
    // Candidates as (index, scaled logit); HF order: temperature, then top-k, then top-p.
    let mut cand: Vec<(usize, f32)> = logits.iter().map(|&l| l * inv_t).enumerate().collect();
    let by_logit_desc =
        |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if params.top_k > 0 && params.top_k < cand.len() {
        cand.select_nth_unstable_by(params.top_k - 1, by_logit_desc);
        cand.truncate(params.top_k);
        // The walk below goes in vocabulary order, as the device sampler's does.
        cand.sort_unstable_by_key(|c| c.0);
    }
    let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(usize, f64)> = cand
        .iter()
        .map(|&(i, l)| (i, ((l - max) as f64).exp()))
        .collect();
    if top_p < 1.0 {
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let total: f64 = probs.iter().map(|p| p.1).sum();
        let mut cum = 0.0;
        let mut keep = probs.len();
        for (k, p) in probs.iter().enumerate() {
            cum += p.1 / total;
            // keep the smallest prefix whose mass reaches top_p (always at least one token)
            if cum >= top_p as f64 {
                keep = k + 1;
                break;
            }
        }
        probs.truncate(keep);
        probs.sort_unstable_by_key(|p| p.0);
    }
    let total: f64 = probs.iter().map(|p| p.1).sum();
    let mut u = u * total;
    for &(i, p) in &probs {
        if u < p {
            return i;
        }
        u -= p;
    }
    probs.last().map_or(0, |p| p.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_first_max_and_reports_untempered_logprob() {
        let logits = [0.0, 2.0, 2.0, -1.0];
        let mut rng = sample_rng(0, 0);
        let (tok, lp) = sample_token(&logits, &SamplingParams::greedy(1), &mut rng);
        assert_eq!(tok, 1);
        let lse = (0f32.exp() + 2f32.exp() * 2.0 + (-1f32).exp()).ln();
        assert!((lp - (2.0 - lse)).abs() < 1e-6);
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_tiny_is_greedy() {
        let logits = [0.1, 0.5, 3.0, 0.2];
        for params in [
            SamplingParams {
                top_k: 1,
                ..Default::default()
            },
            SamplingParams {
                top_p: 1e-6,
                ..Default::default()
            },
        ] {
            for i in 0..50 {
                let mut rng = sample_rng(7, i);
                assert_eq!(sample_token(&logits, &params, &mut rng).0, 2);
            }
        }
    }

    #[test]
    fn sampling_frequencies_follow_softmax() {
        let logits = [0.0f32, (2.0f32).ln(), (3.0f32).ln()]; // probs 1/6, 2/6, 3/6
        let params = SamplingParams::default();
        let mut rng = sample_rng(1, 0);
        let mut counts = [0usize; 3];
        let n = 30_000;
        for _ in 0..n {
            counts[sample_token(&logits, &params, &mut rng).0 as usize] += 1;
        }
        for (c, p) in counts.iter().zip([1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0]) {
            assert!((*c as f64 / n as f64 - p).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn plain_sampling_matches_the_general_path() {
        // The untempered fast path (f32 `exp`, block sums) must pick the same tokens as the general
        // path (f64 `exp`, log_sum_exp + sample_filtered) from the same random draw, with log-probs
        // within rounding: vocabularies that end mid-block and span several blocks.
        let general = SamplingParams::default();
        for vocab in [5, 1000, 49_152] {
            let logits: Vec<f32> = (0..vocab)
                .map(|i| ((i * 7919) % 997) as f32 / 97.0)
                .collect();
            for i in 0..200 {
                let (mut a, mut b) = (sample_rng(5, i), sample_rng(5, i));
                let (fast, fast_lp) = sample_token(&logits, &SamplingParams::default(), &mut a);
                let lse = log_sum_exp(&logits);
                let tok = sample_filtered(&logits, &general, &mut b);
                assert_eq!(fast, tok as u32, "vocab {vocab}, draw {i}");
                let want = logits[tok] - lse;
                assert!(
                    (fast_lp - want).abs() < 2e-6,
                    "vocab {vocab}: {fast_lp} vs {want}"
                );
            }
        }
    }

    #[test]
    fn top_p_excludes_tail() {
        // probs ~ 0.5, 0.3, 0.2: top_p 0.7 keeps only the first two
        let logits = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let params = SamplingParams {
            top_p: 0.7,
            ..Default::default()
        };
        let mut rng = sample_rng(3, 0);
        for _ in 0..2000 {
            assert_ne!(sample_token(&logits, &params, &mut rng).0, 2);
        }
    }

    #[test]
    fn invalid_options_are_named() {
        let e = SamplingParams {
            top_p: 0.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("top_p"));
        let e = SamplingParams {
            temperature: -1.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("temperature"));
    }
}
