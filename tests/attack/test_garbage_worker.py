"""A save worker that returns garbage (ops/save_pool.py, save_worker.py), real processes:
``python -m casbackup backup`` with its workers booted through a hostile patch of
save_worker.py (each worker is a real process reading the real descriptors; only its
reply is garbled): the ids of a batch reversed, every file reported empty, the previous
batch's reply sent again, or one id too many.

The store already holds every file's blob (a first backup on threads, then every file
touched): a parent that took the reversed ids would record a snapshot whose files
point to one another's blobs -- blobs that hash right, so verify --read-data passes and
restore writes the wrong bytes; one that took "empty" would record empty files. The
parent checks each reply against what it knows (the sizes it sent, the worker's sealed
bytes unsealed and re-hashed to the ids it was given -- all of a worker's first reply,
then a random eighth of each -- a reply's length to what those files can take): the
backup exits 1 with one line naming the worker and what was wrong, and no snapshot is
written.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import cli_env, make_store, run_cli

# patches of save_worker: of ``pack``, the encoder of its replies ([tags, ids, blobs, seq]), or
# of ``send_frame``, which puts a 4-byte length before each
HOSTILE = {
    "ids reversed": "w.pack = lambda v: real([v[0], v[1][::-1], *v[2:]])",
    "every file empty": "w.pack = lambda v: real([bytes(len(v[0])), [], [], *v[3:]])",
    "the previous reply again": "w.pack = lambda v, last=[]: (last.append(v), real(last[-2] if "
                                "len(last) > 1 and len(last[-2][0]) == len(v[0]) else v))[1]",
    # honest on its first reply (every blob of which is checked), wrong from then on:
    # after the first, a blob is checked with probability 1/8, and a reversed batch of
    # ~64 files slips through that with odds of about (7/8)**60 < 1e-3, over ~20 batches
    "ids reversed after the first reply": "w.pack = lambda v, n=[]: (n.append(1), real(v if "
                                          "len(n) == 1 else [v[0], v[1][::-1], *v[2:]]))[1]",
    "one id too many": "w.pack = lambda v: real([v[0], v[1] + v[1][:1], *v[2:]])",
    "a reply claiming 4 GiB": "w.send_frame = lambda sock, data, fds=None: sock.sendall("
                              "bytes([255] * 4) + data)",
    "a reply that is not msgpack": "w.pack = lambda v: bytes([0xc1]) * 10",
}
HONEST = "w.pack = real"
_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
         "import casbackup.ops.save_worker as w; real = w.pack; {patch}; w.main()")


def _limit() -> None:  # a claim of 4 GiB shows as a MemoryError, not a swapping machine
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def _backup(store: Path, src: Path, patch: str) -> subprocess.CompletedProcess[bytes]:
    boot = f"import casbackup.ops.save_pool as sp; sp._BOOT = {_BOOT.format(patch=patch)!r}; "
    code = (boot + "import runpy, sys; sys.argv = ['casbackup', *sys.argv[1:]]; "
            "runpy.run_module('casbackup', run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code, "backup", "--store", str(store),
                           str(src)], env=cli_env(CASBACKUP_SAVE_PROCS="1"),
                          capture_output=True, timeout=120, preexec_fn=_limit)  # a hang fails


def _source(root: Path, size: Callable[[int], int]) -> Path:
    """A store holding one backup (on threads) of 1500 files of SIZE(i) random bytes,
    all touched since: 8 batches of 64 on threads first, then batches of 64 to workers."""
    src = root / "src"
    for i in range(1500):
        d = src / f"d{i // 300}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:04}").write_bytes(os.urandom(size(i)))
    make_store(root / "store").close()
    r = run_cli("backup", "--store", str(root / "store"), str(src),
                env=cli_env(CASBACKUP_SAVE_PROCS="0"))
    assert r.returncode == 0, r.stderr
    for p in src.rglob("f*"):
        os.utime(p, ns=(p.stat().st_mtime_ns + 10**9,) * 2)  # changed: read again
    return root


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _source(tmp_path_factory.mktemp("garbage-worker"), lambda i: 100 + (i * 7) % 900)


@pytest.fixture(scope="module")
def alike(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every file of 500 bytes: another batch's reply has the sizes of this one's."""
    return _source(tmp_path_factory.mktemp("garbage-alike"), lambda i: 500)


def _snapshots(store: Path) -> list[str]:
    return sorted(p.name for p in (store / "snapshots").iterdir())


def test_the_patch_harness_backs_up_when_the_worker_is_honest(base: Path, tmp_path: Path
                                                                ) -> None:
    import shutil

    shutil.copytree(base, tmp_path / "c")
    store = tmp_path / "c" / "store"
    before = _snapshots(store)
    r = _backup(store, base / "src", HONEST)
    assert r.returncode == 0, r.stderr
    assert len(_snapshots(store)) == len(before) + 1


def _fails_with_one_line(base: Path, tmp_path: Path, patch: str) -> None:
    import shutil

    shutil.copytree(base, tmp_path / "c")
    store = tmp_path / "c" / "store"
    before = _snapshots(store)
    r = _backup(store, base / "src", patch)
    err = r.stderr.decode()
    assert r.returncode == 1, (patch, r.returncode, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("casbackup: a file-saving worker process (pid "), err
    assert "sent a wrong reply" in lines[0], err
    assert _snapshots(store) == before  # no snapshot of wrong content


@pytest.mark.parametrize("how", HOSTILE)
def test_a_worker_returning_garbage_fails_the_backup_with_one_line(
        base: Path, tmp_path: Path, how: str) -> None:
    _fails_with_one_line(base, tmp_path, HOSTILE[how])


def test_another_requests_reply_of_the_same_sizes_fails_the_backup(
        alike: Path, tmp_path: Path) -> None:
    """Its blobs unseal to their ids and to the sizes of this batch's files: only the
    request's number tells it is not this batch's."""
    _fails_with_one_line(alike, tmp_path, HOSTILE["the previous reply again"])
