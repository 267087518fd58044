"""backup: make one snapshot of some source paths.

Invariants:
- Every source path is checked before anything is written: a missing path is a
  ``UsageError`` and the store is unchanged.
- The snapshot is written last, by ``Store.save_snapshot``, which flushes packs and index
  first (DESIGN §9): a crash at any point before leaves only unreferenced packs.
- The root tree mirrors absolute paths (``/home/u/src`` → ``home/u/src``), as restic and
  borg do; path prefixes above a source carry that directory's real metadata.
- The store's own directory (a local store inside a source) is left out with a warning;
  a source inside the store is a ``UsageError``.
- ``--type`` chooses the parent: ``incremental``/``snapshot`` the latest snapshot of the
  same host and paths, ``differential`` the latest ``full`` one, ``full`` none (every file
  is read and hashed). Every type yields a complete snapshot.
- Racy entries: a file whose lstat equals its parent node is still read when the node's
  mtime or ctime is within 2 s of the parent snapshot's time or later (its start; with
  ``--time``, the time given) -- a change just after the parent read it may have kept its
  times. It counts as unchanged when its content is the parent's.
- The directory cache (dircache.py) is read for the parent snapshot only and replaced
  after the snapshot is saved (never on --dry-run, for --stdin or in watch's dirty mode):
  a crash before leaves the old file, which names a snapshot no longer the parent.
"""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import BinaryIO

from ..clock import SYSTEM, Clock
from ..errors import UsageError
from ..faults import crash_point
from ..model.fields import show
from ..model.snapshot import BACKUP_TYPES, Snapshot, Summary
from ..model.tree import DIR, FILE, Node, Tree, name_problem
from ..source.exclude import Excluder
from ..source.meta import node_from_stat
from ..source.prefetch import Prefetcher
from ..store import Store, maybe_consolidate
from ..store.commit import WriteSession
from ..whoami import username
from .archiver import ArchiveOptions, Archiver
from .dircache import DirCache, open_cache
from .observer import NULL, Observer
from .snapsel import resolve

_Trie = dict[bytes, "_Trie | None"]


@dataclass
class BackupOptions:
    type: str = "incremental"
    tags: list[str] = field(default_factory=list)
    archive: ArchiveOptions = field(default_factory=ArchiveOptions)
    host: str | None = None
    stdin: BinaryIO | None = None
    stdin_filename: str = "stdin"
    stdin_check: Callable[[], None] | None = None  # after stdin's end; raise: no snapshot
    parent: str | None = None  # explicit parent snapshot id
    time: float | None = None  # the snapshot's time (--time); None: now


@dataclass
class BackupResult:
    snapshot: Snapshot
    saved: bool  # False on --dry-run

    @property
    def summary(self) -> Summary:
        return self.snapshot.summary


def normalize_paths(paths: list[str]) -> list[bytes]:
    out = []
    for p in paths:
        if not p:
            raise UsageError("an empty source path was given")
        b = os.path.abspath(os.fsencode(p))
        try:
            os.lstat(b)
        except FileNotFoundError:
            raise UsageError(f"source path {p} does not exist") from None
        except OSError as e:
            raise UsageError(f"source path {p}: {e.strerror}") from None
        out.append(b)
    return sorted(set(out))


def warm_sources(paths: list[str], excluder: Excluder, observer: Observer = NULL, *,
                 one_file_system: bool = False) -> Prefetcher:
    """A prefetcher (not started) for PATHS, for a caller that wants the disk to work while
    it does something else first — the CLI starts it before unlocking the key, then runs
    the backup with ``ArchiveOptions(prefetch=False)``. Missing paths are left to
    ``backup`` to report. The child starts only if OBSERVER wants the totals or the
    sources are cold (``Prefetcher.start``)."""
    roots = sorted({os.path.abspath(os.fsencode(p)) for p in paths})
    outer = [r for r in roots
             if not any(r.startswith(o.rstrip(b"/") + b"/") for o in roots if o != r)]
    return Prefetcher(outer, excluder,
                      on_totals=observer.totals if observer.wants_totals() else None,
                      one_file_system=one_file_system)


def _store_dirs(store: Store, sources: list[bytes]) -> frozenset[tuple[int, int]]:
    """The local store's directory, which a backup leaves out (it would grow into itself);
    a source inside the store is a usage error."""
    root = store.local_path()
    if root is None:
        return frozenset()
    try:
        st = os.stat(root)
    except OSError:
        return frozenset()
    real = os.path.realpath(os.fsencode(root))
    for src in sources:
        rs = os.path.realpath(src)
        if rs == real or rs.startswith(real.rstrip(b"/") + b"/"):
            raise UsageError(f"source path {os.fsdecode(src)} is inside the store {root}")
    return frozenset({(st.st_dev, st.st_ino)})


def find_parent(store: Store, btype: str, host: str, paths: list[str]) -> Snapshot | None:
    if btype == "full":
        return None
    cands = [s for s in store.snapshots()
             if s.hostname == host and sorted(s.paths) == sorted(paths)
             and (btype != "differential" or s.type == "full")]
    return cands[-1] if cands else None


def _trie(paths: list[bytes]) -> _Trie:
    root: _Trie = {}
    for p in paths:
        parts = [c for c in p.split(b"/") if c]
        t = root
        for i, c in enumerate(parts):
            if c in t and t[c] is None:
                break  # an ancestor is already a source: it contains this path
            if i == len(parts) - 1:
                t[c] = None
            else:
                sub = t.get(c)
                if sub is None:
                    sub = t[c] = {}
                t = sub
    return root


def stdin_filename(name: str) -> bytes:
    """The name of a ``--stdin`` snapshot's one file, which must be a plain file name (no
    '/', not '.' or '..', no NUL, not empty) so that the snapshot can be restored."""
    b = os.fsencode(name)
    problem = name_problem(b)
    if problem is not None:
        raise UsageError(f"--stdin-filename '{show(name)}': {problem}; give a plain file "
                         "name such as db.sql")
    return b


def backup(store: Store, paths: list[str], opts: BackupOptions,
           observer: Observer = NULL, clock: Clock = SYSTEM) -> BackupResult:
    if opts.type not in BACKUP_TYPES:
        raise UsageError(f"unknown backup type {opts.type!r} (choose {', '.join(BACKUP_TYPES)})")
    host = opts.host or socket.gethostname()
    if opts.stdin is not None:
        stdin_name = stdin_filename(opts.stdin_filename)
        spaths = ["/" + opts.stdin_filename]
        bpaths: list[bytes] = []
    else:
        if not paths:
            raise UsageError("no source paths given")
        bpaths = normalize_paths(paths)
        spaths = [os.fsdecode(p) for p in bpaths]
    start = time.monotonic()
    now = clock.time()
    t0 = opts.time if opts.time is not None else now
    with WriteSession(store, "backup", clock=clock):
        store.load_index()
        parent = (resolve(store, opts.parent) if opts.parent
                  else find_parent(store, opts.type, host, spaths))
        if parent is not None and parent.tree not in store.index:
            parent = None  # its tree is in a pack a gc condemned: a full scan (DESIGN §8)
        parent_root = store.load_tree(parent.tree) if parent is not None else None
        observer.start("backup")
        archive = replace(opts.archive, skip_dirs=_store_dirs(store, bpaths),
                          parent_start_ns=parent_start_ns(parent))
        dcache = _dircache(store, host, spaths, archive, parent, now) if (
            opts.stdin is None and not archive.dry_run) else None
        arch = Archiver(store, observer, archive, dcache)
        try:
            if opts.stdin is not None:
                node = Node(stdin_name, FILE, mode=0o644,
                            mtime_ns=int(now * 1e9))
                root = Tree([arch.save_stream(opts.stdin, node)])
                if opts.stdin_check is not None:
                    opts.stdin_check()
                root_id = arch._add_tree(root)
            else:
                root_id = build_root(arch, store, bpaths, parent_root)
        finally:
            arch.close()
            observer.finish()
        summary = arch.summary
        summary.duration = time.monotonic() - start
        snap = new_snapshot(t0, host, spaths, root_id, opts.type, opts.tags, parent, summary)
        if opts.archive.dry_run:
            return BackupResult(snap, False)
        store.flush()
        crash_point("backup:before-snapshot")
        store.save_snapshot(snap)
        if dcache is not None and snap.id:
            dcache.write(snap.id, int(clock.time() * 1e9))
    # committed and the session's lock released: merge small index objects if there
    # are many (a maintenance lock of its own; never beside gc, never delaying a commit)
    maybe_consolidate(store, clock=clock, warn=store.on_warning, note=observer.note)
    return BackupResult(snap, True)


def parent_start_ns(parent: Snapshot | None) -> int | None:
    """When the parent's backup started (its snapshot's time, in ns), for the racy-entry
    rule of the comparison with it (``ArchiveOptions.parent_start_ns``)."""
    return None if parent is None else int(parent.time * 1e9)


def _dircache(store: Store, host: str, paths: list[str], archive: ArchiveOptions,
              parent: Snapshot | None, now: float) -> DirCache | None:
    """This backup's directory cache, or None (no cache directory, or watch's dirty mode,
    which has a shortcut of its own)."""
    if archive.dirty is not None:
        return None
    options = repr((archive.excluder.fingerprint(), archive.one_file_system,
                    sorted(archive.skip_dirs))).encode()
    return open_cache(store.cache_dir, host, paths, options,
                      parent.id if parent is not None else None, now, store.on_warning)


def build_root(arch: Archiver, store: Store, sources: list[bytes],
               parent_root: Tree | None) -> bytes:
    """Archive SOURCES (absolute, from ``normalize_paths``) with ARCH and store the root
    tree mirroring their paths; its id. PARENT_ROOT is the parent snapshot's root tree
    (None: no parent). The one way a root tree is made: ``backup`` and ``watch``."""
    return arch._add_tree(Tree(_build(arch, store, b"", _trie(sources), parent_root)))


def new_snapshot(t: float, host: str, paths: list[str], tree: bytes, btype: str,
                 tags: list[str], parent: Snapshot | None, summary: Summary) -> Snapshot:
    """The manifest of a backup (not saved): this user, tags sorted without repeats."""
    return Snapshot(time=t, hostname=host, username=username(), paths=paths, tree=tree,
                    type=btype, tags=sorted(set(tags)),
                    parent=parent.id if parent is not None else None, summary=summary)


@dataclass(slots=True)
class _Level:
    """A directory above the sources being built: its node and its finished children."""

    path: bytes
    names: Iterator[bytes]
    trie: _Trie
    parent_tree: Tree | None
    node: Node | None  # None for the root
    nodes: list[Node] = field(default_factory=list)


def _build(arch: Archiver, store: Store, prefix: bytes, trie: _Trie,
           parent_tree: Tree | None) -> list[Node]:
    """The nodes of the root tree: each source archived, and the directories above the
    sources (real metadata) finished after their children. Iterative, so a source path
    of any number of components works."""
    stack = [_Level(prefix, iter(sorted(trie)), trie, parent_tree, None)]
    while True:
        lv = stack[-1]
        name = next(lv.names, None)
        if name is None:
            stack.pop()
            if lv.node is None:
                return lv.nodes
            stack[-1].nodes.append(arch.save_dir_node(lv.node, lv.nodes))
            continue
        path = lv.path + b"/" + name
        sub = lv.trie[name]
        pnode = lv.parent_tree.find(name) if lv.parent_tree is not None else None
        if sub is None:
            node = arch.archive_path(path, pnode)
            if node is not None:
                lv.nodes.append(node)
            continue
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{os.fsdecode(path)} is not a directory")
        ptree = (store.load_tree(pnode.subtree)
                 if pnode is not None and pnode.type == DIR and pnode.subtree
                 and pnode.subtree in store.index else None)  # not from a condemned pack
        stack.append(_Level(path, iter(sorted(sub)), sub, ptree,
                            node_from_stat(name, path, st)))
