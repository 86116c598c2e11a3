//! Bad input gets a clear error naming the file, tensor or field, never a panic; plus GGUF files
//! written here by hand from the format's definition (llama.cpp's `gguf` layout and block formats),
//! so the reader is checked against the spec rather than against itself.

mod common;

use std::path::Path;

use common::*;
use laser_model::backend::{Cpu, CpuDevice};
use laser_model::pretrained;
use laser_model::weights::{HostTensor, WeightMap, gguf, safetensors};
use laser_model::{GenerationRequest, ModelError, SamplingParams, ScoreItem, generate, score};

fn copy_fixture(name: &str, tag: &str) -> std::path::PathBuf {
    let dir = scratch_dir(tag);
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture_dir(name).join(f), dir.join(f)).unwrap();
    }
    dir
}

fn load_err(dir: &Path) -> String {
    match pretrained::load::<Cpu>(dir, &CpuDevice::default()) {
        Ok(_) => panic!("{} loaded but should have failed", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_config_json_names_the_file() {
    let dir = copy_fixture("tiny-qwen2", "no-config");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let msg = load_err(&dir);
    assert!(msg.contains("config.json"), "{msg}");
}

#[test]
fn corrupt_config_json_names_the_file() {
    let dir = copy_fixture("tiny-qwen2", "corrupt-config");
    std::fs::write(
        dir.join("config.json"),
        "{\"architectures\": [\"Qwen2ForCausalLM\"], ",
    )
    .unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("config.json") && msg.contains("not valid JSON"),
        "{msg}"
    );

    // Valid JSON, but a field of the wrong type: the field is named.
    let mut cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir("tiny-qwen2").join("config.json")).unwrap(),
    )
    .unwrap();
    cfg["hidden_size"] = "sixty-four".into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("config.json") && msg.contains("`hidden_size`"),
        "{msg}"
    );

    cfg = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir("tiny-qwen2").join("config.json")).unwrap(),
    )
    .unwrap();
    cfg.as_object_mut().unwrap().remove("num_hidden_layers");
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let msg = load_err(&dir);
    assert!(msg.contains("missing field `num_hidden_layers`"), "{msg}");
}

#[test]
fn unknown_architecture_is_named() {
    let dir = copy_fixture("tiny-llama", "unknown-arch");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    cfg["architectures"] = serde_json::json!(["MambaForCausalLM"]);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let err = pretrained::load::<Cpu>(&dir, &CpuDevice::default())
        .err()
        .unwrap();
    assert!(
        matches!(err, ModelError::UnknownArchitecture { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("MambaForCausalLM") && msg.contains("config.json"),
        "{msg}"
    );
}

#[test]
fn unsupported_rope_scaling_is_rejected_by_name() {
    let dir = copy_fixture("tiny-llama", "rope-scaling");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    cfg["rope_parameters"] =
        serde_json::json!({"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0});
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let msg = load_err(&dir);
    assert!(msg.contains("rope_parameters"), "{msg}");
}

fn rewrite_weights(dir: &Path, edit: impl FnOnce(&mut WeightMap)) {
    let path = dir.join("model.safetensors");
    let mut w = safetensors::load_file(&path).unwrap();
    edit(&mut w);
    safetensors::save_file(&w, &path).unwrap();
}

#[test]
fn missing_tensor_names_tensor_and_file() {
    let dir = copy_fixture("tiny-qwen2", "missing-tensor");
    rewrite_weights(&dir, |w| {
        w.tensors
            .remove("model.layers.1.mlp.up_proj.weight")
            .unwrap();
    });
    let msg = load_err(&dir);
    assert!(
        msg.contains("model.layers.1.mlp.up_proj.weight") && msg.contains("model.safetensors"),
        "{msg}"
    );
}

#[test]
fn mis_shaped_tensor_names_tensor_and_shapes() {
    let dir = copy_fixture("tiny-qwen2", "bad-shape");
    rewrite_weights(&dir, |w| {
        w.insert(
            "model.layers.0.self_attn.k_proj.weight",
            HostTensor::new(vec![16, 64], vec![0.0; 16 * 64]),
        );
    });
    let msg = load_err(&dir);
    assert!(
        msg.contains("model.layers.0.self_attn.k_proj.weight"),
        "{msg}"
    );
    assert!(
        msg.contains("[16, 64]") && msg.contains("[32, 64]"),
        "{msg}"
    );
}

#[test]
fn corrupt_safetensors_names_the_file() {
    let dir = copy_fixture("tiny-qwen2", "corrupt-st");
    std::fs::write(
        dir.join("model.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}",
    )
    .unwrap();
    let msg = load_err(&dir);
    assert!(msg.contains("model.safetensors"), "{msg}");
}

#[test]
fn generation_rejects_empty_batches_empty_prompts_and_overlong_prompts() {
    let p = load("tiny-qwen2");
    let req = |prompts: Vec<Vec<u32>>, max_new| GenerationRequest {
        prompts,
        n: 2,
        params: SamplingParams::greedy(max_new),
        eos_token_ids: vec![2],
        self_reward: None,
    };
    let err = generate(&p.model, None, &req(vec![], 4)).unwrap_err();
    assert!(matches!(err, ModelError::EmptyBatch), "{err}");
    let err = generate(&p.model, None, &req(vec![vec![1, 2], vec![]], 4)).unwrap_err();
    assert!(matches!(err, ModelError::EmptyPrompt { index: 1 }), "{err}");
    // Context is 256: a 250-token prompt plus 10 new tokens does not fit.
    let err = generate(&p.model, None, &req(vec![vec![5; 250]], 10)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            ModelError::PromptTooLong {
                index: 0,
                len: 250,
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("256"), "{msg}");
    let err = generate(&p.model, None, &req(vec![vec![5, 9999]], 4)).unwrap_err();
    assert!(
        matches!(err, ModelError::TokenOutOfRange { id: 9999, .. }),
        "{err}"
    );
    let mut bad = req(vec![vec![5]], 4);
    bad.params.top_p = 0.0;
    assert!(
        generate(&p.model, None, &bad)
            .unwrap_err()
            .to_string()
            .contains("top_p")
    );

    let err = score(&p.model, &[], 3).err().unwrap();
    assert!(matches!(err, ModelError::EmptyBatch));
    let long = vec![5u32; 250];
    let err = score(
        &p.model,
        &[ScoreItem {
            prompt: &long,
            response: &[1; 10],
        }],
        3,
    )
    .err()
    .unwrap();
    assert!(matches!(err, ModelError::PromptTooLong { .. }), "{err}");
}

// ---- GGUF, written by hand --------------------------------------------------------------------

enum Meta {
    U32(u32),
    F32(f32),
    Str(&'static str),
}

struct GgufTensor {
    name: String,
    /// Hugging Face shape `[rows, cols]` or `[n]`; written to GGUF as reversed dims.
    shape: Vec<usize>,
    ggml_type: u32,
    bytes: Vec<u8>,
}

fn gguf_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn write_gguf(path: &Path, meta: &[(&str, Meta)], tensors: &[GgufTensor]) {
    const ALIGN: usize = 32;
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((meta.len() as u64).to_le_bytes());
    for (key, value) in meta {
        gguf_string(&mut out, key);
        match value {
            Meta::U32(v) => {
                out.extend(4u32.to_le_bytes());
                out.extend(v.to_le_bytes());
            }
            Meta::F32(v) => {
                out.extend(6u32.to_le_bytes());
                out.extend(v.to_le_bytes());
            }
            Meta::Str(s) => {
                out.extend(8u32.to_le_bytes());
                gguf_string(&mut out, s);
            }
        }
    }
    let mut offset = 0usize;
    for t in tensors {
        gguf_string(&mut out, &t.name);
        out.extend((t.shape.len() as u32).to_le_bytes());
        for d in t.shape.iter().rev() {
            out.extend((*d as u64).to_le_bytes());
        }
        out.extend(t.ggml_type.to_le_bytes());
        out.extend((offset as u64).to_le_bytes());
        offset += t.bytes.len().div_ceil(ALIGN) * ALIGN;
    }
    out.resize(out.len().div_ceil(ALIGN) * ALIGN, 0);
    for t in tensors {
        out.extend(&t.bytes);
        out.resize(out.len().div_ceil(ALIGN) * ALIGN, 0);
    }
    std::fs::write(path, out).unwrap();
}

fn f32_bytes(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// llama.cpp's converter permutes q/k rows for its interleaved RoPE: GGUF row `h*2*half + 2d + j`
/// holds HF row `h*2*half + j*half + d`.
fn permute_rows(t: &HostTensor, heads: usize) -> Vec<f32> {
    let (rows, cols) = (t.shape[0], t.shape[1]);
    let half = rows / heads / 2;
    let mut out = vec![0.0; rows * cols];
    for h in 0..heads {
        for j in 0..2 {
            for d in 0..half {
                let hf = h * 2 * half + j * half + d;
                let gg = h * 2 * half + 2 * d + j;
                out[gg * cols..(gg + 1) * cols]
                    .copy_from_slice(&t.data[hf * cols..(hf + 1) * cols]);
            }
        }
    }
    out
}

/// The tiny Llama fixture as an F32 GGUF file (llama.cpp naming and q/k permutation).
fn tiny_llama_gguf_tensors() -> (Vec<(&'static str, Meta)>, Vec<GgufTensor>) {
    let p = load("tiny-llama");
    let c = p.model.config.clone();
    let w = p.model.to_weights();
    let meta = vec![
        ("general.architecture", Meta::Str("llama")),
        ("llama.block_count", Meta::U32(c.num_hidden_layers as u32)),
        (
            "llama.context_length",
            Meta::U32(c.max_position_embeddings as u32),
        ),
        ("llama.embedding_length", Meta::U32(c.hidden_size as u32)),
        (
            "llama.feed_forward_length",
            Meta::U32(c.intermediate_size as u32),
        ),
        (
            "llama.attention.head_count",
            Meta::U32(c.num_attention_heads as u32),
        ),
        (
            "llama.attention.head_count_kv",
            Meta::U32(c.num_key_value_heads as u32),
        ),
        ("llama.rope.freq_base", Meta::F32(c.rope_theta as f32)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Meta::F32(c.rms_norm_eps as f32),
        ),
    ];
    let mut tensors = vec![];
    let mut push = |name: String, t: &HostTensor, data: Vec<f32>| {
        tensors.push(GgufTensor {
            name,
            shape: t.shape.clone(),
            ggml_type: 0,
            bytes: f32_bytes(&data),
        })
    };
    let e = &w.tensors["model.embed_tokens.weight"];
    push("token_embd.weight".into(), e, e.data.clone());
    let n = &w.tensors["model.norm.weight"];
    push("output_norm.weight".into(), n, n.data.clone());
    for l in 0..c.num_hidden_layers {
        let get = |s: &str| &w.tensors[&format!("model.layers.{l}.{s}")];
        let q = get("self_attn.q_proj.weight");
        push(
            format!("blk.{l}.attn_q.weight"),
            q,
            permute_rows(q, c.num_attention_heads),
        );
        let k = get("self_attn.k_proj.weight");
        push(
            format!("blk.{l}.attn_k.weight"),
            k,
            permute_rows(k, c.num_key_value_heads),
        );
        for (g, hf) in [
            ("attn_v.weight", "self_attn.v_proj.weight"),
            ("attn_output.weight", "self_attn.o_proj.weight"),
            ("ffn_gate.weight", "mlp.gate_proj.weight"),
            ("ffn_up.weight", "mlp.up_proj.weight"),
            ("ffn_down.weight", "mlp.down_proj.weight"),
            ("attn_norm.weight", "input_layernorm.weight"),
            ("ffn_norm.weight", "post_attention_layernorm.weight"),
        ] {
            let t = get(hf);
            push(format!("blk.{l}.{g}"), t, t.data.clone());
        }
    }
    (meta, tensors)
}

#[test]
fn gguf_f32_llama_equals_the_safetensors_model() {
    let (meta, tensors) = tiny_llama_gguf_tensors();
    let dir = scratch_dir("gguf-f32");
    let path = dir.join("tiny-llama-f32.gguf");
    write_gguf(&path, &meta, &tensors);
    let g = pretrained::load::<Cpu>(&path, &CpuDevice::default()).unwrap();
    let hf = load("tiny-llama");
    assert!(
        g.model.config.tie_word_embeddings,
        "no output.weight means a tied head"
    );
    assert!(g.tokenizer.is_none());
    let seq = vec![1u32, 40, 41, 300, 7, 2];
    let a = full_log_softmax(&g.model, std::slice::from_ref(&seq));
    let b = full_log_softmax(&hf.model, std::slice::from_ref(&seq));
    let diff = max_abs_diff(&a[0], &b[0]);
    assert!(
        diff <= 1e-5,
        "GGUF (un-permuted q/k) vs safetensors: {diff}"
    );
}

#[test]
fn gguf_with_an_unsupported_quantisation_names_tensor_and_type() {
    let (meta, mut tensors) = tiny_llama_gguf_tensors();
    let last = tensors.last_mut().unwrap();
    last.ggml_type = 13; // Q5_K
    let name = last.name.clone();
    let dir = scratch_dir("gguf-q5k");
    let path = dir.join("q5k.gguf");
    write_gguf(&path, &meta, &tensors);
    let err = pretrained::load::<Cpu>(&path, &CpuDevice::default())
        .err()
        .unwrap();
    assert!(
        matches!(err, ModelError::UnsupportedQuantization { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&name) && msg.contains("Q5_K") && msg.contains("q5k.gguf"),
        "{msg}"
    );
}

#[test]
fn gguf_truncated_or_foreign_files_are_clear_errors() {
    let (meta, tensors) = tiny_llama_gguf_tensors();
    let dir = scratch_dir("gguf-truncated");
    let path = dir.join("cut.gguf");
    write_gguf(&path, &meta, &tensors);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let msg = pretrained::load::<Cpu>(&path, &CpuDevice::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("cut.gguf") && msg.contains("truncated"),
        "{msg}"
    );

    let other = dir.join("other.gguf");
    std::fs::write(
        &other,
        b"PK\x03\x04 this is a zip file, not a GGUF file at all",
    )
    .unwrap();
    let msg = pretrained::load::<Cpu>(&other, &CpuDevice::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("other.gguf") && msg.contains("not a GGUF file"),
        "{msg}"
    );

    let (mut meta, tensors) = tiny_llama_gguf_tensors();
    meta[0].1 = Meta::Str("mamba");
    let arch = dir.join("mamba.gguf");
    write_gguf(&arch, &meta, &tensors);
    let err = pretrained::load::<Cpu>(&arch, &CpuDevice::default())
        .err()
        .unwrap();
    assert!(
        matches!(err, ModelError::UnsupportedGgufArchitecture { .. }),
        "{err}"
    );
}

/// Block formats, from ggml's definitions: Q8_0 = f16 d + 32 i8 (x = d*q); Q4_0 = f16 d + 16 bytes
/// (x = d*(q-8), element j in the low nibble of byte j, element j+16 in the high nibble); Q4_1 =
/// f16 d + f16 m + 16 bytes (x = d*q + m). Values are chosen exactly representable, so the
/// dequantised tensor must equal the expectation exactly.
#[test]
fn gguf_block_formats_dequantise_exactly() {
    let d = half::f16::from_f32(0.5);
    let m = half::f16::from_f32(-1.25);
    let mut q8 = d.to_le_bytes().to_vec();
    let q8_vals: Vec<i8> = (0..32).map(|i| (i as i8 - 16) * 3).collect();
    q8.extend(q8_vals.iter().map(|&q| q as u8));
    let q8_want: Vec<f32> = q8_vals.iter().map(|&q| 0.5 * q as f32).collect();

    let nib: Vec<u8> = (0..32).map(|i| ((i * 7) % 16) as u8).collect();
    let packed: Vec<u8> = (0..16).map(|j| nib[j] | (nib[j + 16] << 4)).collect();
    let mut q40 = d.to_le_bytes().to_vec();
    q40.extend(&packed);
    let q40_want: Vec<f32> = nib.iter().map(|&q| 0.5 * (q as f32 - 8.0)).collect();
    let mut q41 = d.to_le_bytes().to_vec();
    q41.extend(m.to_le_bytes());
    q41.extend(&packed);
    let q41_want: Vec<f32> = nib.iter().map(|&q| 0.5 * q as f32 - 1.25).collect();
    let f16_vals: Vec<f32> = (0..32).map(|i| i as f32 * 0.25 - 3.0).collect();
    let f16_bytes: Vec<u8> = f16_vals
        .iter()
        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
        .collect();

    let t = |name: &str, ggml_type, bytes| GgufTensor {
        name: name.into(),
        shape: vec![1, 32],
        ggml_type,
        bytes,
    };
    let dir = scratch_dir("gguf-blocks");
    let path = dir.join("blocks.gguf");
    write_gguf(
        &path,
        &[("general.architecture", Meta::Str("llama"))],
        &[
            t("q8", 8, q8),
            t("q40", 2, q40),
            t("q41", 3, q41),
            t("f16", 1, f16_bytes),
        ],
    );
    let file = gguf::GgufFile::open(&path).unwrap();
    for (name, want) in [
        ("q8", q8_want),
        ("q40", q40_want),
        ("q41", q41_want),
        ("f16", f16_vals),
    ] {
        let got = file.dequantize(file.tensor_info(name).unwrap()).unwrap();
        assert_eq!(got.shape, vec![1, 32], "{name}");
        assert_eq!(got.data, want, "{name}");
    }
}
