#!/usr/bin/env python3
"""Generate a JSONL math dataset with PyPI `reasoning-gym`, in the form the verifier's JSONL loader
(laser_verifier::tasks::jsonl) and the coordinator read: one object per line with `id`, `question`
and `answer` (the gold final answer), plus `dataset` and `metadata` for reference.

Offline tooling only (never a runtime dependency). Set up the environment once, outside the repo:

    python3 -m venv ~/.cache/laser-rg && ~/.cache/laser-rg/bin/pip install "reasoning-gym==0.1.25"

Examples:

    # The committed sample: small-integer arithmetic the default tiny model can learn.
    ~/.cache/laser-rg/bin/python scripts/gen_reasoning_gym.py --preset tiny-arithmetic \
        --size 600 --seed 0 --out data/reasoning_gym_arithmetic.jsonl

    # Its held-out set: distinct questions none of which is in the training file.
    ~/.cache/laser-rg/bin/python scripts/gen_reasoning_gym.py --preset tiny-arithmetic \
        --size 128 --seed 1 --exclude data/reasoning_gym_arithmetic.jsonl \
        --out data/reasoning_gym_arithmetic_eval.jsonl

    # Any reasoning-gym datasets, with their config as JSON.
    ~/.cache/laser-rg/bin/python scripts/gen_reasoning_gym.py --dataset chain_sum \
        --dataset gcd --config '{"gcd": {"min_numbers": 2, "max_numbers": 2}}' --size 1000 --out rg.jsonl

Every gold answer is checked with the dataset's own `score_answer` before it is written. Where an
item carries its arithmetic expression (metadata `expression`), the gold answer is also checked by
evaluating the expression exactly: reasoning-gym 0.1.25's `basic_arithmetic` with
`allow_parentheses=False` prints some expressions without the parentheses it evaluated them with
(e.g. "Calculate 6 + 10 * 0." with answer 0; about 8% of the tiny-arithmetic preset). Such items
are dropped and counted, and more are drawn so the file still has --size problems.
"""

import argparse
import ast
import json
import operator
import sys
from fractions import Fraction

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def exact_value(expression: str):
    """The exact value of an integer +-*/ expression (usual precedence), or None if it is not one."""
    try:
        tree = ast.parse(expression, mode="eval").body
    except SyntaxError:
        return None

    def ev(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(node)

    try:
        return ev(tree)
    except (ValueError, ZeroDivisionError):
        return None


def gold_matches_expression(answer: str, expression: str) -> bool:
    value = exact_value(expression)
    if value is None:
        return True  # not a plain expression: nothing to check
    try:
        return Fraction(answer) == value
    except ValueError:
        return False

# Presets: (dataset name, config) pairs, mixed evenly.
PRESETS = {
    # "Calculate 6 + 2 * 7." — the synthetic task's shape, integers with at most 2 operations.
    "tiny-arithmetic": [
        (
            "basic_arithmetic",
            dict(
                min_terms=2,
                max_terms=3,
                min_digits=1,
                max_digits=1,
                operators=("+", "-", "*"),
                allow_parentheses=False,
                allow_negation=False,
                format_style="simple",
                whitespace="single",
            ),
        ),
    ],
    # SmolLM2-135M-Instruct's job (cluster.smollm2.toml): problems it solves some of the time
    # (sampled accuracy at T=1 is 10-40% on the first three), so groups of 8 mix right and wrong
    # answers, and GSM-style word problems as the hard quarter.
    "smollm2": [
        (
            "basic_arithmetic",
            dict(
                min_terms=2,
                max_terms=2,
                min_digits=1,
                max_digits=1,
                operators=("+", "-", "*"),
                allow_parentheses=False,
                allow_negation=False,
                format_style="simple",
                whitespace="single",
            ),
        ),
        ("chain_sum", dict(min_terms=2, max_terms=3, min_digits=1, max_digits=1)),
        ("leg_counting", dict(min_animals=1, max_animals=2, max_instances=3)),
        ("gsm_symbolic", dict()),
    ],
    # A broader arithmetic mix for larger models.
    "arithmetic-mix": [
        ("basic_arithmetic", dict(min_terms=2, max_terms=4, min_digits=1, max_digits=2)),
        ("chain_sum", dict(min_terms=2, max_terms=4, min_digits=1, max_digits=2)),
        ("gcd", dict(min_numbers=2, max_numbers=2, min_value=2, max_value=100)),
        ("lcm", dict(min_numbers=2, max_numbers=2, min_value=2, max_value=20)),
        ("products", dict(min_terms=2, max_terms=2, min_digits=1, max_digits=2)),
    ],
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named dataset mix")
    p.add_argument("--dataset", action="append", default=[], help="a reasoning-gym dataset name (repeatable)")
    p.add_argument("--config", default="{}", help='JSON: {"dataset_name": {config fields}} for --dataset')
    p.add_argument("--size", type=int, required=True, help="total number of problems")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        help="a JSONL file whose questions are left out (a held-out set disjoint from training); repeat it for several files",
    )
    p.add_argument("--out", required=True, help="output JSONL path ('-' for stdout)")
    args = p.parse_args()

    try:
        import reasoning_gym
    except ImportError:
        sys.exit("reasoning-gym is not installed: see the setup line at the top of this script")

    if args.preset and args.dataset:
        sys.exit("--preset and --dataset are exclusive")
    if args.preset:
        mix = PRESETS[args.preset]
    elif args.dataset:
        try:
            configs = json.loads(args.config)
        except json.JSONDecodeError as e:
            sys.exit(f"--config: invalid JSON: {e}")
        unknown = set(configs) - set(args.dataset)
        if unknown:
            sys.exit(f"--config names datasets not given with --dataset: {sorted(unknown)}")
        mix = [(name, configs.get(name, {})) for name in args.dataset]
    else:
        sys.exit("give --preset or at least one --dataset")
    if args.size < 1:
        sys.exit("--size must be at least 1")

    # Split the size evenly over the mix (the first datasets take the remainder), then interleave.
    per = [args.size // len(mix) + (1 if i < args.size % len(mix) else 0) for i in range(len(mix))]
    excluded = set()
    for path in args.exclude:
        with open(path) as f:
            excluded |= {json.loads(line)["question"] for line in f if line.strip()}
    streams = []  # (name, dataset, number wanted, accepted rows)
    dropped = {}
    for i, ((name, config), n) in enumerate(zip(mix, per)):
        if n == 0:
            continue
        # Draw extra items to replace those whose gold answer fails the expression check.
        try:
            ds = reasoning_gym.create_dataset(name, size=(20 if excluded else 2) * n + 20, seed=args.seed + 1000 * i, **config)
        except Exception as e:  # unknown dataset or config field: name it
            sys.exit(f"dataset {name!r} with config {config}: {e}")
        accepted = []
        for j in range(len(ds)):
            if len(accepted) == n:
                break
            item = ds[j]
            answer = str(item["answer"]).strip()
            if not answer:
                sys.exit(f"{name}[{j}]: empty answer")
            score = ds.score_answer(answer, item)
            if score < 1.0:
                sys.exit(f"{name}[{j}]: its own gold answer {answer!r} scores {score}")
            if excluded and (
                item["question"] in excluded or any(a["question"] == item["question"] for a in accepted)
            ):
                continue  # held-out sets: disjoint from the excluded file, no repeats
            meta = {k: v for k, v in item.get("metadata", {}).items() if _jsonable(v)}
            expression = meta.get("expression")
            if isinstance(expression, str) and not gold_matches_expression(answer, expression):
                dropped[name] = dropped.get(name, 0) + 1
                continue
            accepted.append(
                {
                    "id": f"rg-{name}-{args.seed}-{j}",
                    "question": item["question"],
                    "answer": answer,
                    "dataset": name,
                    "metadata": meta,
                }
            )
        if len(accepted) < n:
            sys.exit(f"{name}: only {len(accepted)} of {n} items passed the gold-answer check")
        streams.append((name, accepted))

    rows = []
    for j in range(max(per)):
        for _, accepted in streams:
            if j < len(accepted):
                rows.append(accepted[j])

    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"{len(rows)} problems from {[n for n, _ in streams]} -> {args.out}", file=sys.stderr)
    if dropped:
        print(f"dropped (gold answer != value of the printed expression): {dropped}", file=sys.stderr)
    return 0


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
