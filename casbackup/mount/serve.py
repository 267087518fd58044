"""A mount's life: lock, index, serve until unmounted, unlock.

``serve(store, mountpoint, select, …)``:

1. checks that FUSE is usable and MOUNTPOINT an empty directory that is not a mount point
   (nor a dead one) and that this user may mount on (``FuseUnavailable``, exit 1;
   ``UsageError``, exit 2), before anything is read;
2. takes a shared (reader) session lock (design §8) for as long as the filesystem is
   mounted; its heartbeat rewrites it every minute, so gc beside the mount sees a live
   session;
3. lists gc's condemnation records and loads the index without the packs they condemn
   (as a writer does, §8 W1): those packs may be deleted by a gc phase 2 that does not wait
   for this mount, because their record's waiting set was listed before the mount began;
4. serves ``MountFS`` through ``fuse.run`` until unmounted, then releases the lock.

Why gc cannot pull data out from under a mount: every pack the mount's index names is
either named by a live index object (gc deletes no such pack) or condemned by a record
written while the mount's session was live; that record's waiting set then names the
mount's session, so the record is not ripe, and its packs are not deleted (§8 G4), until
the mount has ended. A snapshot forgotten while mounted thus stays readable through files
already open, and leaves the listing at the next refresh. If the heartbeat cannot be
written for ``STALE`` (30 min: the store unreachable), other hosts may judge the mount
stale; reads of packs deleted after that are ``EIO``, never wrong bytes.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable

from ..errors import UsageError
from ..ops.snapsel import SnapshotFilter
from ..store import Store
from ..store import gcrecords as gr
from ..store.locks import shared_lock
from . import fuse
from .fs import MountFS


def check_mountpoint(mountpoint: str) -> None:
    """MOUNTPOINT is an empty directory, not a mount point, that this user may mount on;
    else ``UsageError`` (exit 2) saying which, changing nothing. A FUSE mount whose server
    was killed (``ENOTCONN`` on any access) is named, with the command that removes it."""
    try:
        st = os.stat(mountpoint)
        empty = True
        if stat.S_ISDIR(st.st_mode):
            with os.scandir(mountpoint) as entries:
                empty = next(entries, None) is None
    except FileNotFoundError:
        raise UsageError(f"mount point {mountpoint} does not exist") from None
    except OSError as e:
        if e.errno == errno.ENOTCONN:
            raise UsageError(f"{mountpoint} is a dead FUSE mount (its server was killed); "
                             f"remove it with `fusermount3 -u {mountpoint}`") from None
        raise UsageError(f"cannot use mount point {mountpoint}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"mount point {mountpoint} is not a directory")
    if os.path.ismount(mountpoint):
        raise UsageError(f"{mountpoint} is already a mount point")
    if not empty:  # (/proc/self, say: mounting there hangs the mount's own process)
        raise UsageError(f"mount point {mountpoint} is not empty: mount on an empty "
                         "directory")
    if os.geteuid() != 0 and not os.access(mountpoint, os.W_OK):
        raise UsageError(f"mount point {mountpoint} is not writable by this user, so "
                         "fusermount3 would refuse it")


def serve(store: Store, mountpoint: str, select: SnapshotFilter | None = None, *,
          refresh: float = 30.0, allow_other: bool = False,
          warn: Callable[[str], None] | None = None,
          on_ready: Callable[[MountFS], None] | None = None,
          cache_bytes: int | None = None) -> str:
    """Mount STORE's snapshots (those SELECT accepts) read-only at MOUNTPOINT until it is
    unmounted; how it ended (``fuse.run``)."""
    fuse.check_available()
    check_mountpoint(mountpoint)
    with shared_lock(store, "mount", read_only=True):
        store.exclude_packs(gr.condemned(gr.list_records(store)))
        store.load_index()
        fs = MountFS(store, select, refresh=refresh, warn=warn, cache_bytes=cache_bytes)
        fs.refresh(force=True)
        try:
            return fuse.run(fs, mountpoint, allow_other=allow_other,
                            on_ready=None if on_ready is None else lambda: on_ready(fs))
        finally:
            fs.close()
