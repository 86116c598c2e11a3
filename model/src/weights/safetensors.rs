//! Hugging Face safetensors: single files and sharded ones (`model.safetensors.index.json`), in f32,
//! bf16 and f16, read into a `WeightMap`; and saving a `WeightMap` back as f32 `model.safetensors`
//! that transformers loads as is.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::{HostTensor, WeightMap};
use crate::error::{ModelError, Result};

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Loads every tensor of a HF model directory (single or sharded checkpoint).
pub fn load_dir(dir: &Path) -> Result<WeightMap> {
    let index = dir.join(INDEX_FILE);
    if index.exists() {
        return load_sharded(&index);
    }
    let single = dir.join(SINGLE_FILE);
    if single.exists() {
        return load_file(&single);
    }
    Err(ModelError::Format {
        file: dir.to_path_buf(),
        message: format!("no {SINGLE_FILE} or {INDEX_FILE} in this directory"),
    })
}

/// Loads one `.safetensors` file.
pub fn load_file(path: &Path) -> Result<WeightMap> {
    let mut map = WeightMap::new(path);
    read_into(path, &mut map, None)?;
    Ok(map)
}

fn load_sharded(index_path: &Path) -> Result<WeightMap> {
    let text = std::fs::read_to_string(index_path).map_err(|e| ModelError::io(index_path, e))?;
    let bad = |message: String| ModelError::Format {
        file: index_path.to_path_buf(),
        message,
    };
    let index: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let weight_map = index
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("missing object `weight_map`".into()))?;
    // shard file -> the tensor names the index assigns to it
    let mut shards: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, file) in weight_map {
        let file = file
            .as_str()
            .ok_or_else(|| bad(format!("`weight_map.{name}` is not a file name")))?;
        if file.contains('/') || file.contains("..") {
            return Err(bad(format!(
                "shard name {file:?} must be a plain file name"
            )));
        }
        shards
            .entry(file.to_string())
            .or_default()
            .push(name.clone());
    }
    let dir = index_path.parent().unwrap_or(Path::new("."));
    let mut map = WeightMap::new(index_path);
    for (file, names) in shards {
        let shard = dir.join(&file);
        read_into(&shard, &mut map, Some(&names))?;
    }
    Ok(map)
}

/// Reads tensors of `path` into `map`; with `expected`, checks the shard holds exactly those names.
fn read_into(path: &Path, map: &mut WeightMap, expected: Option<&[String]>) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| ModelError::Format {
        file: path.to_path_buf(),
        message: format!("not a valid safetensors file: {e}"),
    })?;
    if let Some(expected) = expected {
        for name in expected {
            if st.tensor(name).is_err() {
                return Err(ModelError::MissingTensor {
                    file: path.to_path_buf(),
                    tensor: name.clone(),
                });
            }
        }
    }
    for (name, view) in st.tensors() {
        let data = to_f32(path, &name, &view)?;
        map.insert(name, HostTensor::new(view.shape().to_vec(), data));
    }
    Ok(())
}

fn to_f32(path: &Path, name: &str, view: &TensorView<'_>) -> Result<Vec<f32>> {
    let raw = view.data();
    let out = match view.dtype() {
        Dtype::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => raw
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => raw
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => {
            return Err(ModelError::TensorFormat {
                file: path.to_path_buf(),
                tensor: name.to_string(),
                message: format!("dtype {other:?} is not supported (f32, f16 and bf16 are)"),
            });
        }
    };
    Ok(out)
}

/// Writes `weights` as one f32 `model.safetensors` in `dir` (created if needed), with the
/// `format: pt` metadata transformers expects. Returns the file path.
pub fn save_dir(weights: &WeightMap, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let path = dir.join(SINGLE_FILE);
    save_file(weights, &path)?;
    Ok(path)
}

pub fn save_file(weights: &WeightMap, path: &Path) -> Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = weights
        .tensors
        .iter()
        .map(|(name, t)| {
            let raw = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
            (name.clone(), t.shape.clone(), raw)
        })
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (name, shape, raw) in &bytes {
        let view = TensorView::new(Dtype::F32, shape.clone(), raw).map_err(|e| {
            ModelError::TensorFormat {
                file: path.to_path_buf(),
                tensor: name.clone(),
                message: e.to_string(),
            }
        })?;
        views.push((name.as_str(), view));
    }
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), path).map_err(|e| ModelError::Format {
        file: path.to_path_buf(),
        message: format!("writing safetensors failed: {e}"),
    })
}
