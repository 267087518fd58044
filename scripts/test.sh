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
# --durations: every CI log says where the time went (the slowest 30 tests)
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=30 "$@"
