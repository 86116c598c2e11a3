#!/usr/bin/env bash
# Side-by-side benchmark of issue 8: our system against transformers / TRL / PyTorch / math-verify,
# alternating repetitions on the same CPU with the same models and work, for the tiny default
# model and SmolLM2-135M. Prints a table of medians and ratios.
#
#   bench/run.sh                       # full run (~20 min on 2 cores), rewrites BENCHMARKS.md's section
#   bench/run.sh --quick               # a few minutes: fewer repetitions, 32-token SmolLM2 work
#   bench/run.sh --models tiny --only a,d --no-update
#
# Sets up (or checks) the pinned reference venv outside the repository (scripts/setup_reference_env.sh
# --bench: torch, transformers, trl, math-verify at ~/.cache/laser-pyref), fetches SmolLM2
# (scripts/fetch_smollm2.sh), builds the `laser-bench` worker in release, writes the tiny default
# model as a HF directory both sides load, then runs bench/run.py. Work files and logs go to
# $LASER_BENCH_DIR (default ~/.cache/laser-bench).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/laser-target}"
WORK="${LASER_BENCH_DIR:-$HOME/.cache/laser-bench}"
VENV="${LASER_PYREF:-$HOME/.cache/laser-pyref}"
mkdir -p "$WORK"

update=--update-benchmarks
args=()
for a in "$@"; do
    case "$a" in
        --no-update) update= ;;
        *) args+=("$a") ;;
    esac
done

scripts/setup_reference_env.sh --bench >&2
SMOL="$(scripts/fetch_smollm2.sh)"
echo "building laser-bench (release) and the proto/verifier benches" >&2
cargo build --release --quiet -p laser-bench
cargo bench --quiet --no-run -p laser-proto --bench weight_broadcast 2>/dev/null
cargo bench --quiet --no-run -p laser-verifier --bench throughput 2>/dev/null
BIN="$CARGO_TARGET_DIR/release/laser-bench"
"$BIN" write-tiny "$WORK/tiny" >/dev/null

cmd="bench/run.sh${*:+ $*}"
exec "$VENV/bin/python" bench/run.py --ours "$BIN" --python "$VENV/bin/python" \
    --tiny "$WORK/tiny" --smollm2 "$SMOL" --out "$WORK/results.json" --log "$WORK/workers.log" \
    --command "$cmd" ${update:+"$update"} ${args[@]+"${args[@]}"}
