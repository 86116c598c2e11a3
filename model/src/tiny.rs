//! The project's own embedded default policy: a tiny Qwen2-style decoder, a small byte-level BPE
//! tokenizer that reserves the LaSeR z_c token `<|verify|>`, and a seeded random initialisation.
//! Nothing is downloaded: the default job builds this model, writes it as a Hugging Face directory
//! ([`write_default`]), then warm-starts it with SFT on the synthetic arithmetic tasks.
//!
//! The tokenizer is byte-level BPE with Qwen2's pre-tokenizer (the same split regex, digits one by
//! one), so every string round-trips exactly and transformers' `Qwen2Tokenizer` (what
//! `AutoTokenizer` builds for a `qwen2` model, whatever tokenizer_config.json says) encodes exactly
//! as we do. Its vocabulary is the 256 byte symbols, the special tokens, and whole words of the task
//! text (prompt template, step-by-step solutions, chat roles), each reached by a chain of merges;
//! anything else falls back to bytes. Numbers are always one token per digit.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use serde_json::{Value, json};

use crate::config::{Architecture, ModelConfig};
use crate::error::{ModelError, Result};
use crate::tokenizer::Tokenizer;
use crate::transformer::Transformer;
use crate::weights::{HostTensor, WeightMap};

/// End of text: the EOS of plain-text (base model) prompts, and the padding token.
pub const ENDOFTEXT: &str = "<|endoftext|>";
/// ChatML turn delimiters (Qwen's chat format).
pub const IM_START: &str = "<|im_start|>";
pub const IM_END: &str = "<|im_end|>";
/// z_c: the token whose log-probability after EOS is the LaSeR self-reward. Never in training text.
pub const VERIFY_TOKEN: &str = "<|verify|>";

/// Special tokens, at ids 0.. in this order.
pub const SPECIAL_TOKENS: [&str; 4] = [ENDOFTEXT, IM_START, IM_END, VERIFY_TOKEN];

/// Qwen2's ChatML template (without the tool-calling branches).
pub const CHAT_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Whole-word tokens (as they appear after a space or at the start of a pre-token). Covers the
/// paper's prompt suffix, the synthetic questions, the SFT solutions and the chat roles.
const WORDS: &[&str] = &[
    // "Compute 12 + 3 * 4. Please reason step by step, and put your final answer within \boxed{}."
    "Compute",
    "Calculate",
    " Please",
    " reason",
    " step",
    " by",
    " and",
    " put",
    " your",
    " final",
    " answer",
    " within",
    " \\",
    "boxed",
    "{}.",
    // Step-by-step solutions: "8 * 6 = 48. 7 + 48 = 55. The answer is \boxed{55}."
    " +",
    " -",
    " *",
    " /",
    " =",
    " The",
    " is",
    "}.",
    "}{",
    "frac",
    " First",
    " Then",
    " Finally",
    // Chat roles.
    "user",
    "assistant",
    "system",
    // Frequent words of other math prompts.
    " the",
    " of",
    " a",
    " What",
    " what",
    " to",
    " in",
    " number",
    " value",
    " Solve",
    " Find",
    " Calculate",
    " how",
    " many",
];

/// Qwen2's pre-tokenizer split: letters with one leading non-letter, single digits, punctuation
/// runs with an optional leading space, newlines, spaces.
pub const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GPT-2's byte -> printable-char map (printable Latin-1 bytes map to themselves; the rest are
/// shifted to U+0100..), the alphabet of every byte-level BPE.
fn bytes_to_unicode() -> Vec<char> {
    let keep = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut shifted = 0u32;
    (0u32..256)
        .map(|b| {
            if keep(b) {
                char::from_u32(b).expect("a Latin-1 code point")
            } else {
                shifted += 1;
                char::from_u32(255 + shifted).expect("a code point below U+0200")
            }
        })
        .collect()
}

/// Plain BPE on one pre-token: repeatedly join the adjacent pair of lowest merge rank (leftmost on
/// ties), as the `tokenizers` BPE model does.
fn bpe(word: &str, ranks: &HashMap<(String, String), usize>) -> Vec<String> {
    let mut pieces: Vec<String> = word.chars().map(String::from).collect();
    loop {
        let best = (0..pieces.len().saturating_sub(1))
            .filter_map(|i| {
                ranks
                    .get(&(pieces[i].clone(), pieces[i + 1].clone()))
                    .map(|&r| (r, i))
            })
            .min();
        let Some((_, i)) = best else {
            return pieces;
        };
        let right = pieces.remove(i + 1);
        pieces[i].push_str(&right);
    }
}

fn byte_level(text: &str, table: &[char]) -> String {
    text.bytes().map(|b| table[b as usize]).collect()
}

/// The tokenizer.json of the default tokenizer (the `tokenizers` crate / transformers format).
pub fn tokenizer_json() -> Value {
    let table = bytes_to_unicode();
    let mut vocab = serde_json::Map::new();
    let push = |token: String, vocab: &mut serde_json::Map<String, Value>| {
        if !vocab.contains_key(&token) {
            let id = vocab.len();
            vocab.insert(token, id.into());
        }
    };
    for special in SPECIAL_TOKENS {
        push(special.to_string(), &mut vocab);
    }
    for &c in &table {
        push(c.to_string(), &mut vocab);
    }
    // Merges are added word by word (longest first): simulate BPE on the word with the merges so
    // far and join the first two pieces until it is one token. New merges rank after all existing
    // ones, so they never change how an earlier word is split (it was already one token without
    // them). The tests check that every word is one token.
    let mut ranks: HashMap<(String, String), usize> = HashMap::new();
    let mut merges: Vec<Value> = Vec::new();
    let mut words: Vec<&str> = WORDS.to_vec();
    words.sort_by_key(|w| std::cmp::Reverse(w.chars().count()));
    for word in words {
        loop {
            let pieces = bpe(&byte_level(word, &table), &ranks);
            if pieces.len() < 2 {
                break;
            }
            let (a, b) = (pieces[0].clone(), pieces[1].clone());
            push(format!("{a}{b}"), &mut vocab);
            merges.push(json!([a, b]));
            ranks.insert((a, b), ranks.len());
        }
    }
    let added: Vec<Value> = SPECIAL_TOKENS
        .iter()
        .enumerate()
        .map(|(id, content)| {
            json!({
                "id": id, "content": content, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true
            })
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
            ]
        },
        "post_processor": {
            "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true
        },
        "decoder": {
            "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true
        },
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": null,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            "ignore_merges": false,
            "vocab": vocab,
            "merges": merges,
        }
    })
}

/// The default tokenizer: byte-level BPE with the special tokens, EOS `<|endoftext|>` (and
/// `<|im_end|>` for chat turns), and a ChatML chat template.
pub fn build_tokenizer() -> Result<Tokenizer> {
    let bytes = serde_json::to_vec(&tokenizer_json()).expect("a JSON value always serialises");
    let mut tok = Tokenizer::from_json_bytes(&bytes, Path::new("<laser tiny tokenizer>"))?;
    tok.set_eos_token(ENDOFTEXT)?;
    let im_end = tok.token_to_id(IM_END).ok_or_else(|| {
        ModelError::Tokenizer(format!("{IM_END} missing from the tiny vocabulary"))
    })?;
    tok.add_eos_token_id(im_end)?;
    tok.set_chat_template(Some(CHAT_TEMPLATE.to_string()));
    Ok(tok)
}

/// The size knobs of the default model (everything else is Qwen2's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TinyDims {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
}

impl Default for TinyDims {
    /// Sized for the default CPU job: 0.84M parameters (vocabulary 411). On the 2-core dev box an
    /// SFT step of 32 sequences of ~31 tokens took ~0.3 s (~3,300 tok/s forward+backward) and
    /// sampling runs at ~5,000 tok/s (`cargo run -p laser-learner --example sft_warmstart`).
    fn default() -> Self {
        Self {
            hidden_size: 128,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            intermediate_size: 384,
            max_position_embeddings: 512,
        }
    }
}

/// A Qwen2 config for `dims` over the default tokenizer's vocabulary (tied embeddings, as Qwen2's
/// small models have).
pub fn config(dims: TinyDims) -> Result<ModelConfig> {
    let tok = build_tokenizer()?;
    let id = |t: &str| {
        tok.token_to_id(t)
            .ok_or_else(|| ModelError::Tokenizer(format!("{t} missing from the tiny vocabulary")))
    };
    if dims.num_attention_heads == 0
        || dims.num_key_value_heads == 0
        || !dims.hidden_size.is_multiple_of(dims.num_attention_heads)
        || !dims
            .num_attention_heads
            .is_multiple_of(dims.num_key_value_heads)
        || !(dims.hidden_size / dims.num_attention_heads).is_multiple_of(2)
    {
        return Err(ModelError::InvalidOption {
            field: "dims",
            message: format!(
                "hidden_size {} must split into num_attention_heads {} heads of even size, \
                 and the heads into num_key_value_heads {} groups",
                dims.hidden_size, dims.num_attention_heads, dims.num_key_value_heads
            ),
        });
    }
    Ok(ModelConfig {
        architecture: Architecture::Qwen2,
        vocab_size: tok.vocab_size(),
        hidden_size: dims.hidden_size,
        intermediate_size: dims.intermediate_size,
        num_hidden_layers: dims.num_hidden_layers,
        num_attention_heads: dims.num_attention_heads,
        num_key_value_heads: dims.num_key_value_heads,
        head_dim: dims.hidden_size / dims.num_attention_heads,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: true,
        qkv_bias: true,
        o_bias: false,
        mlp_bias: false,
        bos_token_id: None,
        eos_token_ids: vec![id(ENDOFTEXT)?, id(IM_END)?],
        max_position_embeddings: dims.max_position_embeddings,
    })
}

/// The default model's config.
pub fn default_config() -> Result<ModelConfig> {
    config(TinyDims::default())
}

/// SplitMix64: a fixed, portable generator, so the same seed gives the same weights on every
/// platform and every version of `rand`.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn next_open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn next_normal(&mut self) -> f64 {
        let (u1, u2) = (self.next_open01(), self.next_open01());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// transformers' `initializer_range` for Qwen2: weights ~ N(0, 0.02).
pub const INIT_STD: f64 = 0.02;

/// Seeded random weights in HF naming, initialised as transformers' Qwen2 does: linear and
/// embedding weights N(0, 0.02), biases 0, RMSNorm weights 1. Each tensor draws from its own
/// stream (seed mixed with the tensor's name), so adding a layer does not change the others.
pub fn init_weights(config: &ModelConfig, seed: u64) -> WeightMap {
    let c = config;
    let mut w = WeightMap::new("<tiny init>");
    let normal = |name: &str, shape: Vec<usize>| {
        let mut h = 0xcbf2_9ce4_8422_2325u64; // FNV-1a of the name, mixed with the seed.
        for b in name.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        let mut rng = SplitMix64(seed ^ h);
        let n = shape.iter().product();
        let data = (0..n)
            .map(|_| (rng.next_normal() * INIT_STD) as f32)
            .collect();
        HostTensor::new(shape, data)
    };
    let fill = |shape: Vec<usize>, v: f32| {
        let n = shape.iter().product();
        HostTensor::new(shape, vec![v; n])
    };
    let (h, q, kv, ff) = (
        c.hidden_size,
        c.num_attention_heads * c.head_dim,
        c.num_key_value_heads * c.head_dim,
        c.intermediate_size,
    );
    let linear = |w: &mut WeightMap, name: &str, out: usize, inp: usize, bias: bool| {
        w.insert(format!("{name}.weight"), normal(name, vec![out, inp]));
        if bias {
            w.insert(format!("{name}.bias"), fill(vec![out], 0.0));
        }
    };
    w.insert(
        "model.embed_tokens.weight",
        normal("model.embed_tokens", vec![c.vocab_size, h]),
    );
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        w.insert(format!("{p}.input_layernorm.weight"), fill(vec![h], 1.0));
        w.insert(
            format!("{p}.post_attention_layernorm.weight"),
            fill(vec![h], 1.0),
        );
        linear(&mut w, &format!("{p}.self_attn.q_proj"), q, h, c.qkv_bias);
        linear(&mut w, &format!("{p}.self_attn.k_proj"), kv, h, c.qkv_bias);
        linear(&mut w, &format!("{p}.self_attn.v_proj"), kv, h, c.qkv_bias);
        linear(&mut w, &format!("{p}.self_attn.o_proj"), h, q, c.o_bias);
        linear(&mut w, &format!("{p}.mlp.gate_proj"), ff, h, c.mlp_bias);
        linear(&mut w, &format!("{p}.mlp.up_proj"), ff, h, c.mlp_bias);
        linear(&mut w, &format!("{p}.mlp.down_proj"), h, ff, c.mlp_bias);
    }
    w.insert("model.norm.weight", fill(vec![h], 1.0));
    if !c.tie_word_embeddings {
        linear(&mut w, "lm_head", c.vocab_size, h, false);
    }
    w
}

/// A freshly initialised model for `config` (see [`init_weights`]).
pub fn init_model<B: Backend>(
    config: &ModelConfig,
    seed: u64,
    device: &B::Device,
) -> Result<Transformer<B>> {
    Transformer::from_weights(config, init_weights(config, seed), device)
}

/// Writes the default model (dims, seeded init, tokenizer) as a Hugging Face directory: config.json,
/// model.safetensors, tokenizer.json and tokenizer_config.json, loadable by
/// [`crate::pretrained::load`] and by transformers.
pub fn write_default<B: Backend>(
    dims: TinyDims,
    seed: u64,
    dir: &Path,
    device: &B::Device,
) -> Result<()> {
    let config = config(dims)?;
    let tokenizer = build_tokenizer()?;
    let model = init_model::<B>(&config, seed, device)?;
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    crate::pretrained::save(&model, Some(&tokenizer), dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;

    const TASK_TEXT: &[&str] = &[
        "Compute 47 * 83 - 12. Please reason step by step, and put your final answer within \\boxed{}.",
        "47 * 83 = 3901. 3901 - 12 = 3889. The answer is \\boxed{3889}.",
        "Compute 6 / 4 + 1. 6 / 4 = \\frac{3}{2}. \\frac{3}{2} + 1 = \\frac{5}{2}. The answer is \\boxed{\\frac{5}{2}}.",
        "12 - 47 = -35. -35 + 8 = -27.",
        "Unicode and odd spacing:  é ∑ 😀\n\ttabs\r\n",
    ];

    #[test]
    fn tokenizer_round_trips_task_text() {
        let tok = build_tokenizer().unwrap();
        for text in TASK_TEXT {
            let ids = tok.encode(text, true).unwrap();
            assert_eq!(tok.decode(&ids, false).unwrap(), *text, "ids {ids:?}");
        }
    }

    #[test]
    fn numbers_are_split_into_digits_and_words_are_single_tokens() {
        let tok = build_tokenizer().unwrap();
        let pieces = |text: &str| -> Vec<String> {
            tok.encode(text, false)
                .unwrap()
                .iter()
                .map(|&id| tok.decode(&[id], false).unwrap())
                .collect()
        };
        assert_eq!(
            pieces("3901 - 12 = 3889."),
            [
                "3", "9", "0", "1", " -", " ", "1", "2", " =", " ", "3", "8", "8", "9", "."
            ]
        );
        assert_eq!(
            pieces("Compute 7 + 8."),
            ["Compute", " ", "7", " +", " ", "8", "."]
        );
        // Every word of the vocabulary list is a single token where it occurs.
        for word in WORDS {
            assert_eq!(pieces(word), [*word], "{word:?}");
        }
        assert_eq!(
            pieces(" Please reason step by step, and put your final answer within \\boxed{}."),
            [
                " Please", " reason", " step", " by", " step", ",", " and", " put", " your",
                " final", " answer", " within", " \\", "boxed", "{}."
            ]
        );
        assert_eq!(
            pieces(" The answer is \\boxed{42}."),
            [
                " The", " answer", " is", " \\", "boxed", "{", "4", "2", "}."
            ]
        );
    }

    #[test]
    fn verify_is_one_special_token_never_produced_by_text() {
        let tok = build_tokenizer().unwrap();
        let id = tok.token_to_id(VERIFY_TOKEN).unwrap();
        assert_eq!(tok.encode(VERIFY_TOKEN, false).unwrap(), [id]);
        // It is special: decoding with skip_special_tokens drops it.
        assert_eq!(tok.decode(&[id], true).unwrap(), "");
        // No text without the literal marker encodes to it, including its own pieces.
        for text in TASK_TEXT
            .iter()
            .copied()
            .chain(["<|verify", "|verify|>", "< |verify| >"])
        {
            assert!(!tok.encode(text, false).unwrap().contains(&id), "{text}");
        }
        let eos = tok.token_to_id(ENDOFTEXT).unwrap();
        assert_eq!(tok.eos_token_ids()[0], eos);
        assert!(
            tok.eos_token_ids()
                .contains(&tok.token_to_id(IM_END).unwrap())
        );
        assert_ne!(id, eos);
    }

    #[test]
    fn chat_template_renders_chatml() {
        let tok = build_tokenizer().unwrap();
        let text = tok
            .apply_chat_template(&[crate::ChatMessage::user("Compute 1 + 1.")], true)
            .unwrap();
        assert_eq!(
            text,
            "<|im_start|>user\nCompute 1 + 1.<|im_end|>\n<|im_start|>assistant\n"
        );
        let ids = tok.encode(&text, false).unwrap();
        assert_eq!(ids[0], tok.token_to_id(IM_START).unwrap());
    }

    #[test]
    fn init_is_seeded_and_scaled() {
        let c = default_config().unwrap();
        let a = init_weights(&c, 7);
        let b = init_weights(&c, 7);
        let other = init_weights(&c, 8);
        let name = "model.layers.1.mlp.up_proj.weight";
        assert_eq!(a.tensors[name], b.tensors[name]);
        assert_ne!(a.tensors[name], other.tensors[name]);
        let data = &a.tensors[name].data;
        let n = data.len() as f64;
        let mean = data.iter().map(|&x| x as f64).sum::<f64>() / n;
        let std = (data.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(mean.abs() < 1e-3, "mean {mean}");
        assert!((std - INIT_STD).abs() < 1e-3, "std {std}");
        assert!(
            a.tensors["model.layers.0.self_attn.q_proj.bias"]
                .data
                .iter()
                .all(|&x| x == 0.0)
        );
        assert!(
            a.tensors["model.norm.weight"]
                .data
                .iter()
                .all(|&x| x == 1.0)
        );
    }

    #[test]
    fn bad_dims_are_rejected() {
        let dims = TinyDims {
            num_attention_heads: 3,
            ..Default::default()
        };
        assert!(matches!(
            config(dims),
            Err(ModelError::InvalidOption { field: "dims", .. })
        ));
    }

    #[test]
    fn saved_directory_loads_back() {
        let dir = std::env::temp_dir().join(format!("laser-tiny-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let device = Default::default();
        write_default::<Cpu>(TinyDims::default(), 3, &dir, &device).unwrap();
        for f in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        ] {
            assert!(dir.join(f).is_file(), "{f}");
        }
        let loaded = crate::pretrained::load::<Cpu>(&dir, &device).unwrap();
        assert_eq!(loaded.model.config, default_config().unwrap());
        let tok = loaded.tokenizer.as_ref().unwrap();
        assert_eq!(tok.token_to_id(VERIFY_TOKEN), Some(3));
        assert_eq!(loaded.eos_token_ids(), [0, 2]);
        assert!(tok.chat_template().is_some());
        // Same weights as a fresh init with the same seed.
        let fresh = init_weights(&default_config().unwrap(), 3);
        let saved = loaded.model.to_weights();
        for (name, t) in &fresh.tensors {
            assert_eq!(&saved.tensors[name], t, "{name}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
