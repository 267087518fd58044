#!/bin/bash
# A/B of the in-place restore (issue #14 item 1) between code trees, on the corpus and
# store restore_inplace_bench.py left in WORKDIR: per round and tree, the next
# corpus.mutate change set, then `restore --overwrite if-changed --delete` over the corpus
# with PYTHONPATH set to the tree (a `git archive` of a commit; "cur" = this checkout),
# measured by /usr/bin/time. Prints CPU-s, wall s, peak RSS and bytes read/written.
#
#   benchmarks/restore_inplace_ab.sh /dev/shm/rip /tmp/ab-main cur
set -euo pipefail
W=$(realpath "$1"); shift
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$HERE/.venv/bin/python}
export CASBACKUP_PASSWORD=bench-password CASBACKUP_CACHE_DIR=$W/cache
cd /tmp  # not the checkout: python -m would import it before PYTHONPATH's tree
for round in 1 2 3; do
  for tree in "$@"; do
    PYTHONPATH=$HERE/benchmarks "$PY" -c \
      "import corpus; from pathlib import Path; corpus.mutate(Path('$W/corpus'))"
    pp=$tree; [ "$tree" = cur ] && pp=$HERE
    out=$(PYTHONPATH=$pp /usr/bin/time -o /tmp/ab-time.$$ -f "%U %S %e %M" "$PY" -m casbackup \
          restore --store "$W/store" --json --overwrite if-changed --delete \
          "latest:$W/corpus/data" "$W/corpus/data" | tail -1)
    read -r u s e m < /tmp/ab-time.$$
    echo "round $round $tree cpu $(python3 -c "print(round($u + $s, 2))") wall $e" \
         "rss_kb $m $(echo "$out" | python3 -c 'import json, sys; d = json.load(sys.stdin);
print("read", d["read_bytes"], "written", d["written_bytes"])')"
  done
done
rm -f /tmp/ab-time.$$
