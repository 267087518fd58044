"""restore's creator: the window's directories (in tree order, parents first), then
every other entry -- files, symlinks, FIFOs, device nodes on ``_CREATORS`` threads, then
hard links -- made under the target, or reopened when they are already there.

Invariants:
- A directory already there as a real directory is reused; a carried one (made by an
  earlier window, ``restore_window``) is reopened and must still be the inode recorded
  then, never made.
- A file is created anew (``O_EXCL``) at its final size (``ftruncate``: zero runs stay
  holes); only an UPDATE file is opened through an existing entry, and it must still be
  the single-link inode the survey saw. A settled file (``restore_existing``) is not
  opened at all; an UNCHANGED entry only gets its metadata.
- An UPDATE file's ranges are reserved (``fallocate``) before its first write, so a full
  disk leaves its old content and size; the blobs it already holds elsewhere
  (``Survey.local``) are copied within it (``restore_reuse.copy_local``, each re-hashed)
  after the reservation and before any fetched blob is written into it.
- Hard links are recreated as links only to the inode this restore created (checked
  after linking); a link whose file failed fails too.
- Device nodes are made only when running as root; sockets are not recreated.
- A stop is seen before each entry (``Stopped``); an error other than an entry's own
  ``OSError`` is kept for ``create_and_fill`` to raise.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..model.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SYMLINK
from .restore_existing import SKIP, UNCHANGED, UPDATE
from .restore_fs import NotRestored, identity, open_dir, reserve
from .restore_meta import meta_fd, meta_special, meta_symlink
from .restore_reuse import Copy, copy_local
from .restore_state import NEW_FILE, Stopped, WriterState

_CREATORS = 4  # threads creating files (file creation waits on the filesystem's journal)
_EXISTING = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class Creator(WriterState):
    """Directories, then every other entry, made (or reopened) under the target."""

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
        except Stopped:
            pass
        except BaseException as exc:
            self._create_error = exc
            self._halt()

    def _create_many(self, idxs: list[int]) -> None:
        for i in idxs:
            if self._stop:
                raise Stopped()
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
                fd = self._replace(pfd, name, lambda: os.open(name, NEW_FILE, 0o600, dir_fd=pfd))
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
            raise Stopped()
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

