"""Which snapshots a ``--host`` / ``--tag`` / ``--path`` selection means (restic's rules).

Invariants: a snapshot matches when its host is one of ``hosts`` (any), it carries every
tag of at least one group of ``tags`` (``--tag a,b --tag c``: a and b, or c), and every
one of ``paths`` is among its paths; an empty criterion matches everything. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import UsageError
from ..model.snapshot import Snapshot
from .retention import GROUP_FIELDS, GroupKey


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
        groups = tuple(tuple(split_commas([t])) for t in tags or ())
        return cls(tuple(hosts or ()), tuple(g for g in groups if g),
                   tuple(_norm_path(p) for p in paths or ()))

    def active(self) -> bool:
        return bool(self.hosts or self.tags or self.paths)

    def _tags_ok(self, s: Snapshot) -> bool:
        return not self.tags or any(set(g) <= set(s.tags) for g in self.tags)

    def match(self, s: Snapshot) -> bool:
        return ((not self.hosts or s.hostname in self.hosts) and self._tags_ok(s)
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
