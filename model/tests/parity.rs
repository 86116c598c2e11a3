//! Numerical parity with Hugging Face transformers (f32) on the committed tiny fixtures
//! (scripts/gen_model_fixtures.py): full log-softmax at every position, greedy generation token for
//! token, and a save -> load round trip through the Hugging Face layout.
//!
//! Each check is generic over the burn backend and runs in `mod cpu` (always) and, in a build with
//! the `cuda` feature, in `mod cuda` — only when `LASER_TEST_CUDA=1` is set, since CI has no GPU.
//! Every check prints the max |diff| it measured (visible with `--nocapture`). A test executable
//! run away from this checkout finds the fixtures through `LASER_MODEL_FIXTURES`.

mod common;

use burn::tensor::backend::Backend;
use common::*;
use laser_model::pretrained;
use laser_model::{GenerationRequest, SamplingParams, generate};

/// CPU (burn-flex, f32) against transformers (f32, CPU).
const LOGPROB_TOL: f32 = 1e-4;

/// Fails with every recorded failure, after all fixtures and cases were measured and printed.
/// (`max_abs_diff` reports a NaN as an infinite difference, so `diff > tol` catches it.)
fn finish(label: &str, check: &str, worst: f32, tol: f32, failures: &[String]) {
    eprintln!("[{label}] {check}: overall max |diff| {worst:.3e} (tolerance {tol:.0e})");
    assert!(
        failures.is_empty(),
        "[{label}] {check}:\n{}",
        failures.join("\n")
    );
}

fn log_softmax_rows(case: &serde_json::Value) -> Vec<f32> {
    case["log_softmax"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(floats)
        .collect()
}

fn log_softmax_one_sequence_at_a_time<B: Backend>(device: &B::Device, tol: f32, label: &str) {
    let check = "log_softmax, one sequence at a time";
    let (mut worst, mut failures) = (0f32, Vec::new());
    for name in FIXTURES {
        let p = load_on::<B>(name, device);
        let exp = expected(name);
        let cases = exp["logprob_cases"].as_array().unwrap();
        assert_eq!(cases.len(), 3, "{name}: fixture should hold 3 cases");
        for (i, case) in cases.iter().enumerate() {
            let input = ids(&case["input_ids"]);
            let want = log_softmax_rows(case);
            let got = &full_log_softmax(&p.model, std::slice::from_ref(&input))[0];
            let diff = max_abs_diff(got, &want);
            eprintln!("[{label}] {check}: {name} case {i}: max |diff| {diff:.3e}");
            worst = worst.max(diff);
            if diff > tol {
                failures.push(format!("{name} case {i}: max |diff| {diff} > {tol}"));
            }
        }
    }
    finish(label, check, worst, tol, &failures);
}

fn log_softmax_in_a_left_padded_batch<B: Backend>(device: &B::Device, tol: f32, label: &str) {
    // All cases in one batch: the two shorter ones are left-padded, which must not change anything.
    let check = "log_softmax, left-padded batch";
    let (mut worst, mut failures) = (0f32, Vec::new());
    for name in FIXTURES {
        let p = load_on::<B>(name, device);
        let exp = expected(name);
        let cases = exp["logprob_cases"].as_array().unwrap();
        let seqs: Vec<Vec<u32>> = cases.iter().map(|c| ids(&c["input_ids"])).collect();
        let got = full_log_softmax(&p.model, &seqs);
        for (i, case) in cases.iter().enumerate() {
            let diff = max_abs_diff(&got[i], &log_softmax_rows(case));
            eprintln!("[{label}] {check}: {name} batched case {i}: max |diff| {diff:.3e}");
            worst = worst.max(diff);
            if diff > tol {
                failures.push(format!(
                    "{name} batched case {i}: max |diff| {diff} > {tol}"
                ));
            }
        }
    }
    finish(label, check, worst, tol, &failures);
}

fn greedy_generation_token_for_token<B: Backend>(device: &B::Device, tol: f32, label: &str) {
    let check = "greedy generation";
    let (mut worst, mut failures) = (0f32, Vec::new());
    for name in FIXTURES {
        let p = load_on::<B>(name, device);
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
        let gap = g["min_top2_gap"].as_f64().unwrap_or(f64::NAN);
        for (i, s) in samples.iter().enumerate() {
            let want = ids(&g["outputs"][i]);
            assert_eq!(s.prompt_index, i);
            if s.tokens != want {
                let at = s
                    .tokens
                    .iter()
                    .zip(&want)
                    .take_while(|(a, b)| a == b)
                    .count();
                eprintln!(
                    "[{label}] {check}: {name} prompt {i}: TOKENS DIFFER from position {at} \
                     (fixture's smallest top-1/top-2 logit gap {gap:.3e})"
                );
                failures.push(format!(
                    "{name} prompt {i}: greedy tokens differ from position {at}: got {:?}, want {:?}",
                    s.tokens, want
                ));
                continue;
            }
            let diff = max_abs_diff(&s.logprobs, &floats(&g["output_logprobs"][i]));
            eprintln!(
                "[{label}] {check}: {name} prompt {i}: {} tokens identical, log-prob max |diff| {diff:.3e}",
                s.tokens.len()
            );
            worst = worst.max(diff);
            if diff > tol {
                failures.push(format!(
                    "{name} prompt {i}: greedy log-probs differ by {diff} > {tol}"
                ));
            }
        }
    }
    finish(label, check, worst, tol, &failures);
}

/// Load on `device`, save (HF layout), load the saved directory on `device` again: config and
/// weights must be identical, and so must the outputs, up to `output_tol` (0: bit for bit).
fn save_then_load_round_trip<B: Backend>(device: &B::Device, output_tol: f32, label: &str) {
    let check = "save -> load round trip, outputs";
    let mut worst = 0f32;
    for name in FIXTURES {
        let p = load_on::<B>(name, device);
        let dir = scratch_dir(&format!("roundtrip-{label}-{name}"));
        pretrained::save(&p.model, p.tokenizer.as_ref(), &dir).unwrap();
        let again = pretrained::load::<B>(&dir, device).unwrap();
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
        eprintln!(
            "[{label}] save -> load round trip: {name}: config and {} tensors identical",
            a.tensors.len()
        );
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
        let diff = max_abs_diff(&x[0], &y[0]);
        eprintln!("[{label}] {check}: {name}: max |diff| {diff:.3e}");
        worst = worst.max(diff);
        if output_tol == 0.0 {
            assert_eq!(x, y, "{name}: outputs differ after the round trip");
        } else {
            assert!(
                diff <= output_tol,
                "{name}: outputs differ after the round trip by {diff} > {output_tol}"
            );
        }
        std::fs::remove_dir_all(&dir).ok();
    }
    eprintln!("[{label}] {check}: overall max |diff| {worst:.3e} (tolerance {output_tol:.0e})");
}

mod cpu {
    use laser_model::backend::{Cpu, CpuDevice};

    use super::LOGPROB_TOL;

    const LABEL: &str = "cpu";

    #[test]
    fn log_softmax_matches_transformers_one_sequence_at_a_time() {
        super::log_softmax_one_sequence_at_a_time::<Cpu>(&CpuDevice::default(), LOGPROB_TOL, LABEL);
    }

    #[test]
    fn log_softmax_matches_transformers_in_a_left_padded_batch() {
        super::log_softmax_in_a_left_padded_batch::<Cpu>(&CpuDevice::default(), LOGPROB_TOL, LABEL);
    }

    #[test]
    fn greedy_generation_matches_transformers_token_for_token() {
        super::greedy_generation_token_for_token::<Cpu>(&CpuDevice::default(), LOGPROB_TOL, LABEL);
    }

    #[test]
    fn save_then_load_round_trips_weights_and_config() {
        // Same device, same kernels: bit-identical outputs.
        super::save_then_load_round_trip::<Cpu>(&CpuDevice::default(), 0.0, LABEL);
    }
}

/// Built only with `--features cuda` (CI never does) and run only with `LASER_TEST_CUDA=1`.
#[cfg(feature = "cuda")]
mod cuda {
    use laser_model::backend::Cuda;
    use laser_model::backend::CudaDevice;

    const LABEL: &str = "cuda";

    /// CUDA (burn-cuda / cubecl, f32) against transformers (f32, CPU). Looser than the CPU's 1e-4:
    /// cubecl runs f32 matmuls on tensor cores in TF32 (inputs rounded to a 10-bit mantissa,
    /// relative error ~5e-4 per operand, accumulated in f32), and GPU reductions sum in another
    /// order. Measured on an H200 (2026-11-26, bench/gpu_check.sh): the greedy tokens were
    /// identical and their log-probs within 4.4e-3; the full log-softmax over the vocabulary was
    /// within 1.75e-2, the worst entries being the low-probability tail (log-probs near -15, where
    /// TF32's relative error is largest in absolute terms). The model code is the same generic burn
    /// code the CPU tests hold to 1e-4, so these tolerances check the backend, not the model logic.
    const CUDA_LOGPROB_TOL: f32 = 5e-3;
    const CUDA_FULL_VOCAB_TOL: f32 = 2.5e-2;

    /// The reloaded model runs the same kernels on the same inputs (measured: identical outputs);
    /// kernel selection could still differ between the two passes, so this is not asserted bit-exact.
    const CUDA_ROUND_TRIP_TOL: f32 = 1e-3;

    fn device(test: &str) -> Option<CudaDevice> {
        if std::env::var("LASER_TEST_CUDA").as_deref() == Ok("1") {
            Some(CudaDevice::default())
        } else {
            eprintln!("SKIPPED cuda::{test}: set LASER_TEST_CUDA=1 to run the CUDA parity tests");
            None
        }
    }

    #[test]
    fn log_softmax_matches_transformers_one_sequence_at_a_time() {
        let Some(d) = device("log_softmax_matches_transformers_one_sequence_at_a_time") else {
            return;
        };
        super::log_softmax_one_sequence_at_a_time::<Cuda>(&d, CUDA_FULL_VOCAB_TOL, LABEL);
    }

    #[test]
    fn log_softmax_matches_transformers_in_a_left_padded_batch() {
        let Some(d) = device("log_softmax_matches_transformers_in_a_left_padded_batch") else {
            return;
        };
        super::log_softmax_in_a_left_padded_batch::<Cuda>(&d, CUDA_FULL_VOCAB_TOL, LABEL);
    }

    #[test]
    fn greedy_generation_matches_transformers_token_for_token() {
        let Some(d) = device("greedy_generation_matches_transformers_token_for_token") else {
            return;
        };
        super::greedy_generation_token_for_token::<Cuda>(&d, CUDA_LOGPROB_TOL, LABEL);
    }

    #[test]
    fn save_then_load_round_trips_weights_and_config() {
        let Some(d) = device("save_then_load_round_trips_weights_and_config") else {
            return;
        };
        super::save_then_load_round_trip::<Cuda>(&d, CUDA_ROUND_TRIP_TOL, LABEL);
    }
}
