"""A store whose ``locks/`` holds thousands of garbage objects: random bytes, empty files,
one huge (sparse, 3 GiB) file, objects sealed with the store's key but of another kind,
sealed lock objects whose payload is not a lock map, a key nested below ``locks/`` and a
symlink to a huge file outside the store (docs/design.md §8, store/locks.py).

Every command runs as a real process under a 2 GiB address-space limit, so reading the
huge object whole shows as a failure, not as a swapping machine. Commands that decide on
liveness from the lock listing (backup, gc, verify, restore) refuse with exit 11 and one
line naming ``unlock --remove-all``; ``status``, ``snapshots`` and ``unlock`` (which
removes none of the fresh ones: they may be a live session's) proceed; each command ends
within a bounded time and peak RSS; ``unlock --remove-all`` clears every object a lock
listing names, after which backup, gc and ``verify --read-data`` pass and the snapshot
restores exactly."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from casbackup import serde
from casbackup.crypto.codec import INDEX, LOCK, SNAPSHOT
from casbackup.ids import object_name
from tests.helpers import cli_env, json_result, make_store, open_test_store

AS_LIMIT = 2 << 30  # bytes of address space for each command
HUGE = 3 << 30  # the sparse object: more than the address space
TIME_LIMIT = 90.0  # seconds per command (thousands of reads on a shared 2-core machine)
RSS_LIMIT = 400 << 20  # bytes of peak RSS per command


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


# The command runs below a small launcher that reports its children's peak RSS: the
# rusage of a process forked from this test process counts *this* process's RSS at its
# exec (Linux records the old mm's high-water mark), so an xdist worker grown to 500 MB
# would show as every command's peak.
_LAUNCH = ("import os, resource, subprocess, sys; r = subprocess.run(sys.argv[2:]); "
           "os.write(int(sys.argv[1]), str(resource.getrusage(resource.RUSAGE_CHILDREN)"
           ".ru_maxrss)"
           ".encode()); sys.exit(r.returncode if r.returncode >= 0 else 128 - r.returncode)")


def _run(store: Path, *args: str) -> tuple[int, str, str, float, int]:
    """(exit code, stdout, stderr, seconds, peak RSS bytes) of one real command."""
    t0 = time.monotonic()
    rfd, wfd = os.pipe()
    p = subprocess.Popen([sys.executable, "-c", _LAUNCH, str(wfd), sys.executable, "-m",
                          "casbackup", *args, "--store", str(store)],
                         env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=_limit, pass_fds=(wfd,))
    os.close(wfd)
    out, err = p.communicate(timeout=TIME_LIMIT * 3)
    with os.fdopen(rfd, "rb") as f:
        peak = int(f.read() or b"0") * 1024
    return p.returncode, out.decode(), err.decode(), time.monotonic() - t0, peak


def _plant(store: Path, outside: Path) -> int:
    """Garbage lock objects of every kind; returns how many a listing names."""
    st = open_test_store(store)
    locks = store / "locks"
    locks.mkdir(exist_ok=True)
    n = 0

    def put(data: bytes, name: str | None = None) -> None:
        nonlocal n
        (locks / (name or object_name(data))).write_bytes(data)
        n += 1

    for i in range(1500):
        data = os.urandom(i % 1200)
        put(data, None if i % 2 else os.urandom(32).hex())  # content-named or not
    for _ in range(300):
        put(b"", os.urandom(32).hex())
    payloads = [b"\xc1", serde.pack([1, 2, 3]), serde.pack({"time": 1.0}),
                serde.pack({"exclusive": True, "operation": "x", "hostname": "h",
                            "pid": "not a pid", "username": "u", "time": 1.0}),
                serde.pack({"exclusive": False, "operation": "x", "hostname": "h",
                            "pid": 2**64 - 1, "username": "u", "time": -(2**63)}),
                serde.pack({"exclusive": False, "operation": "x", "hostname": "h",
                            "pid": 1, "username": "u", "time": float("nan"),
                            "session": b"\xff" * 100, "intent": "not bytes"})]
    for i in range(200):
        put(st.codec.seal((SNAPSHOT, INDEX)[i % 2], serde.pack({"nonce": os.urandom(8)})))
        bad = (payloads[i // 3 % len(payloads)] if i % 3 == 0
               else serde.pack({"nonce": os.urandom(8), "k": i}))
        put(st.codec.seal(LOCK, bad))
    huge = locks / ("f" * 64)
    with open(huge, "wb") as f:
        f.truncate(HUGE)
    n += 1
    big = outside / "big"
    with open(big, "wb") as f:
        f.truncate(HUGE)
    os.symlink(big, locks / ("e" * 64))
    n += 1
    (locks / "sub").mkdir()
    (locks / "sub" / ("d" * 64)).write_bytes(os.urandom(300))
    n += 1
    st.close()
    return n


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def test_thousands_of_garbage_lock_objects(tmp_path: Path) -> None:
    store = tmp_path / "store"
    make_store(store).close()
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(5):
        (src / "d" / f"f{i}").write_bytes(os.urandom(100_000))
    code, out, err, _, _ = _run(store, "backup", str(src))
    assert code == 0, err
    outside = tmp_path / "outside"
    outside.mkdir()
    planted = _plant(store, outside)
    assert planted > 2000
    snap = json_result(_run(store, "snapshots", "--json")[1], "snapshot")["id"]

    seen: dict[str, tuple[float, int]] = {}
    for args, want in [(("backup", str(src)), 11), (("gc",), 11), (("verify",), 11),
                       (("restore", str(snap), str(tmp_path / "r0")), 11),
                       (("status",), 0), (("snapshots",), 0), (("unlock",), 0)]:
        code, out, err, secs, rss = _run(store, *args)
        seen[args[0]] = (secs, rss)
        assert code == want, (args, code, err[-2000:])
        assert secs < TIME_LIMIT and rss < RSS_LIMIT, (args, secs, rss)
        if want == 11:
            (line,) = _lines(err)
            assert line.startswith("casbackup: ") and "unlock --remove-all" in line, line
        else:
            assert "Traceback" not in err and len(_lines(err)) <= 1, (args, err)
    assert not (tmp_path / "r0").exists() or not any((tmp_path / "r0").rglob("*"))
    assert len(os.listdir(store / "locks")) > 2000  # unlock removed no fresh object

    code, out, err, secs, rss = _run(store, "unlock", "--remove-all", "--json")
    seen["unlock --remove-all"] = (secs, rss)
    assert code == 0 and secs < TIME_LIMIT and rss < RSS_LIMIT, (err, secs, rss)
    rep = json_result(out)
    # every object but the nested one (no lock object: never listed, never blocking)
    assert len(rep["removed"]) == planted - 1 and rep["remaining"] == 0, rep["remaining"]
    print({k: (round(t, 1), r >> 20) for k, (t, r) in seen.items()})  # seconds, MiB
    assert (outside / "big").exists()  # the symlink went, not what it pointed at
    code, out, err, _, _ = _run(store, "backup", str(src))
    assert code == 0, err
    code, out, err, _, _ = _run(store, "gc")
    assert code == 0, err
    code, out, err, _, _ = _run(store, "verify", "--read-data", "--json")
    assert code == 0 and json_result(out)["ok"] is True, err
    code, out, err, _, _ = _run(store, "restore", str(snap), str(tmp_path / "r1"))
    assert code == 0, err
    got = tmp_path / "r1" / str(src).lstrip("/")
    for p in (src / "d").iterdir():
        assert (got / "d" / p.name).read_bytes() == p.read_bytes()
