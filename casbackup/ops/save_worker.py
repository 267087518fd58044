"""A save worker process: reads, hashes and seals small files sent to it as open descriptors.

Started by save_pool.py (``python -c`` of ``main``, one socket inherited). Protocol on
that socket (frames: a 4-byte little-endian length, then msgpack):

1. the parent's first frame is the store's ``Sealer.spec()`` -- the keys travel only
   over this socket, never argv, environment or disk;
2. then each request is ``[seq, [[size, mtime_ns, ctime_ns], ...]]``: its number (0, 1,
   ... on this socket) and small files (each below the chunker's minimum: one blob),
   their descriptors attached (SCM_RIGHTS); the reply is ``[tags, ids, blobs, seq]``:
   one tag byte per file, in order, an id and a blob for each file tagged SEALED or
   SEEN, in the same order, and the request's number (the parent checks it, and the
   rest: save_pool.py). ``EMPTY``: no content;
   ``SEALED``: a new blob sealed here; ``SEEN``: a blob this worker sealed before, sent
   as plaintext (the parent's reserve decides, and seals it only if still missing);
   ``CAREFUL``: the file changed since the walker's lstat or could not be read -- the
   parent takes its careful path with its own descriptor, which raises what the thread
   path would.

Invariants:
- The content work is the saver thread's: ``small_read.read_small`` and the store's own
  ``Sealer`` (its ``Codec``): the same bytes read, the same ids, the same sealed format.
- Every descriptor received is closed before the reply is sent.
- The worker decides nothing about the store: the parent reserves, packs and indexes.
- SIGINT is ignored (Ctrl-C goes to the whole process group; the parent stops its
  workers by closing their sockets). End of file on the socket -- the parent closed it,
  or died, even by kill -9 -- ends the worker at once: no orphan outlives its backup.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys
from pathlib import Path

from ..ids import DATA
from ..serde import pack, unpack
from ..store import Sealer
from .small_read import read_small

HDR = struct.Struct("<I")
EMPTY, SEALED, SEEN, CAREFUL = 0, 1, 2, 3  # a file's tag in a reply
MAX_FDS = 256  # per request (the parent sends at most a batch: archiver._BATCH_FILES)
_SEEN_MAX = 1 << 16  # ids this worker remembers sealing (then it forgets them all)


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """N bytes, or None at end of file before the first of them."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            if got == 0:
                return None
            raise EOFError("save worker socket closed in the middle of a frame")
        got += k
    return bytes(buf)


def send_frame(sock: socket.socket, payload: bytes, fds: list[int] | None = None) -> None:
    data = HDR.pack(len(payload)) + payload
    if fds:
        sent = socket.send_fds(sock, [data], fds)
        if sent < len(data):
            sock.sendall(data[sent:])
    else:
        sock.sendall(data)


def _recv_request(sock: socket.socket) -> tuple[bytes, list[int]] | None:
    msg, fds, flags, _ = socket.recv_fds(sock, 1 << 16, MAX_FDS)
    if not msg:
        for fd in fds:
            os.close(fd)
        return None
    if flags & socket.MSG_CTRUNC:
        for fd in fds:
            os.close(fd)
        raise OSError("save worker: descriptors truncated")
    while len(msg) < HDR.size:
        more = recv_exact(sock, HDR.size - len(msg))
        if more is None:
            raise EOFError("save worker socket closed in the middle of a frame")
        msg += more
    (n,) = HDR.unpack_from(msg)
    body = msg[HDR.size:]
    if len(body) < n:
        rest = recv_exact(sock, n - len(body))
        if rest is None:
            raise EOFError("save worker socket closed in the middle of a frame")
        body += rest
    return body, list(fds)


def serve(sock: socket.socket) -> None:
    head = recv_exact(sock, HDR.size)
    if head is None:
        return
    spec = recv_exact(sock, HDR.unpack(head)[0])
    if spec is None:
        return
    sealer = Sealer.from_spec(spec)
    seen: set[bytes] = set()
    while (req := _recv_request(sock)) is not None:
        body, fds = req
        tags = bytearray()
        seq = None
        ids: list[bytes] = []
        blobs: list[bytes] = []
        try:
            seq, files = unpack(body, "save request")
            for (size, mtime_ns, ctime_ns), fd in zip(files, fds, strict=True):
                try:
                    data = read_small(fd, size, mtime_ns, ctime_ns)
                except OSError:
                    data = None
                if data is None:
                    tags.append(CAREFUL)
                elif not data:
                    tags.append(EMPTY)
                else:
                    bid = sealer.blob_id(data)
                    ids.append(bid)
                    if bid in seen:
                        tags.append(SEEN)
                        blobs.append(data)
                    else:
                        if len(seen) >= _SEEN_MAX:
                            seen.clear()
                        seen.add(bid)
                        tags.append(SEALED)
                        blobs.append(sealer.seal(DATA, data))
        finally:
            for fd in fds:
                os.close(fd)
        out = [bytes(tags), ids, blobs, seq]
        send_frame(sock, pack(out))


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=int(sys.argv[2]))
    here = Path(__file__).resolve().parents[2]
    if here != Path(sys.argv[1]).resolve():  # another casbackup than the parent's
        sock.close()
        sys.exit(2)
    try:
        serve(sock)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        pass  # the parent went away: nothing to tell anyone
    finally:
        sock.close()
