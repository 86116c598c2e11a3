//! GGUF reader (llama architecture).
