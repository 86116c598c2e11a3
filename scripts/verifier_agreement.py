#!/usr/bin/env python3
"""Agreement of laser-verifier with Hugging Face math-verify.

Offline reference tooling only (never a runtime dependency). Setup, outside the repository:
    python3 -m venv ~/.cache/laser-mv && ~/.cache/laser-mv/bin/pip install math-verify
Run (the verifier binary must be built, e.g. `cargo build -p laser-verifier`):
    ~/.cache/laser-mv/bin/python scripts/verifier_agreement.py --verifier $CARGO_TARGET_DIR/debug/verifier
    python3 scripts/verifier_probe_pairs.py > /tmp/probe.jsonl
    ~/.cache/laser-mv/bin/python scripts/verifier_agreement.py --cases /tmp/probe.jsonl --verifier ...

--cases takes JSONL rows {"gold", "pred"} with optional "expected" or "human" (the label), "category",
"id" and "mv" (a stored math-verify verdict, used unless --recompute-mv). On the evaluation corpus:
    ~/.cache/laser-mv/bin/python scripts/verifier_agreement.py --cases verifier/tests/corpus.jsonl \
        --verifier $CARGO_TARGET_DIR/release/verifier
prints agreement with math-verify and with the human label, false positives and false negatives
counted apart, a markdown table per category, and the rows where math-verify disagrees with the label.
Gold answers without a \\boxed, an unescaped $ or #### are wrapped in $...$ before math-verify
parses them (the usual way math-verify users pass a bare reference answer).
"""
import argparse
import collections
import json
import logging
import pathlib
import re
import subprocess

from math_verify import parse, verify

logging.disable(logging.WARNING)


def mv_gold(gold: str) -> str:
    delimited = "\\boxed" in gold or re.search(r"(?<!\\)\$", gold) or "####" in gold or "\n" in gold
    return gold if delimited else f"${gold}$"


def mv_grade(gold: str, pred: str) -> bool:
    try:
        return bool(verify(parse(mv_gold(gold)), parse(pred)))
    except Exception:  # math-verify raises on a few inputs; count that as "not correct"
        return False


def split(ours, ref):
    """(agreement, ours correct where ref says not, ours not where ref says correct)."""
    agree = sum(a == b for a, b in zip(ours, ref))
    fp = sum(a and not b for a, b in zip(ours, ref))
    fn = sum(b and not a for a, b in zip(ours, ref))
    return agree, fp, fn


def category_table(cases, ours, mv, human):
    """Markdown table of agreement per category (ours vs math-verify, and vs the human label)."""
    cats = collections.defaultdict(list)
    for i, c in enumerate(cases):
        cats[c.get("category", "-")].append(i)
    head = "| category | rows | negatives | vs math-verify | FP | FN |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if human is not None:
        head += " vs human | FP | FN | math-verify vs human |"
        rule += "---:|---:|---:|---:|"
    lines = [head, rule]
    for cat in sorted(cats) + ["**all**"]:
        idx = list(range(len(cases))) if cat == "**all**" else cats[cat]
        o = [ours[i] for i in idx]
        m = [mv[i] for i in idx]
        a, fp, fn = split(o, m)
        neg = sum(not (human or mv)[i] for i in idx)
        row = f"| {cat} | {len(idx)} | {neg} | {a / len(idx):.1%} | {fp} | {fn} |"
        if human is not None:
            h = [human[i] for i in idx]
            ah, fph, fnh = split(o, h)
            am = sum(x == y for x, y in zip(m, h))
            row += f" {ah / len(idx):.1%} | {fph} | {fnh} | {am / len(idx):.1%} |"
        lines.append(row)
    return "\n".join(lines)


def short(text: str, n: int = 100) -> str:
    """The end of a response (where its answer is), on one line."""
    t = text if len(text) <= n else "..." + text[-n:]
    return repr(t)


def main() -> None:
    root = pathlib.Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default=str(root / "verifier" / "tests" / "cases.jsonl"))
    ap.add_argument("--verifier", help="path to the built `verifier` binary")
    ap.add_argument("--show", type=int, default=50, help="disagreements to print")
    ap.add_argument("--recompute-mv", action="store_true",
                    help="grade with math-verify even where a row carries its `mv` verdict")
    args = ap.parse_args()

    cases = [json.loads(l) for l in open(args.cases) if l.strip()]
    # A row's label: `human` (corpus.jsonl) or `expected` (cases.jsonl).
    for c in cases:
        if "human" in c and "expected" not in c:
            c["expected"] = c["human"]
    mv = [c["mv"] if "mv" in c and not args.recompute_mv else mv_grade(c["gold"], c["pred"]) for c in cases]
    ours = None
    if args.verifier:
        batch = "".join(json.dumps({"gold": c["gold"], "answer": c["pred"]}) + "\n" for c in cases)
        res = subprocess.run([args.verifier, "grade", "--batch"], input=batch, capture_output=True, text=True)
        ours = [json.loads(l)["reward"] == 1 for l in res.stdout.splitlines()]
        assert len(ours) == len(cases), res.stderr

    n = len(cases)
    labelled = all("expected" in c for c in cases)
    exp = [c["expected"] for c in cases] if labelled else None
    print(f"cases: {n}" + (f" ({sum(not e for e in exp)} negatives by label)" if labelled else ""))
    if labelled:
        a, fp, fn = split(mv, exp)
        print(f"math-verify vs label:          {a}/{n} = {a / n:.1%} (math-verify correct / label not: {fp}; the reverse: {fn})")
    if ours is not None:
        a, fp, fn = split(ours, mv)
        print(f"laser-verifier vs math-verify: {a}/{n} = {a / n:.1%}")
        print(f"  false positives (ours correct, math-verify not): {fp}; false negatives (the reverse): {fn}")
        if labelled:
            a, fp, fn = split(ours, exp)
            print(f"laser-verifier vs label:       {a}/{n} = {a / n:.1%}")
            print(f"  false positives (ours correct, label not): {fp}; false negatives (the reverse): {fn}")
            right = [i for i in range(n) if mv[i] == exp[i]]
            a = sum(ours[i] == mv[i] for i in right)
            print(f"laser-verifier vs math-verify where math-verify matches the label: "
                  f"{a}/{len(right)} = {a / max(1, len(right)):.1%}")
            sources = sorted({c.get("source", "-") for c in cases})
            if len(sources) > 1:
                for src in sources:
                    idx = [i for i in range(n) if cases[i].get("source", "-") == src]
                    am = sum(ours[i] == mv[i] for i in idx)
                    al = sum(ours[i] == exp[i] for i in idx)
                    print(f"  source {src}: {len(idx)} rows, vs math-verify {am / len(idx):.1%}, "
                          f"vs label {al / len(idx):.1%}")
        if any("category" in c for c in cases):
            print()
            print(category_table(cases, ours, mv, exp))
    if labelled:
        off = [i for i in range(n) if mv[i] != exp[i]]
        print(f"\nrows where math-verify disagrees with the label: {len(off)}")
        for i in off:
            c = cases[i]
            o = "" if ours is None else f" ours={ours[i]}"
            print(f"  {c.get('id', i)} [{c.get('category', '-')}] label={exp[i]} mv={mv[i]}{o} "
                  f"gold={c['gold']!r} pred={short(c['pred'])}")
    if ours is not None:
        off = [i for i in range(n) if ours[i] != mv[i]]
        print(f"\nrows where laser-verifier disagrees with math-verify: {len(off)}" +
              (f" (first {args.show})" if len(off) > args.show else ""))
        for i in off[: args.show]:
            c = cases[i]
            lab = f" label={exp[i]}" if labelled else ""
            print(f"  {c.get('id', i)} [{c.get('category', '-')}] ours={ours[i]} mv={mv[i]}{lab} "
                  f"gold={c['gold']!r} pred={short(c['pred'])}")


if __name__ == "__main__":
    main()
