#!/usr/bin/env python3
"""Times Hugging Face math-verify on the laser-verifier benchmark mix, for comparison.

Offline reference tooling only. Write the mix with the Rust bench, then time math-verify on it on
one core (same venv as scripts/verifier_agreement.py):
    taskset -c 0 cargo bench -p laser-verifier --bench throughput -- --dump-mix /tmp/verifier_mix.jsonl
    taskset -c 0 ~/.cache/laser-mv/bin/python scripts/verifier_bench_mathverify.py /tmp/verifier_mix.jsonl

Each answer is graded the way math-verify users do it: verify(parse(gold), parse(response)), with
math-verify's default (signal-based) timeouts, gold wrapped as in verifier_agreement.py.
"""
import argparse
import json
import logging
import pathlib
import sys
import time

from math_verify import parse, verify

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from verifier_agreement import mv_gold  # noqa: E402

logging.disable(logging.WARNING)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mix", help="JSONL {gold, answer} written by the bench's --dump-mix")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    pairs = [json.loads(l) for l in open(args.mix) if l.strip()]
    # Warm-up: imports and sympy caches, like a long-running worker.
    for p in pairs[:20]:
        verify(parse(mv_gold(p["gold"])), parse(p["answer"]))
    correct = 0
    start = time.perf_counter()
    for _ in range(args.rounds):
        for p in pairs:
            correct += bool(verify(parse(mv_gold(p["gold"])), parse(p["answer"])))
    dt = time.perf_counter() - start
    n = len(pairs) * args.rounds
    print(f"math-verify: {n} answers in {dt:.2f} s = {n / dt:.0f} answers/s "
          f"({correct // args.rounds}/{len(pairs)} graded correct)")


if __name__ == "__main__":
    main()
