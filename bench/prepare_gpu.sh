#!/usr/bin/env bash
# Builds, on this CPU machine (no CUDA needed), every executable bench/gpu_check.sh runs, and puts
# them xz-compressed in .gpu/ (ignored by git), so that a lent GPU machine needs one call:
#
#   bench/prepare_gpu.sh                       # here
#   device run, carry [".gpu"]: bash bench/gpu_check.sh
#
# Dev profile, as the GPU figures in BENCHMARKS.md were taken (dependencies at opt-level 3).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/laser-target}"
mkdir -p .gpu
# The test and example executables: the path of the newest one cargo reports.
exe_of() { # cargo args...
    cargo "$@" --message-format=json 2>/dev/null |
        python3 -c 'import json, sys
paths = [m["executable"] for m in map(json.loads, sys.stdin) if m.get("reason") == "compiler-artifact" and m.get("executable")]
print(paths[-1])'
}
# Without debug info (a dev-profile test executable is 650 MB with it, 44 MB without; 6.6 MB
# after xz), so that all of them fit the device tool's 64 MiB carry.
put() { # name path
    strip --strip-debug -o ".gpu/$1" "$2"
    xz -T0 -6 -f ".gpu/$1"
    ls -la ".gpu/$1.xz"
}
put parity "$(exe_of test -p laser-model --features cuda --test parity --no-run)"
put decode_throughput "$(exe_of build -p laser-model --features cuda --example decode_throughput)"
put proto_nccl "$(exe_of test -p laser-proto --features nccl --lib --no-run)"
cargo build -p laser-actor -p laser-learner \
    --features laser-actor/cuda,laser-actor/nccl,laser-learner/cuda,laser-learner/nccl
put actor "$CARGO_TARGET_DIR/debug/actor"
put learner "$CARGO_TARGET_DIR/debug/learner"
cargo build -p laser-coordinator -p laser-verifier
put coordinator "$CARGO_TARGET_DIR/debug/coordinator"
put verifier "$CARGO_TARGET_DIR/debug/verifier"
du -sh .gpu
