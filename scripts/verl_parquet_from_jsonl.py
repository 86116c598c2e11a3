#!/usr/bin/env python3
"""Offline reference tooling (issue 28): turn a JSONL task file into a parquet file in verl's
layout, the way verl's own `examples/data_preprocess/gsm8k.py` does (a pandas/pyarrow DataFrame
with `data_source`, `prompt` as chat messages, `ability`, `reward_model.ground_truth`,
`extra_info`), snappy-compressed. The file it writes is committed as a fixture, so the Rust
reader is checked against what pyarrow writes, not only against our own writer.

    python3 -m venv /tmp/pq && /tmp/pq/bin/pip install pyarrow pandas
    /tmp/pq/bin/python scripts/verl_parquet_from_jsonl.py data/reasoning_gym_arithmetic.jsonl \
        data/reasoning_gym_arithmetic.verl.parquet --data-source reasoning_gym/basic_arithmetic
"""
import argparse
import json

import pandas as pd

# verl's gsm8k recipe appends this instruction to the question.
INSTRUCTION = 'Let\'s think step by step and output the final answer after "####".'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("jsonl")
    ap.add_argument("out")
    ap.add_argument("--data-source", required=True)
    ap.add_argument("--split", default="train")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    rows = []
    with open(args.jsonl) as f:
        for idx, line in enumerate(f):
            if args.limit and idx >= args.limit:
                break
            t = json.loads(line)
            rows.append(
                {
                    "data_source": args.data_source,
                    "prompt": [{"role": "user", "content": f"{t['question']} {INSTRUCTION}"}],
                    "ability": "math",
                    "reward_model": {"style": "rule", "ground_truth": str(t["answer"])},
                    "extra_info": {
                        "split": args.split,
                        "index": idx,
                        "answer": str(t["answer"]),
                        "question": t["question"],
                    },
                }
            )
    pd.DataFrame(rows).to_parquet(args.out, compression="snappy")
    print(f"{args.out}: {len(rows)} rows")


if __name__ == "__main__":
    main()
