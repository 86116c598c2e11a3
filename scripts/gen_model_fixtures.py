#!/usr/bin/env python3
"""Generate the tiny-model parity fixtures under model/tests/fixtures/{tiny-qwen2,tiny-llama}.

Offline reference tooling only (DEVELOPERS.md): Python is never a runtime dependency of the Rust
crates. Run it inside the reference venv (scripts/setup_reference_env.sh):

    ~/.cache/laser-pyref/bin/python scripts/gen_model_fixtures.py [--out model/tests/fixtures]

Each fixture directory holds:
  config.json             Hugging Face config, written by save_pretrained (see "config formats" below)
  generation_config.json  written by save_pretrained (bos/eos only)
  model.safetensors       f32 weights, written by save_pretrained (safe_serialization)
  expected.json           reference outputs of transformers (eager attention, float32, CPU)

expected.json schema:
  {
    "model_type": "qwen2" | "llama",
    "seed": int,                         # torch.manual_seed used for weights and token ids
    "versions": {"torch": str, "transformers": str, "python": str},
    "vocab_size": int,
    "eos_token_id": int, "bos_token_id": int,
    "logprob_cases": [                   # teacher-forced full-sequence forward passes
      {
        "input_ids": [int; T],           # random ids, no special meaning (batch 1, no padding)
        "log_softmax": [[float; V]; T],  # log_softmax(logits) at every position t (predicts t+1)
        "ends_with_eos": bool            # true: last id is eos_token_id, so row T-1 is the
                                         # LaSeR self-reward read-out slot (the step after EOS)
      }, ...
    ],
    "greedy": {
      "prompts": [[int], ...],           # 3 prompts of different lengths
      "max_new_tokens": 32,
      "outputs": [[int; 32], ...],       # new tokens only, model.generate(do_sample=False,
                                         # max_new_tokens=32, min_new_tokens=32), batch 1 each
      "output_logprobs": [[float; 32]],  # log p(token) under the raw (untempered) policy
      "min_top2_gap": float              # smallest top-1 minus top-2 logit gap over all greedy
                                         # steps; prompts are drawn until this is >= 1e-3, so a
                                         # correct f32 implementation cannot tie-break differently
    }
  }
Floats are rounded to 8 significant digits.

The greedy outputs are cross-checked against a plain argmax loop with full recomputation and no
logits processors, and must not contain EOS (candidate prompts are drawn from the seeded
generator until one qualifies): so min_new_tokens never changed a choice, and a Rust
greedy decoder that stops at EOS produces exactly these 32 tokens.

config formats: transformers 5 writes "rope_parameters": {"rope_theta": ...} and "dtype", while
checkpoints published with transformers 4.x (e.g. Qwen2.5 on the Hub) have top-level "rope_theta"
and "torch_dtype". tiny-llama keeps the transformers-5 form as saved; tiny-qwen2 is rewritten to the
4.x form (the form of real Qwen2.5 checkpoints). Both forms are loaded back with transformers and
the expected outputs are computed from the reloaded model, so the Rust config reader must accept
both.
"""

import argparse
import json
import os
import platform
import shutil
import sys

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

FIXTURES = {
    "tiny-qwen2": dict(
        seed=1234,
        cls=Qwen2ForCausalLM,
        config=lambda: Qwen2Config(
            vocab_size=512,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,  # GQA, 2 query heads per kv head, head_dim 16
            max_position_embeddings=256,
            rms_norm_eps=1e-6,
            rope_theta=10000.0,
            tie_word_embeddings=False,
            bos_token_id=1,
            eos_token_id=2,
            use_sliding_window=False,
        ),
        legacy_config=True,
    ),
    "tiny-llama": dict(
        seed=4321,
        cls=LlamaForCausalLM,
        config=lambda: LlamaConfig(
            vocab_size=480,
            hidden_size=64,
            intermediate_size=160,
            num_hidden_layers=2,
            num_attention_heads=8,
            num_key_value_heads=2,  # GQA, 4 query heads per kv head, head_dim 8
            max_position_embeddings=256,
            rms_norm_eps=1e-5,
            rope_theta=500000.0,
            tie_word_embeddings=True,
            bos_token_id=1,
            eos_token_id=2,
        ),
        legacy_config=False,
    ),
}

WEIGHT_STD = 0.15  # large enough that logits are far from uniform (logit std ~1.2)
BIAS_STD = 0.1
NORM_JITTER = 0.1  # RMSNorm weights 1 + N(0, 0.1^2): a wrong norm weight shows in the logits
LOGPROB_CASE_LENGTHS = [12, 23, 37]  # the last case ends with EOS (read-out slot)
PROMPT_LENGTHS = [3, 7, 12]
MAX_NEW = 32
MIN_GAP = 1e-3


def r8(x):
    """Round to 8 significant digits (keeps the JSON small; far below the 1e-4 tolerance)."""
    return float(f"{x:.8g}")


def init_weights(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + NORM_JITTER * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(BIAS_STD * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(WEIGHT_STD * torch.randn(p.shape, generator=gen))


def to_legacy_config(path):
    """Rewrite a transformers-5 config.json to the 4.x layout of published checkpoints."""
    with open(path) as f:
        cfg = json.load(f)
    rope = cfg.pop("rope_parameters")
    assert rope.get("rope_type", "default") == "default", rope
    cfg["rope_theta"] = rope["rope_theta"]
    cfg["torch_dtype"] = cfg.pop("dtype")
    cfg.pop("layer_types", None)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def plain_forward(out_dir, ids):
    """Independent f64 re-implementation of the decoder straight from config.json + safetensors.

    Guards the fixture against transformers-specific behaviour sneaking in: the expected values
    must be those of the textbook Qwen2/Llama math (rotate-half RoPE, GQA, SwiGLU, RMSNorm).
    """
    from safetensors.torch import load_file

    with open(os.path.join(out_dir, "config.json")) as f:
        c = json.load(f)
    theta = c["rope_theta"] if "rope_theta" in c else c["rope_parameters"]["rope_theta"]
    w = {k: v.double() for k, v in load_file(os.path.join(out_dir, "model.safetensors")).items()}
    H, KV, D = c["num_attention_heads"], c["num_key_value_heads"], c["hidden_size"]
    hd = c.get("head_dim") or D // H
    eps = c["rms_norm_eps"]
    T = len(ids)

    def rms(x, g):
        return g * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)

    def lin(x, name):
        y = x @ w[name + ".weight"].T
        return y + w[name + ".bias"] if name + ".bias" in w else y

    inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)

    def rope(x):  # [heads, T, hd]
        x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, w[p + "input_layernorm.weight"])
        q = lin(h, p + "self_attn.q_proj").view(T, H, hd).transpose(0, 1)
        k = lin(h, p + "self_attn.k_proj").view(T, KV, hd).transpose(0, 1)
        v = lin(h, p + "self_attn.v_proj").view(T, KV, hd).transpose(0, 1)
        q, k = rope(q), rope(k)
        k, v = k.repeat_interleave(H // KV, 0), v.repeat_interleave(H // KV, 0)
        a = torch.softmax(q @ k.transpose(1, 2) / hd**0.5 + mask, -1) @ v
        x = x + lin(a.transpose(0, 1).reshape(T, H * hd), p + "self_attn.o_proj")
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        g = lin(h, p + "mlp.gate_proj")
        x = x + lin(torch.nn.functional.silu(g) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = rms(x, w["model.norm.weight"])
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return torch.log_softmax(x @ head.T, -1)


def manual_greedy(model, prompt, n):
    """Argmax with full recomputation and no logits processors; returns ids, logprobs, min gap."""
    ids = list(prompt)
    out, lps, gap = [], [], float("inf")
    for _ in range(n):
        logits = model(torch.tensor([ids])).logits[0, -1].double()
        top2 = torch.topk(logits, 2).values
        gap = min(gap, (top2[0] - top2[1]).item())
        tok = int(torch.argmax(logits))
        lps.append(torch.log_softmax(logits, -1)[tok].item())
        out.append(tok)
        ids.append(tok)
    return out, lps, gap


def build(name, spec, out_root):
    out_dir = os.path.join(out_root, name)
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)

    torch.manual_seed(spec["seed"])
    gen = torch.Generator().manual_seed(spec["seed"])
    cfg = spec["config"]()
    model = spec["cls"](cfg)
    init_weights(model, gen)
    model.save_pretrained(out_dir, safe_serialization=True)
    if spec["legacy_config"]:
        to_legacy_config(os.path.join(out_dir, "config.json"))

    # Reload from disk: the expected outputs come from exactly what the Rust side will load.
    model = spec["cls"].from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    for n_, p in model.named_parameters():
        assert p.dtype == torch.float32, n_
        if n_.endswith(".bias"):
            assert p.abs().min() > 0, f"zero bias in {n_}"
    V = model.config.vocab_size
    eos = model.config.eos_token_id
    bos = model.config.bos_token_id
    assert V == cfg.vocab_size

    cases = []
    with torch.no_grad():
        for i, T in enumerate(LOGPROB_CASE_LENGTHS):
            ids = torch.randint(0, V, (T,), generator=gen)
            ends_with_eos = i == len(LOGPROB_CASE_LENGTHS) - 1
            if ends_with_eos:
                ids[-1] = eos
            logits = model(ids[None]).logits[0]
            ls = torch.log_softmax(logits.float(), dim=-1)
            plain = plain_forward(out_dir, ids.tolist())
            diff = (plain - ls.double()).abs().max().item()
            assert diff < 1e-5, f"{name}: transformers vs plain f64 forward differ by {diff}"
            print(f"  case {i}: transformers f32 vs plain f64 forward max |diff| {diff:.2e}")
            cases.append(
                {
                    "input_ids": ids.tolist(),
                    "ends_with_eos": ends_with_eos,
                    "log_softmax": [[r8(v) for v in row] for row in ls.tolist()],
                }
            )
            # sanity: not near-uniform
            assert ls.max(-1).values.mean() > -4.0, (name, ls.max(-1).values.mean())

        prompts, outputs, out_lps, min_gap = [], [], [], float("inf")
        for L in PROMPT_LENGTHS:
            # Draw candidate prompts (deterministically, from the seeded generator) until one
            # gives a clean greedy reference: no EOS, no near-ties, not degenerate.
            for attempt in range(50):
                # avoid special ids 0..2 in prompts so they read like ordinary text tokens
                prompt = torch.randint(3, V, (L,), generator=gen).tolist()
                ref, lps, gap = manual_greedy(model, prompt, MAX_NEW)
                if eos not in ref and gap >= MIN_GAP and len(set(ref)) > 3:
                    break
                why = "EOS in output" if eos in ref else f"top-2 gap {gap:.3g}"
                print(f"  {name}: prompt len {L} attempt {attempt} rejected ({why})")
            else:
                raise SystemExit(f"{name}: no clean greedy prompt of length {L}")
            res = model.generate(
                torch.tensor([prompt]),
                attention_mask=torch.ones(1, L, dtype=torch.long),
                do_sample=False,
                max_new_tokens=MAX_NEW,
                min_new_tokens=MAX_NEW,
                pad_token_id=eos,
            )
            new = res[0, L:].tolist()
            assert new == ref, f"{name}: generate() != argmax loop\n{new}\n{ref}"
            prompts.append(prompt)
            outputs.append(new)
            out_lps.append([r8(v) for v in lps])
            min_gap = min(min_gap, gap)

    expected = {
        "model_type": model.config.model_type,
        "seed": spec["seed"],
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
        "vocab_size": V,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "logprob_cases": cases,
        "greedy": {
            "prompts": prompts,
            "max_new_tokens": MAX_NEW,
            "outputs": outputs,
            "output_logprobs": out_lps,
            "min_top2_gap": r8(min_gap),
        },
    }
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"))
        f.write("\n")

    sizes = {fn: os.path.getsize(os.path.join(out_dir, fn)) for fn in sorted(os.listdir(out_dir))}
    print(f"{name}: {sizes}")
    for p, o in zip(prompts, outputs):
        print(f"  prompt {p}\n  -> {o}")
    print(f"  min top-2 gap {min_gap:.4g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "model", "tests", "fixtures"))
    ap.add_argument("--only", choices=sorted(FIXTURES), action="append")
    args = ap.parse_args()
    torch.set_num_threads(1)  # deterministic reductions, and polite on a shared 2-core box
    for name in args.only or FIXTURES:
        build(name, FIXTURES[name], os.path.normpath(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
