#!/usr/bin/env bash
# Recipe sweep: several RL variants of the default job, in parallel, from one finished warm start.
#
#   scripts/recipe_sweep.sh SEED_RUN_DIR OUT_DIR CORES_PER_TRIAL VARIANT...
#
#   SEED_RUN_DIR  a run directory whose init, warmstart and calibrate phases are done (its RL
#                 phase, if any, is dropped): each trial starts from a copy with `--resume`.
#   VARIANT       NAME or NAME:KEY=VALUE,KEY=VALUE with LASER__* keys without the prefix, e.g.
#                 base   a3:ALGORITHM__ALPHA=0.3   a3lr:ALGORITHM__ALPHA=0.3,ALGORITHM__LR=3e-4
#
# Trial i is pinned (taskset) to cores [i*C, (i+1)*C), so the thread pools see C cores each.
# Every 20 s, each trial's eval.jsonl, metrics.jsonl and log are copied to OUT_DIR/NAME, so a
# sweep cut off by a deadline (SWEEP_DEADLINE_S, default none) still leaves its evaluations.
# Binaries come from BIN_DIR (default target/release): coordinator, learner, actor, verifier.
# The variants share the warm start and c_ref, and their held-out sets are equal as long as
# run.max_steps is.
set -euo pipefail

if [ $# -lt 4 ]; then
    sed -n 2,17p "$0"
    exit 2
fi
SEED="$1"
OUT="$2"
CORES="$3"
shift 3
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${BIN_DIR:-$ROOT/target/release}"
WORK="${SWEEP_WORK:-$(mktemp -d /tmp/laser-sweep.XXXXXX)}"
CLUSTER="${CLUSTER:-$ROOT/cluster.toml}"
DEADLINE="${SWEEP_DEADLINE_S:-0}"
for b in coordinator learner actor verifier; do
    [ -x "$BIN_DIR/$b" ] || { echo "recipe_sweep: $BIN_DIR/$b not found (cargo build --release --bins)" >&2; exit 1; }
done
mkdir -p "$OUT"
ncpu=$(nproc)
pin=(taskset -c)
command -v taskset >/dev/null || { echo "recipe_sweep: no taskset here: trials are not pinned" >&2; pin=(); }

declare -a PIDS=() NAMES=() DIRS=()
i=0
for spec in "$@"; do
    name="${spec%%:*}"
    overrides=""
    [[ "$spec" == *:* ]] && overrides="${spec#*:}"
    dir="$WORK/$name"
    rm -rf "$dir"
    mkdir -p "$OUT/$name"
    "$ROOT/scripts/seed_rl_run.sh" "$SEED" "$dir"
    first=$((i * CORES))
    last=$((first + CORES - 1))
    if [ "$last" -ge "$ncpu" ]; then
        echo "recipe_sweep: $# trials x $CORES cores need more than the $ncpu here" >&2
        exit 1
    fi
    env_args=("LASER__RUN__DIR=$dir")
    if [ -n "$overrides" ]; then
        IFS=',' read -ra kvs <<<"$overrides"
        for kv in "${kvs[@]}"; do env_args+=("LASER__$kv"); done
    fi
    echo "trial $name: cores $first-$last, ${env_args[*]}" | tee "$OUT/$name/command.txt"
    cpus=()
    [ ${#pin[@]} -gt 0 ] && cpus=("${pin[@]}" "$first-$last")
    env "${env_args[@]}" "${cpus[@]}" "$BIN_DIR/coordinator" --cluster "$CLUSTER" \
        --resume >"$dir/sweep.log" 2>&1 &
    PIDS+=($!)
    NAMES+=("$name")
    DIRS+=("$dir")
    i=$((i + 1))
done

sync_out() {
    for j in "${!NAMES[@]}"; do
        for f in eval.jsonl metrics.jsonl sweep.log summary.md; do
            [ -f "${DIRS[$j]}/$f" ] && cp "${DIRS[$j]}/$f" "$OUT/${NAMES[$j]}/" || true
        done
    done
}

start=$SECONDS
while :; do
    alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
    sync_out
    [ "$alive" -eq 0 ] && break
    if [ "$DEADLINE" -gt 0 ] && [ $((SECONDS - start)) -ge "$DEADLINE" ]; then
        echo "recipe_sweep: deadline ${DEADLINE}s reached with $alive trial(s) running; stopping them"
        for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
        sleep 5
        sync_out
        break
    fi
    sleep 20
done
for j in "${!NAMES[@]}"; do
    last=$(tail -1 "$OUT/${NAMES[$j]}/eval.jsonl" 2>/dev/null || echo '{}')
    echo "${NAMES[$j]}: $last"
done
echo "run dirs: $WORK"
