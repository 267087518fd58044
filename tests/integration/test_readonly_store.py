"""A store that cannot be written still serves its data (issue #11): on a read-only bind
mount, and as root without CAP_DAC_OVERRIDE on a ``chmod -R a-w`` store, restore, verify,
stats, diff, snapshots and ls work — with one warning that no lock could be written, or
silently with ``--no-lock`` — and write nothing; a command that must write (backup)
still fails cleanly, and refuses ``--no-lock``."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import cli_env, json_lines, make_store, run_cli, tree_state

READERS = [["verify", "--read-data"], ["stats"], ["snapshots"], ["ls", "latest"],
           ["diff", "FIRST", "latest"]]


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in root.rglob("*")}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    s = tmp_path / "store"
    make_store(s).close()
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        (src / f"f{i}").write_bytes(os.urandom(50_000 * (i + 1)))
        assert run_cli("backup", "--store", str(s), str(src)).returncode == 0
    return s


@pytest.fixture
def ro_mount(store: Path, tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "--bind", str(store), str(mnt)]).returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("cannot bind-mount (the CI runs as root)")
        pytest.skip("cannot bind-mount here")
    try:
        assert subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)]).returncode == 0
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)])


def _run(store: Path, args: list[str], *extra: str, prefix: list[str] | None = None
         ) -> subprocess.CompletedProcess[bytes]:
    import sys

    first = subprocess.run([sys.executable, "-m", "casbackup", "snapshots", "--json",
                            "--store", str(store), "--no-lock"], env=cli_env(),
                           capture_output=True, timeout=120)
    ids = ([s["id"] for s in json_lines(first.stdout, "snapshot")]
           if first.returncode == 0 else [])
    args = [ids[0] if a == "FIRST" and ids else a for a in args]
    return subprocess.run([*(prefix or []), sys.executable, "-m", "casbackup", *args,
                           "--store", str(store), *extra], env=cli_env(),
                          capture_output=True, timeout=300)


@pytest.mark.parametrize("no_lock", [False, True])
def test_read_only_mount_serves_reads(ro_mount: Path, store: Path, tmp_path: Path,
                                      no_lock: bool) -> None:
    before = _tree(store)
    extra = ["--no-lock"] if no_lock else []
    for args in READERS:
        r = _run(ro_mount, args, *extra)
        assert r.returncode == 0, (args, r.stderr)
        warned = b"cannot write a lock" in r.stderr
        assert warned == (not no_lock and args[0] not in ("snapshots", "ls")), (args, r.stderr)
    out = tmp_path / f"out{no_lock}"
    r = _run(ro_mount, ["restore", "latest", str(out)], *extra)
    assert r.returncode == 0, r.stderr
    src = tmp_path / "src"
    assert tree_state(out / str(src).lstrip("/")) == tree_state(src)  # restored exactly
    r = _run(ro_mount, ["backup", str(tmp_path / "src")])
    assert r.returncode != 0 and b"Traceback" not in r.stderr
    assert len(r.stderr.decode().strip().splitlines()) == 1, r.stderr
    r = _run(ro_mount, ["backup", str(tmp_path / "src")], "--no-lock")
    assert r.returncode == 2 and b"needs a lock" in r.stderr
    assert _tree(store) == before  # nothing was written


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="no setpriv")
def test_write_protected_store_without_dac_override(store: Path, tmp_path: Path) -> None:
    """root that has dropped CAP_DAC_OVERRIDE (and DAC_READ_SEARCH keeps reads working)
    on a chmod -R a-w store: reads work with the warning."""
    subprocess.run(["chmod", "-R", "a-w", str(store)], check=True)
    try:
        drop = ["setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override", "--"]
        r = _run(store, ["verify"], prefix=drop)
        assert r.returncode == 0, r.stderr
        assert b"cannot write a lock" in r.stderr
        assert not any((store / "locks").iterdir()) if (store / "locks").exists() else True
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(store)], check=True)


def test_read_only_mount_serves_dump_find_cat_and_refuses_writers(
        ro_mount: Path, store: Path, tmp_path: Path) -> None:
    """The other readers work too (a lock warning at most); gc and forget, which must
    write, fail with one line, a documented code and no traceback; nothing is written."""
    before = _tree(store)
    f1 = str(tmp_path / "src" / "f1")
    r = _run(ro_mount, ["dump", "latest", f1])
    assert r.returncode == 0, r.stderr
    assert r.stdout == (tmp_path / "src" / "f1").read_bytes()
    for args in (["find", "f1"], ["cat", "config"], ["cat", "snapshot", "FIRST"]):
        r = _run(ro_mount, args)
        assert r.returncode == 0, (args, r.stderr)
        assert len(r.stderr.decode().splitlines()) <= 1, (args, r.stderr)
    assert f1.encode() in _run(ro_mount, ["find", "f1"]).stdout
    for args in (["gc"], ["forget", "--keep-last", "1"], ["forget", "FIRST"]):
        r = _run(ro_mount, args)
        err = r.stderr.decode().strip().splitlines()
        assert r.returncode in (1, 11), (args, r.returncode, err)
        assert len(err) == 1 and err[0].startswith("casbackup: "), (args, err)
        assert "Traceback" not in r.stderr.decode()
    assert _tree(store) == before
