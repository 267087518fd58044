#!/usr/bin/env bash
# The README's first command: set everything up, then back up a directory into the
# embedded default local store, list it, restore it, compare, and verify every byte.
#   scripts/quickstart.sh [SOURCE_DIR]   (default: this project's own source tree)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
src="$(realpath "${1:-casbackup}")"
work="${CASBACKUP_DEMO_DIR:-$PWD/demo}"
rm -rf "$work"
mkdir -p "$work"
export CASBACKUP_STORE="$work/store" CASBACKUP_PASSWORD="${CASBACKUP_PASSWORD:-demo-password}"
cb=.venv/bin/casbackup
set -x
$cb init
$cb backup "$src"
$cb backup "$src"            # unchanged: nothing is read again
$cb snapshots
$cb restore latest "$work/restored" --verify
diff -r "$src" "$work/restored$src"
$cb verify --read-data
{ set +x; } 2>/dev/null
echo "quick start OK: store in $work/store, restored copy in $work/restored$src"
