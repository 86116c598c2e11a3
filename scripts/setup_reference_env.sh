#!/usr/bin/env bash
# Create (or bring up to date) the reference Python environment for the offline fixture tooling.
#
#   scripts/setup_reference_env.sh            # venv at ~/.cache/laser-pyref
#   scripts/setup_reference_env.sh --bench    # plus bench/requirements-bench.txt (trl, math-verify)
#   LASER_PYREF=/some/dir scripts/setup_reference_env.sh
#
# Idempotent: when the venv already holds exactly the pinned set, it does nothing. Other tools
# (e.g. verl/trl comparisons) may add packages to the same venv; they are left alone, only the pins
# in scripts/requirements-reference.txt are enforced.
# Python is never a runtime dependency of the Rust crates; this venv only generates fixtures.
set -euo pipefail

VENV="${LASER_PYREF:-$HOME/.cache/laser-pyref}"
PYTHON="${PYTHON:-python3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REQS=("$HERE/requirements-reference.txt")
if [[ "${1:-}" == "--bench" ]]; then
    REQS+=("$HERE/../bench/requirements-bench.txt")
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating venv $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
fi

for REQ in "${REQS[@]}"; do
# Which pinned lines are not satisfied by the venv as it is?
missing="$(grep -E '^[A-Za-z0-9_.-]+==' "$REQ" | "$VENV/bin/python" -c '
import sys
from importlib import metadata
for line in sys.stdin:
    name, want = line.strip().split("==")
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = None
    if have is None or have.split("+")[0] != want:
        print(line.strip())
')"

if [[ -z "$missing" ]]; then
    echo "reference env up to date: $VENV ($(basename "$REQ"))"
else
    echo "installing $(echo "$missing" | wc -l) pinned packages into $VENV ($(basename "$REQ"))"
    # --no-deps: the requirements file is a full lock; see its header for why.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$REQ"
fi
done

"$VENV/bin/python" - <<'PY'
import torch, transformers, tokenizers, safetensors, gguf, numpy
print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
      f"tokenizers {tokenizers.__version__}, numpy {numpy.__version__}")
PY
