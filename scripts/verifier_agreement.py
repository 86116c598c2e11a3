#!/usr/bin/env python3
"""Agreement of laser-verifier with Hugging Face math-verify.

Offline reference tooling only (never a runtime dependency). Setup, outside the repository:
    python3 -m venv ~/.cache/laser-mv && ~/.cache/laser-mv/bin/pip install math-verify
Run (the verifier binary must be built, e.g. `cargo build -p laser-verifier`):
    ~/.cache/laser-mv/bin/python scripts/verifier_agreement.py --verifier $CARGO_TARGET_DIR/debug/verifier
    python3 scripts/verifier_probe_pairs.py > /tmp/probe.jsonl
    ~/.cache/laser-mv/bin/python scripts/verifier_agreement.py --cases /tmp/probe.jsonl --verifier ...

--cases takes JSONL rows {"gold", "pred"} with optional "expected" (our label) and "category".
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


def main() -> None:
    root = pathlib.Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default=str(root / "verifier" / "tests" / "cases.jsonl"))
    ap.add_argument("--verifier", help="path to the built `verifier` binary")
    ap.add_argument("--show", type=int, default=50, help="disagreements to print")
    args = ap.parse_args()

    cases = [json.loads(l) for l in open(args.cases) if l.strip()]
    mv = [mv_grade(c["gold"], c["pred"]) for c in cases]
    ours = None
    if args.verifier:
        batch = "".join(json.dumps({"gold": c["gold"], "answer": c["pred"]}) + "\n" for c in cases)
        res = subprocess.run([args.verifier, "grade", "--batch"], input=batch, capture_output=True, text=True)
        ours = [json.loads(l)["reward"] == 1 for l in res.stdout.splitlines()]
        assert len(ours) == len(cases), res.stderr

    n = len(cases)
    labelled = all("expected" in c for c in cases)
    print(f"cases: {n}")
    if labelled:
        exp = [c["expected"] for c in cases]
        print(f"math-verify vs expected:       {sum(a == b for a, b in zip(mv, exp)) / n:.1%}")
    if ours is not None:
        if labelled:
            print(f"laser-verifier vs expected:    {sum(a == b for a, b in zip(ours, exp)) / n:.1%}")
        agree = sum(a == b for a, b in zip(ours, mv))
        print(f"laser-verifier vs math-verify: {agree}/{n} = {agree / n:.1%}")
        split = collections.Counter((o, m) for o, m in zip(ours, mv) if o != m)
        print(f"  ours correct / math-verify not: {split[(True, False)]}; the reverse: {split[(False, True)]}")
    shown = 0
    for i, c in enumerate(cases):
        o = ours[i] if ours is not None else None
        off_label = labelled and mv[i] != c["expected"]
        if off_label or (o is not None and o != mv[i]):
            if shown < args.show:
                print(f"  [{c.get('category', '-')}] gold={c['gold']!r} pred={c['pred']!r} "
                      f"expected={c.get('expected')} mv={mv[i]} ours={o}")
            shown += 1
    print(f"rows with any disagreement: {shown}")


if __name__ == "__main__":
    main()
