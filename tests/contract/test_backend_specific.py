"""Behaviour particular to one backend: URL parsing, fallbacks, error mapping, reconnects."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from casbackup.backends import open_backend
from casbackup.backends.local import LocalBackend
from casbackup.backends.memory import MemoryBackend
from casbackup.backends.retry import RetryingBackend
from casbackup.backends.s3 import S3Backend
from casbackup.backends.sftp import SFTPBackend
from casbackup.errors import AlreadyExists, PermanentError, TransientError, UsageError

if TYPE_CHECKING:
    from tests.conftest import MotoS3, Sshd

# -- open_backend -------------------------------------------------------------------------


def test_open_backend_url_forms(tmp_path: Path) -> None:
    local = open_backend(str(tmp_path / "a"))
    assert isinstance(local, RetryingBackend) and isinstance(local.inner, LocalBackend)
    raw = open_backend(f"file://{tmp_path}/b", retry=False)
    assert isinstance(raw, LocalBackend) and raw.root == str(tmp_path / "b")
    s3 = open_backend("s3://bucket/some/prefix?region=eu-west-1", retry=False)
    assert isinstance(s3, S3Backend) and (s3.bucket, s3.prefix) == ("bucket", "some/prefix")
    sftp = open_backend("sftp://bob@example.org:2222/srv/backup?connections=2", retry=False)
    assert isinstance(sftp, SFTPBackend)
    p = sftp.params
    assert (p.user, p.host, p.port, p.path) == ("bob", "example.org", 2222, "/srv/backup")
    assert sftp.properties().connections == 2
    home = open_backend("sftp://example.org/~/backup", retry=False)
    assert isinstance(home, SFTPBackend) and home.params.path == "backup"


def test_open_backend_memory_names_are_shared() -> None:
    a = open_backend("memory://shared-test")
    b = open_backend("memory://shared-test")
    private = open_backend("memory://")
    a.put("config", b"x")
    assert b.get("config") == b"x"
    assert list(private.list()) == []
    MemoryBackend.forget("shared-test")
    assert list(open_backend("memory://shared-test").list()) == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/path",
        "s3://bucket/p?endpoint=http://x&secret=abc",
        "s3:///nobucket",
        "sftp://user:hunter2@host/path",
        "sftp://host/path?password=x",
        "sftp://host:notaport/path",
        "file://remotehost/path",
        "",
    ],
)
def test_open_backend_rejects(url: str) -> None:
    with pytest.raises(UsageError) as info:
        open_backend(url)
    assert "hunter2" not in str(info.value)


# -- local --------------------------------------------------------------------------------


def test_local_open_does_not_create_root(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "not-yet")
    assert list(backend.list()) == []
    assert not (tmp_path / "not-yet").exists()
    backend.put("packs/00/p", b"x")
    assert (tmp_path / "not-yet" / "packs" / "00" / "p").read_bytes() == b"x"
    assert oct((tmp_path / "not-yet" / "packs" / "00" / "p").stat().st_mode & 0o777) == "0o600"


def test_local_without_hard_links_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(src: str, dst: str) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    backend = LocalBackend(tmp_path)
    backend.put("config", b"1")
    with pytest.raises(AlreadyExists):
        backend.put("config", b"2")
    assert backend.get("config") == b"1"
    assert backend.properties().atomic_exclusive_create is False
    assert [p.name for p in tmp_path.iterdir()] == ["config"]


def test_local_failed_write_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = LocalBackend(tmp_path)
    backend.put("packs/00/a", b"a")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(TransientError, match="packs/00/b"):
        backend.put("packs/00/b", b"b")
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "packs" / "00").iterdir()) == ["a"]


def test_local_full_disk_is_permanent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(PermanentError, match="No space left"):
        LocalBackend(tmp_path).put("config", b"x")


def test_local_key_under_a_file_is_permanent(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    backend.put("a", b"file")
    with pytest.raises(PermanentError):
        backend.put("a/b", b"x")


# -- S3 -----------------------------------------------------------------------------------


def test_s3_missing_bucket_is_permanent(s3_server: MotoS3) -> None:
    backend = open_backend(
        s3_server.url("p").replace(s3_server.bucket, "no-such-bucket"), retry=False
    )
    with pytest.raises(PermanentError, match="no-such-bucket"):
        backend.put("config", b"x")


def test_s3_unreachable_endpoint_is_transient_without_secrets(s3_server: MotoS3) -> None:
    from socket import socket

    with socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = S3Backend("bucket", "p", endpoint=f"http://127.0.0.1:{port}")
    with pytest.raises(TransientError) as info:
        backend.get("config")
    assert "testing-secret-key" not in str(info.value)
    assert "config" in str(info.value)


def test_s3_plain_http_refused_for_remote_endpoint(s3_server: MotoS3) -> None:
    with pytest.raises(UsageError, match="allow_http"):
        S3Backend("bucket", endpoint="http://198.51.100.1:9")
    S3Backend("bucket", endpoint="http://198.51.100.1:9", allow_http=True)
    S3Backend("bucket", endpoint="http://localhost:9")
    S3Backend("bucket", endpoint="http://[::1]:9")


# -- SFTP ---------------------------------------------------------------------------------


def test_sftp_unknown_host_key_refused(sshd_server: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    url = sshd_server.url(tmp_path / "s", known_hosts=str(empty))
    with pytest.raises(PermanentError, match="known_hosts"):
        open_backend(url, retry=False).put("config", b"x")
    insecure = sshd_server.url(tmp_path / "s", known_hosts=str(empty), insecure_host_key="1")
    backend = open_backend(insecure, retry=False)
    backend.put("config", b"x")
    backend.close()


def test_sftp_negotiates_aes_gcm_with_openssh(sshd_server: Sshd, tmp_path: Path) -> None:
    """paramiko offers AES-CTR + HMAC first (its MAC check runs in Python); we offer GCM
    first, and OpenSSH takes it. The data still round-trips over it."""
    from casbackup.backends.sftp import SFTPBackend

    backend = open_backend(sshd_server.url(tmp_path / "s"), retry=False)
    assert isinstance(backend, SFTPBackend)
    data = os.urandom(300_000)
    backend.put("packs/00/g", data)
    conn, _ = backend._pool.acquire()
    try:
        transport = conn.ssh.get_transport()
        assert transport.remote_cipher == "aes128-gcm@openssh.com"
        assert transport.local_cipher == "aes128-gcm@openssh.com"
    finally:
        backend._pool.release(conn, False)
    assert backend.get("packs/00/g") == data
    backend.close()


def test_sftp_wrong_key_refused(sshd_server: Sshd, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    backend = open_backend(sshd_server.url(tmp_path / "s", key=str(other)), retry=False)
    with pytest.raises(PermanentError, match="Authentication"):
        backend.stat("config")


def test_sftp_server_restart_transient_then_reconnect(
    sshd_factory: Callable[[], Sshd], tmp_path: Path
) -> None:
    server = sshd_factory()
    backend = open_backend(server.url(tmp_path / "s"), retry=False)
    backend.put("packs/00/p", b"before")
    server.stop()  # kills every connection too
    with pytest.raises(TransientError):
        backend.get("packs/00/p")
    with pytest.raises(TransientError):
        backend.put("packs/00/q", b"during")
    server.start()
    assert backend.get("packs/00/p") == b"before"  # reconnected
    backend.put("packs/00/q", b"after")
    assert [i.key for i in backend.list()] == ["packs/00/p", "packs/00/q"]
    backend.close()


def test_sftp_retrying_rides_out_a_restart(
    sshd_factory: Callable[[], Sshd], tmp_path: Path
) -> None:
    server = sshd_factory()
    backend = RetryingBackend(
        open_backend(server.url(tmp_path / "s"), retry=False),
        attempts=8,
        base_delay=0.1,
        max_delay=0.4,
    )
    backend.put("config", b"c")
    server.stop()
    restarter = threading.Timer(0.3, server.start)
    restarter.start()
    try:
        backend.put("snapshots/s1", b"snap")
        assert backend.get("config") == b"c"
    finally:
        restarter.join()
    assert backend.get("snapshots/s1") == b"snap"
    backend.close()


def test_sftp_conn_close_swallows_errors_of_a_dropped_connection() -> None:
    """Closing the SFTP channel of a connection the server dropped raises EOFError inside
    paramiko; close is how the pool throws a broken connection away, so it must not raise
    (it ended a backup as "aborted" when sshd was killed mid-backup) and must still close
    the SSH client."""
    from casbackup.backends.sftp_pool import Conn

    closed: list[str] = []

    class Dead:
        def __init__(self, name: str) -> None:
            self.name = name

        def close(self) -> None:
            closed.append(self.name)
            raise EOFError()

    Conn(Dead("ssh"), Dead("sftp")).close()
    assert closed == ["sftp", "ssh"]
