#!/usr/bin/env bash
# Copies the finished pre-RL phases of a run (init, warm start, calibration) into a new run
# directory, so that `coordinator --resume` there starts RL from the same model, c_ref and
# held-out set (which leaves out the source's SFT problems), and only RL runs:
#
#   scripts/seed_rl_run.sh SRC_RUN_DIR DST_RUN_DIR
#
# Used by scripts/ablation (the GRPO leg) and scripts/recipe_sweep.sh (each variant).
set -euo pipefail
src="$1"
dst="$2"
[ -e "$src/phases.json" ] || { echo "seed_rl_run: $src/phases.json missing: not a run whose pre-RL phases finished" >&2; exit 1; }
mkdir -p "$dst"
for f in init_model sft_model c_ref.json calibration_prompts.jsonl sft_data.jsonl token; do
    if [ -e "$src/$f" ]; then cp -r "$src/$f" "$dst/"; fi
done
# The finished phases, without RL.
python3 - "$src/phases.json" "$dst/phases.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
p.pop("rl", None)
json.dump(p, open(sys.argv[2], "w"), indent=2)
PY
