#!/usr/bin/env bash
# Set up casbackup on a fresh Debian machine with Python 3.11: a virtualenv in .venv with
# casbackup installed (editable) and, with --test, the test tools and the Debian packages
# the tests need (openssh-server for the SFTP tests, postgresql for the dump-job test,
# chromium for the status page's browser test, faketime for clock skew, fuse3 for the
# mount tests). Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

need_apt=()
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ "$want_test" = 1 ] && [ ! -x /usr/sbin/sshd ]; then need_apt+=(openssh-server); fi
# a real PostgreSQL server for the dump-job test (tests/daemon/test_daemon_postgres.py)
if [ "$want_test" = 1 ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
# headless Chromium for the status page's browser test (tests/daemon/test_status_page.py)
if [ "$want_test" = 1 ] && ! command -v chromium >/dev/null; then need_apt+=(chromium); fi
# faketime: the gc-beside-backup tests run a backup whose clock is hours off
if [ "$want_test" = 1 ] && ! command -v faketime >/dev/null; then need_apt+=(faketime); fi
# fuse3 (fusermount3 and libfuse3, which mfusepy loads) for the mount tests
if [ "$want_test" = 1 ] && ! command -v fusermount3 >/dev/null; then need_apt+=(fuse3); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "$want_test" = 1 ]; then
  .venv/bin/python -m pip install -q -e '.[test]'
else
  .venv/bin/python -m pip install -q -e .
fi
