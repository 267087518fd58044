"""The one snapshot resolver: ``SNAP[:PATH]``, ``latest``, id prefixes, filters, groups.

- ``split_ref("latest:/home/me")`` is ``("latest", "/home/me")`` (restic's syntax): a
  snapshot reference never holds a ``:`` itself (it is ``latest`` or hex digits).
- ``SnapshotFilter`` narrows snapshots as restic's ``--host``, ``--tag`` and ``--path``
  do: the host is one of ``hosts``; each ``--tag`` value is a comma-separated group and
  a snapshot matches when it carries every tag of at least one group (``--tag a,b --tag
  c``: a and b, or c); every ``--path`` (trailing ``/`` ignored) is one of its paths. An
  empty criterion matches everything. It describes itself as the options were given.
- ``snapshot_name(store, ref)``: the one object an id prefix (4 to 64 hex digits, any
  case: ``ids.is_id_prefix``) names, from the listing alone (a damaged snapshot can be
  named, and so forgotten). ``pick(snaps, ref, filter)`` is the same rule over a list.
- ``resolve(store, ref, filter)``: ``latest`` is the newest snapshot the filter accepts;
  an id prefix names one snapshot, which must pass the filter too. ``select`` resolves
  many references (or every accepted snapshot).
- ``locate(load, snap, path)`` finds a path in a snapshot's trees (``/`` is its root).

Invariants: every command that names snapshots resolves them here, so the rules and the
messages are the same everywhere. A reference that is not ``latest`` or a hex prefix, an
unknown or ambiguous prefix, and ``latest`` of a store without snapshots are
``SnapshotNotFound`` (exit 2); an active filter that leaves nothing (``latest`` of no
accepted snapshot, a named snapshot the filter rejects) is ``NothingMatched`` (exit 4,
naming the filter as given). Lookups only read trees through ``load`` (validated trees:
a name is one safe path component), so a located path is ``/``-joined safe names; a path
that is not in the snapshot is a ``UsageError`` (exit 2) naming it and the snapshot.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..errors import NothingMatched, SnapshotNotFound, UsageError
from ..ids import is_id_prefix
from ..model.fields import show
from ..model.snapshot import Snapshot
from ..model.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SOCKET, SYMLINK, Node, Tree
from ..store import Store
from .groupkey import GROUP_FIELDS, GroupKey

Loader = Callable[[bytes], Tree]
_S_IFMT = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK, FIFO: stat.S_IFIFO,
           CHARDEV: stat.S_IFCHR, BLOCKDEV: stat.S_IFBLK, SOCKET: stat.S_IFSOCK}


def st_mode(n: Node) -> int:
    """The node's ``st_mode``: its file type bits and its permission bits."""
    return _S_IFMT[n.type] | n.mode


def split_ref(ref: str) -> tuple[str, str | None]:
    """``SNAP[:PATH]`` as (SNAP, PATH or None)."""
    snap, sep, path = ref.partition(":")
    return (snap, path or "/") if sep else (ref, None)


def split_commas(values: Iterable[str]) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``: empty items go."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _norm_path(p: str) -> str:
    return p.rstrip("/") or "/"


@dataclass(frozen=True, slots=True)
class SnapshotFilter:
    hosts: tuple[str, ...] = ()
    tags: tuple[tuple[str, ...], ...] = ()
    paths: tuple[str, ...] = ()

    @classmethod
    def of(cls, hosts: Sequence[str] | None = None, tags: Sequence[str] | None = None,
           paths: Sequence[str] | None = None) -> SnapshotFilter:
        """From the options as given: each ``--tag`` value is a comma-separated group."""
        groups = (tuple(dict.fromkeys(split_commas([t]))) for t in tags or ())
        return cls(tuple(hosts or ()), tuple(g for g in groups if g),
                   tuple(_norm_path(p) for p in paths or ()))

    def active(self) -> bool:
        return bool(self.hosts or self.tags or self.paths)

    __bool__ = active

    def match(self, s: Snapshot) -> bool:
        return ((not self.hosts or s.hostname in self.hosts)
                and (not self.tags or any(set(g) <= set(s.tags) for g in self.tags))
                and set(self.paths) <= {_norm_path(p) for p in s.paths})

    def describe(self) -> str:
        """The selection as options, e.g. ``--host a --tag x,y``."""
        return " ".join([f"--host {h}" for h in self.hosts]
                        + [f"--tag {','.join(g)}" for g in self.tags]
                        + [f"--path {p}" for p in self.paths])

    def unmatched(self, snaps: Sequence[Snapshot]) -> list[str]:
        """The criteria (as options) that no snapshot of ``snaps`` meets on its own."""
        out = [f"--host {h}" for h in self.hosts if not any(s.hostname == h for s in snaps)]
        out += [f"--tag {','.join(g)}" for g in self.tags
                if not any(set(g) <= set(s.tags) for s in snaps)]
        out += [f"--path {p}" for p in self.paths
                if not any(p in {_norm_path(q) for q in s.paths} for s in snaps)]
        return out


ANY = SnapshotFilter()


def _check_prefix(ref: str) -> str:
    if not is_id_prefix(ref):
        raise SnapshotNotFound(f"snapshot id {ref!r} is not a hex id prefix of 4+ digits "
                               "(or 'latest')")
    return ref.lower()


def _one(ref: str, names: Iterable[str]) -> str:
    prefix = _check_prefix(ref)
    matches = [n for n in names if n.startswith(prefix)]
    if not matches:
        raise SnapshotNotFound(f"no snapshot with id {prefix}")
    if len(matches) > 1:
        raise SnapshotNotFound(f"snapshot id {prefix} is ambiguous ({len(matches)} match)")
    return matches[0]


def snapshot_name(st: Store, ref: str) -> str:
    """The full name of the one snapshot object whose name starts with the id prefix
    ``ref``, from the listing alone (the object is not read)."""
    return _one(ref, st.snapshot_ids())


def _latest(snaps: Sequence[Snapshot], filt: SnapshotFilter) -> Snapshot:
    cands = [s for s in snaps if filt.match(s)]
    if cands:
        return cands[-1]
    if filt and snaps:
        raise NothingMatched(f"no snapshot matches {filt.describe()}, so there is no latest")
    raise SnapshotNotFound("no snapshot is in the store, so there is no latest")


def _accepted(s: Snapshot, filt: SnapshotFilter) -> Snapshot:
    if not filt.match(s):
        raise NothingMatched(f"snapshot {s.id[:8]} does not match {filt.describe()}")
    return s


def pick(snaps: Sequence[Snapshot], ref: str, filt: SnapshotFilter = ANY) -> Snapshot:
    """``resolve`` over SNAPS (oldest first) instead of the store's listing."""
    if ref == "latest":
        return _latest(snaps, filt)
    by_id = {s.id: s for s in snaps}
    return _accepted(by_id[_one(ref, by_id)], filt)


def resolve(st: Store, ref: str, filt: SnapshotFilter = ANY) -> Snapshot:
    """The one snapshot ``ref`` (``latest`` or an id prefix) names among those FILT
    accepts. A snapshot named by id is read (a damaged one is exit 13)."""
    if ref == "latest":
        return _latest(st.snapshots(), filt)
    return _accepted(st.load_snapshot(snapshot_name(st, ref)), filt)


def select(st: Store, refs: Sequence[str], filt: SnapshotFilter = ANY,
           ) -> list[tuple[Snapshot, str | None]]:
    """Every snapshot FILT accepts, oldest first, when REFS is empty; else the snapshot
    each ``SNAP[:PATH]`` of REFS names, with its PATH (each snapshot once per path)."""
    if not refs:
        return [(s, None) for s in st.snapshots() if filt.match(s)]
    out: dict[tuple[str, str | None], tuple[Snapshot, str | None]] = {}
    for r in refs:
        ref, path = split_ref(r)
        s = resolve(st, ref, filt)
        out.setdefault((s.id, path), (s, path))
    return list(out.values())


def parse_group_by(text: str) -> tuple[str, ...]:
    """``host,paths,tags`` (any of them, comma-separated; empty: no grouping)."""
    fields = tuple(split_commas([text]))
    bad = [f for f in fields if f not in GROUP_FIELDS]
    if bad:
        raise UsageError(f"--group-by {text}: unknown field {bad[0]} (choose from "
                         f"{', '.join(GROUP_FIELDS)})")
    return fields


def group_snapshots(snaps: Sequence[Snapshot], group_by: Sequence[str],
                    ) -> dict[GroupKey, list[Snapshot]]:
    """``snaps`` by group (groups in sorted order; each keeps the input's order)."""
    groups: dict[GroupKey, list[Snapshot]] = {}
    for s in snaps:
        key = GroupKey(s.hostname if "host" in group_by else None,
                       tuple(sorted(s.paths)) if "paths" in group_by else None,
                       tuple(sorted(s.tags)) if "tags" in group_by else None)
        groups.setdefault(key, []).append(s)
    return {k: groups[k] for k in sorted(
        groups, key=lambda k: (k.hostname or "", k.paths or (), k.tags or ()))}


def join_paths(base: str | None, path: str) -> str:
    """PATH inside BASE (a ``SNAP:BASE`` reference's path), as one absolute path."""
    return "/" + "/".join(p for p in f"{base or ''}/{path}".split("/") if p and p != ".")


@dataclass(frozen=True, slots=True)
class Located:
    path: bytes  # b"/" for the root, else b"/a/b"
    node: Node | None  # None for the snapshot's root directory
    tree: bytes | None  # the directory's tree id (the root's, or the node's subtree)

    @property
    def is_dir(self) -> bool:
        return self.tree is not None


def locate(load: Loader, snap: Snapshot, path: str) -> Located:
    """The entry at PATH (absolute, ``/``-separated) in SNAP; ``UsageError`` if none."""
    parts = [os.fsencode(p) for p in path.split("/") if p and p != "."]
    tree: bytes | None = snap.tree
    node: Node | None = None
    full = b"/" + b"/".join(parts)
    for i, name in enumerate(parts):
        where = b"/" + b"/".join(parts[:i])
        if tree is None:
            assert node is not None
            raise UsageError(f"{show(full, 200)} is not in snapshot {snap.id[:8]} "
                             f"({show(where, 200)} is a {node.type})")
        found = load(tree).find(name)
        if found is None:
            where += (b"/" if i else b"") + name
            why = "" if where == full else f" (it has no {show(where, 200)})"
            raise UsageError(f"{show(full, 200)} is not in snapshot {snap.id[:8]}{why}")
        node = found
        tree = found.subtree if found.type == DIR else None
    return Located(b"/" + b"/".join(parts), node, tree)
