#!/usr/bin/env bash
# The README's second command: set up (venv, test tools, openssh-server), then run the
# linters, the type checker and the whole test suite against real local stores, a real
# S3 endpoint (moto server mode on loopback) and a real sshd on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
export CI="${CI:-1}"   # the S3/SFTP suites fail instead of skipping when a server is missing
.venv/bin/ruff check casbackup tests benchmarks
.venv/bin/mypy
# --durations: every CI log says where the time went (the slowest 30 tests).
# -n 2 --dist loadfile: two pytest-xdist workers (the CI machine has 2 cores and one run
# left ~0.4 of them idle, waiting on processes, sshd, moto and disks), each test file on
# one worker so its module-scoped stores are built once; a later `-n 0` runs serially.
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=30 "$@"
