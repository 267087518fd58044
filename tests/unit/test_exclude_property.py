"""The Excluder (through a real backup into a real store) against a brute-force reference
of the gitignore/restic rules, on random trees and random patterns (issue #15 point 3).

The reference spells the rules out directly: a pattern is split into glob segments
matched one path component at a time with ``fnmatch`` (``**`` = any number of
components); a pattern without a ``/`` before its end matches at any depth, one with a
leading ``/`` is anchored at the source root and also at ``/`` (an absolute path); a
trailing ``/`` matches directories only; the last pattern matching an entry decides;
nothing below an excluded directory is kept.
"""

from __future__ import annotations

import os
import tempfile
from fnmatch import fnmatchcase
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from casbackup.ops.archiver import ArchiveOptions
from casbackup.ops.backup import BackupOptions, backup
from casbackup.ops.treewalk import walk
from casbackup.source.exclude import Excluder
from tests.helpers import make_store

NAMES = ["a", "b", "A", "x.log", "y.LOG", "ab"]
GLOBS = [*NAMES, "*", "?", "*.log", "[ab]", "a*"]


def _pattern_body(segs: list[str]) -> str:
    return "/".join(segs)


@st.composite
def patterns(draw: st.DrawFn) -> tuple[str, str]:
    """(kind, pattern): kind is 'rel' (as written) or 'abs' (the source path prepended)."""
    n = draw(st.integers(1, 3))
    segs = [draw(st.sampled_from(GLOBS)) for _ in range(n)]
    if n >= 2 and draw(st.booleans()):  # a "**" before the last segment, never doubled
        segs.insert(draw(st.integers(0, n - 1)), "**")
    body = _pattern_body(segs)
    kind = draw(st.sampled_from(["rel", "rel", "anchored", "abs"]))
    if kind == "anchored":
        body = "/" + body
    if draw(st.booleans()):
        body += "/"
    neg = "!" if draw(st.integers(0, 3)) == 0 else ""
    return ("abs" if kind == "abs" else "rel", neg + body)


trees = st.lists(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3), min_size=1,
                 max_size=12)


def _entries(paths: list[list[str]]) -> dict[tuple[str, ...], bool]:
    """Every entry of the tree (component tuple -> is a directory)."""
    out: dict[tuple[str, ...], bool] = {}
    for p in paths:
        for i in range(1, len(p)):
            out[tuple(p[:i])] = True
        out.setdefault(tuple(p), False)
    return out


def _seg_match(segs: list[str], comps: list[str], icase: bool) -> bool:
    if not segs:
        return not comps
    if segs[0] == "**":
        return any(_seg_match(segs[1:], comps[i:], icase) for i in range(len(comps) + 1))
    if not comps:
        return False
    a, b = (comps[0].lower(), segs[0].lower()) if icase else (comps[0], segs[0])
    return fnmatchcase(a, b) and _seg_match(segs[1:], comps[1:], icase)


def _ref_match(pat: str, rel: list[str], absolute: list[str], is_dir: bool,
               icase: bool) -> bool | None:
    """None: the pattern does not match; else whether it excludes."""
    neg = pat.startswith("!")
    p = pat[1:] if neg else pat
    if p.endswith("/"):
        if not is_dir:
            return None
        p = p[:-1]
    bases = [rel]
    if p.startswith("/"):
        p = p[1:]
        bases.append(absolute)
        segs = p.split("/")
    else:
        segs = p.split("/")
        if len(segs) == 1:
            segs = ["**", *segs]
    if any(_seg_match(segs, b, icase) for b in bases):
        return not neg
    return None


def _reference(entries: dict[tuple[str, ...], bool], src: list[str],
               pats: list[tuple[str, bool]]) -> set[tuple[str, ...]]:
    kept: set[tuple[str, ...]] = set()
    for e in sorted(entries, key=len):
        if len(e) > 1 and e[:-1] not in kept:
            continue  # below a directory that is left out
        verdict = False
        for pat, icase in pats:
            m = _ref_match(pat, list(e), [*src, *e], entries[e], icase)
            if m is not None:
                verdict = m
        if not verdict:
            kept.add(e)
    return kept


def _build(root: Path, entries: dict[tuple[str, ...], bool]) -> None:
    for e, is_dir in sorted(entries.items()):
        p = root.joinpath(*e)
        if is_dir:
            p.mkdir()
        else:
            p.write_text("/".join(e))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees, pats=st.lists(st.tuples(patterns(), st.booleans()), max_size=4))
# found by hypothesis: ``*/`` compiles to an unanchored regex, which once matched nothing
@example(tree=[["a", "a"]], pats=[(("rel", "!a"), False), (("rel", "a"), False),
                                  (("rel", "!*/"), False)])
@example(tree=[["a", "a", "b"]], pats=[(("rel", "*/"), False)])
def test_backup_keeps_exactly_what_the_reference_keeps(
        tree: list[list[str]], pats: list[tuple[tuple[str, str], bool]]) -> None:
    entries = _entries(tree)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        _build(src, entries)
        written = [(f"{src}/{p}" if kind == "abs" else p, icase)
                   for (kind, p), icase in pats]
        # the excluder's order: plain patterns first, then the case-insensitive ones
        ordered = [w for w in written if not w[1]] + [w for w in written if w[1]]
        store = make_store(Path(tmp) / "store", encryption="none")
        ex = Excluder([p for p, i in ordered if not i], ipatterns=[p for p, i in ordered if i])
        res = backup(store, [str(src)], BackupOptions(archive=ArchiveOptions(excluder=ex)))
        prefix = str(src) + "/"
        got = {tuple(os.fsdecode(e.path)[len(prefix):].split("/"))
               for e in walk(store.load_tree, res.snapshot.tree)
               if os.fsdecode(e.path).startswith(prefix)}
        abs_src = list(src.parts[1:])
        want = _reference(entries, abs_src, ordered)
        assert got == want, (ordered, sorted(entries))
        # a pattern is reported as matching nothing iff no entry the walk saw matches it
        seen = [e for e in entries if len(e) == 1 or e[:-1] in want]
        silent = [p for p, icase in ordered
                  if all(_ref_match(p, list(e), [*abs_src, *e], entries[e], icase) is None
                         for e in seen)]
        assert ex.unmatched() == silent
