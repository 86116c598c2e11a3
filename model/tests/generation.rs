//! The generation engine against independent recomputation: KV-cache decoding equals a full forward
//! pass (property test), the LaSeR read-out equals the teacher-forced scoring pass, and sampling is
//! reproducible per seed and independent of batch composition.

mod common;

use common::*;
use laser_model::{
    FinishReason, GenerationRequest, SamplingParams, ScoreItem, SelfRewardConfig, generate, score,
};
use proptest::prelude::*;

const TOL: f32 = 1e-4;

/// Checks every sampled token's log-prob against a full recomputation over prompt + tokens. With
/// `decode_weights` the sampling model carries an actor's `[in, out]` copies
/// (`Transformer::with_decode_weights`); the recomputation never does.
fn assert_matches_full_recompute(
    name: &str,
    decode_weights: bool,
    prompts: &[Vec<u32>],
    n: usize,
    temperature: f32,
    max_new: usize,
    seed: u64,
) {
    let p = load(name);
    let sampler = if decode_weights {
        p.model.clone().with_decode_weights()
    } else {
        p.model.clone()
    };
    let req = GenerationRequest {
        prompts: prompts.to_vec(),
        n,
        params: SamplingParams {
            temperature,
            max_new_tokens: max_new,
            seed,
            ..SamplingParams::default()
        },
        eos_token_ids: vec![2],
        self_reward: None,
    };
    let (samples, _) = generate(&sampler, None, &req).unwrap();
    assert_eq!(samples.len(), prompts.len() * n);
    let v = p.model.config.vocab_size;
    let seqs: Vec<Vec<u32>> = samples
        .iter()
        .map(|s| [prompts[s.prompt_index].clone(), s.tokens.clone()].concat())
        .collect();
    let full = full_log_softmax(&p.model, &seqs);
    for (s, lsm) in samples.iter().zip(&full) {
        let plen = prompts[s.prompt_index].len();
        assert_eq!(s.tokens.len(), s.logprobs.len());
        assert!(!s.tokens.is_empty() && s.tokens.len() <= max_new);
        for (t, (&tok, &lp)) in s.tokens.iter().zip(&s.logprobs).enumerate() {
            let want = lsm[(plen - 1 + t) * v + tok as usize];
            assert!(
                (lp - want).abs() <= TOL,
                "{name}: prompt {} sample {} token {t}: cached {lp} vs full {want}",
                s.prompt_index,
                s.sample_index
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn kv_cache_decoding_equals_full_recomputation(
        prompts in prop::collection::vec(prop::collection::vec(3u32..480, 1..14), 1..4),
        n in 1usize..4,
        max_new in 1usize..14,
        seed in any::<u64>(),
        which in 0usize..2,
        decode_weights in any::<bool>(),
    ) {
        assert_matches_full_recompute(FIXTURES[which], decode_weights, &prompts, n, 1.0, max_new, seed);
    }
}

fn readout_request(prompts: Vec<Vec<u32>>, seed: u64) -> (GenerationRequest, SelfRewardConfig) {
    let sr = SelfRewardConfig {
        token_id: 300,
        beta_v: 0.1,
        c_ref: -6.0,
    };
    // A random tiny model rarely samples one given EOS id, so many ids count as EOS here: most
    // samples then end with EOS and get a read-out, some run to the length limit.
    let req = GenerationRequest {
        prompts,
        n: 4,
        params: SamplingParams {
            temperature: 1.0,
            max_new_tokens: 20,
            seed,
            ..SamplingParams::default()
        },
        eos_token_ids: (2..40).collect(),
        self_reward: Some(sr),
    };
    (req, sr)
}

#[test]
fn readout_at_generation_equals_teacher_forced_score() {
    for name in FIXTURES {
        let p = load(name);
        let prompts = vec![
            vec![1, 77, 201, 45],
            vec![1, 300, 12],
            vec![1, 5, 6, 7, 8, 9, 10, 11, 12],
        ];
        let (req, sr) = readout_request(prompts.clone(), 7);
        let (samples, stats) = generate(&p.model, None, &req).unwrap();
        let eos: Vec<_> = samples
            .iter()
            .filter(|s| s.finish_reason == FinishReason::Eos)
            .collect();
        assert!(
            eos.len() >= 3,
            "{name}: too few EOS samples ({}) to test the read-out",
            eos.len()
        );
        assert!(
            samples
                .iter()
                .any(|s| s.finish_reason == FinishReason::Length),
            "{name}: expected some length-truncated samples too"
        );
        assert_eq!(
            stats.readout_rows,
            eos.len(),
            "one read-out row per EOS sample"
        );
        for s in &samples {
            assert_eq!(
                s.self_reward.is_some(),
                s.finish_reason == FinishReason::Eos
            );
        }
        let items: Vec<ScoreItem> = eos
            .iter()
            .map(|s| ScoreItem {
                prompt: &prompts[s.prompt_index],
                response: &s.tokens,
            })
            .collect();
        let out = score(&p.model, &items, sr.token_id).unwrap();
        let sr_lp: Vec<f32> = out
            .self_reward_logprob
            .into_data()
            .convert::<f32>()
            .into_vec()
            .unwrap();
        let resp_lp: Vec<f32> = out
            .response_logprobs
            .into_data()
            .convert::<f32>()
            .into_vec()
            .unwrap();
        let mask: Vec<f32> = out
            .response_mask
            .into_data()
            .convert::<f32>()
            .into_vec()
            .unwrap();
        let rmax = out.response_lens.iter().copied().max().unwrap();
        for (i, s) in eos.iter().enumerate() {
            let read = s.self_reward.unwrap();
            assert!(
                (read.logprob - sr_lp[i]).abs() <= TOL,
                "{name}: read-out {} vs scored {}",
                read.logprob,
                sr_lp[i]
            );
            assert!((read.score - sr.score(sr_lp[i])).abs() <= TOL * sr.beta_v);
            assert_eq!(out.response_lens[i], s.tokens.len());
            for t in 0..rmax {
                let m = mask[i * rmax + t];
                if t < s.tokens.len() {
                    assert_eq!(m, 1.0);
                    let d = (resp_lp[i * rmax + t] - s.logprobs[t]).abs();
                    assert!(
                        d <= TOL,
                        "{name}: sample {i} token {t}: score vs generate differ by {d}"
                    );
                } else {
                    assert_eq!(m, 0.0);
                    assert_eq!(resp_lp[i * rmax + t], 0.0, "padding log-probs are zeroed");
                }
            }
        }
    }
}

#[test]
fn readout_feeds_only_the_eos_and_finished_rows_stop_costing_compute() {
    let p = load("tiny-qwen2");
    let (req, _) = readout_request(vec![vec![1, 2, 3], vec![4, 5, 6, 7, 8]], 11);
    let (samples, stats) = generate(&p.model, None, &req).unwrap();
    // Without compaction every step would feed all 8 rows.
    assert!(
        stats.decode_rows < stats.decode_steps * samples.len(),
        "{stats:?}"
    );
    let fed: usize = samples
        .iter()
        .map(|s| s.tokens.len() - 1 + usize::from(s.self_reward.is_some()))
        .sum();
    // Each row is fed its sampled tokens except the last, plus the EOS for the read-out.
    assert_eq!(stats.decode_rows, fed);
    // z_c is read, never fed: no sample continues past its EOS.
    for s in &samples {
        if s.finish_reason == FinishReason::Eos {
            assert!(req.eos_token_ids.contains(s.tokens.last().unwrap()));
            assert!(
                s.tokens[..s.tokens.len() - 1]
                    .iter()
                    .all(|t| !req.eos_token_ids.contains(t))
            );
        }
    }
}

#[test]
fn sampling_is_reproducible_and_independent_of_batch_peers() {
    let mut p = load("tiny-llama");
    // As an actor samples: with the decode weights (one prompt's 3 rows take the `[out, in]` path,
    // two prompts' 6 rows the `[in, out]` one).
    p.model = p.model.with_decode_weights();
    let mk = |prompts: Vec<Vec<u32>>, seed| GenerationRequest {
        prompts,
        n: 3,
        params: SamplingParams {
            temperature: 0.8,
            top_p: 0.9,
            top_k: 50,
            max_new_tokens: 12,
            seed,
            ..SamplingParams::default()
        },
        eos_token_ids: vec![2],
        self_reward: None,
    };
    let a = generate(&p.model, None, &mk(vec![vec![1, 10, 20]], 5))
        .unwrap()
        .0;
    let b = generate(&p.model, None, &mk(vec![vec![1, 10, 20]], 5))
        .unwrap()
        .0;
    assert_eq!(a, b, "same seed, same samples");
    let c = generate(&p.model, None, &mk(vec![vec![1, 10, 20]], 6))
        .unwrap()
        .0;
    assert_ne!(a, c, "another seed should change the samples");
    // Adding a second, longer prompt after it changes neither its padding-free result nor its RNG.
    let d = generate(
        &p.model,
        None,
        &mk(vec![vec![1, 10, 20], vec![1, 9, 8, 7, 6, 5, 4]], 5),
    )
    .unwrap()
    .0;
    for (x, y) in a.iter().zip(&d[..3]) {
        assert_eq!(x.tokens, y.tokens);
        let diff = max_abs_diff(&x.logprobs, &y.logprobs);
        assert!(diff <= TOL);
    }
    // The n samples of one prompt are not copies of each other.
    assert!(a[0].tokens != a[1].tokens || a[1].tokens != a[2].tokens);
}

#[test]
fn device_sampling_generates_what_host_sampling_does() {
    // The GPU path's sampler (logits stay on the device; burn's generic ops) run on burn-flex must
    // give the host sampler's samples from the same seed: tokens, log-probs and read-outs.
    use laser_model::{SamplerPlacement, generate_with};
    let p = load("tiny-qwen2");
    for (temperature, top_k, top_p) in [(1.0, 0, 1.0), (0.7, 0, 1.0), (0.0, 0, 1.0), (0.8, 20, 0.9)]
    {
        let (mut req, _) = readout_request(vec![vec![1, 10, 20], vec![1, 9, 8, 7, 6]], 11);
        req.params.temperature = temperature;
        req.params.top_k = top_k;
        req.params.top_p = top_p;
        let (host, host_stats) =
            generate_with(&p.model, None, &req, SamplerPlacement::Host).unwrap();
        let (device, device_stats) =
            generate_with(&p.model, None, &req, SamplerPlacement::Device).unwrap();
        // Same work, but the device path keeps its batch at a power of two with padding rows.
        assert_eq!(host_stats.decode_rows, device_stats.decode_rows);
        assert_eq!(host_stats.padding_rows, 0);
        assert_eq!(host.len(), device.len());
        let mut readouts = 0;
        for (h, d) in host.iter().zip(&device) {
            assert_eq!(
                h.tokens, d.tokens,
                "T {temperature} top-k {top_k} top-p {top_p}"
            );
            assert_eq!(h.finish_reason, d.finish_reason);
            assert!(max_abs_diff(&h.logprobs, &d.logprobs) <= 2e-5);
            match (&h.self_reward, &d.self_reward) {
                (Some(a), Some(b)) => {
                    readouts += 1;
                    assert!((a.logprob - b.logprob).abs() <= 2e-5, "{a:?} vs {b:?}");
                }
                (None, None) => {}
                other => panic!("read-out on one path only: {other:?}"),
            }
        }
        assert!(readouts > 0, "the request should produce read-outs");
        let lengths: std::collections::BTreeSet<usize> =
            host.iter().map(|s| s.tokens.len()).collect();
        if lengths.len() > 2 {
            assert!(
                device_stats.padding_rows > 0,
                "rows finished apart, yet no padding"
            );
        }
    }
}
