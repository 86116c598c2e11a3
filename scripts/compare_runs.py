#!/usr/bin/env python3
"""Are two runs of the same job bit-identical? Compares metrics.jsonl and eval.jsonl row by row,
every field except wall-clock ones (seconds, throughput, timestamps, and the asynchronous
staleness/actors-at-version counters), plus c_ref.json (run-directory paths aside), the
checkpoints' and final models' safetensors bytes, and data_order.jsonl.

    python3 scripts/compare_runs.py runs/a runs/b
"""

import hashlib
import json
import sys
from pathlib import Path

TIMING = ("seconds", "per_sec", "unix_time", "gbps", "staleness", "actors_at_version")


def timing(key: str) -> bool:
    return any(t in key for t in TIMING)


def rows(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def compare_jsonl(a: Path, b: Path) -> int:
    ra, rb = rows(a), rows(b)
    bad = 0
    if len(ra) != len(rb):
        print(f"{a.name}: {len(ra)} vs {len(rb)} rows")
        bad += 1
    for i, (x, y) in enumerate(zip(ra, rb)):
        keys = sorted(k for k in set(x) | set(y) if not timing(k))
        diff = [k for k in keys if x.get(k) != y.get(k)]
        if diff:
            bad += 1
            if bad <= 5:
                print(f"{a.name} row {i}: " + ", ".join(f"{k}: {x.get(k)} vs {y.get(k)}" for k in diff[:6]))
    print(f"{a.name}: {len(ra)} rows, {bad} differing (timings ignored)")
    return bad


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def main():
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    bad = 0
    for name in ("metrics.jsonl", "eval.jsonl"):
        bad += compare_jsonl(a / name, b / name)
    # c_ref.json names the model it calibrated, inside the run directory: compare with the
    # directories' own paths taken out.
    ca, cb = (d / "c_ref.json" for d in (a, b))
    if ca.exists() or cb.exists():
        same = ca.exists() and cb.exists() and (
            ca.read_text().replace(str(a), "RUN") == cb.read_text().replace(str(b), "RUN")
        )
        print(f"c_ref.json: {'identical' if same else 'DIFFERENT'} (run directory paths aside)")
        bad += not same
    for name in ("data_order.jsonl", "sft_data.jsonl", "calibration_prompts.jsonl"):
        if (a / name).exists() or (b / name).exists():
            same = (a / name).exists() and (b / name).exists() and digest(a / name) == digest(b / name)
            print(f"{name}: {'identical' if same else 'DIFFERENT'}")
            bad += not same
    tensors = sorted(p.relative_to(a) for p in a.rglob("*.safetensors"))
    differ = [t for t in tensors if not (b / t).exists() or digest(a / t) != digest(b / t)]
    print(f"safetensors: {len(tensors)} files, {len(differ)} differing" + (f" (first: {differ[0]})" if differ else ""))
    bad += len(differ)
    print("IDENTICAL" if bad == 0 else "DIFFERENT")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
