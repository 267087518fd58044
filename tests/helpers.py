"""Shared test helpers: fast stores, CLI runs, and exact tree comparison.

``tree_state(root)`` captures everything a restore must reproduce (type, mode incl.
setuid/setgid/sticky, owner, size, nanosecond mtime (not for symlinks' parents' atime),
content digest, symlink target, xattrs, device numbers, and which entries are hard
links of each other) keyed by the path relative to ``root`` as bytes, so two trees can
be compared with ``==`` and a failure shows the first differing path.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import http.server
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from casbackup.store import ObjectInfo, Store, init_store, maintainer

PASSWORD = "test-password"
FAST_KDF = 2**10


def make_store(path: Path | str, encryption: str = "repokey", **kw: Any) -> Store:
    return init_store(str(path), None if encryption == "none" else PASSWORD,
                      encryption=encryption, kdf_n=FAST_KDF, **kw)


def open_test_store(path: Path | str) -> Store:
    from casbackup.store import open_store

    return open_store(str(path), lambda: PASSWORD)


def index_names(st: Store) -> list[str]:
    """The index objects on the backend now (the store's own maintenance listing)."""
    return maintainer(st).index_names()


def pack_listing(st: Store) -> dict[str, ObjectInfo]:
    """The pack objects on the backend now, by name."""
    return maintainer(st).pack_listing()


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["CASBACKUP_PASSWORD"] = PASSWORD
    env.pop("CASBACKUP_STORE", None)
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, input: bytes | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "casbackup", *args], env=env or cli_env(),
                          capture_output=True, input=input, timeout=timeout)


def json_lines(stdout: bytes | str, message_type: str | None = None) -> list[dict[str, Any]]:
    """The NDJSON lines of a ``--json`` run (docs/json.md), each a dict; only those of
    ``message_type`` if given. A line that is not a JSON object fails the test."""
    import json

    text = stdout.decode() if isinstance(stdout, bytes) else stdout
    out = []
    for line in text.splitlines():
        obj = json.loads(line)
        assert isinstance(obj, dict) and "message_type" in obj, line
        out.append(obj)
    return [o for o in out if message_type is None or o["message_type"] == message_type]


def json_result(stdout: bytes | str, message_type: str = "summary") -> dict[str, Any]:
    """The one ``message_type`` line (default: the summary) of a ``--json`` run."""
    (obj,) = json_lines(stdout, message_type)
    return obj


def _digest(path: bytes) -> str:
    h = hashlib.blake2b()
    with open(path, "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    return h.hexdigest()


def tree_state(root: Path | str | bytes, *, times: bool = True) -> dict[bytes, tuple[Any, ...]]:
    root_b = os.fsencode(root)
    out: dict[bytes, tuple[Any, ...]] = {}
    inodes: dict[tuple[int, int], bytes] = {}

    def visit(dir_fd: int, rel: bytes) -> None:
        for name in sorted(os.fsencode(n) for n in os.listdir(dir_fd)):
            r = rel + b"/" + name if rel else name
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            kind = stat.S_IFMT(st.st_mode)
            content: Any = None
            if stat.S_ISREG(st.st_mode):
                fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
                with open(fd, "rb") as f:
                    h = hashlib.blake2b()
                    while b := f.read(1 << 20):
                        h.update(b)
                    content = h.hexdigest()
                key = (st.st_dev, st.st_ino)
                link_of = inodes.setdefault(key, r) if st.st_nlink > 1 else None
                content = (content, link_of)
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(name, dir_fd=dir_fd)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                content = st.st_rdev
            try:
                p = b"/proc/self/fd/%d/%s" % (dir_fd, name)
                xa = tuple(sorted((n, os.getxattr(p, n, follow_symlinks=False))
                                  for n in os.listxattr(p, follow_symlinks=False)))
            except OSError:
                xa = ()
            mtime = st.st_mtime_ns if times and not stat.S_ISLNK(st.st_mode) else None
            out[r] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                      st.st_size if not stat.S_ISDIR(st.st_mode) else None, mtime, content, xa)
            if stat.S_ISDIR(st.st_mode):
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=dir_fd)
                try:
                    visit(fd, r)
                finally:
                    os.close(fd)

    fd = os.open(root_b, os.O_RDONLY | os.O_DIRECTORY)
    try:
        visit(fd, b"")
    finally:
        os.close(fd)
    return out


def write_tree(root: Path, spec: dict[str, object]) -> None:
    """Make ``root`` and below it a tree from ``spec``: bytes are files, dicts directories
    (what the hypothesis tree strategies draw)."""
    root.mkdir()
    for name, v in spec.items():
        if isinstance(v, dict):
            write_tree(root / name, v)
        else:
            assert isinstance(v, bytes)
            (root / name).write_bytes(v)


def restored_root(target: Path, source: Path) -> Path:
    """Where restore puts ``source`` under ``target`` (absolute paths are mirrored)."""
    return target / os.path.abspath(source).lstrip("/")


def assert_same_tree(a: Path | bytes, b: Path | bytes, *, times: bool = True) -> None:
    sa, sb = tree_state(a, times=times), tree_state(b, times=times)
    if sa != sb:
        for k in sorted(set(sa) | set(sb)):
            if sa.get(k) != sb.get(k):
                raise AssertionError(f"{k!r}: source {sa.get(k)} != restored {sb.get(k)}")
    assert len(sa) == len(sb)


def deep_chain(root: Path, depth: int, top: bytes = b"top", leaf: bytes = b"leaf",
               leaf_mode: int = 0o644) -> None:
    """root/top.txt and root/d/d/.../d/leaf.txt, ``depth`` directories deep, made with dir
    fds (the path may be longer than PATH_MAX)."""
    root.mkdir()
    (root / "top.txt").write_bytes(top)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = sub
    w = os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, leaf_mode, dir_fd=fd)
    os.write(w, leaf)
    os.close(w)
    os.close(fd)


@contextlib.contextmanager
def tmpfs_mount(mnt: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. ``1m``) mounted at ``mnt`` for the block (the caller
    skips when mounting is refused: ``OSError``)."""
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode:
        raise OSError(r.stderr.decode().strip() or "mount refused")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def tmpfs_or_skip(mnt: Path, size: str) -> Iterator[Path]:
    """For a fixture (``yield from``): a tmpfs of SIZE at MNT, or the test skipped where
    mounting is refused (not root). In a fixture only: pytest never throws the test's own
    errors into it, so an ``OSError`` of the test is not taken for a refused mount."""
    import pytest

    try:
        with tmpfs_mount(mnt, size) as m:
            yield m
    except OSError as e:
        pytest.skip(f"cannot mount a tmpfs: {e}")


@contextlib.contextmanager
def loopback_http(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded HTTP server with HANDLER on a free loopback port, as its base URL; shut
    down and closed on exit (the fake "S3 endpoints" of the retry and fault tests)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# what a forwarding proxy may change: (command, path, status, headers, body) -> the same
Rewrite = Callable[[str, str, int, list[tuple[str, str]], bytes],
                   tuple[int, list[tuple[str, str]], bytes]]
_HOP_HEADERS = ("content-length", "transfer-encoding", "connection", "server", "date")


def forwarding_proxy(target: str, rewrite: Rewrite | None = None,
                     timeout: float = 60) -> type[http.server.BaseHTTPRequestHandler]:
    """A handler (for ``loopback_http``) that forwards every request to TARGET (an S3
    endpoint such as moto's) and answers with what it got, after REWRITE: the endpoint a
    hostile-store test lies through."""
    parts = urlsplit(target)
    host, port = parts.hostname or "127.0.0.1", parts.port

    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            try:
                conn.request(self.command, self.path, body or None, dict(self.headers))
                r = conn.getresponse()
                status, data = r.status, r.read()
                headers = [(k, v) for k, v in r.getheaders() if k.lower() not in _HOP_HEADERS]
            finally:
                conn.close()
            if rewrite is not None:
                status, headers, data = rewrite(self.command, self.path, status, headers, data)
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

    return Proxy


def source_subtree(store: Store, root: bytes, path: Path | bytes) -> bytes:
    """The tree id of PATH's directory in the snapshot tree ROOT: what a test compares
    between two backups of PATH (the directories above it carry their own times, which
    other processes in /tmp change between backups)."""
    tid = root
    for part in [c for c in os.fsencode(path).split(b"/") if c]:
        (m,) = [m for m in store.load_tree_maps(tid) if m["name"] == part]
        tid = m["subtree"]
    return bytes(tid)


def count_preads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count this process's ``os.pread`` calls from now on: ``[n]``, a list so the test can
    read it, and reset it, as it goes."""
    calls = [0]
    real = os.pread

    def counting(fd: int, n: int, off: int) -> bytes:
        calls[0] += 1
        return real(fd, n, off)

    monkeypatch.setattr(os, "pread", counting)
    return calls


def proc_state(pid: int) -> str:
    """The state letter of process PID in /proc (``T``: stopped); ``gone`` once reaped."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0].decode()
    except FileNotFoundError:
        return "gone"


def proc_children(pid: int) -> list[int]:
    """The pids whose parent is PID, zombies included."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    ppid = int(f.read().rpartition(b")")[2].split()[1])
            except (OSError, ValueError):
                continue
            if ppid == pid:
                out.append(int(entry))
    return out


@contextlib.contextmanager
def stopped_cli(*args: str, point: str, timeout: float = 120) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m casbackup ARGS`` until it stops (SIGSTOP) at crash point POINT
    (``CASBACKUP_TEST_STOP_AT``, faults.py); yield it there (the caller sends SIGCONT);
    it is killed and reaped if still running afterwards."""
    proc = subprocess.Popen([sys.executable, "-m", "casbackup", *args],
                            env=cli_env(CASBACKUP_TEST_STOP_AT=point),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while proc_state(proc.pid) != "T":
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"{args[0]} never reached {point}"
            time.sleep(0.02)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
