//! HF safetensors reader/writer.
