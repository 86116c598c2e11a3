#!/usr/bin/env python3
"""Re-score a run's evaluation samples in Hugging Face transformers (offline reference tooling).

Each row of RUN/eval_samples/step-N.jsonl holds the prompt, the sampled response token ids (EOS
included) and the actor's self-reward r_s. This recomputes r_s = beta_v * (log p(z_c | x, y, EOS)
- c_ref) teacher-forced in transformers (float32 weights, float64 log-softmax) and prints the
largest difference: an independent check that the actors read z_c at the right slot.

    ~/.cache/laser-pyref/bin/python scripts/check_readout.py CHECKPOINT_DIR SAMPLES.jsonl \
        --c-ref RUN/c_ref.json [--beta-v 0.1] [--limit 200]

CHECKPOINT_DIR is the model the samples came from (e.g. RUN/checkpoints/step-000600, evaluated
with `coordinator eval --checkpoint ... --out-dir DIR`, whose samples are DIR/eval_samples/).
"""
import argparse
import json

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("checkpoint")
ap.add_argument("samples")
ap.add_argument("--c-ref", required=True, help="the run's c_ref.json")
ap.add_argument("--beta-v", type=float, default=0.1)
ap.add_argument("--limit", type=int, default=200)
a = ap.parse_args()

calib = json.load(open(a.c_ref))
c_ref, z_c = calib["c_ref"], calib["self_reward_token"]
model = AutoModelForCausalLM.from_pretrained(a.checkpoint, dtype=torch.float32).eval()
tok = Tokenizer.from_file(a.checkpoint + "/tokenizer.json")
rows = [json.loads(l) for l in open(a.samples)]
rows = [r for r in rows if r["self_reward"] is not None][: a.limit]
if not rows:
    raise SystemExit(f"{a.samples}: no sample with a read-out")
diffs = []
for r in rows:
    prompt = tok.encode(r["prompt"], add_special_tokens=True).ids
    ids = torch.tensor([prompt + r["tokens"]])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, -1].double(), -1)[z_c].item()
    diffs.append(abs(a.beta_v * (logp - c_ref) - r["self_reward"]))
print(
    f"{len(rows)} samples: max |r_s(actor) - r_s(transformers)| = {max(diffs):.2e}, "
    f"mean {sum(diffs) / len(diffs):.2e}"
)
