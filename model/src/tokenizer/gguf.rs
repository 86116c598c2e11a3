//! Rebuilding a tokenizer from GGUF metadata (`tokenizer.ggml.*`), following transformers' GGUF
//! tokenizer conversion (`integrations/gguf/gguf_tokenizer_mapping.py`) so that ids match:
//!
//! - `gpt2` (byte-level BPE): the vocabulary in the byte alphabet, the merges, a byte-level
//!   pre-tokenizer whose split regex follows `tokenizer.ggml.pre`, and a byte-level decoder;
//! - control tokens (type 3) become special added tokens, user-defined ones (type 4) plain added tokens;
//! - `tokenizer.ggml.add_bos_token` / `add_eos_token` become a template post-processor.
//!
//! SentencePiece (`llama`) vocabularies are not supported yet and get a clear error.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::Tokenizer;
use crate::error::{ModelError, Result};
use crate::weights::gguf::GgufFile;

/// llama.cpp's token types.
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How text is split before BPE, by `tokenizer.ggml.pre`.
enum PreSplit {
    /// GPT-2's built-in regex (ByteLevel with `use_regex`).
    Gpt2,
    /// Every digit on its own, then GPT-2's regex: llama.cpp's `smollm`, `starcoder`, `refact`,
    /// `command-r`, `codeshell`, `exaone`, `minerva-7b` (`\p{N}` then the GPT-2 regex). This is also
    /// what SmolLM2's own tokenizer.json does (`Digits(individual_digits)` + `ByteLevel`).
    DigitsThenGpt2,
    /// A custom split regex, then ByteLevel without its regex.
    Regex(&'static str),
}

fn pre_split(pre: Option<&str>) -> Option<PreSplit> {
    Some(match pre? {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => PreSplit::Regex(LLAMA3_SPLIT),
        "tekken" => PreSplit::Regex(TEKKEN_SPLIT),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => {
            PreSplit::Regex(QWEN2_SPLIT)
        }
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => PreSplit::Regex(GPT4O_SPLIT),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            PreSplit::DigitsThenGpt2
        }
        "default" | "gpt2" | "gpt-2" => PreSplit::Gpt2,
        _ => return None,
    })
}

/// GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to U+0100 onwards.
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).unwrap_or('\u{FFFD}');
            next += 1;
            c
        };
    }
    table
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's metadata.
    pub fn from_gguf(path: &Path) -> Result<Self> {
        Self::from_gguf_file(&GgufFile::open(path)?)
    }

    /// Builds the tokenizer from an already opened GGUF file.
    pub fn from_gguf_file(file: &GgufFile) -> Result<Self> {
        let path = file.path();
        let err = |message: String| ModelError::Tokenizer(format!("{}: {message}", path.display()));
        let model = file.get_str("tokenizer.ggml.model")?.ok_or_else(|| {
            err("no tokenizer in the GGUF metadata (`tokenizer.ggml.model` is missing)".into())
        })?;
        let tokens = file
            .get_str_array("tokenizer.ggml.tokens")?
            .ok_or_else(|| err("missing metadata `tokenizer.ggml.tokens`".into()))?;
        let token_types = file
            .get_i64_array("tokenizer.ggml.token_type")?
            .unwrap_or_default();
        if !token_types.is_empty() && token_types.len() != tokens.len() {
            return Err(err(format!(
                "`tokenizer.ggml.token_type` has {} entries for {} tokens",
                token_types.len(),
                tokens.len()
            )));
        }
        let inner = match model {
            "gpt2" => byte_level_bpe(file, &tokens, &token_types)?,
            other => {
                return Err(err(format!(
                    "GGUF tokenizer model {other:?} is not supported (supported: \"gpt2\" byte-level BPE); \
                     pass a tokenizer.json instead"
                )));
            }
        };
        let mut tok = Tokenizer::from_tokenizers(inner, path);

        let token_of = |key: &str| -> Result<Option<&str>> {
            match file.get_u64(key)? {
                None => Ok(None),
                Some(id) => tokens.get(id as usize).copied().map(Some).ok_or_else(|| {
                    err(format!(
                        "`{key}` = {id} is outside the {} tokens",
                        tokens.len()
                    ))
                }),
            }
        };
        if let Some(bos) = token_of("tokenizer.ggml.bos_token_id")? {
            tok.set_bos_token(bos)?;
        }
        if let Some(eos) = token_of("tokenizer.ggml.eos_token_id")? {
            tok.set_eos_token(eos)?;
        }
        for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
            if let Some(id) = file.get_u64(key)? {
                tok.add_eos_token_id(id as u32)?;
            }
        }
        tok.unk_token = token_of("tokenizer.ggml.unknown_token_id")?.map(str::to_string);
        tok.pad_token = token_of("tokenizer.ggml.padding_token_id")?.map(str::to_string);
        if let Some(template) = file.get_str("tokenizer.chat_template")? {
            tok.set_chat_template(Some(template.to_string()));
        }
        tok.set_gguf_post_processor(file)?;
        Ok(tok)
    }

    /// `tokenizer.ggml.add_bos_token` / `add_eos_token` as transformers applies them:
    /// single = `[bos] $A [eos]`, pair = `[bos] $A [eos] [bos] $B [eos]`.
    fn set_gguf_post_processor(&mut self, file: &GgufFile) -> Result<()> {
        let add_bos = file
            .get_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(false);
        let add_eos = file
            .get_bool("tokenizer.ggml.add_eos_token")?
            .unwrap_or(false);
        let err = |message: String| {
            ModelError::Tokenizer(format!("{}: {message}", file.path().display()))
        };
        let mut specials = Vec::new();
        let (mut single, mut pair_a, mut pair_b) = (String::new(), String::new(), String::new());
        let mut push = |token: &str, id: u32, type_id: u8| -> String {
            if !specials.iter().any(|(t, _): &(String, u32)| t == token) {
                specials.push((token.to_string(), id));
            }
            format!("{token}:{type_id} ")
        };
        let bos = match (add_bos, &self.bos_token, self.bos_token_id) {
            (true, Some(t), Some(id)) => Some((t.clone(), id)),
            (true, _, _) => {
                return Err(err(
                    "`tokenizer.ggml.add_bos_token` is set but there is no BOS token".into(),
                ));
            }
            _ => None,
        };
        let eos = match (add_eos, &self.eos_token, self.eos_token_ids.first()) {
            (true, Some(t), Some(&id)) => Some((t.clone(), id)),
            (true, _, _) => {
                return Err(err(
                    "`tokenizer.ggml.add_eos_token` is set but there is no EOS token".into(),
                ));
            }
            _ => None,
        };
        if bos.is_none() && eos.is_none() {
            return Ok(());
        }
        // Template strings split on whitespace, so a token containing a space cannot be spelled in one.
        for (t, _) in bos.iter().chain(eos.iter()) {
            if t.contains(char::is_whitespace) {
                return Err(err(format!("special token {t:?} contains whitespace")));
            }
        }
        if let Some((t, id)) = &bos {
            single += &push(t, *id, 0);
            pair_a += &push(t, *id, 0);
            pair_b += &push(t, *id, 1);
        }
        single += "$A:0 ";
        pair_a += "$A:0 ";
        pair_b += "$B:1 ";
        if let Some((t, id)) = &eos {
            single += &push(t, *id, 0);
            pair_a += &push(t, *id, 0);
            pair_b += &push(t, *id, 1);
        }
        let processor = TemplateProcessing::builder()
            .try_single(single.trim_end())
            .and_then(|b| b.try_pair(format!("{pair_a}{pair_b}").trim_end()))
            .map_err(|e| err(format!("bad post-processor template: {e}")))?
            .special_tokens(specials)
            .build()
            .map_err(|e| err(format!("bad post-processor template: {e}")))?;
        self.inner.with_post_processor(Some(processor));
        Ok(())
    }
}

/// Byte-level BPE from `tokens` + `merges`, like transformers' `byte_level_tokenizer`.
fn byte_level_bpe(
    file: &GgufFile,
    tokens: &[&str],
    token_types: &[i64],
) -> Result<tokenizers::Tokenizer> {
    let path = file.path();
    let err = |message: String| ModelError::Tokenizer(format!("{}: {message}", path.display()));
    let spelling = bytes_to_unicode();
    let alphabet: std::collections::HashSet<char> = spelling.iter().copied().collect();
    let in_alphabet = |t: &str| t.chars().all(|c| alphabet.contains(&c));

    // A token not written in the byte alphabet (a llama.cpp quirk for some added tokens) is
    // respelled byte by byte, as transformers does. Later duplicates win, as in a Python dict.
    let mut vocab = Vocab::with_capacity(tokens.len());
    for (id, &token) in tokens.iter().enumerate() {
        let key = if in_alphabet(token) {
            token.to_string()
        } else {
            token.bytes().map(|b| spelling[b as usize]).collect()
        };
        vocab.insert(key, id as u32);
    }
    let merges = file
        .get_str_array("tokenizer.ggml.merges")?
        .ok_or_else(|| {
            err("byte-level BPE without `tokenizer.ggml.merges` is not supported".into())
        })?;
    let merges = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| {
                    err(format!(
                        "merge {m:?} is not two tokens separated by a space"
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| err(format!("cannot build the BPE model: {e}")))?;
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);

    let pre = file.get_str("tokenizer.ggml.pre")?;
    let split = pre_split(pre).unwrap_or_else(|| {
        tracing::warn!(
            "{}: unknown `tokenizer.ggml.pre` {:?}; splitting text with GPT-2's regex",
            path.display(),
            pre
        );
        PreSplit::Gpt2
    });
    let pre_tokenizer: PreTokenizerWrapper = match split {
        PreSplit::Gpt2 => ByteLevel::new(false, true, true).into(),
        PreSplit::DigitsThenGpt2 => Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])
        .into(),
        PreSplit::Regex(regex) => {
            let split = Split::new(
                SplitPattern::Regex(regex.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| err(format!("bad split regex: {e}")))?;
            Sequence::new(vec![
                split.into(),
                ByteLevel::new(false, true, false).into(),
            ])
            .into()
        }
    };
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    let control: Vec<AddedToken> = tokens
        .iter()
        .zip(token_types)
        .filter(|&(t, &ty)| ty == TOKEN_TYPE_CONTROL && in_alphabet(t))
        .map(|(t, _)| AddedToken::from(t.to_string(), true).normalized(false))
        .collect();
    tokenizer.add_special_tokens(&control);
    let user_defined: Vec<AddedToken> = tokens
        .iter()
        .zip(token_types)
        .filter(|&(t, &ty)| ty == TOKEN_TYPE_USER_DEFINED && tokenizer.token_to_id(t).is_some())
        .map(|(t, _)| AddedToken::from(t.to_string(), false).normalized(false))
        .collect();
    tokenizer.add_tokens(&user_defined);
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_matches_gpt2() {
        let t = bytes_to_unicode();
        assert_eq!(t[b'A' as usize], 'A');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[0], 'Ā');
        let distinct: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }
}
