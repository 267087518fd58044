"""Remote stores under failure: injected faults, servers killed mid-backup, and secrets.

(a) In-process: a real S3 / SFTP backend wrapped in ``FaultyBackend`` under
    ``RetryingBackend``. Transient failures are retried invisibly; a permanent one fails
    the backup with one line naming the object, leaves the store consistent and without
    a snapshot, and a rerun completes.
(b) A CLI backup of ~50 MB while the server dies and comes back: a private sshd is
    SIGKILLed with its connections; the S3 endpoint is a private moto server reached
    through a loopback TCP proxy that the test cuts (every connection reset, the port
    refusing) and reopens -- moto's objects survive, as a real S3 service's do. The
    backup either completes through retries or fails with one clean line; a rerun
    completes, ``verify --read-data`` passes and the restore is exact.
(c) The S3 secret key and the store password never appear in any output, including
    ``--json`` and failures against bad endpoints.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from casbackup.backends import open_backend
from casbackup.backends.faulty import Fault, FaultyBackend
from casbackup.backends.retry import RetryingBackend
from casbackup.errors import CasError, PermanentError
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.restore import restore
from casbackup.ops.verify import verify
from casbackup.store.config import StoreConfig
from casbackup.store.store import Store
from tests.conftest import MotoS3, Sshd, free_port
from tests.helpers import (
    FAST_KDF,
    PASSWORD,
    assert_same_tree,
    cli_env,
    json_lines,
    json_result,
    loopback_http,
    restored_root,
    run_cli,
)

# -- (a) injected faults, in-process ------------------------------------------------------


@pytest.fixture(params=["s3", "sftp"])
def remote(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


def _source(root: Path) -> Path:
    (root / "d").mkdir(parents=True)
    # four 2 MiB random files at 1 MiB packs: at least four data packs whatever the
    # chunk boundaries (chunks never span files), so "the third pack put" always exists
    for i in range(4):
        (root / f"a{i}.bin").write_bytes(os.urandom(2 << 20))
    (root / "d" / "b.txt").write_bytes(b"text " * 300_000)
    (root / "d" / "small").write_bytes(b"s")
    return root


def _store(url: str, faults: list[Fault]) -> tuple[Store, FaultyBackend]:
    faulty = FaultyBackend(open_backend(url, retry=False), faults)
    retrying = RetryingBackend(faulty, sleep=lambda _s: None)
    config = StoreConfig.new("aes-256-gcm", pack_size=1 << 20)
    Store.create(retrying, config, PASSWORD, kdf_n=FAST_KDF)
    return Store.open(retrying, lambda: PASSWORD), faulty


def test_transient_faults_are_retried(remote: str, tmp_path: Path) -> None:
    faults = [
        Fault(ops=frozenset({"put"}), key_prefix="packs/", after=1, times=3),
        Fault(ops=frozenset({"put"}), key_prefix="index/", when="after"),  # response lost
        Fault(ops=frozenset({"put"}), key_prefix="snapshots/", when="after"),
        Fault(ops=frozenset({"get"}), key_prefix="packs/", after=2, times=3),
        Fault(ops=frozenset({"list"}), key_prefix="snapshots/", when="after"),
        Fault(ops=frozenset({"stat", "get"}), key_prefix="index/", times=2),
    ]
    st, faulty = _store(remote, faults)
    src = _source(tmp_path / "src")
    res = backup(st, [str(src)], BackupOptions())
    target = tmp_path / "restore"
    restore(st, res.snapshot.id or "", str(target))
    assert_same_tree(src, restored_root(target, src))
    rep = verify(st, read_data=True)
    assert rep.ok, rep.problems
    assert all(f.fired for f in faults[:4]), [(f.key_prefix, f.fired) for f in faults]
    assert [s.id for s in st.snapshots()] == [res.snapshot.id]
    st.close()


def test_permanent_fault_fails_cleanly_and_rerun_completes(remote: str, tmp_path: Path) -> None:
    fault = Fault(ops=frozenset({"put"}), key_prefix="packs/", after=2, error=PermanentError)
    st, faulty = _store(remote, [fault])
    src = _source(tmp_path / "src")
    with pytest.raises(CasError) as info:
        backup(st, [str(src)], BackupOptions())
    msg = str(info.value)
    st.close()  # uploads still in flight finish
    named = re.search(r"packs/[0-9a-f]{2}/[0-9a-f]{64}", msg)
    assert named and "\n" not in msg, msg
    # the message names the pack whose put failed: attempted, never stored
    assert ("put", named.group()) in faulty.calls and named.group() not in faulty.puts
    assert isinstance(info.value, PermanentError)
    assert fault.fired == 1

    # the store is consistent: no snapshot, no dangling index entry, no lock left behind
    st = Store.open(open_backend(remote), lambda: PASSWORD)
    assert st.snapshot_ids() == []
    assert list(st.list_keys("locks/")) == []
    rep = verify(st, read_data=True)
    assert rep.ok, rep.problems
    # a rerun completes and restores exactly
    res = backup(st, [str(src)], BackupOptions())
    target = tmp_path / "restore"
    restore(st, "latest", str(target))
    assert_same_tree(src, restored_root(target, src))
    assert verify(st, read_data=True).ok
    assert res.summary.files_new == 6
    st.close()


# -- (b) the server dies mid-backup -------------------------------------------------------


_RESET = (1).to_bytes(4, "little") + bytes(4)  # SO_LINGER on, 0 s: close() sends RST


class CuttableProxy:
    """A loopback TCP proxy to ``target_port``; ``cut()`` resets every connection and
    closes the port, ``restore()`` listens on the same port again."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for s in ready:
                    data = s.recv(1 << 16)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except (OSError, ValueError):  # ValueError: select() on a socket cut() closed
            return
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


def _cli(
    url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return run_cli(*args, "--store", url, env=env, timeout=120)


def _kill_mid_backup(
    url: str,
    tmp_path: Path,
    count_packs: Callable[[], int],
    stop: Callable[[], None],
    start: Callable[[], None],
    outage: str,
) -> None:
    """A CLI backup of ~50 MB; after 3 packs the server dies. ``outage="restart"``: it is
    back after 1 s and the backup must complete through retries. ``outage="down"``: it
    stays down (and the backup retries only 3 times), so the backup must fail with one
    clean line. Either way a rerun then completes, verifies and restores exactly."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(5):
        (src / "d" / f"r{i}.bin").write_bytes(os.urandom(10 << 20))
    (src / "t.txt").write_bytes(b"some text\n" * 50_000)
    p = _cli(url, "init", "--pack-size", "1")
    assert p.returncode == 0, p.stderr
    env = cli_env(**({"CASBACKUP_RETRIES": "3"} if outage == "down" else {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "casbackup", "backup", str(src), "--store", url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while count_packs() < 3:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    stop()
    assert proc.poll() is None, "the backup finished before the server was stopped"
    if outage == "restart":
        time.sleep(1.0)
        start()
    out, err = proc.communicate(timeout=120)
    every = err.decode().strip().splitlines()
    retries = [ln for ln in every if ln.startswith("casbackup: retrying ")]
    lines = [ln for ln in every if ln not in retries]
    assert retries, "the outage was retried, visibly"  # one line per retry, with its reason
    assert all(" (try " in ln and " s " in ln for ln in retries), retries
    if outage == "restart":
        assert proc.returncode == 0 and lines == [], err.decode()
        assert b"saved" in out
    else:
        assert proc.returncode == 1, err.decode()
        assert len(lines) == 1 and lines[0].startswith("casbackup: "), err.decode()
        assert "gave up after 3 attempts" in lines[0]
        start()
    rerun = _cli(url, "backup", str(src))
    assert rerun.returncode == 0, rerun.stderr
    v = _cli(url, "verify", "--read-data")
    assert v.returncode == 0, v.stdout + v.stderr
    target = tmp_path / "restore"
    r = _cli(url, "restore", "latest", str(target))
    assert r.returncode == 0, r.stderr
    assert_same_tree(src, restored_root(target, src))


OUTAGES = ["restart", "down"]


@pytest.mark.parametrize("outage", OUTAGES)
def test_sshd_killed_mid_backup(
    sshd_factory: Callable[[], Sshd], tmp_path: Path, outage: str
) -> None:
    server = sshd_factory()
    root = tmp_path / "sftp-store"
    _kill_mid_backup(
        server.url(root),
        tmp_path,
        lambda: sum(len(files) for _, _, files in os.walk(root / "packs")),
        server.stop,
        server.start,
        outage,
    )


@pytest.mark.parametrize("outage", OUTAGES)
def test_s3_endpoint_killed_mid_backup(s3_server: MotoS3, tmp_path: Path, outage: str) -> None:
    bucket = f"casbackup-kill-{outage}"
    moto = MotoS3(bucket=bucket)
    proxy = CuttableProxy(int(moto.endpoint.rsplit(":", 1)[1]))
    try:
        endpoint = f"http://127.0.0.1:{proxy.port}"
        url = f"s3://{bucket}/k?endpoint={quote(endpoint, safe='')}&region=us-east-1"
        direct = open_backend(moto.url("k"), retry=False)
        _kill_mid_backup(
            url,
            tmp_path,
            lambda: sum(1 for _ in direct.list("packs/")),
            proxy.cut,
            proxy.restore,
            outage,
        )
    finally:
        proxy.cut()
        moto.stop()


# -- (c) secrets never leak ---------------------------------------------------------------

SECRET = "Zq8-very-secret-access-key-4711"
STORE_PASSWORD = "pw-Hunter2-never-print-me"


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    """An 'S3 endpoint' that answers 403 with the request line and headers in the body,
    the worst case for an error message that quotes the server."""

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        body = f"<Error><Message>{self.requestline} {dict(self.headers)}</Message></Error>"
        data = body.encode()
        self.send_response(403)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def echo_endpoint() -> Iterator[str]:
    with loopback_http(_EchoHandler) as url:
        yield url


def test_secrets_never_appear_in_output(
    s3_server: MotoS3, echo_endpoint: str, tmp_path: Path
) -> None:
    env = cli_env(AWS_SECRET_ACCESS_KEY=SECRET, CASBACKUP_PASSWORD=STORE_PASSWORD)
    good = s3_server.url("secrets")
    src = _source(tmp_path / "src")
    closed = f"http://127.0.0.1:{free_port()}"

    def url(endpoint: str) -> str:
        return f"s3://{s3_server.bucket}/secrets?endpoint={quote(endpoint, safe='')}"

    runs = [
        ("init", "--json"),
        ("backup", str(src), "--json"),
        ("backup", str(src)),
        ("snapshots", "--json"),
        ("verify", "--read-data", "--json"),
        ("cat", "config"),
        ("cat", "keys"),
    ]
    outputs: list[tuple[tuple[str, ...], subprocess.CompletedProcess[bytes]]] = []
    for args in runs:
        p = _cli(good, *args, env=env)
        assert p.returncode == 0, p.stderr
        outputs.append((args, p))
    failing = [
        (echo_endpoint, ("snapshots", "--json")),
        (echo_endpoint, ("backup", str(src), "--json")),
        (echo_endpoint, ("init", "--json")),
        (closed, ("snapshots", "--json")),
        (closed, ("verify", "--json")),
        ("https://127.0.0.1:1", ("snapshots",)),
    ]
    for endpoint, args in failing:
        p = _cli(url(endpoint), *args, env={**env, "CASBACKUP_RETRIES": "2"})
        assert p.returncode != 0
        assert len(p.stderr.decode().strip().splitlines()) == 1, p.stderr
        outputs.append((args, p))
    # a wrong password against the real store, with the secret still in the environment
    p = _cli(good, "snapshots", "--json", env={**env, "CASBACKUP_PASSWORD": STORE_PASSWORD + "x"})
    assert p.returncode == 12
    outputs.append((("snapshots",), p))
    echo_out = outputs[len(runs)][1].stderr.decode()
    assert "HTTP 403" in echo_out or "403" in echo_out, echo_out
    for args, p in outputs:
        for secret in (SECRET, STORE_PASSWORD):
            assert secret.encode() not in p.stdout + p.stderr, (args, p.stdout, p.stderr)
    # JSON outputs are JSON
    assert json_result(outputs[0][1].stdout, "initialized")
    assert json_lines(outputs[3][1].stdout, "snapshot")
    for args, p in outputs[len(runs):]:  # every failure with --json ends with exit_error
        if "--json" in args:
            assert json_lines(p.stdout)[-1]["code"] == p.returncode, (args, p.stdout)


def test_debug_traceback_has_no_secrets(s3_server: MotoS3, echo_endpoint: str) -> None:
    env = cli_env(AWS_SECRET_ACCESS_KEY=SECRET, CASBACKUP_PASSWORD=STORE_PASSWORD)
    url = f"s3://{s3_server.bucket}/dbg?endpoint={quote(echo_endpoint, safe='')}"
    p = _cli(url, "snapshots", "--debug", env={**env, "CASBACKUP_RETRIES": "2"})
    assert p.returncode != 0
    assert SECRET.encode() not in p.stderr + p.stdout
    assert STORE_PASSWORD.encode() not in p.stderr + p.stdout
