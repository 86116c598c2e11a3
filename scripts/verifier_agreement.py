#!/usr/bin/env python3
"""Agreement of laser-verifier with Hugging Face math-verify on verifier/tests/cases.jsonl.

Offline reference tooling only (never a runtime dependency). Setup, outside the repository:
    python3 -m venv ~/.cache/laser-mv && ~/.cache/laser-mv/bin/pip install math-verify
Run (the verifier binary must be built, e.g. `cargo build -p laser-verifier`):
    ~/.cache/laser-mv/bin/python scripts/verifier_agreement.py --verifier $CARGO_TARGET_DIR/debug/verifier

Gold answers without a \\boxed or $ are wrapped in $...$ before math-verify parses them (the usual
way math-verify users pass a bare reference answer).
"""
import argparse
import json
import logging
import pathlib
import subprocess

from math_verify import parse, verify

logging.disable(logging.WARNING)


def mv_grade(gold: str, pred: str) -> bool:
    g = gold if ("\\boxed" in gold or "$" in gold or "####" in gold or "\n" in gold) else f"${gold}$"
    return bool(verify(parse(g), parse(pred)))


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
    exp = [c["expected"] for c in cases]
    print(f"cases: {n}")
    print(f"math-verify vs expected:   {sum(a == b for a, b in zip(mv, exp)) / n:.1%}")
    if ours is not None:
        print(f"laser-verifier vs expected: {sum(a == b for a, b in zip(ours, exp)) / n:.1%}")
        print(f"laser-verifier vs math-verify: {sum(a == b for a, b in zip(ours, mv)) / n:.1%}")
    shown = 0
    for i, c in enumerate(cases):
        o = ours[i] if ours is not None else None
        if mv[i] != exp[i] or (o is not None and o != mv[i]):
            if shown < args.show:
                print(f"  [{c['category']}] gold={c['gold']!r} pred={c['pred']!r} expected={exp[i]} mv={mv[i]} ours={o}")
            shown += 1
    print(f"rows with any disagreement: {shown}")


if __name__ == "__main__":
    main()
