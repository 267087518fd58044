"""A save worker (ops/save_pool.py) stopped by SIGSTOP while its backup waits for it (a
worker paused by a debugger, a cgroup freezer, a job-control slip), real processes.

The backup cannot finish without the worker's replies, so it waits; then Ctrl-C (SIGINT)
or SIGTERM to the backup ends it with one line and exit 130 or 143 -- it does not hang on
the stopped worker, which it kills (a stopped process cannot read the end of file that
ends a running one) -- with no snapshot, no lock and no worker left; the store verifies
and the next backup succeeds.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from casbackup.ops.verify import verify
from tests.helpers import cli_env, open_test_store, run_cli
from tests.integration.test_save_pool import (
    _children,
    _cmdline,
    _gone,
    _names,
    _small_tree,
    _state,
    _stopped_backup,
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_worker_does_not_hold_an_interrupted_backup(
        tmp_path: Path, sig: signal.Signals) -> None:
    store = tmp_path / "store"
    assert run_cli("init", "--store", str(store)).returncode == 0
    src = _small_tree(tmp_path / "src")
    proc, worker = _stopped_backup(store, src, 1)
    os.kill(worker, signal.SIGSTOP)
    os.kill(proc.pid, signal.SIGCONT)
    time.sleep(1.5)  # the backup sends its batches and waits for the worker's replies
    assert proc.poll() is None, proc.communicate()
    assert _state(worker) == "T"
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)  # a hang fails here
    assert proc.returncode == 128 + sig, err
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("casbackup: "), err
    assert _names(store / "snapshots") == []
    assert _names(store / "locks") == []
    _gone(worker)
    assert [k for k in _children(proc.pid) if b"save_worker" in _cmdline(k)] == []
    rep = verify(open_test_store(store), read_data=True)
    assert rep.ok, rep.problems
    r = run_cli("backup", "--store", str(store), str(src),
                env=cli_env(CASBACKUP_SAVE_PROCS="1"))
    assert r.returncode == 0, r.stderr
    assert len(_names(store / "snapshots")) == 1
