"""The directories above the snapshots of a mount: which name shows which snapshot.

::

    snapshots/<time>/…      every selected snapshot, by its UTC time (2026-12-01T12:03:21Z)
    snapshots/latest        -> the newest <time>
    ids/<id8>/…             every snapshot by the first 8 hex digits of its id
    hosts/<host>/<time>/…   the snapshots of each host, with hosts/<host>/latest
    tags/<tag>/<time>/…     the snapshots carrying each tag, with tags/<tag>/latest

(restic mount's layout). ``build(snapshots)`` is pure: the same snapshots give the same
layout.

Invariants:
- Every name is one safe path component: non-empty, no ``/`` or NUL, never ``.`` or
  ``..``, never ``latest`` for a snapshot (a host or tag that is not such a name is
  shown with ``_`` in place of the bad characters, as restic does: ``""``/``.`` -> ``_``,
  ``..`` -> ``__``; a host or tag named ``latest`` is fine, it is a directory name).
- Names are unique within a directory: snapshots with the same time get ``-1``, ``-2``
  … in the order of the list (oldest first, ties by id), so a name, once given, keeps
  naming the same snapshot as long as no older snapshot with that time appears.
- ``ids/`` names a snapshot by 8 hex digits, or by its whole id when another snapshot
  already has those 8.
- ``latest`` in a directory links (relative symlink) to its newest snapshot: the last
  of that directory in list order. A directory without snapshots has no ``latest``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..model.snapshot import Snapshot

TOP = (b"hosts", b"ids", b"snapshots", b"tags")
LATEST = b"latest"


@dataclass(slots=True)
class Dir:
    """A directory of the layout: names of subdirectories, snapshots and links."""

    dirs: dict[bytes, Dir] = field(default_factory=dict)
    snaps: dict[bytes, Snapshot] = field(default_factory=dict)
    links: dict[bytes, bytes] = field(default_factory=dict)  # name -> relative target
    mtime_ns: int = 0  # the newest snapshot's time below it (0: none)

    def names(self) -> list[bytes]:
        return sorted([*self.dirs, *self.snaps, *self.links])


def time_name(snap: Snapshot) -> str:
    """A snapshot's time as a directory name: ISO 8601 in UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(snap.time)))


def safe_name(text: str) -> bytes:
    """TEXT (a host name or tag) as one path component (restic's rule, and NUL too)."""
    if text in ("", "."):
        return b"_"
    if text == "..":
        return b"__"
    return text.replace("/", "_").replace("\x00", "_").encode("utf-8", "surrogateescape")


def _add(d: Dir, snap: Snapshot, name: bytes) -> None:
    unique, i = name, 0
    while unique in d.snaps or unique == LATEST:
        i += 1
        unique = name + b"-%d" % i
    d.snaps[unique] = snap
    d.links[LATEST] = unique  # the list is oldest first: the last one is the newest
    d.mtime_ns = max(d.mtime_ns, int(snap.time * 1e9))


def build(snapshots: Iterable[Snapshot]) -> Dir:
    """The layout of SNAPSHOTS (oldest first, as ``Store.snapshots`` lists them)."""
    root = Dir()
    top = {n: Dir() for n in TOP}
    root.dirs.update(top)
    for s in sorted(snapshots, key=lambda s: (s.time, s.id)):
        when = time_name(s).encode()
        _add(top[b"snapshots"], s, when)
        ids = top[b"ids"].snaps
        short = s.id[:8].encode()
        ids[short if short not in ids else s.id.encode()] = s
        host = top[b"hosts"].dirs.setdefault(safe_name(s.hostname), Dir())
        _add(host, s, when)
        for t in s.tags:
            _add(top[b"tags"].dirs.setdefault(safe_name(t), Dir()), s, when)
    for d in (*top[b"hosts"].dirs.values(), *top[b"tags"].dirs.values(), *top.values(), root):
        times = [d.mtime_ns, *(c.mtime_ns for c in d.dirs.values()),
                 *(int(s.time * 1e9) for s in d.snaps.values())]
        d.mtime_ns = max(times)
    return root


def links(root: Dir, prefix: bytes = b"") -> dict[bytes, bytes]:
    """Every link of the layout below ROOT: its mount path (``/snapshots/latest``) ->
    its target."""
    out = {prefix + b"/" + n: t for n, t in root.links.items()}
    for n, d in root.dirs.items():
        out.update(links(d, prefix + b"/" + n))
    return out
