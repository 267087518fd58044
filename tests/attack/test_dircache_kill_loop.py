"""kill -9 at many instants of a re-backup of a tree with many directories, so that some
land inside the directory cache's streamed write (ops/dircache.py), real processes.

Each round changes a file, starts a backup, kills it (SIGKILL from outside) after a delay
drawn across the length of a whole run, then runs the same backup to the end: that one
succeeds without a warning that the cache is damaged (a cache file is either the old one
or a new complete one; a half-written one would be warned about and ignored), and its
snapshot's tree equals the plain definition (``reference``: lstat, chunk, encode, hash;
no parent, no cache). No more temporary cache files pile up than rounds were killed.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.attack.test_dircache_attacks import _backup, _cache_files, _check_latest, _settle
from tests.helpers import cli_env, make_store


def _tree(src: Path) -> None:
    for i in range(600):
        d = src / f"d{i // 30}" / f"e{i}"
        d.mkdir(parents=True)
        (d / "f").write_bytes(os.urandom(64 + i % 200))


@pytest.mark.slow
def test_kill_9_at_many_instants_of_a_re_backup(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    make_store(tmp_path / "store").close()
    _settle(src)
    t0 = time.monotonic()
    r = _backup(tmp_path, src)
    full = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    rnd = random.Random(8)
    killed = 0
    for rnd_i in range(3):
        (src / f"d{rnd_i}" / f"e{rnd_i * 30}" / "f").write_bytes(os.urandom(100))
        args = [sys.executable, "-m", "casbackup", "backup", "--store", str(tmp_path / "store"),
                "--cache-dir", str(tmp_path / "cache"), str(src)]
        proc = subprocess.Popen(args, env=cli_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            proc.wait(timeout=full * rnd.uniform(0.4, 1.3))
        except subprocess.TimeoutExpired:
            proc.kill()
            killed += 1
        _, err = proc.communicate()
        assert proc.returncode in (0, -9), err
        r = _backup(tmp_path, src)
        assert r.returncode == 0, r.stderr
        assert b"damaged" not in r.stderr, r.stderr
        _check_latest(tmp_path, src)
        assert len([p for p in _cache_files(tmp_path) if p.name.endswith(".tmp")]) <= killed
