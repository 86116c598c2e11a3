#!/usr/bin/env python3
"""Why does the self-reward rank problems and not solutions? (offline analysis, standard library only)

Reads what a run already wrote and prints, per run directory:

1. For every evaluation (eval_samples/step-N.jsonl): the AUROC within problems of r_s and of the
   policy's own mean token log-probability, each with a bootstrap 95% interval over problems (the
   within figure rests on the few problems that have both right and wrong answers: it says how
   many), and the share of r_s's variance that the problem alone explains (eta^2: 1 means r_s is a
   function of the prompt, 0 means it varies only between one problem's answers).
2. From metrics.jsonl: the within-group AUROC of r_s and of log p on each step's fresh rollouts
   (scored before the learner trained on them), pooled over phases of the schedule (scored by a
   policy with no MSE update yet, during the self-reward warm-up, after it), so the read-out's
   learning curve is visible.

    python3 scripts/selfverify_diagnosis.py RUN_DIR [RUN_DIR ...] [--warmup 6 --sr-warmup 6]

Samples without an answer or without r_s (truncated) rank lowest, as in eval.jsonl.
"""
import argparse
import json
import math
import os
import random
import statistics


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def problems_of(rows):
    by = {}
    for r in rows:
        by.setdefault(r["task_id"], []).append(r)
    return list(by.values())


def score(row, key):
    v = row.get(key)
    if not row.get("answer") or v is None or not math.isfinite(v):
        return -math.inf
    return v


def within(problems, key):
    pairs = wins = 0.0
    for p in problems:
        right = [score(r, key) for r in p if r["correct"]]
        wrong = [score(r, key) for r in p if not r["correct"]]
        for c in right:
            for w in wrong:
                pairs += 1
                wins += 1.0 if c > w else 0.5 if c == w else 0.0
    return (wins / pairs if pairs else None), int(pairs)


def bootstrap(problems, key, reps=2000, seed=0):
    rng = random.Random(seed)
    mixed = [p for p in problems if 0 < sum(r["correct"] for r in p) < len(p)]
    vals = []
    for _ in range(reps):
        a, _ = within([rng.choice(mixed) for _ in mixed], key) if mixed else (None, 0)
        if a is not None:
            vals.append(a)
    if len(vals) < 2:
        return None
    vals.sort()
    return vals[int(0.025 * len(vals))], vals[int(0.975 * len(vals)) - 1], statistics.stdev(vals)


def eta_squared(problems, key):
    """Share of the variance of a score explained by the problem (between / total)."""
    groups = [[r[key] for r in p if r.get(key) is not None] for p in problems]
    groups = [g for g in groups if g]
    xs = [x for g in groups for x in g]
    if len(xs) < 2:
        return None
    mean = statistics.fmean(xs)
    total = sum((x - mean) ** 2 for x in xs)
    between = sum(len(g) * (statistics.fmean(g) - mean) ** 2 for g in groups)
    return between / total if total > 0 else None


def ranks(xs):
    """Ranks with ties averaged (for Spearman's rho)."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    out = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def within_rho(problems):
    """Mean over problems of Spearman's rho between r_s and log p among one problem's answers:
    near 1 means r_s only restates the policy's likelihood, near 0 that it ranks answers by
    something else (or by noise)."""
    rhos = []
    for p in problems:
        rs = [(r["self_reward"], r["mean_logprob"]) for r in p
              if r.get("self_reward") is not None and r.get("mean_logprob") is not None]
        if len(rs) < 3:
            continue
        a, b = ranks([x for x, _ in rs]), ranks([y for _, y in rs])
        if len(set(a)) < 2 or len(set(b)) < 2:
            continue
        rhos.append(statistics.correlation(a, b))
    return statistics.fmean(rhos) if rhos else None


def fmt(x, nd=3):
    return "–" if x is None else f"{x:.{nd}f}"


def eval_table(run):
    d = os.path.join(run, "eval_samples")
    if not os.path.isdir(d):
        return
    print(f"\n### {run}: held-out evaluations\n")
    print("| step | problems (mixed) | pairs | AUROC within: r_s [95% CI] | log p [95% CI] "
          "| eta^2 of r_s / log p | r_s mean right / wrong | rho(r_s, log p) within |")
    print("|---:|---:|---:|---|---|---|---|---:|")
    for name in sorted(os.listdir(d)):
        rows = read_jsonl(os.path.join(d, name))
        probs = problems_of(rows)
        mixed = sum(1 for p in probs if 0 < sum(r["correct"] for r in p) < len(p))
        a_rs, pairs = within(probs, "self_reward")
        a_lp, _ = within(probs, "mean_logprob")
        ci_rs, ci_lp = bootstrap(probs, "self_reward"), bootstrap(probs, "mean_logprob")
        ci = lambda c: "" if c is None else f" [{c[0]:.2f}, {c[1]:.2f}]"
        rs_right = [r["self_reward"] for r in rows if r["correct"] and r.get("self_reward") is not None]
        rs_wrong = [r["self_reward"] for r in rows if not r["correct"] and r.get("self_reward") is not None]
        m = lambda xs: statistics.fmean(xs) if xs else None
        step = int(name.split("-")[1].split(".")[0])
        print(f"| {step} | {len(probs)} ({mixed}) | {pairs} | {fmt(a_rs)}{ci(ci_rs)} | "
              f"{fmt(a_lp)}{ci(ci_lp)} | {fmt(eta_squared(probs, 'self_reward'), 2)} / "
              f"{fmt(eta_squared(probs, 'mean_logprob'), 2)} | {fmt(m(rs_right))} / {fmt(m(rs_wrong))} | "
              f"{fmt(within_rho(probs), 2)} |")


def train_table(run, warmup, sr_warmup):
    p = os.path.join(run, "metrics.jsonl")
    if not os.path.exists(p):
        return
    rows = read_jsonl(p)
    if not any("within_group_pairs" in r for r in rows):
        print(f"\n{run}: metrics.jsonl predates the within-group fields")
        return
    # Row `step` s is optimizer step s (0-based): its rollouts were scored by the policy after s
    # updates, of which max(0, s - warmup) included the MSE.
    phases = [
        ("scored before any MSE update", lambda s: s <= warmup),
        ("after 1..sr_warmup MSE updates", lambda s: warmup < s <= warmup + sr_warmup),
        ("later (MSE + advantage mixing)", lambda s: s > warmup + sr_warmup),
    ]
    print(f"\n### {run}: each step's fresh rollouts, pooled by phase\n")
    print("| phase | steps | pairs | AUROC within: r_s | log p | self_reward_mse |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, inside in phases:
        rs = [r for r in rows if inside(r["step"])]
        if not rs:
            continue
        pairs = sum(r.get("within_group_pairs", 0) for r in rs)
        pool = lambda key: (sum(r[key] * r["within_group_pairs"] for r in rs if r.get(key) is not None)
                            / pairs) if pairs else None
        mse = statistics.fmean(r.get("self_reward_mse", 0.0) for r in rs)
        print(f"| {label} | {rs[0]['step']}-{rs[-1]['step']} | {pairs} | "
              f"{fmt(pool('self_reward_auroc_within'))} | {fmt(pool('logprob_auroc_within'))} | {mse:.4f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--warmup", type=int, default=6, help="reasoning warm-up steps")
    ap.add_argument("--sr-warmup", type=int, default=6, help="self-reward warm-up steps")
    a = ap.parse_args()
    for run in a.runs:
        eval_table(run)
        train_table(run, a.warmup, a.sr_warmup)


if __name__ == "__main__":
    main()
