//! Shared helpers for the model integration tests: the committed tiny fixtures and a full-recompute
//! reference forward pass (no KV cache) to compare the engine against.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use laser_model::Transformer;
use laser_model::backend::{Cpu, CpuDevice};
use laser_model::pretrained::{self, Pretrained};
use laser_model::transformer::ForwardBatch;
use serde_json::Value;

pub const FIXTURES: [&str; 2] = ["tiny-qwen2", "tiny-llama"];

/// The committed fixtures: `model/tests/fixtures`, or `$LASER_MODEL_FIXTURES` when set (a test
/// executable run on another machine, where the compile-time manifest path does not exist).
pub fn fixtures_root() -> PathBuf {
    match std::env::var_os("LASER_MODEL_FIXTURES") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"),
    }
}

pub fn fixture_dir(name: &str) -> PathBuf {
    fixtures_root().join(name)
}

pub fn load(name: &str) -> Pretrained<Cpu> {
    load_on::<Cpu>(name, &CpuDevice::default())
}

/// A committed fixture loaded onto `device` of backend `B`.
pub fn load_on<B: Backend>(name: &str, device: &B::Device) -> Pretrained<B> {
    let dir = fixture_dir(name);
    pretrained::load::<B>(&dir, device)
        .unwrap_or_else(|e| panic!("loading committed fixture {}: {e}", dir.display()))
}

pub fn expected(name: &str) -> Value {
    let path = fixture_dir(name).join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (regenerate with scripts/gen_model_fixtures.py)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array of token ids")
        .iter()
        .map(|x| x.as_u64().expect("token id") as u32)
        .collect()
}

pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array of floats")
        .iter()
        .map(|x| x.as_f64().expect("float") as f32)
        .collect()
}

/// log_softmax of the logits at every position of each sequence, computed by one batched forward
/// pass with left padding and no cache. Returns, per sequence, `[len][vocab]` flattened.
pub fn full_log_softmax<B: Backend>(model: &Transformer<B>, seqs: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let b = seqs.len();
    let t = seqs.iter().map(Vec::len).max().unwrap();
    let mut batch = ForwardBatch {
        batch: b,
        seq: t,
        tokens: vec![],
        positions: vec![],
        left_pad: vec![],
    };
    for s in seqs {
        let pad = t - s.len();
        batch
            .tokens
            .extend(std::iter::repeat_n(0, pad).chain(s.iter().copied()));
        batch
            .positions
            .extend(std::iter::repeat_n(0, pad).chain(0..s.len()));
        batch.left_pad.push(pad);
    }
    let h = model.config.hidden_size;
    let v = model.config.vocab_size;
    let hidden = model.hidden_states(&batch, None).reshape([b * t, h]);
    let lsm = log_softmax(model.logits(hidden), 1);
    let all: Vec<f32> = lsm.into_data().convert::<f32>().into_vec().unwrap();
    seqs.iter()
        .enumerate()
        .map(|(i, s)| {
            let pad = t - s.len();
            all[(i * t + pad) * v..(i + 1) * t * v].to_vec()
        })
        .collect()
}

/// Largest |a - b|; infinite when either side has a NaN (which `f32::max` would otherwise skip).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (x - y).abs();
            if d.is_nan() { f32::INFINITY } else { d }
        })
        .fold(0.0, f32::max)
}

pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("laser-model-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
