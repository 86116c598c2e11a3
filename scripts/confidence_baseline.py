#!/usr/bin/env python3
"""Does the policy itself know which of its answers are right? (offline reference tooling)

For each evaluation sample (RUN/eval_samples/step-N.jsonl, written by the coordinator), this scores
the response teacher-forced with the checkpoint that sampled it, in Hugging Face transformers, and
compares the AUROC of the policy's own confidence features with that of the self-reward r_s:
pooled over all samples, and within problems (only pairs of one problem's correct and incorrect
samples, as `auroc_within` in eval.jsonl).

    ~/.cache/laser-pyref/bin/python scripts/confidence_baseline.py CHECKPOINT_DIR SAMPLES.jsonl

Features: the response's summed and mean token log-probability, its least likely token, and the
least likely token within the final answer's digits. If none of them separates one problem's
right and wrong answers, the information a last-token verifier would need is not in the policy.

It then asks what an ideal read-out of the sequence log-probability would score: a logistic
calibration of it fitted on these same samples (an optimistic upper bound) used as the
self-verification score: F1 at threshold 0.5 (LASER.md's F1), and the weighted maj@k against
maj@k. For r_s it also prints the best threshold's F1.
"""
import argparse
import collections
import json

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

from verification_metrics import auroc, auroc_within, f1_at, split


ap = argparse.ArgumentParser()
ap.add_argument("checkpoint")
ap.add_argument("samples")
a = ap.parse_args()

model = AutoModelForCausalLM.from_pretrained(a.checkpoint, dtype=torch.float32).eval()
tok = Tokenizer.from_file(a.checkpoint + "/tokenizer.json")
rows = [json.loads(l) for l in open(a.samples)]
if not rows or "tokens" not in rows[0]:
    raise SystemExit(f"{a.samples}: rows need prompt and tokens (written since 891ab2e)")
for r in rows:
    prompt = tok.encode(r["prompt"], add_special_tokens=True).ids
    ids = torch.tensor([prompt + r["tokens"]])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), -1)
    n = len(prompt)
    lp = [logp[n - 1 + i, t].item() for i, t in enumerate(r["tokens"])]
    r["sum_logp"] = sum(lp)
    r["mean_logp"] = sum(lp) / len(lp)
    r["min_logp"] = min(lp)
    # Tokens inside \boxed{...}: the answer's own digits.
    pieces = [tok.decode([t]) for t in r["tokens"]]
    text, spans = "", []
    for p in pieces:
        spans.append((len(text), len(text) + len(p)))
        text += p
    start = text.find("\\boxed{")
    end = text.find("}", start + 7) if start >= 0 else -1
    ans = [lp[i] for i, (s, e) in enumerate(spans) if start >= 0 and s >= start + 7 and e <= max(end, 0)]
    r["answer_min_logp"] = min(ans) if ans else min(lp)
    r["r_s"] = r["self_reward"] if r["self_reward"] is not None else float("nan")

print(f"{len(rows)} samples, accuracy {sum(r['correct'] for r in rows) / len(rows):.3f}")
print(f"{'feature':<18} {'AUROC':>7} {'within problems':>16}")
for key in ["r_s", "sum_logp", "mean_logp", "min_logp", "answer_min_logp"]:
    scores = [r[key] for r in rows]
    pooled, within = auroc(*split(rows, scores)), auroc_within(rows, scores)
    print(f"{key:<18} {pooled:>7.3f} {within if within is None else round(within, 3):>16}")


def fit_probability(key):
    """Logistic calibration of one feature to P(correct), fitted on these samples."""
    x = torch.tensor([r[key] for r in rows], dtype=torch.float64)
    y = torch.tensor([float(r["correct"]) for r in rows], dtype=torch.float64)
    x = (x - x.mean()) / x.std()
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(w[0] * x + w[1], y)
        loss.backward()
        return loss

    opt.step(closure)
    return torch.sigmoid(w[0] * x + w[1]).detach().tolist()


def votes(scores):
    """maj@k and score-weighted maj@k (ties: the first answer to reach the top score)."""
    by_task = collections.defaultdict(list)
    for s, r in zip(scores, rows):
        if r["answer"] is not None:
            by_task[r["task_id"]].append((r["answer"], r["correct"], s))
    tasks = {r["task_id"] for r in rows}
    plain = weighted = 0
    for group in by_task.values():
        count, weight, correct = collections.Counter(), collections.Counter(), {}
        for answer, ok, s in group:
            count[answer] += 1
            weight[answer] += min(max(s, 0.0), 1.0)
            correct[answer] = ok
        plain += correct[max(count, key=count.get)]
        weighted += correct[max(weight, key=weight.get)]
    return plain / len(tasks), weighted / len(tasks)


if all(r["correct"] for r in rows) or not any(r["correct"] for r in rows):
    raise SystemExit("every sample has the same grade: no read-out to compare")
r_s = [min(max(r["r_s"], 0.0), 1.0) for r in rows]
best = max((f1_at(rows, r_s, t / 100), t / 100) for t in range(1, 100))
maj, wmaj = votes(r_s)
print(f"\nr_s: F1 {f1_at(rows, r_s):.3f} at 0.5, best {best[0]:.3f} at {best[1]:.2f}; "
      f"weighted maj@k {wmaj:.3f} vs maj@k {maj:.3f}")
ideal = fit_probability("sum_logp")
maj, wmaj = votes(ideal)
print(f"calibrated log p(y|x) as the read-out: F1 {f1_at(rows, ideal):.3f} at 0.5; "
      f"weighted maj@k {wmaj:.3f} vs maj@k {maj:.3f}")
