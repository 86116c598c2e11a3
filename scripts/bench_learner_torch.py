#!/usr/bin/env python3
"""PyTorch counterpart of `cargo bench -p laser-learner --bench train_step` (offline tooling only).

The same step on the same CPU: 8 sequences (2 groups of 4), prompt 64 + response 64 tokens, micro-batch 4;
per micro-batch one forward over [prompt, response], log-softmax gathered at the response tokens and at z_c
after EOS, verl's compute_policy_loss (token-mean, dual clip) + alpha * MSE on r_s (plain mean: the class weights are per-sample
constants and cost nothing measurable), backward;
then (for the full step) global-norm clipping and AdamW. float32, eager mode, torch threads = CPU count.

    ~/.cache/laser-pyref/bin/python scripts/bench_learner_torch.py [--quick] [--smollm2 PATH.gguf]
"""

import argparse
import os
import statistics
import sys
import time

import torch
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(__file__))
from gen_loss_fixtures import core_algos  # verl's own policy loss, imported without verl's heavy __init__

SEQS, PROMPT, RESPONSE, MICRO = 8, 64, 64, 4
ROOT = os.path.join(os.path.dirname(__file__), "..")


def make_batch(vocab, eos):
    tok = lambda s, t: (s * 7919 + t * 104729 + 3) % (vocab - 3) + 3
    ids, rewards = [], []
    for s in range(SEQS):
        g = s // 4
        prompt = [tok(g, t) for t in range(PROMPT)]
        response = [tok(s + 100, t) for t in range(RESPONSE - 1)] + [eos]
        ids.append(prompt + response)
        rewards.append(float(s % 4 % 2))
    return torch.tensor(ids), torch.tensor(rewards)


def grads(model, ids, rewards, vocab):
    z_c = vocab - 1
    old = torch.full((SEQS, RESPONSE), -float(torch.log(torch.tensor(float(vocab)))))
    r = rewards.view(-1, 4)
    adv = ((r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + 1e-6)).flatten()
    total = 0.0
    for start in range(0, SEQS, MICRO):
        x = ids[start : start + MICRO]
        logits = model(input_ids=x).logits[:, PROMPT - 1 :]  # rows predicting response tokens, then z_c
        logp = torch.log_softmax(logits.float(), -1)
        lp = logp[:, :RESPONSE].gather(-1, x[:, PROMPT:].unsqueeze(-1)).squeeze(-1)
        zc = logp[:, RESPONSE, z_c]
        mask = torch.ones_like(lp)
        a = adv[start : start + MICRO].unsqueeze(-1) * mask
        pg, _, _, _ = core_algos.compute_policy_loss(
            old_log_prob=old[start : start + MICRO], log_prob=lp, advantages=a, response_mask=mask,
            cliprange=0.2, cliprange_low=0.2, cliprange_high=0.2, clip_ratio_c=3.0, loss_agg_mode="token-mean")
        r_s = 0.1 * (zc + 20.0)
        mse = ((r_s - rewards[start : start + MICRO]) ** 2).mean()
        loss = (pg + 0.1 * mse) * (MICRO / SEQS)
        loss.backward()
        total += loss.item()
    return total


def bench(name, model, reps):
    vocab = model.config.vocab_size
    eos = model.config.eos_token_id if isinstance(model.config.eos_token_id, int) else 2
    ids, rewards = make_batch(vocab, eos)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.01)
    tokens = SEQS * (PROMPT + RESPONSE)
    grads(model, ids, rewards, vocab)
    model.zero_grad()
    g = []
    for _ in range(reps):
        t = time.perf_counter()
        grads(model, ids, rewards, vocab)
        g.append(time.perf_counter() - t)
        model.zero_grad()
    s = []
    for _ in range(reps):
        t = time.perf_counter()
        grads(model, ids, rewards, vocab)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        s.append(time.perf_counter() - t)
    gm, sm = statistics.median(g), statistics.median(s)
    print(f"| {name} | fwd+bwd (gradients) | {tokens / gm:.0f} tok/s | {gm:.3f} s |")
    print(f"| {name} | full step (fwd+bwd+clip+AdamW) | {tokens / sm:.0f} tok/s | {sm:.3f} s |")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--smollm2", default=os.path.expanduser("~/.cache/laser/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    args = p.parse_args()
    reps = 2 if args.quick else 5
    torch.set_num_threads(os.cpu_count())
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("| model | what | throughput | median time |")
    print("|---|---|---|---|")
    tiny = AutoModelForCausalLM.from_pretrained(os.path.join(ROOT, "model/tests/fixtures/tiny-qwen2"), dtype=torch.float32)
    bench("tiny-qwen2 (2 layers, h 64, vocab 512)", tiny, reps)
    if os.path.exists(args.smollm2):
        d, f = os.path.split(args.smollm2)
        smol = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
        bench("SmolLM2-135M (f32, dequantised from Q4_1)", smol, min(reps, 3))
    else:
        print(f"SmolLM2 not found at {args.smollm2}: skipped", file=sys.stderr)


if __name__ == "__main__":
    main()
