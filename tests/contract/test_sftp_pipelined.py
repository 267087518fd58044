"""SFTP's pipelined reads and writes (sftp._pread / _pwrite) against a real sshd."""

from __future__ import annotations

import os

import pytest

from casbackup.backends import sftp as sftp_mod
from casbackup.backends.sftp import SFTPBackend
from casbackup.errors import PermanentError


@pytest.mark.parametrize("chunk", [1000, 128 * 1024, 1 << 20])
def test_reads_and_writes_any_chunking(
    sftp_url: str, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1 MiB requests exceed what OpenSSH answers at once (~255 KiB): short replies are
    # followed by requests for the rest
    monkeypatch.setattr(sftp_mod, "READ_CHUNK", chunk)
    monkeypatch.setattr(sftp_mod, "WRITE_CHUNK", min(chunk, 128 * 1024))
    monkeypatch.setattr(sftp_mod, "READ_AHEAD", 3)
    monkeypatch.setattr(sftp_mod, "WRITE_AHEAD", 3)
    b = SFTPBackend.from_url(sftp_url)
    try:
        data = os.urandom((3 << 20) + 12345)
        b.put("packs/ab/obj", memoryview(data))
        assert b.stat("packs/ab/obj").size == len(data)
        assert b.get("packs/ab/obj") == data
        for off, n in ((0, 1), (777, 300_001), (len(data) - 5, 5), (1 << 20, 2 << 20)):
            assert b.get("packs/ab/obj", offset=off, length=n) == data[off : off + n]
        assert b.get("packs/ab/obj", offset=len(data)) == b""
        with pytest.raises(PermanentError):
            b.get("packs/ab/obj", offset=len(data) - 2, length=3)
        # the connection is still in a clean state for the next request
        b.put("packs/ab/small", b"x")
        assert b.get("packs/ab/small") == b"x"
    finally:
        b.close()


def test_nagle_is_off(sftp_url: str) -> None:
    import socket

    b = SFTPBackend.from_url(sftp_url)
    try:
        b.put("k", b"v")
        conn, _ = b._pool.acquire()
        try:
            sock = conn.ssh.get_transport().sock
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        finally:
            b._pool.release(conn, False)
    finally:
        b.close()
