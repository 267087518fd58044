"""A backup paused (SIGSTOP: a suspended laptop) while another writer's lock object is
unreadable (damaged on the store), with gc and ``unlock`` run around it, then resumed
(real processes, a local store; docs/design.md §8).

The backup deduplicated against the garbage of a forgotten snapshot. While the damaged
lock is fresh, gc refuses (exit 11, one line naming ``unlock --remove-all``) and changes
nothing; ``unlock`` without ``--remove-all`` removes it only once it is stale. Then, on
each schedule -- wait until both locks are stale, ``unlock`` early (removes nothing),
``unlock`` late (removes both), ``unlock --remove-all`` at once (removes the paused
backup's live lock too) -- a gc runs and may delete what the backup reused. Resumed, the
backup either commits a snapshot that ``verify --read-data`` passes and that restores
exactly, or refuses with one line and commits nothing; a rerun then commits one."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from casbackup.store.identity import Identity
from casbackup.store.locks import Session
from tests.helpers import json_result, open_test_store
from tests.integration.test_gc_beside import (
    Stopped,
    _cli,
    _forget_all,
    _history,
    _restores_exactly,
    _snapshots,
    stopped,
)

STALE = "4"
__all__ = ["stopped"]  # the fixture, imported for the tests below


def _damaged_lock(url: str) -> Path:
    """A live-looking lock of another machine's backup, then one byte of it flipped."""
    st = open_test_store(url)
    other = Identity("m-elsewhere", "b", 1, 4_000_001, 9, "elsewhere", "u")
    s = Session(st, "backup", me=other, heartbeat=False)
    s.acquire()
    st.close()
    path = Path(url) / "locks" / s.name
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    return path


def _outside_locks(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in store.rglob("*")
            if p.is_file() and p.relative_to(store).parts[0] != "locks"}


def _gc(url: str) -> tuple[int, str, dict[str, object] | None]:
    r = _cli("gc", "--store", url, "--max-wait", "0", "--json",
             CASBACKUP_TEST_LOCK_STALE=STALE)
    return r.returncode, r.stderr.decode(), json_result(r.stdout) if r.returncode == 0 else None


def _refuses(url: str) -> None:
    before = _outside_locks(Path(url))
    code, err, _ = _gc(url)
    lines = err.strip().splitlines()
    assert code == 11 and len(lines) == 1 and "unlock --remove-all" in lines[0], (code, err)
    assert _outside_locks(Path(url)) == before


@pytest.mark.parametrize("point", ["backup:before-snapshot", "packer:after-pack:1"])
@pytest.mark.parametrize("schedule", ["wait", "unlock-early", "unlock-late", "remove-all"])
def test_a_backup_paused_beside_an_unreadable_lock_then_gc_and_unlock(
        schedule: str, point: str, tmp_path: Path, stopped: list[Stopped]) -> None:
    url = str(tmp_path / "store")
    _old, new = _history(url, tmp_path)
    assert _cli("gc", "--store", url).returncode == 0  # leaves the epoch record
    _forget_all(url)
    b = Stopped(url, new, point, CASBACKUP_TEST_LOCK_STALE=STALE)
    stopped.append(b)
    damaged = _damaged_lock(url)
    _refuses(url)
    if schedule == "unlock-early":
        r = _cli("unlock", "--store", url, "--json", CASBACKUP_TEST_LOCK_STALE=STALE)
        assert r.returncode == 0, r.stderr
        if json_result(r.stdout)["removed"] == []:  # a loaded machine may be slower
            assert damaged.exists()
            _refuses(url)
    elif schedule == "remove-all":
        r = _cli("unlock", "--store", url, "--remove-all", "--json")
        assert r.returncode == 0 and json_result(r.stdout)["remaining"] == 0, r.stderr
        assert os.listdir(Path(url) / "locks") == []
    if schedule in ("wait", "unlock-early", "unlock-late"):
        time.sleep(float(STALE) + 2.5)  # both locks stale now (the backup's heartbeat too)
    if schedule == "unlock-late":
        r = _cli("unlock", "--store", url, "--json", CASBACKUP_TEST_LOCK_STALE=STALE)
        assert r.returncode == 0, r.stderr
        assert not damaged.exists() and len(json_result(r.stdout)["removed"]) == 2
    code, err, rep = _gc(url)
    assert code == 0 and rep is not None, err
    code, err = b.resume()
    # the damaged object, stale now, stops every session of the default 30 min STALE
    # below until `unlock` removes it (the wait schedule left it)
    assert _cli("unlock", "--store", url, CASBACKUP_TEST_LOCK_STALE=STALE).returncode == 0
    assert not damaged.exists()
    if code == 0:
        (snap,) = _snapshots(url)
        _restores_exactly(url, str(snap["id"]), new, tmp_path)
    else:
        assert code == 11, err
        assert err.strip().count("\n") == 0 and "nothing was committed" in err, err
        assert _snapshots(url) == []
        r = _cli("verify", "--store", url, "--read-data", "--json")
        assert r.returncode == 0 and json_result(r.stdout)["ok"] is True, r.stdout
    assert _cli("backup", "--store", url, str(new)).returncode == 0
    snap = _snapshots(url)[-1]
    _restores_exactly(url, str(snap["id"]), new, tmp_path)
