#!/usr/bin/env python3
"""Checkpoint round trip (offline tooling): Hugging Face transformers loads a checkpoint written by the
learner and its logits must equal ours.

    # 1. the Rust test trains the tiny model 2 steps, checkpoints it, and writes our logits next to it:
    LASER_CHECKPOINT_OUT=/tmp/laser-ckpt cargo test -p laser-learner --test checkpoint_roundtrip
    # 2. transformers loads that checkpoint; compare, and (with --write) refresh the committed fixture:
    ~/.cache/laser-pyref/bin/python scripts/check_checkpoint_roundtrip.py /tmp/laser-ckpt \
        [--write learner/tests/fixtures/checkpoint_roundtrip.json]

The fixture holds transformers' logits for the trained checkpoint; the Rust test compares its own logits
from the reloaded checkpoint with it on every run, so a change in what the learner writes (names, layout,
config.json) or in how it trains shows up without Python. Exit status 1 when max |diff| > --tol.
"""

import argparse
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM
import transformers


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out_dir", help="LASER_CHECKPOINT_OUT of the Rust test (holds rust_logits.json)")
    p.add_argument("--write", help="write the fixture here")
    p.add_argument("--tol", type=float, default=1e-4)
    args = p.parse_args()
    with open(os.path.join(args.out_dir, "rust_logits.json")) as f:
        ours = json.load(f)
    ckpt = os.path.join(args.out_dir, ours["checkpoint"])
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ours["tokens"]])).logits[0]
    ref = logits.flatten().tolist()
    diff = max(abs(a - b) for a, b in zip(ref, ours["logits"]))
    print(f"{ckpt}: transformers {transformers.__version__} vs learner logits over {len(ours['tokens'])} tokens x "
          f"{logits.shape[1]} vocab: max |diff| = {diff:.3e}")
    if args.write:
        with open(args.write, "w") as f:
            json.dump({
                "description": "transformers logits of the tiny-qwen2 checkpoint written by "
                "learner/tests/checkpoint_roundtrip.rs after its training steps (see scripts/check_checkpoint_roundtrip.py)",
                "transformers_version": transformers.__version__,
                "torch_version": torch.__version__,
                "step": ours["step"],
                "tokens": ours["tokens"],
                "vocab_size": logits.shape[1],
                "logits": [round(x, 7) for x in ref],
            }, f)
            f.write("\n")
        print(f"wrote {args.write}")
    sys.exit(0 if diff <= args.tol else 1)


if __name__ == "__main__":
    main()
