#!/usr/bin/env python3
"""Offline reference check (issue 28): read a run's TensorBoard event files with TensorBoard's
own reader (EventAccumulator) and compare every `train/<field>` scalar with metrics.jsonl and
every `eval/<field>` with eval.jsonl. Exit status 1 on any difference.

    python3 -m venv /tmp/tb && /tmp/tb/bin/pip install tensorboard
    /tmp/tb/bin/python scripts/check_tensorboard.py RUN_DIR
"""
import json
import math
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def flat(prefix, v, out):
    if isinstance(v, dict):
        for k, x in v.items():
            flat(f"{prefix}/{k}", x, out)
    elif isinstance(v, bool):
        out[prefix] = float(v)
    elif isinstance(v, (int, float)):
        out[prefix] = float(v)


def main():
    run = Path(sys.argv[1])
    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    got = {}
    for tag in acc.Tags()["scalars"]:
        for e in acc.Scalars(tag):
            got[(tag, e.step)] = e.value
    want = {}
    for name, prefix, at in [("metrics.jsonl", "train", 1), ("eval.jsonl", "eval", 0)]:
        p = run / name
        if not p.exists():
            continue
        for line in p.read_text().splitlines():
            row = json.loads(line)
            out = {}
            flat(prefix, row, out)
            for tag, v in out.items():
                want[(tag, row["step"] + at)] = v
    bad = [
        (k, v, got.get(k))
        for k, v in want.items()
        if k not in got or not math.isclose(got[k], v, rel_tol=1e-6, abs_tol=1e-6)
    ]
    print(f"{run}: {len(got)} scalars read by TensorBoard, {len(want)} expected, {len(bad)} differ")
    for k, v, g in bad[:20]:
        print(f"  {k}: want {v}, TensorBoard read {g}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
