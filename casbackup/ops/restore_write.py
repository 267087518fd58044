"""restore's writer: creates one window's planned entries under the target, fills them.

The order: directories first (in tree order, parents first; ``restore_create``), then
every file, symlink, FIFO and device node on ``restore_create``'s creator threads, then
hard links, while -- at the same time, so a slow filesystem's file creation overlaps the
downloads -- each pack of the blob plan (``restore_blobs``) is fetched once and its blobs
written into every file position that uses them, once that file exists
(``restore_fill``). A file's metadata is applied on its fd by whoever completes it
(``restore_state``); then ``--delete``'s removals; then the metadata of the directories
the walk has left (``closing``), deepest first. The state the threads share, and what
happens to an entry that fails, is ``restore_state``'s.

Invariants:
- An interrupt or fatal error stops every worker at its next blob or entry, removes the
  files not completely written (not UPDATE files: a rerun reuses them), and propagates.
- ``--delete`` removes only what the survey found extra, fd-relative and never through a
  symlink; an entry it cannot remove is named in ``RestoreResult.failed``.
- A directory's metadata is applied only once all its entries are written (deepest
  first); an existing directory that only leads to backed-up paths is left as it is.
- With ``verify`` every restored file is read back and re-hashed against its blob ids.
- (creation, to move to ``restore_create``) A file is created anew (``O_EXCL``) at its
  final size; only an UPDATE file is opened through an existing entry, and it must still
  be the single-link inode the survey saw; its ranges are reserved (``fallocate``) and
  its local copies (``restore_reuse``) made before any fetched blob is written into it.
  Hard links are recreated as links only to the inode this restore created (checked
  after linking). Carried entries are reopened and checked, never made; a settled file
  is not opened at all.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..errors import IntegrityError
from ..model.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SYMLINK
from .restore_blobs import Plan
from .restore_existing import NEW, REPLACE, SKIP, UNCHANGED, UPDATE
from .restore_fill import Filler
from .restore_fs import ROOT, NotRestored, identity, open_dir, remove_at, reserve, show
from .restore_meta import meta_fd, meta_special, meta_symlink
from .restore_reuse import Copy, copy_local
from .restore_state import NEW_FILE, Stopped

_CREATORS = 4  # threads creating files (file creation waits on the filesystem's journal)
_EXISTING = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class Restorer(Filler):
    """One window's writer (see the module's docstring)."""

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
