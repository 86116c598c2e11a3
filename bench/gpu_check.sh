#!/usr/bin/env bash
# One short GPU check, run from the repository root on a machine with an NVIDIA GPU, python3 with
# torch + transformers, and no Rust toolchain:
#
#   bash bench/gpu_check.sh
#
# Needs the prebuilt executables in .gpu/ (plain or .xz); bench/prepare_gpu.sh builds them all:
#   .gpu/parity             model/tests/parity.rs built with --features cuda
#                           (cargo test -p laser-model --features cuda --test parity --no-run)
#   .gpu/decode_throughput  model/examples/decode_throughput.rs built with --features cuda
#   .gpu/{actor,learner}    built with laser-actor/cuda,laser-learner/cuda (optional: parts e, f;
#                           with `nccl` too, part f tries the NCCL weight plane)
#   .gpu/{coordinator,verifier}  default build (optional: part f)
#   .gpu/proto_nccl         laser-proto's unit tests with --features nccl (optional: part g)
#                           (cargo test -p laser-proto --features nccl --lib --no-run)
#
# Parts, each under its own timeout; a failing part does not stop the next:
# The screen shows a digest of each part; full logs and JSON go to $OUT.
#   (a) CUDA parity tests against the committed transformers fixtures (prints every max |diff|)
#   (b) our decode throughput on CUDA, SmolLM2-135M shapes (random init), batch 1, 8, 64, with the
#       device sampler (the default on CUDA), then (b2) with the host sampler
#   (c) transformers on the same GPU, same shapes (float32 and bfloat16) + copy bandwidth
#   (d) the CPU parity tests from the same executable
#   (e) the learner's SFT steps on CUDA against the same steps on the CPU (loss, grad norm per step)
#   (f) the default job for 3 RL steps with model.backend = "cuda": actors and learner on the GPU
#   (g) the learner collective on NCCL: a one-rank group's all-reduce and all-gather, and a group
#       whose second rank never joins failing by its deadline (one GPU cannot hold two ranks)
#   summary: bench/gpu_summary.py over the JSON files
# Logs and JSON go to $OUT (default /tmp/laser-gpu-out).
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
OUT="${OUT:-/tmp/laser-gpu-out}"
mkdir -p "$OUT"
BIN=/tmp/laser-gpu-bin
NVRTC_LINKS=/tmp/laser-nvrtc
mkdir -p "$BIN" "$NVRTC_LINKS"
CONFIG=bench/configs/smollm2-135m.json
T_PARITY="${T_PARITY:-100}"
T_DECODE="${T_DECODE:-150}"
T_REF="${T_REF:-120}"
T_CPU="${T_CPU:-30}"
START=$SECONDS
declare -a RESULTS=()
# SKIP="c d" leaves parts out (e.g. a rerun that already has the transformers figures).
SKIP=" ${SKIP:-} "
want() { [[ "$SKIP" != *" $1 "* ]]; }

mark() { echo; echo "===== [$((SECONDS - START))s] $* ====="; }
record() { # name rc
    local verdict=ok
    case "$2" in 0) ;; 124 | 137) verdict="TIMEOUT(rc $2)" ;; *) verdict="FAILED(rc $2)" ;; esac
    RESULTS+=("$1: $verdict")
    echo "----- $1: $verdict -----"
}

mark "device"
nvidia-smi -L
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.memory --format=csv
nvidia-smi | grep -E "Driver Version|CUDA Version" || true
echo "-- ldconfig:"
ldconfig -p | grep -E 'libcuda|libnvrtc' || echo "(no libcuda/libnvrtc in the ldconfig cache)"
uname -a
python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "| transformers", transformers.__version__)' || true

mark "executables"
for exe in parity decode_throughput actor learner coordinator verifier proto_nccl; do
    if [ -f ".gpu/$exe" ]; then
        cp ".gpu/$exe" "$BIN/$exe"
    elif [ -f ".gpu/$exe.xz" ]; then
        xz -dc ".gpu/$exe.xz" >"$BIN/$exe" || echo "!! xz -d .gpu/$exe.xz failed"
    else
        echo "!! .gpu/$exe(.xz) missing"
    fi
    chmod +x "$BIN/$exe" 2>/dev/null
    ls -la "$BIN/$exe" 2>/dev/null
done

mark "NVRTC and CUDA headers"
# Python's NVIDIA wheels: site-packages/nvidia/{cu13,cu12,cuda_nvrtc,cuda_runtime,...}.
PYNV="$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null || true)"
echo "python nvidia packages under: ${PYNV:-none}"
[ -n "$PYNV" ] && ls "$PYNV/nvidia" 2>/dev/null | tr '\n' ' ' && echo
NVRTC=""
for cand in $(ldconfig -p | awk '/libnvrtc\.so/ && !/builtins/ {print $NF}') \
    /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so* \
    ${PYNV:+$PYNV/nvidia/cu13/lib/libnvrtc.so*} ${PYNV:+$PYNV/nvidia/cuda_nvrtc/lib/libnvrtc.so*} \
    ${PYNV:+$PYNV/nvidia/cu12/lib/libnvrtc.so*}; do
    if [ -f "$cand" ]; then
        echo "found $cand"
        [ -z "$NVRTC" ] && NVRTC="$(readlink -f "$cand")"
    fi
done
if [ -z "$NVRTC" ]; then
    echo "searching /usr /opt /root /home for libnvrtc.so* ..."
    NVRTC="$(timeout 20 find /usr /opt /root /home -name 'libnvrtc.so*' -not -name '*builtins*' 2>/dev/null | head -1)"
    [ -n "$NVRTC" ] && NVRTC="$(readlink -f "$NVRTC")"
fi
ORIG_LD="${LD_LIBRARY_PATH:-}"
RUST_LD="$ORIG_LD"
if [ -n "$NVRTC" ]; then
    # cudarc dlopens libnvrtc.so first, then versioned names; give it that name for our pick.
    ln -sf "$NVRTC" "$NVRTC_LINKS/libnvrtc.so"
    RUST_LD="$NVRTC_LINKS:$(dirname "$NVRTC")${ORIG_LD:+:$ORIG_LD}"
    echo "using NVRTC $NVRTC"
    ls "$(dirname "$NVRTC")" | grep -E "nvrtc" | tr '\n' ' '
    echo
else
    echo "!! no libnvrtc found: the CUDA parts will fail"
fi
# NCCL, for executables built with the `nccl` feature: cudarc dlopens `libnccl.so` (or names with
# the CUDA major version), not the soname `libnccl.so.2` that NCCL's wheel ships alone; link it
# under the first name cudarc tries. Without it the weight plane stays on gRPC and says why.
NCCL_LIB="$(ldconfig -p | awk '/libnccl\.so/ {print $NF; exit}')"
if [ -z "$NCCL_LIB" ] && [ -n "$PYNV" ]; then
    NCCL_LIB="$(ls "$PYNV"/nvidia/nccl/lib/libnccl.so* "$PYNV"/nvidia/cu13/lib/libnccl.so* 2>/dev/null | head -1)"
fi
if [ -n "$NCCL_LIB" ]; then
    ln -sf "$(readlink -f "$NCCL_LIB")" "$NVRTC_LINKS/libnccl.so"
    case ":$RUST_LD:" in *":$NVRTC_LINKS:"*) ;; *) RUST_LD="$NVRTC_LINKS${RUST_LD:+:$RUST_LD}" ;; esac
    echo "using NCCL $NCCL_LIB"
else
    echo "no libnccl found: the weight plane stays on gRPC"
fi
# cubecl compiles kernels with NVRTC and passes --include-path=$CUDA_PATH/include (cuda_runtime.h,
# mma.h, include/cccl); it panics when no CUDA installation is found.
CUDA_INC=""
if [ -f /usr/local/cuda/include/cuda_runtime.h ]; then
    CUDA_INC=/usr/local/cuda
elif [ -n "$PYNV" ] && [ -f "$PYNV/nvidia/cu13/include/cuda_runtime.h" ]; then
    CUDA_INC="$PYNV/nvidia/cu13"
elif [ -n "$PYNV" ]; then
    # Older split wheels: merge every nvidia/*/include into one tree.
    MERGED=/tmp/laser-cuda
    mkdir -p "$MERGED/include"
    for inc in "$PYNV"/nvidia/*/include; do
        for entry in "$inc"/*; do
            [ -e "$MERGED/include/$(basename "$entry")" ] || ln -s "$entry" "$MERGED/include/"
        done
    done
    [ -f "$MERGED/include/cuda_runtime.h" ] && CUDA_INC="$MERGED"
fi
if [ -z "$CUDA_INC" ]; then
    echo "searching /usr /opt /root /home for include/cuda_runtime.h ..."
    found="$(timeout 20 find /usr /opt /root /home -path '*/include/cuda_runtime.h' 2>/dev/null | head -1)"
    [ -n "$found" ] && CUDA_INC="$(dirname "$(dirname "$found")")"
fi
if [ -n "$CUDA_INC" ]; then
    echo "CUDA_PATH=$CUDA_INC (include: $(ls "$CUDA_INC/include" | wc -l) entries; cccl: $([ -d "$CUDA_INC/include/cccl" ] && echo yes || echo no))"
else
    CUDA_INC=/tmp/laser-cuda-empty
    mkdir -p "$CUDA_INC/include"
    echo "!! no cuda_runtime.h found; CUDA_PATH=$CUDA_INC (empty) so cubecl does not panic; NVRTC may still fail"
fi

# Nominal HBM bandwidth for the bound column (measured copy bandwidth is applied in the summary).
GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
case "$GPU_NAME" in
    *H200*) HBM=4800 ;;
    *H100*NVL*) HBM=3900 ;;
    *H100*PCIe*) HBM=2000 ;;
    *H100*) HBM=3350 ;;
    *A100*80GB*) HBM=2039 ;;
    *A100*) HBM=1555 ;;
    *) HBM=3350 ;;
esac
echo "GPU $GPU_NAME: nominal HBM $HBM GB/s"

run_rust() { # timeout cmd...
    local t="$1"
    shift
    env LD_LIBRARY_PATH="$RUST_LD" CUDA_PATH="$CUDA_INC" RUST_BACKTRACE=0 timeout -k 5 "$t" "$@"
}

# The device tool returns only the output's tail: full logs go to $OUT, the screen gets the lines
# that matter (measurements, panics, errors), each cut to 300 characters, at most N of them.
brief() { # log max_lines
    grep -vE "^\s+[0-9]+: |^\s+at |^note: |^stack backtrace|^running [0-9]|^$" "$1" | cut -c1-300 | head -n "$2"
    local n
    n=$(wc -l <"$1")
    echo "(full log: $1, $n lines)"
}

if want a; then
mark "(a) CUDA parity tests (timeout ${T_PARITY}s)"
LASER_TEST_CUDA=1 LASER_MODEL_FIXTURES="$ROOT/model/tests/fixtures" \
    run_rust "$T_PARITY" "$BIN/parity" --nocapture --test-threads 1 cuda:: >"$OUT/parity_cuda.log" 2>&1
RC=$?
brief "$OUT/parity_cuda.log" 80
record "(a) cuda parity" "$RC"
fi

if want b; then
mark "(b) our decode throughput on CUDA (timeout ${T_DECODE}s)"
run_rust "$T_DECODE" "$BIN/decode_throughput" --backend cuda --config "$CONFIG" --batch 1,8,64 \
    --new-tokens 128 --prompt-tokens 16 --reps 3 --hbm-gbps "$HBM" --json \
    >"$OUT/laser_decode_cuda.json" 2>"$OUT/laser_decode_cuda.log"
RC=$?
brief "$OUT/laser_decode_cuda.log" 40
record "(b) laser decode cuda" "$RC"
# The same with the host sampler (every step's logits copied to the host), for the A/B of issue 25.
run_rust "$T_DECODE" "$BIN/decode_throughput" --backend cuda --config "$CONFIG" --batch 1,8,64 \
    --new-tokens 128 --prompt-tokens 16 --reps 3 --hbm-gbps "$HBM" --sampler host --json \
    >"$OUT/laser_decode_cuda_host_sampler.json" 2>"$OUT/laser_decode_cuda_host_sampler.log"
RC=$?
brief "$OUT/laser_decode_cuda_host_sampler.log" 20
record "(b2) laser decode cuda, host sampler" "$RC"
fi

if want c; then
mark "(c) transformers reference on the GPU (timeout ${T_REF}s)"
env LD_LIBRARY_PATH="$ORIG_LD" timeout -k 5 "$T_REF" python3 bench/gpu_reference.py --config "$CONFIG" \
    --batch 1,8,64 --new-tokens 128 --prompt-tokens 16 --reps 3 --dtypes float32,bfloat16 \
    --out "$OUT/hf_reference.json" >"$OUT/hf_reference.log" 2>&1
RC=$?
brief "$OUT/hf_reference.log" 40
record "(c) transformers reference" "$RC"
fi

if want d; then
mark "(d) CPU parity tests, same executable (timeout ${T_CPU}s)"
LASER_MODEL_FIXTURES="$ROOT/model/tests/fixtures" \
    run_rust "$T_CPU" "$BIN/parity" --nocapture --test-threads 2 cpu:: >"$OUT/parity_cpu.log" 2>&1
RC=$?
grep -E "overall max|test result|panicked" "$OUT/parity_cpu.log" | cut -c1-300
record "(d) cpu parity" "$RC"
fi

T_SFT="${T_SFT:-120}"
T_JOB="${T_JOB:-200}"
if want e && [ -x "$BIN/learner" ]; then
    mark "(e) learner SFT on CUDA vs CPU, same data and seed (timeout ${T_SFT}s each)"
    W=/tmp/laser-sft
    rm -rf "$W" && mkdir -p "$W"
    "$BIN/learner" init --out "$W/tiny" --seed 0 >/dev/null 2>&1
    python3 - "$W/sft.jsonl" <<'PY'
import json, random, sys
rng = random.Random(0)
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        f.write(json.dumps({"question": f"What is {a}+{b}?", "answer": f"{a}+{b}={a+b}. \\boxed{{{a+b}}}"}) + "\n")
PY
    for be in cpu cuda; do
        run_rust "$T_SFT" "$BIN/learner" --backend "$be" sft --model "$W/tiny" --data "$W/sft.jsonl" \
            --out "$W/out-$be" --steps 8 --batch-size 16 --micro-batch-size 8 --lr 1e-3 --seed 0 \
            >"$OUT/sft_$be.log" 2>&1
        RC=$?
        grep -E "compute backend|Error|panicked" "$OUT/sft_$be.log" | cut -c1-300
        record "(e) learner sft $be" "$RC"
    done
    python3 - "$OUT/sft_cpu.log" "$OUT/sft_cuda.log" <<'PY' | tee "$OUT/sft_compare.txt"
import json, sys
def rows(p):
    out = []
    for line in open(p):
        line = line.strip()
        if line.startswith("{") and '"loss"' in line:
            out.append(json.loads(line))
    return out
cpu, cuda = rows(sys.argv[1]), rows(sys.argv[2])
print(f"step | cpu loss | cuda loss | |diff| | cpu grad_norm | cuda grad_norm")
worst = 0.0
for i, (a, b) in enumerate(zip(cpu, cuda)):
    d = abs(a["loss"] - b["loss"])
    worst = max(worst, d)
    print(f"{i+1} | {a['loss']:.6f} | {b['loss']:.6f} | {d:.2e} | {a['grad_norm']:.5f} | {b['grad_norm']:.5f}")
print(f"steps compared: {min(len(cpu), len(cuda))} (cpu {len(cpu)}, cuda {len(cuda)}); max |loss diff| {worst:.2e}")
PY
fi

if want f && [ -x "$BIN/coordinator" ] && [ -x "$BIN/actor" ] && [ -x "$BIN/verifier" ]; then
    mark "(f) the default job, 3 RL steps, model.backend = cuda (timeout ${T_JOB}s)"
    J=/tmp/laser-job
    rm -rf "$J" && mkdir -p "$J"
    # Local mode starts the role binaries that sit beside the coordinator.
    env LD_LIBRARY_PATH="$RUST_LD" CUDA_PATH="$CUDA_INC" LASER__MODEL__BACKEND=cuda \
        LASER__RUN__DIR="$J/run" LASER__WARMSTART__STEPS=30 LASER__EVAL__PROBLEMS=16 \
        timeout -k 10 "$T_JOB" "$BIN/coordinator" --cluster "$ROOT/cluster.toml" --max-steps 3 \
        --no-progress >"$OUT/job_cuda.log" 2>&1
    RC=$?
    grep -E "\[[0-9]/5\]|step [0-9]+/|error|Error|panicked" "$OUT/job_cuda.log" | cut -c1-250 | head -30
    echo "-- compute backend lines of every process:"
    grep -rh "compute backend" "$J/run/logs" "$OUT/job_cuda.log" 2>/dev/null | cut -c1-200 | sort | uniq -c
    grep -h "train step\|weights swapped" "$J/run/logs/"*.log 2>/dev/null | cut -c1-220 | head -8
    echo "-- weight plane (NCCL or gRPC, and why):"
    grep -rhiE "nccl|weight stream|weight group|broadcast" "$J/run/logs" "$OUT/job_cuda.log" 2>/dev/null |
        cut -c1-260 | sort | uniq -c | sort -rn | head -12
    cp "$J/run/metrics.jsonl" "$OUT/job_cuda_metrics.jsonl" 2>/dev/null
    tar -C "$J/run" -czf "$OUT/job_cuda_logs.tgz" logs 2>/dev/null
    record "(f) job on cuda" "$RC"
fi

if want g && [ -x "$BIN/proto_nccl" ]; then
    mark "(g) NCCL learner collective, one rank (timeout 90s)"
    env LD_LIBRARY_PATH="$RUST_LD" timeout -k 10 90 "$BIN/proto_nccl" --nocapture \
        nccl::tests >"$OUT/nccl_collective.log" 2>&1
    RC=$?
    grep -E "NCCL|NOT RUN|test result|panicked" "$OUT/nccl_collective.log" | cut -c1-250 | head -12
    record "(g) nccl collective" "$RC"
fi

# A rerun that skips (c) uses the transformers figures of the run before (carried in .gpu/).
if ! want c && [ -f .gpu/hf_reference.json ]; then
    cp .gpu/hf_reference.json "$OUT/hf_reference.json"
    echo "(c) skipped: transformers figures from .gpu/hf_reference.json (an earlier run, same script)"
fi

mark "summary"
python3 bench/gpu_summary.py --laser "$OUT/laser_decode_cuda.json" --hf "$OUT/hf_reference.json" \
    --parity "$OUT/parity_cuda.log" 2>&1 | tee "$OUT/summary.md"
printf '%s\n' "${RESULTS[@]}" | tee -a "$OUT/summary.md"
echo "total $((SECONDS - START)) s; files in $OUT:"
ls -la "$OUT"
# The device tool brings back at most 8 files: everything travels as one archive + the summary.
cp "$OUT/summary.md" /tmp/laser-gpu-summary.md
tar -C "$OUT" -czf /tmp/laser-gpu-check.tgz . && find "$OUT" -mindepth 1 -delete &&
    mv /tmp/laser-gpu-check.tgz "$OUT/gpu_check.tgz" && mv /tmp/laser-gpu-summary.md "$OUT/summary.md"
FAILED=0
for r in "${RESULTS[@]}"; do case "$r" in *": ok") ;; *) FAILED=$((FAILED + 1)) ;; esac; done
exit "$FAILED"
