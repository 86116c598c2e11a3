#!/usr/bin/env bash
# Keeps a reused cargo target dir from filling the disk. Every source change links new test and
# binary executables under a new hash (200-500 MB each with debuginfo) and cargo never deletes the
# old ones, so a target dir shared across CI runs grows without bound. This keeps the newest
# executable of each name and, when free space is still short, drops the incremental caches
# (cargo rebuilds them; dependencies are never incremental, so nothing slow is lost).
# Usage: scripts/prune_target.sh TARGET_DIR [MIN_FREE_GB]
set -euo pipefail
target="${1:?usage: prune_target.sh TARGET_DIR [MIN_FREE_GB]}"
min_free_gb="${2:-20}"
[ -d "$target" ] || exit 0

free_gb() { df -Pk "$target" | awk 'NR==2 { printf "%d", $4 / 1048576 }'; }
before=$(free_gb)

for deps in "$target"/*/deps; do
    [ -d "$deps" ] || continue
    # Executables have no extension; their name is <crate>-<16 hex>. Newest first, keep the first.
    find "$deps" -maxdepth 1 -type f -perm -u+x ! -name '*.*' -printf '%T@ %f\n' |
        sort -rn |
        awk '{ name = $2; sub(/-[0-9a-f]+$/, "", name); if (seen[name]++) print $2 }' |
        while read -r stale; do rm -f "$deps/$stale"; done
done

if [ "$(free_gb)" -lt "$min_free_gb" ]; then
    rm -rf "$target"/*/incremental
fi
echo "target dir $target: ${before} GB free before, $(free_gb) GB after"
if [ "$(free_gb)" -lt 5 ]; then
    echo "warning: under 5 GB free on the disk of $target; the build may fail with ENOSPC" >&2
fi
