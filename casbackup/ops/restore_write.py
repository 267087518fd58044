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
"""

from __future__ import annotations

import os
import threading

from ..errors import IntegrityError
from ..model.tree import DIR, FILE
from .restore_blobs import Plan
from .restore_create import Creator
from .restore_existing import NEW, REPLACE, SKIP, UNCHANGED, UPDATE
from .restore_fill import Filler
from .restore_fs import ROOT, remove_at, show
from .restore_meta import meta_fd


class Restorer(Creator, Filler):
    """One window's writer (see the module's docstring)."""

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
