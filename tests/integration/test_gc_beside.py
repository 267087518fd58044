"""gc beside real backup processes (issue #10 point 4): a backup stopped (SIGSTOP, as a
suspended laptop) past the lock's stale age with its clock hours behind, on the local,
S3 (moto) and SFTP (sshd) backends; a backup in its own pid namespace with our hostname;
a backup running while gc deletes what is safe. In every case the backup either commits
a snapshot that ``verify --read-data`` passes and that restores exactly, or fails with
one line and commits nothing; and gc itself never fails or waits for it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from casbackup.store.locks import shared_lock
from tests.helpers import cli_env, json_lines, json_result, make_store, open_test_store, run_cli

STALE = "3"  # seconds (CASBACKUP_TEST_LOCK_STALE), for the paused backup and the gc


def _source(root: Path, seed: int, files: int = 6) -> Path:
    import random

    rnd = random.Random(seed)
    (root / "sub").mkdir(parents=True)
    for i in range(files):
        (root / ("sub" if i % 2 else "") / f"f{i}").write_bytes(rnd.randbytes(300_000))
    return root


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    r = run_cli(*args, env=cli_env(**env))
    return r


def _snapshots(url: str) -> list[dict[str, object]]:
    r = _cli("snapshots", "--store", url, "--json")
    assert r.returncode == 0, r.stderr
    return json_lines(r.stdout, "snapshot")


class Stopped:
    """A backup process that stops itself (SIGSTOP) at a crash point."""

    def __init__(self, url: str, src: Path, point: str, prefix: list[str] | None = None,
                 **env: str) -> None:
        self.proc = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "casbackup", "backup", "--store", url,
             str(src)], env=cli_env(CASBACKUP_TEST_STOP_AT=point, **env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.pgid = self.proc.pid
        deadline = time.monotonic() + 120
        while not self._stopped():
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, "the backup never reached its stop point"
            time.sleep(0.05)

    def _stopped(self) -> bool:
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "T" and int(fields[2]) == self.pgid and "python" in _comm(d):
                return True
        return False

    def resume(self) -> tuple[int, str]:
        os.killpg(self.pgid, signal.SIGCONT)
        _, err = self.proc.communicate(timeout=120)
        return self.proc.returncode, err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.pgid, signal.SIGKILL)
            self.proc.wait()


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read()
    except OSError:
        return ""


@pytest.fixture
def stopped() -> Iterator[list[Stopped]]:
    held: list[Stopped] = []
    yield held
    for s in held:
        s.kill()


def _restores_exactly(url: str, sid: str, src: Path, tmp: Path) -> None:
    r = _cli("verify", "--store", url, "--read-data", "--json")
    assert r.returncode == 0 and json_result(r.stdout)["ok"] is True, r.stdout
    out = tmp / f"restore-{time.monotonic_ns()}"
    assert _cli("restore", "--store", url, sid, str(out)).returncode == 0
    got = out / str(src).lstrip("/")
    for p in src.rglob("*"):
        if p.is_file():
            assert (got / p.relative_to(src)).read_bytes() == p.read_bytes(), p


def _history(url: str, tmp: Path) -> tuple[Path, Path]:
    """A store whose only snapshot is forgotten: its packs are garbage that the next
    backup (of a source sharing most files) deduplicates against."""
    make_store(url, pack_size=256 << 10).close()
    old = _source(tmp / "old", 1)
    new = tmp / "new"
    shutil.copytree(old, new)
    (new / "extra").write_bytes(os.urandom(200_000))
    assert _cli("backup", "--store", url, str(old)).returncode == 0
    return old, new


def _forget_all(url: str) -> None:
    r = _cli("forget", "--store", url, "--keep-last", "0", "--keep-tag", "none")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("kind", ["local", "s3", "sftp"])
def test_backup_stopped_past_the_stale_age_with_a_skewed_clock(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest,
        stopped: list[Stopped]) -> None:
    """gc takes the stopped backup's lock for stale (by the storage's clock, though its
    clock is 2 h behind: the old rule looked at that) and deletes the garbage the backup
    reused; the resumed backup sees it and commits nothing (exit 11, one line)."""
    if shutil.which("faketime") is None:
        pytest.skip("faketime is not installed (scripts/setup.sh --test installs it)")
    url = (str(tmp_path / "store") if kind == "local"
           else request.getfixturevalue("s3_url" if kind == "s3" else "sftp_url"))
    _old, new = _history(url, tmp_path)
    _forget_all(url)
    b = Stopped(url, new, "backup:before-snapshot", ["faketime", "-f", "-2h"],
                CASBACKUP_TEST_LOCK_STALE=STALE, FAKETIME_DONT_FAKE_MONOTONIC="1")
    stopped.append(b)
    time.sleep(float(STALE) + 2.5)  # its heartbeat is stopped too
    r = _cli("gc", "--store", url, "--max-wait", "0", "--json",
             CASBACKUP_TEST_LOCK_STALE=STALE)
    assert r.returncode == 0, r.stderr
    rep = json_result(r.stdout)
    assert rep["packs_removed"] > 0 and rep["records_waiting"] == 0
    code, err = b.resume()
    assert code == 11, err
    assert err.strip().count("\n") == 0 and "nothing was committed" in err
    assert _snapshots(url) == []
    # the store is sound, and the rerun commits a snapshot that restores exactly
    assert _cli("backup", "--store", url, str(new)).returncode == 0
    (snap,) = _snapshots(url)
    _restores_exactly(url, str(snap["id"]), new, tmp_path)


@pytest.mark.parametrize("namespace", [False, True])
def test_gc_beside_a_live_backup_it_condemns_the_reused_packs_of(
        namespace: bool, tmp_path: Path, stopped: list[Stopped]) -> None:
    """A live backup (stopped briefly, in its own pid namespace with our hostname when
    ``namespace``) deduplicated against garbage; gc condemns that garbage but waits for
    the backup (not dead: another pid namespace is never judged by pid). The backup then
    copies what it reused before it commits; the next gc deletes the condemned packs."""
    if namespace and subprocess.run(["unshare", "--pid", "--fork", "true"]).returncode:
        pytest.skip("unshare --pid is not permitted here")
    url = str(tmp_path / "store")
    _old, new = _history(url, tmp_path)
    assert _cli("gc", "--store", url).returncode == 0  # leaves the epoch record
    _forget_all(url)
    # a shell is the namespace's pid 1 (init ignores SIGSTOP), the backup its child
    prefix = (["unshare", "--pid", "--fork", "sh", "-c", '"$@"; exit $?', "sh"]
              if namespace else [])
    b = Stopped(url, new, "backup:before-snapshot", prefix)
    stopped.append(b)
    r = _cli("gc", "--store", url, "--max-wait", "0", "--json")
    assert r.returncode == 0, r.stderr
    rep = json_result(r.stdout)
    assert rep["packs_condemned"] > 0 and rep["packs_removed"] == 0, rep
    assert rep["records_waiting"] == 1 and "backup" in rep["waiting"][0]
    code, err = b.resume()
    assert code == 0, err
    (snap,) = _snapshots(url)
    _restores_exactly(url, str(snap["id"]), new, tmp_path)
    r = _cli("gc", "--store", url, "--json")
    assert r.returncode == 0 and json_result(r.stdout)["packs_removed"] > 0, r.stdout
    _restores_exactly(url, str(snap["id"]), new, tmp_path)


def test_gc_deletes_safe_packs_while_a_backup_runs(tmp_path: Path,
                                                    stopped: list[Stopped]) -> None:
    """Packs condemned while only a restore ran are deleted by the next gc although a
    backup (started after they were condemned) is still running."""
    url = str(tmp_path / "store")
    _old, new = _history(url, tmp_path)
    assert _cli("gc", "--store", url).returncode == 0
    _forget_all(url)
    with open_test_store(url) as st, shared_lock(st, "restore"):
        r = _cli("gc", "--store", url, "--max-wait", "0", "--json")
    assert r.returncode == 0, r.stderr
    first = json_result(r.stdout)
    assert first["packs_condemned"] > 0 and first["records_waiting"] == 1
    b = Stopped(url, new, "backup:before-snapshot")
    stopped.append(b)
    t0 = time.monotonic()
    r = _cli("gc", "--store", url, "--max-wait", "0", "--json")
    assert r.returncode == 0, r.stderr
    second = json_result(r.stdout)
    assert second["packs_removed"] >= first["packs_condemned"], second
    assert time.monotonic() - t0 < 60  # it did not wait for the backup
    code, err = b.resume()
    assert code == 0, err
    (snap,) = _snapshots(url)
    _restores_exactly(url, str(snap["id"]), new, tmp_path)


def test_gc_started_while_a_backup_consolidates_waits_for_it(
        tmp_path: Path, stopped: list[Stopped]) -> None:
    """A backup consolidating the index (stopped while it holds the consolidation's
    maintenance lock) makes a gc started meanwhile wait for it -- one line -- instead of
    exiting 11; once the backup resumes, both succeed and the store verifies."""
    from casbackup.crypto.codec import DATA
    from casbackup.store import consolidate

    url = str(tmp_path / "store")
    st = make_store(url)
    for i in range(consolidate.MIN_OBJECTS + 1):  # enough small objects to consolidate
        st.add_blob(DATA, f"object {i} ".encode() * 40)
        st.flush()
    st.close()
    src = _source(tmp_path / "src", 3, files=2)
    b = Stopped(url, src, "consolidate:locked")
    stopped.append(b)
    gc = subprocess.Popen([sys.executable, "-m", "casbackup", "gc", "--store", url,
                           "--max-wait", "0", "-v"], env=cli_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert gc.stderr is not None
        lines = []
        while not any("waiting for consolidate" in ln for ln in lines):
            ln = gc.stderr.readline().decode()
            assert ln, (gc.wait(), lines)  # gc ended without waiting (it exited 11)
            lines.append(ln)
        code, err = b.resume()
        assert code == 0, err
        _out, rest = gc.communicate(timeout=120)
    finally:
        if gc.poll() is None:
            gc.kill()
            gc.wait()
    assert gc.returncode == 0, (lines, rest)
    assert sum("waiting for consolidate" in ln for ln in lines + rest.decode().splitlines()) == 1
    assert len(_snapshots(url)) == 1
    r = _cli("verify", "--store", url, "--json")
    assert r.returncode == 0 and json_result(r.stdout)["ok"] is True, r.stdout
