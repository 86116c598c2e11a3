#!/usr/bin/env python3
"""Quick A/B driver over `laser-bench serve` (ours only, no reference side): the same `rl_step` and
`generate` commands bench/run.py sends, repeated, with one compute thread pinned to a core.

    scripts/bench_serve.py rl  BIN tiny ~/.cache/laser-bench/tiny --reps 4
    scripts/bench_serve.py gen BIN smollm2 SmolLM2-135M-Instruct.Q4_1.gguf --batch 32 --reps 2

BIN is a `laser-bench` release binary (copy it aside to compare two builds, alternating runs).
Prints one line per run: rl gives total / generate / train seconds, gen gives tok/s and prefill.
"""
import argparse
import json
import os
import subprocess


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["rl", "gen"])
    ap.add_argument("bin")
    ap.add_argument("model", help="model name as bench/run.py uses it: tiny or smollm2")
    ap.add_argument("path", help="model directory or GGUF file")
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32, help="gen: batch size")
    ap.add_argument("--core", default="1", help="taskset core list")
    a = ap.parse_args()
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    p = subprocess.Popen(["taskset", "-c", a.core, a.bin, "serve", f"--{a.model}", a.path],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)

    def call(cmd):
        p.stdin.write(json.dumps(cmd) + "\n")
        p.stdin.flush()
        reply = json.loads(p.stdout.readline())
        if not reply["ok"]:
            raise SystemExit(reply["error"])
        return reply["result"]

    call({"op": "load", "model": a.model})
    if a.what == "rl":
        tasks = call({"op": "tasks", "count": 8, "seed": 0})["tasks"]
        for i in range(a.reps):
            r = call({"op": "rl_step", "model": a.model, "tasks": tasks, "n": 8, "new_tokens": 128,
                      "micro_batch": 8, "seed": i, "fixed_length": True})
            print(f"rl_step {i}: {r['seconds']:.3f} s (generate {r['generate_s']:.3f}, "
                  f"train {r['train_s']:.3f})", flush=True)
    else:
        for i in range(a.reps):
            r = call({"op": "generate", "model": a.model, "batch": a.batch, "prompt_len": 32,
                      "new_tokens": 128, "seed": i})
            print(f"generate b{a.batch} {i}: {r['tokens'] / r['seconds']:.0f} tok/s "
                  f"(prefill {r['prefill_seconds']:.2f} s)", flush=True)
    p.stdin.close()
    p.wait()


if __name__ == "__main__":
    main()
