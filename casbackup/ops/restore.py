"""restore: recreate a snapshot's tree (or part of it) under a target directory.

Plan (as restic's restorer): walk the snapshot's trees once; create every directory (in
tree order, parents first), then every file, symlink, FIFO and device node on a few
threads, while -- at the same time, so a slow filesystem's file creation overlaps the
downloads -- each pack is fetched **once** (only the byte ranges that hold needed blobs),
its blobs unsealed in a thread pool and ``pwrite`` into every file position that uses
them, once that file exists; then apply metadata, files first, directories last (deepest
first) so writing into a directory does not disturb its mtime.

Invariants:
- The target must be empty or missing unless ``overwrite``: restore never mixes a
  snapshot into unrelated files by accident.
- Files are created at their final size with ``ftruncate``; all-zero blobs are not
  written, so zero runs become holes (sparse files restore sparse).
- Hard links (same device and inode in the snapshot, nlink > 1) are recreated as links.
- Ownership is restored when running as root; setuid/setgid bits are applied after
  chown (which clears them). Paths deeper than PATH_MAX are handled with ``*at`` calls.
- With ``verify`` every restored file is read back and re-hashed against its BlobIds.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import IntegrityError, UsageError
from ..model.snapshot import Snapshot
from ..model.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SOCKET, SYMLINK, Node
from ..scratch import for_thread
from ..source.fs import LONG, open_dir_at, raise_fd_limit
from ..store import Store
from ..store.locks import shared_lock
from ..store.pack import PackEntry
from .observer import NULL, Observer

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

_GAP = 256 * 1024  # read across gaps smaller than this rather than issuing two requests
_MAX_READ = 4 << 20  # one range read holds at most this much (unless one blob is larger)
_CREATORS = 4  # threads creating files (file creation waits on the filesystem's journal)
_HOLE = 64 * 1024  # zero runs of this many aligned bytes inside a blob become holes
_ZERO = bytes(_HOLE)


def nonzero_runs(data: bytes | memoryview) -> list[tuple[int, int]]:
    """(start, end) ranges of ``data`` not covered by aligned all-zero ``_HOLE`` blocks."""
    n = len(data)
    mv = memoryview(data)
    if n <= _HOLE:
        return [] if mv == _ZERO[:n] else [(0, n)]
    runs: list[tuple[int, int]] = []
    start = -1
    for off in range(0, n, _HOLE):
        end = min(off + _HOLE, n)
        zero = mv[off:end] == _ZERO[: end - off]
        if zero and start >= 0:
            runs.append((start, off))
            start = -1
        elif not zero and start < 0:
            start = off
    if start >= 0:
        runs.append((start, n))
    return runs


@dataclass(slots=True)
class Item:
    parts: tuple[bytes, ...]  # path components below the target
    node: Node
    link_to: int | None = None  # index of the item this one is a hard link of


@dataclass
class RestoreResult:
    snapshot: Snapshot
    files: int = 0
    dirs: int = 0
    bytes_written: int = 0
    warnings: list[str] = field(default_factory=list)


class _Paths:
    """Turns component tuples into something the ``*at`` calls accept, at any depth."""

    def __init__(self, target: bytes) -> None:
        self.target = target

    def full(self, parts: tuple[bytes, ...]) -> bytes:
        return b"/".join((self.target, *parts))

    def at(self, parts: tuple[bytes, ...]) -> tuple[int | None, bytes, int | None]:
        """(dir_fd, name, fd_to_close) for the entry ``parts``."""
        full = self.full(parts)
        if len(full) < LONG:
            return None, full, None
        fd = open_dir_at(None, self.target)
        for p in parts[:-1]:
            nfd = open_dir_at(fd, p)
            os.close(fd)
            fd = nfd
        return fd, parts[-1], fd

    def xattr_path(self, dfd: int | None, name: bytes) -> bytes:
        return name if dfd is None else b"/proc/self/fd/%d/%s" % (dfd, name)


def _matcher(patterns: Iterable[str]) -> GitIgnoreSpec | None:
    pats = [p for p in patterns if p.strip()]
    if not pats:
        return None
    import pathspec  # only when patterns are given: ~20 ms of startup otherwise

    return pathspec.GitIgnoreSpec.from_lines(pats)


def _select(items: list[Item], include: list[str], exclude: list[str]) -> list[Item]:
    inc, exc = _matcher(include), _matcher(exclude)
    if inc is None and exc is None:
        return items

    def text(it: Item) -> str:
        return "/" + os.fsdecode(b"/".join(it.parts)) + ("/" if it.node.type == DIR else "")

    def hit(spec: GitIgnoreSpec, it: Item) -> bool:
        # a path matches when it or any of its ancestors does
        for i in range(1, len(it.parts) + 1):
            sub = Item(it.parts[:i], it.node if i == len(it.parts) else Node(b"", DIR))
            if spec.match_file(text(sub)):
                return True
        return False

    keep: set[tuple[bytes, ...]] = set()
    for it in items:
        if exc is not None and hit(exc, it):
            continue
        if inc is None or hit(inc, it):
            keep.add(it.parts)
            for i in range(1, len(it.parts)):
                keep.add(it.parts[:i])  # the directories leading to it
    return [it for it in items if it.parts in keep]


def _walk(store: Store, tree_id: bytes, parts: tuple[bytes, ...], out: list[Item]) -> None:
    for node in store.load_tree(tree_id).nodes:
        if node.name in (b"", b".", b"..") or b"/" in node.name:
            raise IntegrityError(f"tree {tree_id.hex()[:16]} has an unsafe name {node.name!r}")
        p = (*parts, node.name)
        out.append(Item(p, node))
        if node.type == DIR and node.subtree is not None:
            _walk(store, node.subtree, p, out)


def restore(
    store: Store,
    ref: str,
    target: str,
    *,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    overwrite: bool = False,
    verify: bool = False,
    observer: Observer = NULL,
    workers: int | None = None,  # packs read at once; None: Store.parallel_reads()
) -> RestoreResult:
    raise_fd_limit()
    snap = store.find_snapshot(ref)
    tgt = os.path.abspath(os.fsencode(target))
    if os.path.lexists(tgt):
        if not os.path.isdir(tgt):
            raise UsageError(f"restore target {target} exists and is not a directory")
        if os.listdir(tgt) and not overwrite:
            raise UsageError(f"restore target {target} is not empty (use --overwrite)")
    with shared_lock(store, "restore", read_only=True):
        store.load_index()
        items: list[Item] = []
        _walk(store, snap.tree, (), items)
        items = _select(items, include or [], exclude or [])
        os.makedirs(tgt, exist_ok=True)
        res = RestoreResult(snap)
        r = _Restorer(store, _Paths(tgt), observer, res, overwrite)
        total = sum(it.node.size for it in items if it.node.type == FILE)
        observer.start("restore", total_bytes=total, total_files=len(items))
        try:
            r.create_and_fill(items, workers or store.parallel_reads())
            r.metadata(items)
            if verify:
                r.verify(items)
        finally:
            observer.finish()
        return res


class _CreateFailed(Exception):
    """Internal: a writer gave up because creating the entries failed."""


def link_plan(items: list[Item]) -> None:
    """Mark every file that is a hard link of an earlier one (same device and inode,
    nlink > 1) with ``link_to``; it is then linked, not written."""
    first: dict[tuple[int, int], int] = {}
    for i, it in enumerate(items):
        n = it.node
        if n.type == FILE and n.nlink > 1:
            key = (n.device, n.inode)
            if key in first:
                it.link_to = first[key]
            else:
                first[key] = i


class _Restorer:
    def __init__(
        self, store: Store, paths: _Paths, obs: Observer, res: RestoreResult, overwrite: bool
    ) -> None:
        self.store = store
        self.paths = paths
        self.obs = obs
        self.res = res
        self.overwrite = overwrite
        self.is_root = os.geteuid() == 0
        # creation runs beside fill(): _done[i] once items[i] exists; writers wait for it
        self._done = bytearray()
        self._in_fill: set[int] = set()
        self._create_failed = False
        self._create_error: BaseException | None = None
        self._cond = threading.Condition()

    def _warn(self, it: Item, msg: str) -> None:
        path = os.fsdecode(self.paths.full(it.parts))
        self.res.warnings.append(f"{path}: {msg}")
        self.obs.warn(path, msg)

    # 1 + 2 overlapped: entries are created while packs are fetched
    def create_and_fill(self, items: list[Item], workers: int) -> None:
        """Creating thousands of files can take seconds on a slow or busy filesystem;
        fetching packs from a remote store meanwhile hides that time. Directories are
        created first (in tree order: parents first), then the other entries on
        ``_CREATORS`` threads, then hard links; a blob is written only into a file that
        already exists (``_wait_created``)."""
        link_plan(items)
        self._done = bytearray(len(items))
        for i, it in enumerate(items):
            if it.node.type == DIR:
                self._create_one(it, items)
                self._done[i] = 1
        # a one-blob file nobody links to is created by the write that fills it: one open
        # instead of two (create, then write) — most files of a tree are one blob
        targets = {it.link_to for it in items if it.link_to is not None}
        self._in_fill = set() if self.overwrite else {
            i for i, it in enumerate(items)
            if it.node.type == FILE and it.link_to is None and i not in targets
            and it.node.content is not None and len(it.node.content) == 1
        }
        for i in self._in_fill:
            self._done[i] = 1
        rest = [i for i, it in enumerate(items)
                if it.node.type != DIR and it.link_to is None and i not in self._in_fill]
        links = [i for i, it in enumerate(items) if it.link_to is not None]
        creator = threading.Thread(
            target=self._create_all, args=(items, rest, links), name="create"
        )
        creator.start()
        try:
            self.fill(items, workers)
        finally:
            creator.join()
        if self._create_error is not None:
            raise self._create_error

    def _create_all(self, items: list[Item], rest: list[int], links: list[int]) -> None:
        try:
            chunks = [rest[k : k + 64] for k in range(0, len(rest), 64)]
            with ThreadPoolExecutor(_CREATORS, thread_name_prefix="create") as pool:
                for f in [pool.submit(self._create_many, items, c) for c in chunks]:
                    f.result()
            self._create_many(items, links)  # their targets exist now
        except BaseException as exc:
            with self._cond:
                if self._create_error is None:
                    self._create_error = exc
                self._create_failed = True
                self._cond.notify_all()

    def _create_many(self, items: list[Item], idxs: list[int]) -> None:
        for i in idxs:
            if self._create_failed:
                return
            self._create_one(items[i], items)
            with self._cond:
                self._done[i] = 1
                if items[i].node.type == FILE and items[i].link_to is None:
                    self.res.files += 1
                self._cond.notify_all()

    def _wait_created(self, idx: int) -> None:
        if self._done[idx]:
            return
        with self._cond:
            while not self._done[idx]:
                if self._create_failed:
                    raise _CreateFailed()
                self._cond.wait()

    # 1. create one entry
    def _create_one(self, it: Item, items: list[Item]) -> None:
        n = it.node
        dfd, name, close = self.paths.at(it.parts)
        try:
            if (
                self.overwrite
                and n.type != DIR
                and os.path.lexists(self.paths.full(it.parts))
                and len(self.paths.full(it.parts)) < LONG
            ):
                os.unlink(self.paths.full(it.parts))
            if n.type == DIR:
                try:
                    os.mkdir(name, 0o700, dir_fd=dfd)
                except FileExistsError:
                    if not self.overwrite:
                        raise
                self.res.dirs += 1
            elif n.type == FILE:
                if it.link_to is not None:
                    first = items[it.link_to]
                    ofd, oname, oclose = self.paths.at(first.parts)
                    try:
                        os.link(oname, name, src_dir_fd=ofd, dst_dir_fd=dfd)
                    finally:
                        if oclose is not None:
                            os.close(oclose)
                    return
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=dfd)
                try:
                    if n.size:
                        os.ftruncate(fd, n.size)
                finally:
                    os.close(fd)
            elif n.type == SYMLINK:
                os.symlink(n.target or b"", name, dir_fd=dfd)
            elif n.type == FIFO:
                os.mkfifo(name, 0o600, dir_fd=dfd)
            elif n.type in (CHARDEV, BLOCKDEV):
                if not self.is_root:
                    self._warn(it, "device node not restored (needs root)")
                    return
                kind = 0o020000 if n.type == CHARDEV else 0o060000
                os.mknod(name, kind | 0o600, n.rdev or 0, dir_fd=dfd)
            elif n.type == SOCKET:
                return  # sockets cannot be recreated meaningfully (as tar and restic)
        finally:
            if close is not None:
                os.close(close)

    # 2. content: each pack fetched once
    def fill(self, items: list[Item], workers: int) -> None:
        plan: dict[str, dict[bytes, tuple[PackEntry, list[tuple[int, int]]]]] = defaultdict(dict)
        for i, it in enumerate(items):
            if it.node.type != FILE or it.link_to is not None or not it.node.content:
                continue
            off = 0
            for bid in it.node.content:
                loc = self.store.locate(bid)
                slot = plan[loc.pack].get(bid)
                if slot is None:
                    slot = plan[loc.pack][bid] = (loc.entry, [])
                slot[1].append((i, off))
                off += loc.entry.raw_length
            if off != it.node.size:
                self._warn(it, f"snapshot lists {off} bytes of content for size {it.node.size}")
        with ThreadPoolExecutor(workers, thread_name_prefix="restore") as pool:
            futs = [
                pool.submit(self._fill_pack, pack, blobs, items) for pack, blobs in plan.items()
            ]
            try:
                for f in futs:
                    f.result()
            except _CreateFailed:
                pass  # the creator's error is raised by create_and_fill
            except BaseException:
                for f in futs:
                    f.cancel()
                raise

    def _fill_pack(
        self,
        pack: str,
        blobs: dict[bytes, tuple[PackEntry, list[tuple[int, int]]]],
        items: list[Item],
    ) -> None:
        entries = sorted((e for e, _ in blobs.values()), key=lambda e: e.offset)
        groups: list[list[PackEntry]] = [[entries[0]]]
        for e in entries[1:]:
            last = groups[-1][-1]
            if (e.offset - (last.offset + last.length) <= _GAP
                    and e.offset + e.length - groups[-1][0].offset <= _MAX_READ):
                groups[-1].append(e)
            else:
                groups.append([e])
        rbuf, scratch = for_thread("read"), for_thread("unseal")
        for g in groups:
            start = g[0].offset
            data = self.store.read_pack_range_view(
                pack, start, g[-1].offset + g[-1].length - start, rbuf)
            for e in g:
                try:  # plain is written out before the next blob reuses the scratch
                    plain = self.store.unseal_entry_into(
                        e, data[e.offset - start : e.offset - start + e.length], scratch)
                except IntegrityError as err:
                    raise IntegrityError(f"pack {pack[:16]}: {err}") from None
                runs = nonzero_runs(plain)
                for idx, off in blobs[e.id][1]:
                    if idx in self._in_fill:
                        self._create_write(items[idx], plain, runs)
                    elif runs:
                        self._wait_created(idx)
                        self._pwrite(items[idx], plain, off, runs)
                self.obs.progress(len(plain) * len(blobs[e.id][1]))

    def _create_write(self, it: Item, data: bytes | memoryview,
                      runs: list[tuple[int, int]]) -> None:
        """Create a one-blob file and write its blob (holes for zero runs)."""
        dfd, name, close = self.paths.at(it.parts)
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=dfd)
        finally:
            if close is not None:
                os.close(close)
        try:
            for start, end in runs:
                mv, off = memoryview(data)[start:end], start
                while mv:
                    n = os.pwrite(fd, mv, off)
                    mv, off = mv[n:], off + n
            if not runs or runs[-1][1] < it.node.size:
                os.ftruncate(fd, it.node.size)  # trailing zeros stay a hole
        finally:
            os.close(fd)
        with self._cond:
            self.res.files += 1
            self.res.bytes_written += len(data)

    def _pwrite(self, it: Item, data: bytes | memoryview, base: int,
                runs: list[tuple[int, int]]) -> None:
        dfd, name, close = self.paths.at(it.parts)
        try:
            fd = os.open(name, os.O_WRONLY, dir_fd=dfd)
        finally:
            if close is not None:
                os.close(close)
        try:
            for start, end in runs:
                mv, off = memoryview(data)[start:end], base + start
                while mv:
                    n = os.pwrite(fd, mv, off)
                    mv, off = mv[n:], off + n
        finally:
            os.close(fd)
        self.res.bytes_written += len(data)

    # 3. metadata: files first, then directories deepest first
    def metadata(self, items: list[Item]) -> None:
        dirs = []
        for it in items:
            if it.node.type == DIR:
                dirs.append(it)
            elif it.node.type != SOCKET:
                self._meta(it)
        for it in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
            self._meta(it)

    def _meta(self, it: Item) -> None:
        n = it.node
        dfd, name, close = self.paths.at(it.parts)
        link = n.type == SYMLINK
        try:
            if not os.path.lexists(self.paths.full(it.parts)) and dfd is None:
                return  # not created (device node without root)
            if self.is_root:
                try:
                    os.chown(name, n.uid, n.gid, dir_fd=dfd, follow_symlinks=False)
                except OSError as e:
                    self._warn(it, f"chown: {e.strerror}")
            if n.xattrs:
                xp = self.paths.xattr_path(dfd, name)
                for k, v in n.xattrs.items():
                    try:
                        os.setxattr(xp, k, v, follow_symlinks=False)
                    except OSError as e:
                        self._warn(it, f"xattr {k!r}: {e.strerror}")
            if not link:
                os.chmod(name, n.mode, dir_fd=dfd)
            os.utime(name, ns=(n.mtime_ns, n.mtime_ns), dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        finally:
            if close is not None:
                os.close(close)

    # 4. optional read-back
    def verify(self, items: list[Item]) -> None:
        for it in items:
            n = it.node
            if n.type != FILE or not n.content:
                continue
            dfd, name, close = self.paths.at(it.parts)
            try:
                fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
            finally:
                if close is not None:
                    os.close(close)
            with open(fd, "rb") as f:
                for bid in n.content:
                    ln = self.store.locate(bid).entry.raw_length
                    if self.store.codec.blob_id(f.read(ln)) != bid:
                        raise IntegrityError(
                            f"restored file {os.fsdecode(self.paths.full(it.parts))} "
                            "does not match the snapshot"
                        )
                if f.read(1):
                    raise IntegrityError(
                        f"restored file {os.fsdecode(self.paths.full(it.parts))} is too long"
                    )
