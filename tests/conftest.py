"""Fixtures for backend tests: a real S3 endpoint (moto server mode) and a real OpenSSH sshd,
both on loopback, plus ``backend_url``/``backend`` parametrized over every backend.

Fixtures (shared by every test directory):
- ``s3_server`` (session): a ``MotoS3`` with ``.endpoint``, ``.bucket`` and ``.url(prefix)``;
  sets fake ``AWS_*`` credentials in the environment for the session.
- ``s3_url``: an ``s3://`` URL with a fresh prefix in that bucket.
- ``sshd_server`` (session): an ``Sshd`` (``.port``, ``.url(path)``, ``.stop()``, ``.start()``)
  accepting a throwaway key for the current user.
- ``sftp_url``: an ``sftp://`` URL (``key=`` and ``known_hosts=`` set) for a fresh directory.
- ``sshd_factory``: starts private ``Sshd`` instances (to kill and restart in a test).
- ``backend_url`` (params memory, local, s3, sftp) and ``backend`` (the raw backend, closed
  after the test).
When moto or sshd are unavailable the tests needing them are skipped -- or fail when the
``CI`` environment variable is set, so CI cannot silently lose coverage.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import settings

from casbackup.backends import open_backend
from casbackup.backends.base import Backend

# no hypothesis deadline: a loaded 2-core CI machine makes any per-example time limit a
# flake (test_lock_objects exceeded the default 200 ms there); examples are bounded by
# their max_examples instead
settings.register_profile("casbackup", deadline=None)
settings.load_profile("casbackup")

# every store's local cache (store/cachedir.py) goes to one throwaway directory per test
# session, inherited by the CLI and daemon processes the tests start, never ~/.cache. Under
# pytest-xdist each worker inherits the controller's environment, so a worker gets its own
# subdirectory of it (PYTEST_XDIST_WORKER is gw0, gw1, ...): no two processes running tests
# share a cache root.
if "CASBACKUP_CACHE_DIR" not in os.environ:
    os.environ["CASBACKUP_CACHE_DIR"] = tempfile.mkdtemp(prefix="casbackup-test-cache-")
    # the process that made it removes it (with the xdist workers' subdirectories in it)
    atexit.register(shutil.rmtree, os.environ["CASBACKUP_CACHE_DIR"], ignore_errors=True)
if os.environ.get("PYTEST_XDIST_WORKER"):
    _worker_cache = Path(os.environ["CASBACKUP_CACHE_DIR"]) / os.environ["PYTEST_XDIST_WORKER"]
    _worker_cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ["CASBACKUP_CACHE_DIR"] = str(_worker_cache)
# likewise the daemons the tests start keep their state files (daemon/state.py) in a
# throwaway directory of this process, never ~/.local/state
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="casbackup-test-state-")
atexit.register(shutil.rmtree, os.environ["XDG_STATE_HOME"], ignore_errors=True)

BACKENDS = ["memory", "local", "s3", "sftp"]


def require(ok: bool, reason: str) -> None:
    """Skip the test when ``ok`` is false -- or fail it in CI."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- S3 -----------------------------------------------------------------------------------


class MotoS3:
    """A moto S3 server on loopback with one bucket."""

    def __init__(self, bucket: str = "casbackup-test") -> None:
        import boto3  # type: ignore[import-untyped]
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.bucket = bucket
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket=bucket)

    def url(self, prefix: str) -> str:
        return (
            f"s3://{self.bucket}/{prefix}?endpoint={quote(self.endpoint, safe='')}&region=us-east-1"
        )

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3]:
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
        import obstore  # noqa: F401
    except ImportError as exc:
        require(False, f"S3 tests need moto[server], boto3 and obstore: {exc}")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(var, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
        mp.setenv("AWS_REGION", "us-east-1")
        server = MotoS3()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def s3_url(s3_server: MotoS3) -> str:
    return s3_server.url(f"t-{uuid.uuid4().hex[:12]}")


# -- SFTP ---------------------------------------------------------------------------------


def _sshd_binary() -> str | None:
    return shutil.which("sshd") or next(
        (p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.access(p, os.X_OK)), None
    )


def _children(pid: int) -> list[int]:
    """All descendants of ``pid`` (sshd's per-connection children call setsid)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class Sshd:
    """OpenSSH sshd on 127.0.0.1 with a throwaway host key and client key."""

    def __init__(self, workdir: Path) -> None:
        binary = _sshd_binary()
        keygen = shutil.which("ssh-keygen")
        assert binary and keygen
        self.binary, self.dir = binary, workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host_key = self.dir / "host_ed25519"
        self.client_key = self.dir / "id_ed25519"
        for key in (self.host_key, self.client_key):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (self.dir / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        self.user = __import__("getpass").getuser()
        self.port = free_port()
        self.known_hosts = self.dir / "known_hosts"
        host_pub = Path(f"{self.host_key}.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.config = self.dir / "sshd_config"
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "StrictModes no",
                    "UsePAM no",
                    "MaxStartups 100",
                    "MaxSessions 100",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        log = open(self.dir / "sshd.log", "ab")  # noqa: SIM115 -- owned by the process
        self.proc = subprocess.Popen(
            [self.binary, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.dir / 'sshd.log').read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as s,
            ):
                if s.recv(64).startswith(b"SSH-"):
                    return
            time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def stop(self) -> None:
        """Kill sshd and every connection it serves (like a server crash)."""
        if self.proc is None:
            return
        for pid in [*_children(self.proc.pid), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def url(self, path: Path | str, **extra: str) -> str:
        query = {"key": str(self.client_key), "known_hosts": str(self.known_hosts), **extra}
        q = "&".join(f"{k}={quote(v, safe='/')}" for k, v in query.items())
        return f"sftp://{self.user}@127.0.0.1:{self.port}{quote(str(path))}?{q}"


def _require_sshd() -> None:
    try:
        import paramiko  # noqa: F401
    except ImportError:
        require(False, "SFTP tests need paramiko")
    require(
        _sshd_binary() is not None and shutil.which("ssh-keygen") is not None,
        "SFTP tests need OpenSSH sshd and ssh-keygen (apt-get install openssh-server)",
    )


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    _require_sshd()
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sshd_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], Sshd]]:
    _require_sshd()
    servers: list[Sshd] = []

    def make() -> Sshd:
        servers.append(Sshd(tmp_path_factory.mktemp("sshd-private")))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def sftp_url(sshd_server: Sshd, tmp_path: Path) -> str:
    return sshd_server.url(tmp_path / "sftp-store")


# -- every backend ------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    kind = request.param
    if kind == "memory":
        name = f"test-{uuid.uuid4().hex}"
        yield f"memory://{name}"
        from casbackup.backends.memory import MemoryBackend

        MemoryBackend.forget(name)
    elif kind == "local":
        yield str(tmp_path / "local-store")
    elif kind == "s3":
        yield request.getfixturevalue("s3_url")
    else:
        yield request.getfixturevalue("sftp_url")


@pytest.fixture
def backend(backend_url: str) -> Iterator[Backend]:
    b = open_backend(backend_url, retry=False)
    try:
        yield b
    finally:
        b.close()
