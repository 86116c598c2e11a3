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

An argument that is not a directory is a samples file (eval_samples/step-N.jsonl, or one copied
out of a run); several files joined by '+' are pooled into one set (their task ids must differ,
e.g. two held-out sets), and get one row of table 1.

    --paired A B   compares two legs on the same problems (A and B: a samples file, or files
                   joined by '+'): the within-problem AUROC of r_s of each, and B - A with a
                   paired bootstrap 95% interval that resamples the problems both legs answered
                   (one draw of problems serves both legs, so the problems' own difficulty
                   cancels out of the difference).

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


TABLE1_HEAD = ("| samples | problems (mixed) | pairs | AUROC within: r_s [95% CI] | log p [95% CI] "
               "| eta^2 of r_s / log p | r_s mean right / wrong | rho(r_s, log p) within |\n"
               "|---|---:|---:|---|---|---|---|---:|")


def eval_row(label, rows):
    probs = problems_of(rows)
    mixed = sum(1 for p in probs if 0 < sum(r["correct"] for r in p) < len(p))
    a_rs, pairs = within(probs, "self_reward")
    a_lp, _ = within(probs, "mean_logprob")
    ci_rs, ci_lp = bootstrap(probs, "self_reward"), bootstrap(probs, "mean_logprob")
    ci = lambda c: "" if c is None else f" [{c[0]:.2f}, {c[1]:.2f}]"
    rs_right = [r["self_reward"] for r in rows if r["correct"] and r.get("self_reward") is not None]
    rs_wrong = [r["self_reward"] for r in rows if not r["correct"] and r.get("self_reward") is not None]
    m = lambda xs: statistics.fmean(xs) if xs else None
    print(f"| {label} | {len(probs)} ({mixed}) | {pairs} | {fmt(a_rs)}{ci(ci_rs)} | "
          f"{fmt(a_lp)}{ci(ci_lp)} | {fmt(eta_squared(probs, 'self_reward'), 2)} / "
          f"{fmt(eta_squared(probs, 'mean_logprob'), 2)} | {fmt(m(rs_right))} / {fmt(m(rs_wrong))} | "
          f"{fmt(within_rho(probs), 2)} |")


def read_pooled(spec):
    """Samples of one or more files joined by '+'; a task id seen in two files is an error
    (pooling two copies of one problem would count its pairs twice)."""
    rows, owner = [], {}
    for path in spec.split("+"):
        part = read_jsonl(path)
        for tid in {r["task_id"] for r in part}:
            if tid in owner:
                raise SystemExit(f"{path}: task id {tid!r} is also in {owner[tid]}; pool disjoint sets")
            owner[tid] = path
        rows += part
    return rows


def eval_table(run):
    d = os.path.join(run, "eval_samples")
    if not os.path.isdir(d):
        return
    print(f"\n### {run}: held-out evaluations\n")
    print(TABLE1_HEAD.replace("| samples |", "| step |", 1))
    for name in sorted(os.listdir(d), key=lambda n: int(n.split("-")[1].split(".")[0])):
        eval_row(int(name.split("-")[1].split(".")[0]), read_jsonl(os.path.join(d, name)))


def paired(spec_a, spec_b, reps=2000, seed=0):
    """B - A in within-problem AUROC of r_s, with a paired bootstrap over the common problems."""
    by_a = {tuple(p)[0]["task_id"]: p for p in problems_of(read_pooled(spec_a))}
    by_b = {tuple(p)[0]["task_id"]: p for p in problems_of(read_pooled(spec_b))}
    common = sorted(set(by_a) & set(by_b))
    if not common:
        raise SystemExit(f"--paired: {spec_a} and {spec_b} share no task id")
    a, pairs_a = within([by_a[t] for t in common], "self_reward")
    b, pairs_b = within([by_b[t] for t in common], "self_reward")
    rng = random.Random(seed)
    diffs = []
    for _ in range(reps):
        draw = [rng.choice(common) for _ in common]
        da, _ = within([by_a[t] for t in draw], "self_reward")
        db, _ = within([by_b[t] for t in draw], "self_reward")
        if da is not None and db is not None:
            diffs.append(db - da)
    diffs.sort()
    ci = (f"[{diffs[int(0.025 * len(diffs))]:+.3f}, {diffs[int(0.975 * len(diffs)) - 1]:+.3f}]"
          if len(diffs) >= 2 else "–")
    only = len(set(by_a) ^ set(by_b))
    print(f"\n### paired: B - A over {len(common)} common problems"
          + (f" ({only} in one leg only, left out)" if only else "") + "\n")
    print("| leg | pairs | AUROC within: r_s |\n|---|---:|---:|")
    print(f"| A: {spec_a} | {pairs_a} | {fmt(a)} |")
    print(f"| B: {spec_b} | {pairs_b} | {fmt(b)} |")
    d = None if a is None or b is None else b - a
    print(f"| B - A (paired bootstrap 95% CI, {len(diffs)} draws) | | "
          f"{'–' if d is None else f'{d:+.3f}'} {ci} |")
    return d, diffs


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
    ap.add_argument("runs", nargs="*", help="run directories, or samples files ('+' pools several)")
    ap.add_argument("--paired", nargs=2, metavar=("A", "B"), help="compare two legs' samples on the same problems")
    ap.add_argument("--warmup", type=int, default=6, help="reasoning warm-up steps")
    ap.add_argument("--sr-warmup", type=int, default=6, help="self-reward warm-up steps")
    a = ap.parse_args()
    if not a.runs and not a.paired:
        ap.error("give run directories, samples files, or --paired A B")
    files = [r for r in a.runs if not os.path.isdir(r)]
    if files:
        print("\n### samples files\n")
        print(TABLE1_HEAD)
        for spec in files:
            eval_row(spec, read_pooled(spec))
    for run in (r for r in a.runs if os.path.isdir(r)):
        eval_table(run)
        train_table(run, a.warmup, a.sr_warmup)
    if a.paired:
        paired(*a.paired)


if __name__ == "__main__":
    main()
