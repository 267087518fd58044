"""restore's writer state: what each of a window's entries has become, and the rules
for an entry that fails and for a file that is complete.

``WriterState`` holds, per item of the window, whether it exists (``_done``: writers may
go on), whether it failed, how many blob slots (+1 for its creation) it still waits for
(``_left``) and the identity of the inode this restore made (``_ident``); the creator
threads (``restore_create``) and the pack writers (``restore_fill``) share it under one
condition variable. Of the entries an earlier window made (``carried``), one that
failed and a hard link's file start as done; a carried directory is reopened
(``restore_create``).

Invariants:
- Every call is relative to a directory fd ``restore_fs.DirFds`` verified; no path
  string is ever built for a call, so any depth works. An entry of the wrong type in the
  way is removed (with ``--overwrite``) and replaced, never followed; without it the
  entry is refused, naming what is there.
- An entry that cannot be written is named once in ``RestoreResult.failed`` and, if this
  restore created it, removed (only the inode it made: checked by identity); an UPDATE
  file is never removed: after an error part-way it is a mix whose mtime is not the
  snapshot's (metadata comes only with the last blob), so a rerun compares it by
  content. A hard link whose file failed fails too; an entry whose directory failed is
  marked failed silently.
- A file the creator made is reopened only if it is still that inode.
- A file is complete when its last slot is done; whoever completes it (creator or last
  writer) cuts an UPDATE file to its size (a shrink never precedes the writes) and
  applies its metadata on its fd (``restore_meta``: ownership when running as root,
  setuid/setgid after chown).
- A stop (``_halt``) wakes every waiter; ``_wait_created`` then raises ``Stopped``.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ..model.snapshot import Snapshot
from ..model.tree import DIR, FILE
from ..store import Store
from .observer import Observer
from .restore_existing import NEVER, UPDATE, Survey
from .restore_fs import ROOT, DirFds, NotRestored, identity, remove_at, show
from .restore_meta import MetaFn, meta_fd
from .restore_plan import Item
from .restore_window import Known

NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
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


class Stopped(Exception):
    """The restore is being stopped (an interrupt, a fatal error): every worker unwinds."""


class WriterState:
    """What each of a window's items has become, shared by the writer's threads under
    ``_cond``; the rules for an entry that fails and for a file that is complete."""

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

    def _mark_failed(self, i: int) -> None:
        with self._cond:
            self._failed[i] = self._done[i] = 1
            self._cond.notify_all()

    def _wait_created(self, i: int) -> bool:
        """Wait until items[i] exists; False if it failed. Raises Stopped on a stop."""
        if not self._done[i]:
            with self._cond:
                while not self._done[i] and not self._stop:
                    self._cond.wait()
        if self._stop:
            raise Stopped()
        return not self._failed[i]

    def _halt(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()

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

    def _replace(self, pfd: int, name: bytes, make: Callable[[], _T]) -> _T:
        """``make()`` the entry; one already there is removed first (``_replacing``)."""
        try:
            return make()
        except FileExistsError:
            self._replacing(pfd, name)
            return make()

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

    # a file with all its content: its metadata makes it restored
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

