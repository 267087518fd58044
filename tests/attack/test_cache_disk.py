"""A cache directory on a full disk and on a read-only one (a small tmpfs mounted as
``XDG_CACHE_HOME``), as real processes: a backup whose index layer builds unnamed
temporary files there (O_TMPFILE, store/compactindex.write_anonymous) either succeeds
(a small index stays in memory) or fails before it commits anything with one line and
exit 1 (fatal error); either way it leaves no lock, the store verifies, and the same
backup with a usable cache then succeeds.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import cli_env, make_store, run_cli, tmpfs_or_skip


@pytest.fixture
def small_cache(tmp_path: Path) -> Iterator[Path]:
    yield from tmpfs_or_skip(tmp_path / "cache", "2m")


def _history(tmp: Path, cache: Path) -> tuple[str, Path]:
    src = tmp / "src"
    src.mkdir()
    for i in range(20):
        (src / f"f{i}").write_bytes(os.urandom(300_000))
    url = str(tmp / "store")
    make_store(url).close()
    r = run_cli("backup", "--store", url, str(src),
                env=cli_env(XDG_CACHE_HOME=str(tmp / "other-cache")))
    assert r.returncode == 0, r.stderr  # CACHE holds nothing of the store: it must build
    for i in range(20, 40):
        (src / f"f{i}").write_bytes(os.urandom(300_000))
    return url, src


def _fill(mnt: Path) -> None:
    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def _fails_cleanly_or_succeeds(url: str, src: Path, cache: Path) -> bytes | None:
    """The backup's stderr when it failed (one line, exit 1, nothing committed), None when
    it succeeded; either way no lock is left and the store verifies."""
    r = run_cli("backup", "--store", url, str(src), env=cli_env(XDG_CACHE_HOME=str(cache)))
    err = r.stderr.strip()
    assert r.returncode in (0, 1), (r.returncode, r.stderr)
    if r.returncode:
        assert err.count(b"\n") == 0 and err.startswith(b"casbackup: "), err
    assert os.listdir(Path(url) / "locks") == []  # no one is locked out later
    r2 = run_cli("snapshots", "--store", url, "--json")
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout.count(b'"message_type":"snapshot"') + r2.stdout.count(
        b'"message_type": "snapshot"') == (2 if r.returncode == 0 else 1), r2.stdout
    r2 = run_cli("verify", "--store", url)
    assert r2.returncode == 0, r2.stderr
    return err if r.returncode else None


def _then_succeeds(url: str, src: Path, tmp: Path) -> None:
    r = run_cli("backup", "--store", url, str(src),
                env=cli_env(XDG_CACHE_HOME=str(tmp / "good-cache")))
    assert r.returncode == 0, r.stderr


def test_a_full_cache_disk_fails_a_backup_cleanly(tmp_path: Path, small_cache: Path) -> None:
    url, src = _history(tmp_path, small_cache)
    _fill(small_cache)
    err = _fails_cleanly_or_succeeds(url, src, small_cache)
    assert err is None or b"No space left on device" in err, err
    _then_succeeds(url, src, tmp_path)


def test_a_read_only_cache_disk_fails_a_backup_cleanly(tmp_path: Path,
                                                        small_cache: Path) -> None:
    url, src = _history(tmp_path, small_cache)
    subprocess.run(["mount", "-o", "remount,ro", str(small_cache)], check=True)
    err = _fails_cleanly_or_succeeds(url, src, small_cache)
    assert err is None or (b"Read-only file system" in err and os.fsencode(small_cache) in err), err
    _then_succeeds(url, src, tmp_path)
