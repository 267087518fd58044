"""restore's writer: creates one window's planned entries under the target, fills them.

Directories first (in tree order, parents first), then every file, symlink, FIFO and
device node on ``_CREATORS`` threads, then hard links, while -- at the same time, so a
slow filesystem's file creation overlaps the downloads -- each pack of the blob plan
(``restore_blobs``) is fetched once, its blobs unsealed in a thread pool and ``pwrite``
into every file position that uses them, once that file exists. A file's metadata is
applied on its fd by whoever completes it (creator or last writer); then ``--delete``'s
removals; then the metadata of the directories the walk has left (``closing``),
deepest first. Entries an earlier window made (``carried``: the directories still open, a
hard link's file) are reopened and checked to be the inode recorded then, never made.

Invariants:
- Every call is relative to a directory fd ``restore_fs.DirFds`` verified; an entry of
  the wrong type in the way is removed (with ``--overwrite``) and replaced, never
  followed. A file is created anew (``O_EXCL``); only an UPDATE file is opened through
  an existing entry, and it must still be the single-link inode the survey saw.
- Files are created at their final size with ``ftruncate``; all-zero blobs are not
  written into a new file, so zero runs become holes (sparse files restore sparse).
- Hard links are recreated as links only to the inode this restore created (checked
  after linking); a link whose file failed fails too.
- Ownership is restored when running as root; setuid/setgid bits are applied after
  chown (which clears them). Any depth works: no path string is ever built for a call.
- With ``verify`` every restored file is read back and re-hashed against its blob ids.
- An entry that cannot be written is named in ``RestoreResult.failed`` and, if this
  restore created it, removed; an UPDATE file is never removed: its ranges are reserved
  (``fallocate``) before its first write, so a full disk leaves its old content and
  size, it is shrunk only after its last write, and after an error part-way it is a mix
  whose mtime is not the snapshot's (metadata comes only with the last blob).
- An interrupt or fatal error stops every worker at its next blob or entry, removes the
  files not completely written (not UPDATE files: a rerun reuses them), and propagates.
- A settled file (``restore_existing``) is not opened at all.
- An UPDATE file's blobs that it already holds elsewhere (``Survey.local``) are copied
  within it (``restore_reuse.copy_local``, each re-hashed) by its creator, after the
  reservation and before any fetched blob is written into it.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from ..errors import IntegrityError
from ..faults import crash_point
from ..model.snapshot import Snapshot
from ..model.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SYMLINK
from ..store import PackEntry, Store
from .observer import Observer
from .restore_blobs import Plan, nonzero_runs, write_runs
from .restore_existing import (
    NEVER,
    NEW,
    REPLACE,
    SKIP,
    UNCHANGED,
    UPDATE,
    Survey,
)
from .restore_fs import (
    ROOT,
    DirFds,
    NotRestored,
    identity,
    open_dir,
    remove_at,
    reserve,
    show,
)
from .restore_meta import MetaFn, meta_fd, meta_special, meta_symlink
from .restore_plan import Item
from .restore_reuse import Copy, copy_local
from .restore_window import Known

_CREATORS = 4  # threads creating files (file creation waits on the filesystem's journal)
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_EXISTING = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_KIND = {stat.S_IFDIR: "a directory", stat.S_IFLNK: "a symlink", stat.S_IFREG: "a file"}
_T = TypeVar("_T")


@dataclass
class RestoreResult:
    snapshot: Snapshot
    files: int = 0  # files written (new, replaced or updated in place)
    dirs: int = 0
    bytes_written: int = 0
    bytes_read: int = 0  # sealed bytes fetched from the store
    unchanged: int = 0  # entries already as the snapshot has them (metadata applied)
    skipped: int = 0  # existing entries the --overwrite mode left alone
    deleted: int = 0  # entries --delete removed
    total_files: int = 0  # non-directory entries planned
    total_bytes: int = 0  # the sum of the planned files' sizes
    bytes_planned: int = 0  # of those, what is (or with --dry-run: would be) written
    warnings: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "path: reason", each not restored
    unmatched: list[str] = field(default_factory=list)  # --include patterns matching nothing


class _Stopped(Exception):
    """Internal: the restore is being stopped (interrupt, fatal error); unwind."""


class Restorer:
    def __init__(self, store: Store, target: bytes, items: list[Item], obs: Observer,
                 res: RestoreResult, mode: str | None, sv: Survey,
                 carried: dict[int, Known] | None = None) -> None:
        self.store = store
        self.target = target
        self.items = items
        self.obs = obs
        self.res = res
        self.overwrite = mode is not None and mode != NEVER  # may remove what is in the way
        self.sv = sv
        self.is_root = os.geteuid() == 0
        root = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        soft = int(os.sysconf("SC_OPEN_MAX"))
        self.dirs = DirFds(root, [it.parent for it in items], [it.node.name for it in items],
                           cap=max(64, min(4096, soft // 4)))
        n = len(items)
        self._done = bytearray(n)  # items[i] exists (or failed): writers may go on
        self._failed = bytearray(n)
        self._left = [0] * n  # blob slots (+1 for its creation) until a file is complete
        self._ident: dict[int, tuple[int, int]] = {}  # files made by the creator
        self._in_fill: set[int] = set()
        self._links_of: dict[int, list[int]] = {}  # file item -> items linked to it
        self._stop = False
        self._create_error: BaseException | None = None
        self._cond = threading.Condition()
        self.carried = carried or {}  # made by an earlier window (``restore_window``)
        for i, k in self.carried.items():
            if k.failed:
                self._failed[i] = self._done[i] = 1
            elif items[i].node.type != DIR and k.ident is not None:
                self._done[i], self._ident[i] = 1, k.ident  # a hard link's file: there

    def known(self, i: int) -> Known:
        """What this restorer made of items[i] (for the windows after this one)."""
        ident = None if self._failed[i] else (
            self.dirs.ident(i) if self.items[i].node.type == DIR else self._ident.get(i))
        return Known(ident, ident is None, self.sv.verdict[i])

    def close(self) -> None:
        self.dirs.close()

    def path(self, i: int) -> str:
        return show(self.target.rstrip(b"/") + b"/" + self.items[i].path)

    def warn(self, i: int, msg: str) -> None:
        path = self.path(i)
        with self._cond:
            self.res.warnings.append(f"{path}: {msg}")
        self.obs.warn(path, msg)

    def _fail(self, i: int, why: OSError) -> None:
        """items[i] could not be restored: say so once, remove a partial file (one this
        restore created; a file being updated in place stays: its old content, or -- after
        an error mid-way such as EIO or EROFS -- a mix whose mtime is not the snapshot's,
        so it never looks restored and a rerun compares it by content)."""
        msg = why.strerror or str(why)
        with self._cond:
            if self._failed[i]:
                return
            self._failed[i] = 1
            self._done[i] = 1
            self._cond.notify_all()
            self.res.failed.append(f"{self.path(i)}: {msg}")
        self.obs.warn(self.path(i), f"not restored: {msg}")
        if self.items[i].node.type == FILE:
            if self.sv.verdict[i] != UPDATE:
                self._unlink_own(i)
            for j in self._links_of.get(i, ()):
                if j in self._ident:  # linked already: it holds the same partial content
                    self._fail(j, NotRestored(
                        f"its hard link {self.path(i)} could not be restored"))

    def _skip(self, i: int) -> bool:
        """True (and items[i] marked failed, silently) when its directory failed."""
        p = self.items[i].parent
        if p == ROOT or not self._failed[p]:
            return False
        self._mark_failed(i)
        return True

    def _unlink_own(self, i: int) -> None:
        it = self.items[i]
        if it.parent != ROOT and self._failed[it.parent]:
            return
        try:
            pfd = self.dirs.acquire(it.parent)
        except OSError:
            return  # best effort: the failure is reported either way
        try:
            st = os.stat(it.node.name, dir_fd=pfd, follow_symlinks=False)
            if identity(st) == self._ident.get(i):
                os.unlink(it.node.name, dir_fd=pfd)
        except OSError:
            pass  # best effort: the failure is reported either way
        finally:
            self.dirs.release(it.parent)

    def _in_way(self, pfd: int, name: bytes) -> str:
        try:
            mode = os.stat(name, dir_fd=pfd, follow_symlinks=False).st_mode
        except OSError:
            return "something is in the way"
        return (f"{_KIND.get(stat.S_IFMT(mode), 'an entry')} is in the way "
                "(use --overwrite MODE)")

    def _replacing(self, pfd: int, name: bytes) -> None:
        """An entry is where items[i] goes: remove it with --overwrite, else refuse."""
        if not self.overwrite:
            raise NotRestored(self._in_way(pfd, name))
        remove_at(pfd, name)

    # 1. directories, in tree order (parents first)
    def make_dirs(self) -> None:
        for i, it in enumerate(self.items):
            if it.node.type != DIR:
                continue
            if i in self.carried:
                if not self._failed[i]:
                    self._in_parent(i, self._reopen_dir)
            elif self.sv.verdict[i] == SKIP:  # --overwrite never: a non-directory is there
                self._mark_failed(i)  # silently: its entries are skipped too
            elif not self._skip(i):
                self._in_parent(i, self._dir_one)

    def _in_parent(self, i: int, make: Callable[[int, int], None]) -> None:
        """``make(parent fd, i)``; an OSError is items[i]'s failure."""
        parent = self.items[i].parent
        try:
            pfd = self.dirs.acquire(parent)
        except OSError as e:
            self._fail(i, e)
            return
        try:
            make(pfd, i)
        except OSError as e:
            self._fail(i, e)
        finally:
            self.dirs.release(parent)

    def _dir_one(self, pfd: int, i: int) -> None:
        fd = self._make_dir(pfd, self.items[i].node.name)
        self.dirs.add(i, fd, identity(os.fstat(fd)))
        self._done[i] = 1
        self.res.dirs += 1

    def _reopen_dir(self, pfd: int, i: int) -> None:
        """A directory an earlier window made: it must still be that inode."""
        fd = open_dir(pfd, self.items[i].node.name)
        ident = identity(os.fstat(fd))
        if ident != self.carried[i].ident:
            os.close(fd)
            raise NotRestored("the directory was replaced during the restore")
        self.dirs.add(i, fd, ident)
        self._done[i] = 1

    def _make_dir(self, pfd: int, name: bytes) -> int:
        try:
            os.mkdir(name, 0o700, dir_fd=pfd)
        except FileExistsError:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):  # an existing real directory is reused
                self._replacing(pfd, name)
                os.mkdir(name, 0o700, dir_fd=pfd)
        return open_dir(pfd, name)

    # 1 + 2 overlapped: entries are created while packs are fetched
    def create_and_fill(self, plan: Plan, slots: list[int], workers: int) -> None:
        """Creating thousands of files can take seconds on a slow or busy filesystem;
        fetching packs from a remote store meanwhile hides that time. Directories are
        created first (in tree order: parents first), then the other entries on
        ``_CREATORS`` threads, then hard links; a blob is written only into a file that
        already exists (``_wait_created``)."""
        items = self.items
        self.make_dirs()
        # a one-blob file nobody links to is created by the write that fills it: one open
        # instead of two (create, then write) — most files of a tree are one blob
        for i, it in enumerate(items):
            if it.link_to is not None:
                self._links_of.setdefault(it.link_to, []).append(i)
        targets = self._links_of.keys()
        verdict = self.sv.verdict
        self._in_fill = {
            i for i, it in enumerate(items)
            if it.node.type == FILE and it.link_to is None and i not in targets
            and slots[i] == 1 and verdict[i] in (NEW, REPLACE)
        }
        settled = self.sv.settled
        for i in range(len(items)):
            self._left[i] = slots[i] + 1
            if verdict[i] == SKIP:
                self._done[i] = 1  # left as it is
            elif settled[i]:  # unchanged, its metadata too: not even opened
                self._done[i], self._left[i] = 1, 0
                self._ident[i] = self.sv.ident[i]
        for i in self._in_fill:
            self._done[i] = 1
        rest = [i for i, it in enumerate(items)
                if it.node.type != DIR and it.link_to is None and i not in self._in_fill
                and verdict[i] != SKIP and not settled[i]]
        links = [i for i, it in enumerate(items)
                 if it.link_to is not None and verdict[i] != SKIP]
        creator = threading.Thread(target=self._create_all, args=(rest, links), name="create")
        creator.start()
        try:
            self.fill(plan, workers)
            creator.join()
        except BaseException:  # an interrupt, a damaged pack: stop everything, clean up
            self._halt()
            creator.join()
            self._remove_incomplete()
            raise
        if self._create_error is not None:
            self._remove_incomplete()
            raise self._create_error

    def _halt(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    def _remove_incomplete(self) -> None:
        """After a stop: no file that did not get all its content stays behind."""
        for i, it in enumerate(self.items):
            if (it.node.type == FILE and it.link_to is None and i not in self._in_fill
                    and i in self._ident and self._left[i] > 0 and not self._failed[i]
                    and self.sv.verdict[i] != UPDATE):  # an update stays: a rerun uses it
                self._unlink_own(i)

    def _create_all(self, rest: list[int], links: list[int]) -> None:
        try:
            chunks = [rest[k : k + 64] for k in range(0, len(rest), 64)]
            with ThreadPoolExecutor(_CREATORS, thread_name_prefix="create") as pool:
                futs = [pool.submit(self._create_many, c) for c in chunks]
                try:
                    for f in futs:
                        f.result()
                finally:
                    for f in futs:
                        f.cancel()
            self._create_many(links)  # their targets exist now
        except _Stopped:
            pass
        except BaseException as exc:
            self._create_error = exc
            self._halt()

    def _create_many(self, idxs: list[int]) -> None:
        for i in idxs:
            if self._stop:
                raise _Stopped()
            if not self._skip(i):
                self._in_parent(i, self._create_one)

    def _create_one(self, pfd: int, i: int) -> None:
        it = self.items[i]
        n, name = it.node, it.node.name
        if n.type == FILE and it.link_to is not None:
            self._link(pfd, i, it.link_to)
            return
        v = self.sv.verdict[i]
        if v == UNCHANGED:
            self._unchanged(pfd, i)
            return
        if n.type == FILE:
            copies = self.sv.local.get(i) if v == UPDATE else None
            if v == UPDATE:  # read too when it copies blobs within itself
                fd = self._open_surveyed(pfd, i, os.O_RDWR if copies else os.O_WRONLY)
            else:
                fd = self._replace(pfd, name, lambda: os.open(name, _NEW, 0o600, dir_fd=pfd))
            try:
                st = os.fstat(fd)
                self._ident[i] = identity(st)
                if v == UPDATE:  # room first (old content intact if there is none);
                    self._reserve(fd, i, st.st_size)  # a shrink waits for _complete
                    if copies:  # before any fetched blob can overwrite a source
                        self._copy_local(i, fd, copies)
                elif n.size != st.st_size:
                    os.ftruncate(fd, n.size)
                with self._cond:
                    self._done[i] = 1
                    self._left[i] -= 1
                    last = self._left[i] == 0
                    self._cond.notify_all()
                if last:
                    self._complete(i, fd)
            finally:
                os.close(fd)
            return
        if n.type == SYMLINK:
            target = n.target or b""
            self._replace(pfd, name, lambda: os.symlink(target, name, dir_fd=pfd))
            self._meta(i, meta_symlink, pfd)
        elif n.type == FIFO:
            self._replace(pfd, name, lambda: os.mkfifo(name, 0o600, dir_fd=pfd))
            self._meta(i, meta_special, pfd)
        elif n.type in (CHARDEV, BLOCKDEV):
            if not self.is_root:
                self.warn(i, "device node not restored (needs root)")
                return
            kind = stat.S_IFCHR if n.type == CHARDEV else stat.S_IFBLK
            self._replace(pfd, name,
                          lambda: os.mknod(name, kind | 0o600, n.rdev or 0, dir_fd=pfd))
            self._meta(i, meta_special, pfd)
        # SOCKET: cannot be recreated meaningfully (as tar and restic)
        with self._cond:
            self._done[i] = 1

    def _reserve(self, fd: int, i: int, size: int) -> None:
        """Before file items[i] is updated in place: allocate every range it will get
        (``restore_fs.reserve``) and grow it to its new size if larger; an error (a
        full disk) leaves its content and size as they were."""
        n, need = self.items[i].node, self.sv.need.get(i, [])
        ranges: list[tuple[int, int]] = []
        off = 0
        for k, bid in enumerate(n.content or []):
            ln = self.store.locate(bid).entry.raw_length
            if k < len(need) and need[k]:
                if ranges and ranges[-1][0] + ranges[-1][1] == off:
                    ranges[-1] = (ranges[-1][0], ranges[-1][1] + ln)
                else:
                    ranges.append((off, ln))
            off += ln
        try:
            reserve(fd, ranges)
            if n.size > size:
                os.ftruncate(fd, n.size)
        except OSError:
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)  # only what fallocate appended goes again
            raise

    def _copy_local(self, i: int, fd: int, copies: list[Copy]) -> None:
        """The blobs file items[i] already holds elsewhere (``restore_reuse``)."""
        if self._stop:
            raise _Stopped()
        done = copy_local(fd, copies, self.store.codec.blob_id)
        with self._cond:
            self.res.bytes_written += done
        self.obs.progress(done)

    def _open_surveyed(self, pfd: int, i: int, flags: int) -> int:
        """The existing regular file items[i], which must still be the single-link inode
        the survey saw (else it was replaced meanwhile: not written through)."""
        fd = os.open(self.items[i].node.name, flags | _EXISTING, dir_fd=pfd)
        st = os.fstat(fd)
        if (identity(st) != self.sv.ident.get(i) or not stat.S_ISREG(st.st_mode)
                or st.st_nlink != 1):
            os.close(fd)
            raise NotRestored("the file was replaced during the restore")
        return fd

    def _unchanged(self, pfd: int, i: int) -> None:
        """items[i] is already there as the snapshot has it: apply its metadata."""
        n = self.items[i].node
        if n.type == FILE:
            fd = self._open_surveyed(pfd, i, os.O_RDONLY)
            try:
                self._ident[i] = identity(os.fstat(fd))
                self._meta(i, meta_fd, fd)
            finally:
                os.close(fd)
        elif n.type == SYMLINK:
            self._meta(i, meta_symlink, pfd)
        elif n.type in (FIFO, CHARDEV, BLOCKDEV):
            self._meta(i, meta_special, pfd)
        with self._cond:
            self._done[i] = 1
            self._left[i] = 0

    def _replace(self, pfd: int, name: bytes, make: Callable[[], _T]) -> _T:
        """``make()`` the entry; one already there is removed first (``_replacing``)."""
        try:
            return make()
        except FileExistsError:
            self._replacing(pfd, name)
            return make()

    def _link(self, pfd: int, i: int, first: int) -> None:
        src = self.items[first]
        if self._failed[first]:
            raise NotRestored(f"its hard link {self.path(first)} could not be restored")
        name = self.items[i].node.name
        spfd = self.dirs.acquire(src.parent)
        try:
            def make() -> None:
                os.link(src.node.name, name, src_dir_fd=spfd, dst_dir_fd=pfd,
                        follow_symlinks=False)
            self._replace(pfd, name, make)
        finally:
            self.dirs.release(src.parent)
        ident = self._ident.get(first)
        if identity(os.stat(name, dir_fd=pfd, follow_symlinks=False)) != ident:
            os.unlink(name, dir_fd=pfd)
            raise NotRestored("its hard link's file was replaced during the restore")
        self._ident[i] = ident
        if self._failed[first]:  # failed meanwhile: its _fail may not have seen this link
            os.unlink(name, dir_fd=pfd)
            raise NotRestored(f"its hard link {self.path(first)} could not be restored")
        with self._cond:
            self._done[i] = 1

    def _mark_failed(self, i: int) -> None:
        with self._cond:
            self._failed[i] = self._done[i] = 1
            self._cond.notify_all()

    def _wait_created(self, i: int) -> bool:
        """Wait until items[i] exists; False if it failed. Raises _Stopped on a stop."""
        if not self._done[i]:
            with self._cond:
                while not self._done[i] and not self._stop:
                    self._cond.wait()
        if self._stop:
            raise _Stopped()
        return not self._failed[i]

    # 2. content: each pack fetched once
    def fill(self, plan: Plan, workers: int) -> None:
        pool = ThreadPoolExecutor(workers, thread_name_prefix="restore")
        futs: list[Future[None]] = []
        try:
            futs = [pool.submit(self._fill_pack, pack, blobs) for pack, blobs in plan.items()]
            for f in futs:
                f.result()
        except _Stopped:
            pass  # the creator failed: its error is raised by create_and_fill
        except BaseException:
            self._halt()
            for f in futs:
                f.cancel()
            raise
        finally:
            pool.shutdown(wait=True)

    def _fill_pack(
        self, pack: str, blobs: dict[bytes, tuple[PackEntry, list[tuple[int, int]]]]
    ) -> None:
        # one pack reader (store/packread.py): coalesced ranges, each blob checked
        stream = self.store.stream_blobs(pack, (e for e, _ in blobs.values()))
        with self._cond:
            self.res.bytes_read += sum(end - start for start, end, _ in stream.reads)
        for blob in stream:
            if self._stop:
                raise _Stopped()
            plain = blob.checked()  # written out before the next blob reuses its buffer
            runs = nonzero_runs(plain)
            verdict = self.sv.verdict
            for idx, off in blobs[blob.entry.id][1]:
                if self._failed[idx]:
                    continue
                try:
                    if idx in self._in_fill:
                        self._create_write(idx, plain, runs)
                    elif self._wait_created(idx):
                        # a file updated in place holds old bytes where zeros go
                        whole = [(0, len(plain))] if plain else []
                        self._pwrite(idx, plain, off,
                                     whole if verdict[idx] == UPDATE else runs)
                except OSError as err:
                    self._fail(idx, err)
            self.obs.progress(len(plain) * len(blobs[blob.entry.id][1]))
            crash_point("restore:blob")

    def _create_write(self, i: int, data: bytes | memoryview,
                      runs: list[tuple[int, int]]) -> None:
        """Create a one-blob file, write its blob (holes for zero runs), apply metadata."""
        it = self.items[i]
        if self._skip(i):
            return
        name = it.node.name
        pfd = self.dirs.acquire(it.parent)
        try:
            fd = self._replace(pfd, name, lambda: os.open(name, _NEW, 0o600, dir_fd=pfd))
            try:
                if it.node.nlink > 1:  # a later window may link to it (restore_window)
                    self._ident[i] = identity(os.fstat(fd))
                write_runs(fd, data, 0, runs)
                if not runs or runs[-1][1] < it.node.size:
                    os.ftruncate(fd, it.node.size)  # trailing zeros stay a hole
                self._complete(i, fd)
            except BaseException:
                os.unlink(name, dir_fd=pfd)  # ours (O_EXCL): no half-file stays
                raise
            finally:
                os.close(fd)
        finally:
            self.dirs.release(it.parent)
        with self._cond:
            self._left[i] = 0
            self.res.bytes_written += len(data)

    def _open_own(self, i: int, flags: int) -> int:
        """Reopen file items[i] the creator made; it must still be that inode."""
        it = self.items[i]
        pfd = self.dirs.acquire(it.parent)
        try:
            fd = os.open(it.node.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        finally:
            self.dirs.release(it.parent)
        if i in self._ident and identity(os.fstat(fd)) != self._ident[i]:
            os.close(fd)
            raise NotRestored("the file was replaced during the restore")
        return fd

    def _pwrite(self, i: int, data: bytes | memoryview, base: int,
                runs: list[tuple[int, int]]) -> None:
        fd = self._open_own(i, os.O_WRONLY) if runs else -1
        try:
            if runs:
                write_runs(fd, data, base, runs)
            with self._cond:
                self.res.bytes_written += len(data) if runs else 0
                self._left[i] -= 1
                last = self._left[i] == 0
            if last:
                if fd < 0:
                    fd = self._open_own(i, os.O_WRONLY)
                self._complete(i, fd)
        finally:
            if fd >= 0:
                os.close(fd)

    # 3. metadata: files (on their fd, once complete) and other entries as they are
    # made, then directories deepest first
    def _complete(self, i: int, fd: int) -> None:
        """File items[i] has all its content: its metadata makes it restored (a file
        updated in place is cut to its size first: a shrink never precedes the writes)."""
        n = self.items[i].node
        if self.sv.verdict[i] == UPDATE and os.fstat(fd).st_size > n.size:
            os.ftruncate(fd, n.size)
        self._meta(i, meta_fd, fd)
        with self._cond:
            self.res.files += 1
        self.obs.progress(0, 1)
        self.obs.file(self.target + b"/" + self.items[i].path, "restored")

    def _meta(self, i: int, apply: MetaFn, fd: int) -> None:
        apply(self.items[i].node, fd, self.is_root, lambda msg: self.warn(i, msg))

    # 2b. --delete: what the snapshot does not have, found by the survey
    def delete_extra(self) -> None:
        for d, name, _, _ in self.sv.extra:
            if d != ROOT and self._failed[d]:
                continue
            try:
                pfd = self.dirs.acquire(d)
            except OSError as e:
                self._fail(d, e)
                continue
            try:
                remove_at(pfd, name)  # fd-relative, iterative, never follows a symlink
                self.res.deleted += 1
            except FileNotFoundError:
                pass
            except OSError as e:
                where = self.target.rstrip(b"/") + b"/" + (
                    self.items[d].path + b"/" if d != ROOT else b"")
                msg = f"not deleted: {e.strerror or e}"
                self.res.failed.append(f"{show(where + name)}: {msg}")
                self.obs.warn(show(where + name), msg)
            finally:
                self.dirs.release(d)

    def dir_metadata(self, closing: list[int]) -> None:
        """The metadata of the directories in CLOSING (all their entries written)."""
        for i in sorted(closing, key=lambda d: self.items[d].depth, reverse=True):
            if self._failed[i] or (self.sv.verdict[i] == UNCHANGED and not self.items[i].own):
                continue  # an existing directory only leading to backed-up paths: as it is
            fd = self.dirs.acquire(i)
            try:
                self._meta(i, meta_fd, fd)
            except OSError as e:
                self._fail(i, e)
            finally:
                self.dirs.release(i)

    # 4. optional read-back
    def verify(self) -> None:
        for i, it in enumerate(self.items):
            n = it.node
            if (n.type != FILE or not n.content or self._failed[i] or i in self.carried
                    or self.sv.verdict[i] == SKIP):
                continue
            with open(self._open_own(i, os.O_RDONLY), "rb") as f:
                for bid in n.content:
                    ln = self.store.locate(bid).entry.raw_length
                    if self.store.codec.blob_id(f.read(ln)) != bid:
                        raise IntegrityError(
                            f"restored file {self.path(i)} does not match the snapshot")
                if f.read(1):
                    raise IntegrityError(f"restored file {self.path(i)} is too long")
