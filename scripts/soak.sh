#!/usr/bin/env bash
# Soak test (issue 27; not in default CI): the tiny job's RL for SOAK_STEPS steps with a random
# fault every SOAK_EVERY seconds (SIGKILL of an actor, a verifier or the learner; SIGSTOP of a
# verifier for a few seconds, a hang), then `coordinator audit` on the run's ledger, and the final
# checkpoint compared with a fault-free run of the same configuration.
#
#   scripts/soak.sh OUT_DIR          # env: SOAK_STEPS (40), SOAK_EVERY (8), SOAK_SEED (1),
#                                    #      SOAK_LIMIT_S (1800): the bound on each run's time
#
# Needs the release binaries (`cargo build --release --bins`). Writes OUT_DIR/{clean,faulty}/
# (run directories), OUT_DIR/faults.log (each fault: time, step reached, victim, signal) and
# OUT_DIR/soak.md (the summary). Exit status 0 only when the audit passes and the run finished.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: scripts/soak.sh OUT_DIR}"
steps="${SOAK_STEPS:-40}"
every="${SOAK_EVERY:-8}"
seed="${SOAK_SEED:-1}"
limit="${SOAK_LIMIT_S:-1800}"
target="${CARGO_TARGET_DIR:-$HOME/.cache/laser-target}"
coordinator="$target/release/coordinator"
[ -x "$coordinator" ] || { echo "soak: $coordinator missing: cargo build --release --bins" >&2; exit 1; }
mkdir -p "$out"
out="$(cd "$out" && pwd)"
RANDOM="$seed"

# A small, fast RL job: no warm start, no held-out evaluation, checkpoints every 2 steps, a
# heartbeat timeout short enough that a hung verifier is noticed within the soak.
job_env=(
    LASER__WARMSTART__STEPS=0
    LASER__EVAL__ENABLED=false
    LASER__RUN__MAX_STEPS="$steps"
    LASER__RUN__CHECKPOINT_EVERY=2
    LASER__RUN__KEEP_CHECKPOINTS=2
    LASER__ALGORITHM__BATCH_PROMPTS=8
    LASER__ALGORITHM__GROUP_SIZE=4
    LASER__ALGORITHM__REASONING_WARMUP_STEPS=4
    LASER__ALGORITHM__SELF_REWARDING_WARMUP_STEPS=4
    LASER__CLUSTER__ACTORS=2
    LASER__CLUSTER__VERIFIERS=2
    LASER__CLUSTER__WORKER_TIMEOUT_MS=3000
    LASER__CLUSTER__GRADE_TIMEOUT_S=10
    LASER__CLUSTER__LEARNER_RESTARTS=1000
)

run_job() { # DIR -> starts the coordinator in the background, sets $job_pid
    local dir="$1"
    env "${job_env[@]}" LASER__RUN__DIR="$dir" \
        "$coordinator" --cluster cluster.toml --no-progress > "$dir.log" 2>&1 &
    job_pid=$!
}

wait_bounded() { # PID LABEL
    local pid="$1" t0=$SECONDS
    while kill -0 "$pid" 2>/dev/null; do
        if (( SECONDS - t0 > limit )); then
            echo "soak: $2 ran past ${limit}s; stopping it" >&2
            kill -TERM "$pid" 2>/dev/null || true
            sleep 5
            kill -KILL "$pid" 2>/dev/null || true
            return 124
        fi
        sleep 1
    done
    wait "$pid"
}

worker_pid() { # COORDINATOR_PID NAME -> pid of that coordinator's local worker NAME, or nothing
    pgrep -P "$1" -f -- "--name $2( |\$)" | head -1 || true
}

steps_done() { # RUN_DIR
    if [ -f "$1/metrics.jsonl" ]; then wc -l < "$1/metrics.jsonl"; else echo 0; fi
}

rm -rf "$out/clean" "$out/faulty"
mkdir -p "$out/clean" "$out/faulty"
echo "soak: fault-free reference run ($steps steps) in $out/clean"
t0=$SECONDS
run_job "$out/clean"
clean_status=0
wait_bounded "$job_pid" "the reference run" || clean_status=$?
clean_s=$((SECONDS - t0))

echo "soak: faulty run ($steps steps, a fault every ~${every}s) in $out/faulty"
: > "$out/faults.log"
t0=$SECONDS
run_job "$out/faulty"
victims=(actor-0 actor-1 verifier-0 verifier-1 learner-0 hang:verifier-0 hang:verifier-1)
faults=0
while kill -0 "$job_pid" 2>/dev/null && (( SECONDS - t0 < limit )); do
    sleep $(( every / 2 + RANDOM % (every + 1) ))
    kill -0 "$job_pid" 2>/dev/null || break
    v="${victims[RANDOM % ${#victims[@]}]}"
    name="${v#hang:}"
    pid="$(worker_pid "$job_pid" "$name")"
    [ -n "$pid" ] || continue
    at="$(steps_done "$out/faulty")"
    if [[ "$v" == hang:* ]]; then
        hold=$(( 2 + RANDOM % 6 ))
        kill -STOP "$pid" 2>/dev/null || continue
        echo "$((SECONDS - t0))s step=$at $name SIGSTOP ${hold}s" | tee -a "$out/faults.log"
        sleep "$hold"
        kill -CONT "$pid" 2>/dev/null || true
    else
        kill -KILL "$pid" 2>/dev/null || continue
        echo "$((SECONDS - t0))s step=$at $name SIGKILL" | tee -a "$out/faults.log"
    fi
    faults=$((faults + 1))
done
faulty_status=0
wait_bounded "$job_pid" "the faulty run" || faulty_status=$?
faulty_s=$((SECONDS - t0))

audit_status=0
"$coordinator" audit "$out/faulty" > "$out/audit.txt" 2>&1 || audit_status=$?
cat "$out/audit.txt"

final() { ls -d "$1"/checkpoints/step-* 2>/dev/null | sort | tail -1; }
c_final="$(final "$out/clean")"
f_final="$(final "$out/faulty")"
same="not compared"
if [ -n "$c_final" ] && [ -n "$f_final" ]; then
    if cmp -s "$c_final/model.safetensors" "$f_final/model.safetensors"; then
        same="bitwise identical ($(basename "$c_final"))"
    else
        same="different ($(basename "$c_final") vs $(basename "$f_final"))"
    fi
fi
{
    echo "# Soak: $steps RL steps of the tiny job, a fault every ~${every}s (seed $seed)"
    echo
    echo "| | fault-free | with faults |"
    echo "|---|---:|---:|"
    echo "| exit status | $clean_status | $faulty_status |"
    echo "| steps completed | $(steps_done "$out/clean") | $(steps_done "$out/faulty") |"
    echo "| wall time (s) | $clean_s | $faulty_s |"
    echo "| faults injected | 0 | $faults |"
    echo
    echo "Faults: $(grep -c SIGKILL "$out/faults.log" || true) SIGKILL, $(grep -c SIGSTOP "$out/faults.log" || true) SIGSTOP (see faults.log)."
    echo
    echo "Final model, fault-free vs faulty: $same."
    echo
    echo '```'
    cat "$out/audit.txt"
    echo '```'
} > "$out/soak.md"
cat "$out/soak.md"
[ "$faulty_status" = 0 ] && [ "$audit_status" = 0 ]
