//! Weight I/O. Every on-disk format (HF safetensors, GGUF) is read into one host-side interchange,
//! `WeightMap`: tensors by their Hugging Face name, as f32 in HF's layout (linear weights `[out, in]`).
//! The transformer is then built from a `WeightMap`, and saved back through one.

pub mod gguf;
pub mod safetensors;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

/// A dense f32 tensor on the host, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }
}

/// Tensors by Hugging Face name, plus the file they came from (for error messages).
#[derive(Debug, Clone, Default)]
pub struct WeightMap {
    pub source: PathBuf,
    pub tensors: BTreeMap<String, HostTensor>,
}

impl WeightMap {
    pub fn new(source: impl Into<PathBuf>) -> Self {
        Self {
            source: source.into(),
            tensors: BTreeMap::new(),
        }
    }

    pub fn insert(&mut self, name: impl Into<String>, tensor: HostTensor) {
        self.tensors.insert(name.into(), tensor);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Removes and returns tensor `name`, checking its shape; errors name the file and tensor.
    pub fn take(&mut self, name: &str, expected: &[usize]) -> Result<HostTensor> {
        let tensor = self
            .tensors
            .remove(name)
            .ok_or_else(|| ModelError::MissingTensor {
                file: self.source.clone(),
                tensor: name.to_string(),
            })?;
        if tensor.shape != expected {
            return Err(ModelError::TensorShape {
                file: self.source.clone(),
                tensor: name.to_string(),
                expected: expected.to_vec(),
                actual: tensor.shape,
            });
        }
        Ok(tensor)
    }

    pub fn source(&self) -> &Path {
        &self.source
    }
}
