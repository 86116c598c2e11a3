#!/usr/bin/env python3
"""Runs a command and reports the peak resident memory (VmHWM) of every `learner serve` process
of one run directory, by rank (offline measurement tooling; polls /proc once a second).

    python3 scripts/learner_peak_rss.py RUN_DIR -- coordinator --cluster C --run-dir RUN_DIR ...

Used for BENCHMARKS.md's ZeRO-1 memory figures (the learner ranks of a local-mode run).
"""
import os
import subprocess
import sys
import time


def main():
    if "--" not in sys.argv[1:] or sys.argv.index("--") != 2:
        sys.exit(__doc__)
    run_dir, cmd = sys.argv[1], sys.argv[3:]
    proc = subprocess.Popen(cmd)
    peak = {}
    while proc.poll() is None:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
                if not args[0].endswith(b"learner") or b"serve" not in args:
                    continue
                if not any(run_dir.encode() in a for a in args):
                    continue
                rank = args[args.index(b"--rank") + 1].decode() if b"--rank" in args else "0"
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmHWM:"):
                        peak[rank] = max(peak.get(rank, 0), int(line.split()[1]))
            except (OSError, ValueError, IndexError):
                pass  # the process ended between listing and reading
        time.sleep(1)
    for rank, kb in sorted(peak.items()):
        print(f"learner rank {rank}: peak RSS {kb / 1024:.0f} MiB")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
