"""restore in place: what each entry already in the target needs (``--overwrite MODE``).

Before anything is written, ``survey`` looks at the place of every planned item (read
only: ``lstat`` and reads relative to directory fds opened ``O_DIRECTORY|O_NOFOLLOW``, as
``restore_fs``) and gives it a verdict, with restic's modes:

- ``always``: every existing file is compared with the snapshot by content (each blob's
  range hashed with the store's keyed id); ``if-changed``: a file whose size and mtime
  equal the snapshot's is taken as unchanged without reading it, others are compared by
  content; ``if-newer``: an entry whose mtime is not older than the snapshot's is left
  alone, others as ``always``; ``never``: nothing that exists is touched.
- ``NEW``: nothing is there. ``REPLACE``: something else is there (another type, a file
  with other hard links, one restore cannot open for writing that differs): it is removed
  (never followed) and the entry created anew. ``UPDATE``: the same regular file with
  some blob ranges or its size differing: only those ranges are rewritten, in place
  (``need``); those whose blob the file holds at another offset (shifted content) are
  copied from there, not fetched (``local``, found and ordered by ``restore_reuse``).
  ``UNCHANGED``: the content is the snapshot's: only metadata is applied,
  and not even that to a file whose ``lstat`` already shows the snapshot's mode, mtime
  (and owner, as root) and whose node has no xattrs (``settled``: restic's if-changed
  leaves such a file alone; the restorer does not open it).
  ``SKIP``: left exactly as it is (and everything below a skipped directory).

Files compared by content are opened (and checked to be the inode ``lstat`` saw) by the
walking thread, in walk order, and read and hashed on ``HASHERS`` worker threads, at most
``_IN_FLIGHT`` queued; the survey's result is the one-thread survey's, and a worker's
error ends the survey with every file it opened closed.

Invariants: the survey writes nothing. A file is updated in place only if it is a regular
file with one link (an inode shared with a file outside the target is never written
through); the restorer reopens it with ``O_NOFOLLOW`` and checks it is the inode surveyed
here (``ident``). A file written part-way (by a restore that was killed) never looks
unchanged: its metadata (mtime) is applied only once all its content is there, so the next
``if-changed`` run compares it by content and writes only what is missing.
``--delete`` candidates (``extra``) are entries of existing directories that the snapshot
does not have, only in directories at or below a backed-up path and selected themselves,
and only if the include/exclude patterns would select them.
"""

from __future__ import annotations

import os
import stat
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ..model.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SOCKET, SYMLINK, Node
from .restore_fs import ROOT, DirFds, identity, open_dir
from .restore_plan import Item, Selection
from .restore_reuse import (
    PIECE,
    Copy,
    GetChunker,
    NewHasher,
    local_chunks,
    order_copies,
    range_id,
)

ALWAYS, IF_CHANGED, IF_NEWER, NEVER = "always", "if-changed", "if-newer", "never"
MODES = (ALWAYS, IF_CHANGED, IF_NEWER, NEVER)
NEW, REPLACE, UPDATE, UNCHANGED, SKIP = range(5)
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_RDWR = (_READ & ~os.O_RDONLY) | os.O_RDWR
_SAME_TYPE = {FIFO: stat.S_ISFIFO, CHARDEV: stat.S_ISCHR, BLOCKDEV: stat.S_ISBLK}
ALIGNED = 8  # local chunks in a row at their snapshot offsets: stop cutting, compare ranges
HASHERS = 2  # threads comparing files by content while the walk goes on (BLAKE3 and
# preadv release the GIL: the hashing of changed files runs on the other core)
_IN_FLIGHT = 32  # files opened and queued for comparing at most (their fds stay open)

BlobLengths = Callable[[list[bytes]], list[int]]
Hash = Callable[[bytes | memoryview], bytes]
_Verdict = tuple[int, list[bool], list[Copy]]  # (verdict, need, local copies)


@dataclass
class Survey:
    verdict: bytearray  # per item: NEW, REPLACE, UPDATE, UNCHANGED or SKIP
    need: dict[int, list[bool]] = field(default_factory=dict)  # UPDATE: blobs to write
    ident: dict[int, tuple[int, int]] = field(default_factory=dict)  # files surveyed
    extra: list[tuple[int, bytes, bool, int]] = field(default_factory=list)
    # ^ --delete: (directory item, name, is a directory, size)
    settled: bytearray = field(default_factory=bytearray)  # per item: 1 = UNCHANGED with
    # its metadata already the snapshot's (nothing to do at all)
    local: dict[int, list[Copy]] = field(default_factory=dict)  # UPDATE: needed blobs
    # the file already holds elsewhere (``restore_reuse``), in the order to copy them

    def copied(self, i: int) -> set[int]:
        """The blob indices of item I that are copied within the file, not fetched."""
        return {c.k for c in self.local.get(i, ())}


def all_new(n: int) -> Survey:
    return Survey(bytearray(n), settled=bytearray(n))


def survey(root_fd: int | None, items: list[Item], mode: str, lengths: BlobLengths,
           blob_id: Hash, *, sel: Selection | None = None,
           deletable: Callable[[int], bool] | None = None,
           hasher: NewHasher | None = None, chunker: GetChunker | None = None,
           workers: int = HASHERS) -> Survey:
    """Each item's verdict under MODE (``root_fd`` None: the target does not exist);
    with ``deletable`` (--delete) also what existing directories hold that the snapshot
    does not. ``hasher`` (a new keyed hasher of ``blob_id``'s) lets ranges be hashed in
    pieces; with ``chunker`` (giving the store's, asked for only when a file has two
    differing ranges in a row) shifted content is found in the local file
    (``Survey.local``). Files compared by content are hashed on WORKERS threads (each
    opened and checked here, in walk order; 1: here, one after the other); the verdicts
    are the same either way."""
    out = Survey(bytearray(len(items)), settled=bytearray(len(items)))
    if root_fd is None:
        return out
    cmp = _Compare(lengths, blob_id, hasher, chunker, workers)
    dup = os.dup(root_fd)
    fds = DirFds(dup, [it.parent for it in items], [it.node.name for it in items], cap=256)
    absent: set[int] = set()  # directory items that are not (usable) directories there
    names: dict[int, set[bytes]] = {}
    if deletable is not None:
        for it in items:
            names.setdefault(it.parent, set()).add(it.node.name)
    try:
        if deletable is not None and deletable(ROOT):
            _extras(out, fds, ROOT, items, names, sel)
        for i, it in enumerate(items):
            p = it.parent
            if p != ROOT and (p in absent or out.verdict[p] == SKIP):
                out.verdict[i] = out.verdict[p] if out.verdict[p] == SKIP else NEW
                if it.node.type == DIR:
                    absent.add(i)
                continue
            pfd = fds.acquire(p)
            try:
                v = _judge(pfd, i, it, mode, cmp, out)
                out.verdict[i] = v
                if it.node.type == DIR and v != SKIP:
                    if v == UNCHANGED and _register(fds, pfd, i, it.node.name):
                        if deletable is not None and deletable(i):
                            _extras(out, fds, i, items, names, sel)
                    else:
                        absent.add(i)
            finally:
                fds.release(p)
        cmp.drain(out, 0)
    finally:
        cmp.close()
        fds.close()
    return out


def _register(fds: DirFds, pfd: int, i: int, name: bytes) -> bool:
    try:
        fd = open_dir(pfd, name)
    except OSError:
        return False  # unreadable or replaced meanwhile: restore itself will say why
    fds.add(i, fd, identity(os.fstat(fd)))
    return True


def _extras(out: Survey, fds: DirFds, d: int, items: list[Item],
            names: dict[int, set[bytes]], sel: Selection | None) -> None:
    """Entries of existing directory D that the snapshot does not have (--delete)."""
    if d != ROOT and sel is not None and not sel.inside[d]:
        return  # only a directory leading to what the patterns select
    fd = fds.acquire(d)
    try:
        have = names.get(d, set())
        base = items[d].path + b"/" if d != ROOT else b""
        with os.scandir(fd) as it:
            for e in it:
                n = os.fsencode(e.name)
                if n in have:
                    continue
                is_dir = e.is_dir(follow_symlinks=False)
                if sel is not None and not sel.wants(d, base + n, is_dir):
                    continue
                size = 0 if is_dir else e.stat(follow_symlinks=False).st_size
                out.extra.append((d, n, is_dir, size))
    finally:
        fds.release(d)


def _judge(pfd: int, i: int, it: Item, mode: str, cmp: _Compare, out: Survey) -> int:
    n = it.node
    if n.type == SOCKET:
        return SKIP  # never restored (as tar and restic)
    try:
        st = os.stat(n.name, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return NEW
    m = st.st_mode
    if n.type == DIR:  # an existing directory is reused whatever the mode
        if stat.S_ISDIR(m):
            return UNCHANGED
        return SKIP if mode == NEVER else REPLACE
    if mode == NEVER or (mode == IF_NEWER and st.st_mtime_ns >= n.mtime_ns):
        return SKIP
    if n.type == FILE:
        if it.link_to is not None or not stat.S_ISREG(m) or st.st_nlink > 1:
            return REPLACE  # a hard link is made anew; never write through shared inodes
        out.ident[i] = identity(st)
        if mode == IF_CHANGED and st.st_size == n.size and st.st_mtime_ns == n.mtime_ns:
            if _meta_same(n, st):
                out.settled[i] = 1
            return UNCHANGED
        return cmp(pfd, i, n, st, out)
    if n.type == SYMLINK:
        same = stat.S_ISLNK(m) and os.readlink(n.name, dir_fd=pfd) == os.fsencode(n.target or b"")
    else:
        same = _SAME_TYPE[n.type](m) and (n.type == FIFO or st.st_rdev == (n.rdev or 0))
    return UNCHANGED if same else REPLACE


def _meta_same(n: Node, st: os.stat_result) -> bool:
    """Whether restoring N's metadata onto the file ST describes would change nothing
    (mode, mtime, owner as root; a node with xattrs always gets them set)."""
    if n.xattrs or stat.S_IMODE(st.st_mode) != n.mode or st.st_mtime_ns != n.mtime_ns:
        return False
    return os.geteuid() != 0 or (st.st_uid, st.st_gid) == (n.uid, n.gid)


class _Compare:
    """UNCHANGED, UPDATE (``out.need[i]``, ``out.local[i]``) or REPLACE for the regular
    file N's name in PFD, by hashing its ranges where the snapshot's blobs go. Two
    differing ranges in a row (content shifted, or a long change) with a chunker: the
    file is cut from there as the backup cut it (until its chunks line up with the
    snapshot's blobs again) and each snapshot blob looked up among its chunks
    (``restore_reuse``); one at the blob's own offset is unchanged, one elsewhere is
    copied from there; one found nowhere is hashed at its range as before.

    The file is opened and checked against its ``lstat`` by the caller's thread (the
    directory fd is valid only there); with workers, the reading and hashing then run on
    a pool (at most ``_IN_FLIGHT`` files waiting, each holding its fd, closed by the
    worker) and ``drain`` puts their verdicts into the survey. A worker touches only its
    fd, its own buffers (``threading.local``) and the result it returns."""

    def __init__(self, lengths: BlobLengths, blob_id: Hash, hasher: NewHasher | None,
                 chunker: GetChunker | None, workers: int = 1) -> None:
        self.lengths, self.blob_id, self.chunker = lengths, blob_id, chunker
        self.hasher = hasher
        self.bufs = threading.local()  # per thread: one piece buffer reused for every
        # file (no allocation, faults, unmapping per blob) and one whole-blob buffer
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="survey") \
            if workers > 1 else None
        self.pending: deque[tuple[int, int, Future[_Verdict]]] = deque()

    def _buf(self, name: str, size: int) -> memoryview:
        b: memoryview | None = getattr(self.bufs, name, None)
        if b is None or len(b) < size:
            b = memoryview(bytearray(size))
            setattr(self.bufs, name, b)
        return b

    def range_id(self, fd: int, off: int, ln: int) -> bytes | None:
        if self.hasher is not None:
            return range_id(fd, off, ln, self.hasher, self._buf("piece", PIECE))
        whole = self._buf("whole", ln)[:ln]
        got = _read_at(fd, whole, off)
        return self.blob_id(whole) if got == ln else None

    def __call__(self, pfd: int, i: int, n: Node, st: os.stat_result, out: Survey) -> int:
        """REPLACE now, or the verdict to hold until ``drain`` gives the real one."""
        if self.pool is not None and len(self.pending) >= _IN_FLIGHT:
            self.drain(out, _IN_FLIGHT - 1)  # before opening: a worker's error leaks no fd
        writable = True
        try:
            fd = os.open(n.name, _RDWR, dir_fd=pfd)
        except PermissionError:
            writable = False
            try:
                fd = os.open(n.name, _READ, dir_fd=pfd)
            except OSError:
                return REPLACE
        except OSError:
            return REPLACE
        try:
            fst = os.fstat(fd)
            if (identity(fst) != identity(st) or not stat.S_ISREG(fst.st_mode)
                    or fst.st_nlink > 1):
                out.ident.pop(i, None)
                os.close(fd)
                return REPLACE  # changed under us: make it anew
            content = n.content or []
            lens = self.lengths(content)
        except BaseException:
            os.close(fd)
            raise
        if self.pool is None:
            return self._apply(i, out, self._decide(fd, fst.st_size, n.size, content, lens,
                                                    writable))
        try:
            fut = self.pool.submit(self._decide, fd, fst.st_size, n.size, content, lens,
                                   writable)
        except BaseException:
            os.close(fd)
            raise
        self.pending.append((i, fd, fut))
        return UNCHANGED  # a placeholder: no later item depends on a file's verdict

    def drain(self, out: Survey, keep: int) -> None:
        """Wait for the oldest pending files until at most KEEP are left; record each."""
        while len(self.pending) > keep:
            i, _, fut = self.pending.popleft()
            out.verdict[i] = self._apply(i, out, fut.result())

    def close(self) -> None:
        """After an error or interrupt: what has not started is not started (its fd
        closed here), what has is waited for (its worker closes its fd)."""
        for _, fd, fut in self.pending:
            if fut.cancel():
                os.close(fd)
        self.pending.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    @staticmethod
    def _apply(i: int, out: Survey, v: _Verdict) -> int:
        verdict, need, copies = v
        if verdict == REPLACE:
            out.ident.pop(i, None)
        elif verdict == UPDATE:
            out.need[i] = need
            if copies:
                out.local[i] = copies
        return verdict

    def _decide(self, fd: int, size: int, want: int, content: list[bytes],
                lens: list[int], writable: bool) -> _Verdict:
        """The verdict of the file open as FD (SIZE bytes; the snapshot's: WANT); closes
        FD."""
        try:
            need, copies = self._need(fd, size, content, lens)
        finally:
            os.close(fd)
        if not any(need) and size == want:
            return UNCHANGED, need, copies
        if not writable:
            return REPLACE, need, copies
        return UPDATE, need, copies

    def _need(self, fd: int, size: int, content: list[bytes], lens: list[int],
              ) -> tuple[list[bool], list[Copy]]:
        offs = [0] * len(content)
        for k in range(1, len(content)):
            offs[k] = offs[k - 1] + lens[k - 1]
        need: list[bool] = []
        copies: list[Copy] = []
        k = 0
        while k < len(content):
            off, ln = offs[k], lens[k]
            need.append(off + ln > size or self.range_id(fd, off, ln) != content[k])
            if (self.chunker is not None and k > 0 and need[k] and need[k - 1]
                    and offs[k - 1] < size):
                del need[k - 1:]
                k = self._shifted(fd, size, content, lens, offs, k - 1, need, copies)
            else:
                k += 1
        return need, order_copies(copies)

    def _shifted(self, fd: int, size: int, content: list[bytes], lens: list[int],
                 offs: list[int], k0: int, need: list[bool], copies: list[Copy]) -> int:
        """Blobs from K0 on against the local file's chunks from ``offs[k0]`` -- until
        ``ALIGNED`` chunks in a row are the snapshot's blobs at their own offsets (a
        change that did not shift what follows: the rest is compared range by range
        again); the index of the first blob not decided here."""
        assert self.chunker is not None
        at: dict[int, bytes] = {}  # local chunk offset -> its id
        where: dict[bytes, int] = {}  # id -> first local offset
        snap = {offs[j]: j for j in range(k0, len(content))}
        end, run = len(content), 0
        rest = sum(lens[k0:])  # a local file far longer than the snapshot's: not all read
        for off, _, cid in local_chunks(fd, offs[k0], self.chunker(), self.blob_id,
                                        2 * rest + (1 << 20)):
            at[off] = cid
            where.setdefault(cid, off)
            j = snap.get(off)
            run = run + 1 if j is not None and content[j] == cid else 0
            if run == ALIGNED and j is not None:
                end = j + 1
                break
        for k in range(k0, end):
            bid, off, ln = content[k], offs[k], lens[k]
            if at.get(off) == bid:
                need.append(False)
            elif bid in where:
                need.append(True)
                if where[bid] != off:
                    copies.append(Copy(k, off, where[bid], ln, bid))
            else:
                need.append(off + ln > size or self.range_id(fd, off, ln) != bid)
        return end


def _read_at(fd: int, into: memoryview, off: int) -> int:
    """Fill INTO from FD at OFF (short only at end of file); the bytes read."""
    got = 0
    while got < len(into):
        n = os.preadv(fd, [into[got:]], off + got)
        if n == 0:
            break
        got += n
    return got
