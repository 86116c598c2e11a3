//! Numerical parity with Hugging Face transformers (f32) on the committed tiny fixtures
//! (scripts/gen_model_fixtures.py): full log-softmax at every position, greedy generation token for
//! token, and a save -> load round trip through the Hugging Face layout.

mod common;

use common::*;
use laser_model::backend::{Cpu, CpuDevice};
use laser_model::pretrained;
use laser_model::{GenerationRequest, SamplingParams, generate};

const LOGPROB_TOL: f32 = 1e-4;

#[test]
fn log_softmax_matches_transformers_one_sequence_at_a_time() {
    for name in FIXTURES {
        let p = load(name);
        let exp = expected(name);
        let cases = exp["logprob_cases"].as_array().unwrap();
        assert_eq!(cases.len(), 3, "{name}: fixture should hold 3 cases");
        for (i, case) in cases.iter().enumerate() {
            let input = ids(&case["input_ids"]);
            let want: Vec<f32> = case["log_softmax"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(floats)
                .collect();
            let got = &full_log_softmax(&p.model, std::slice::from_ref(&input))[0];
            let diff = max_abs_diff(got, &want);
            assert!(
                diff <= LOGPROB_TOL,
                "{name} case {i}: max |diff| {diff} > {LOGPROB_TOL}"
            );
        }
    }
}

#[test]
fn log_softmax_matches_transformers_in_a_left_padded_batch() {
    // All cases in one batch: the two shorter ones are left-padded, which must not change anything.
    for name in FIXTURES {
        let p = load(name);
        let exp = expected(name);
        let cases = exp["logprob_cases"].as_array().unwrap();
        let seqs: Vec<Vec<u32>> = cases.iter().map(|c| ids(&c["input_ids"])).collect();
        let got = full_log_softmax(&p.model, &seqs);
        for (i, case) in cases.iter().enumerate() {
            let want: Vec<f32> = case["log_softmax"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(floats)
                .collect();
            let diff = max_abs_diff(&got[i], &want);
            assert!(
                diff <= LOGPROB_TOL,
                "{name} batched case {i}: max |diff| {diff}"
            );
        }
    }
}

#[test]
fn greedy_generation_matches_transformers_token_for_token() {
    for name in FIXTURES {
        let p = load(name);
        let exp = expected(name);
        let g = &exp["greedy"];
        let prompts: Vec<Vec<u32>> = g["prompts"].as_array().unwrap().iter().map(ids).collect();
        assert!(prompts.len() >= 3);
        let max_new = g["max_new_tokens"].as_u64().unwrap() as usize;
        assert_eq!(max_new, 32);
        let req = GenerationRequest {
            prompts: prompts.clone(),
            n: 1,
            params: SamplingParams::greedy(max_new),
            eos_token_ids: p.eos_token_ids(),
            self_reward: None,
        };
        let (samples, stats) = generate(&p.model, None, &req).unwrap();
        assert_eq!(samples.len(), prompts.len());
        assert_eq!(
            stats.prefill_tokens,
            prompts.iter().map(Vec::len).sum::<usize>()
        );
        for (i, s) in samples.iter().enumerate() {
            let want = ids(&g["outputs"][i]);
            assert_eq!(s.prompt_index, i);
            assert_eq!(s.tokens, want, "{name} prompt {i}: greedy tokens differ");
            let want_lp = floats(&g["output_logprobs"][i]);
            let diff = max_abs_diff(&s.logprobs, &want_lp);
            assert!(
                diff <= LOGPROB_TOL,
                "{name} prompt {i}: greedy log-probs differ by {diff}"
            );
        }
    }
}

#[test]
fn save_then_load_round_trips_weights_and_config() {
    for name in FIXTURES {
        let p = load(name);
        let dir = scratch_dir(&format!("roundtrip-{name}"));
        pretrained::save(&p.model, p.tokenizer.as_ref(), &dir).unwrap();
        let again = pretrained::load::<Cpu>(&dir, &CpuDevice::default()).unwrap();
        assert_eq!(
            again.model.config, p.model.config,
            "{name}: config changed in the round trip"
        );
        let (a, b) = (p.model.to_weights(), again.model.to_weights());
        assert_eq!(
            a.tensors.keys().collect::<Vec<_>>(),
            b.tensors.keys().collect::<Vec<_>>()
        );
        for (k, t) in &a.tensors {
            assert_eq!(
                t, &b.tensors[k],
                "{name}: tensor {k} changed in the round trip"
            );
        }
        // The tied head stays tied: no lm_head.weight is written for tiny-llama.
        let saved = laser_model::weights::safetensors::load_dir(&dir).unwrap();
        assert_eq!(
            saved.contains("lm_head.weight"),
            !p.model.config.tie_word_embeddings,
            "{name}: lm_head.weight presence must follow tie_word_embeddings"
        );
        let seq = vec![5u32, 17, 42, 7];
        let x = full_log_softmax(&p.model, std::slice::from_ref(&seq));
        let y = full_log_softmax(&again.model, std::slice::from_ref(&seq));
        assert_eq!(x, y, "{name}: outputs differ after the round trip");
        std::fs::remove_dir_all(&dir).ok();
    }
}
