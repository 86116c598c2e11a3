#!/usr/bin/env python3
"""Can the last-token read-out learn to tell one problem's right answers from its wrong ones at
all, given plenty of labelled samples? (offline reference tooling)

The RL run's read-out stays at chance within problems (RESULTS.md). This asks whether that is a
limit of the model or of the training signal: it fine-tunes a checkpoint with the LaSeR MSE alone
(LASER.md step 2: r_s = beta_v * (log p(z_c | x, y, EOS) - c_ref), class-reweighted, against the
verifier's grade), on many graded samples of the policy's own, with no policy-gradient term, and
reports the AUROC within problems on samples of other problems after every epoch. The policy's
own sequence log-probability (the same checkpoint, before fine-tuning) is printed as the
reference point: it is what a read-out would have to learn to sum up.

    coordinator eval --checkpoint CKPT --data PROBLEMS.jsonl --k 8 --out-dir TRAIN   # samples
    coordinator eval --checkpoint CKPT --problems 208 --k 8 --out-dir TEST
    ~/.cache/laser-pyref/bin/python scripts/readout_probe.py CKPT \
        TRAIN/eval_samples/step-000000.jsonl TEST/eval_samples/step-000000.jsonl --c-ref -13.27

Training samples whose prompt is also a test prompt are dropped. Truncated samples are skipped
(LASER.md: the MSE covers EOS-terminated responses only).
"""
import argparse
import collections
import json
import random

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

from verification_metrics import auroc, auroc_within, f1_at, split


ap = argparse.ArgumentParser()
ap.add_argument("checkpoint")
ap.add_argument("train")
ap.add_argument("test")
ap.add_argument("--c-ref", type=float, required=True)
ap.add_argument("--beta", type=float, default=0.1)
ap.add_argument("--z-c", type=int, default=3, help="the self-reward token id (c_ref.json)")
ap.add_argument("--epochs", type=int, default=8)
ap.add_argument("--lr", type=float, default=3e-4)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
torch.manual_seed(a.seed)
random.seed(a.seed)

tok = Tokenizer.from_file(a.checkpoint + "/tokenizer.json")
model = AutoModelForCausalLM.from_pretrained(a.checkpoint, dtype=torch.float32)


def load(path):
    rows = [json.loads(l) for l in open(path)]
    rows = [r for r in rows if not r["truncated"] and r.get("tokens")]
    for r in rows:
        r["ids"] = tok.encode(r["prompt"], add_special_tokens=True).ids + r["tokens"]
        r["n_prompt"] = len(r["ids"]) - len(r["tokens"])
    return rows


test = load(a.test)
test_prompts = {r["prompt"] for r in test}
train = [r for r in load(a.train) if r["prompt"] not in test_prompts]
print(f"train: {len(train)} samples of {len({r['task_id'] for r in train})} problems, "
      f"accuracy {sum(r['correct'] for r in train) / len(train):.3f}; "
      f"test: {len(test)} samples of {len(test_prompts)} problems, "
      f"accuracy {sum(r['correct'] for r in test) / len(test):.3f}")


def forward(rows, want_seq_logp=False):
    """r_s of each row (and the response's summed log-prob), right-padded batch."""
    width = max(len(r["ids"]) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r["ids"])] = torch.tensor(r["ids"])
        mask[i, : len(r["ids"])] = 1
    logits = model(input_ids=ids, attention_mask=mask).logits
    last = torch.tensor([len(r["ids"]) - 1 for r in rows])
    logp_last = torch.log_softmax(logits[torch.arange(len(rows)), last], -1)
    r_s = a.beta * (logp_last[:, a.z_c] - a.c_ref)
    if not want_seq_logp:
        return r_s, None
    logp = torch.log_softmax(logits, -1)
    seq = []
    for i, r in enumerate(rows):
        n = r["n_prompt"]
        t = torch.tensor(r["tokens"])
        seq.append(logp[i, n - 1 : n - 1 + len(t)].gather(1, t[:, None]).sum().item())
    return r_s, seq


def score(rows, want_seq_logp=False):
    model.eval()
    out, seq = [], []
    with torch.no_grad():
        for i in range(0, len(rows), 256):
            r_s, s = forward(rows[i : i + 256], want_seq_logp)
            out += r_s.clamp(0, 1).tolist()
            seq += s or []
    return out, seq


def votes(rows, scores):
    """maj@k and weighted maj@k (each answer scores the sum of its clamped scores; ties: more
    votes, then the first answer seen), as eval.rs counts them."""
    by_task = collections.defaultdict(list)
    for r, s in zip(rows, scores):
        by_task[r["task_id"]].append((r, min(max(s, 0.0), 1.0)))
    plain = weighted = 0
    for group in by_task.values():
        answers = {}
        for r, s in group:
            if r["answer"] is None:
                continue
            n, w, ok = answers.get(r["answer"], (0, 0.0, r["correct"]))
            answers[r["answer"]] = (n + 1, w + s, ok)
        if answers:
            plain += max(answers.values(), key=lambda v: v[0])[2]
            weighted += max(answers.values(), key=lambda v: (v[1], v[0]))[2]
    return plain / len(by_task), weighted / len(by_task)


def report(tag, rows, scores):
    maj, wmaj = votes(rows, scores)
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"
    return (f"{tag}: AUROC {fmt(auroc(*split(rows, scores)))}, within problems "
            f"{fmt(auroc_within(rows, scores))}, F1 {f1_at(rows, scores):.3f}, "
            f"weighted maj@k {wmaj:.3f} vs maj@k {maj:.3f}")


r_s, seq = score(test, want_seq_logp=True)
print("before fine-tuning, test  " + report("r_s", test, r_s))
print("before fine-tuning, test  " + report("log p(y|x)", test, seq))

opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
for epoch in range(1, a.epochs + 1):
    model.train()
    random.shuffle(train)
    total = 0.0
    for i in range(0, len(train), a.batch):
        rows = train[i : i + a.batch]
        r_s, _ = forward(rows)
        y = torch.tensor([float(r["correct"]) for r in rows])
        n_c, n_i = y.sum(), (1 - y).sum()
        n = len(rows)
        w = torch.where(y > 0.5, n / (2 * n_c.clamp(min=1)), n / (2 * n_i.clamp(min=1)))
        loss = (w * (r_s - y) ** 2).sum() / n
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        total += loss.item() * n
    sample = train[:2000]
    tr, _ = score(sample)
    te, _ = score(test)
    print(f"epoch {epoch}: mse {total / len(train):.4f} | train " + report("r_s", sample, tr)
          + " | test " + report("r_s", test, te), flush=True)
