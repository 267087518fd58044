"""Backup filters: gitignore-style patterns, marker files (CACHEDIR.TAG …), a size limit.

Invariants:
- A pattern is matched against the path relative to the source root with ``/``
  separators (directories with a trailing ``/``), exactly as git matches a .gitignore at
  the root: the last pattern that matches the entry itself decides, ``!`` re-includes
  (a match on a directory above it is not its own: see the next point). A pattern
  that starts with ``/`` (``!/`` for a negation) is also matched against the entry's
  absolute path, as restic does: ``/home/me/work/cache`` leaves out that directory when
  ``/home/me`` is backed up. ``iexclude`` patterns are the same, case-insensitive; both
  kinds form one ordered list (exclude patterns first, then iexclude patterns).
- An excluded directory is not descended into, so nothing below it is re-included.
- Names that are not UTF-8 are matched via ``surrogateescape``, and so are patterns read
  from an exclude file that is not UTF-8 (its bytes match the same bytes in a name).
- A directory holding a marker (``NAME`` or ``NAME:HEADER``: a file of that name whose
  content starts with HEADER; ``exclude_caches`` is CACHEDIR.TAG with its signature) is
  kept, empty: its contents are not read.
- ``larger_than``: a regular file larger than that many bytes is left out.
- ``unmatched()`` lists the patterns that have matched no entry so far (for a warning).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import UsageError

CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
CACHEDIR_MARKER = (b"CACHEDIR.TAG", CACHEDIR_SIGNATURE)
_MARKER_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
_DIR_MARK = "ps_d"  # pathspec's regex group: the match ended at a directory's "/"
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes of ``10M``, ``1.5G``, ``512k``, ``1000`` (units of 1024, as restic)."""
    m = _SIZE_RE.fullmatch(text.strip())
    if m is None:
        raise UsageError(f"invalid size '{text}': expected e.g. 500k, 10M or 1G")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_marker(spec: str) -> tuple[bytes, bytes]:
    """``NAME[:HEADER]`` of ``--exclude-if-present``: a plain file name, no ``/``."""
    name, _, header = spec.partition(":")
    if not name or "/" in name or name in (".", ".."):
        raise UsageError(f"--exclude-if-present '{spec}': give a file name such as .nobackup")
    return os.fsencode(name), os.fsencode(header)


@dataclass(slots=True)
class _Pattern:
    text: str
    include: bool  # True: excludes (pathspec's "include in the match set"); False: "!"
    regex: re.Pattern[str]
    absolute: bool  # also matched against the absolute path
    hit: bool = False
    # pathspec leaves a few regexes unanchored (``*/``: any directory, at any depth, is
    # ``(?P<ps_d>/)``): those are searched for a match that ends with the entry
    anywhere: bool = False


def _compile(lines: list[str], icase: bool) -> list[_Pattern]:
    if not lines:
        return []
    import pathspec  # imported only when there are patterns: it costs ~20 ms at startup

    out = []
    for line in lines:
        try:
            pats = pathspec.GitIgnoreSpec.from_lines([line]).patterns
        except (ValueError, TypeError) as e:
            raise UsageError(f"bad exclude pattern '{line}': {e}") from e
        for p in pats:
            regex = getattr(p, "regex", None)
            if p.include is None or regex is None:
                continue
            flags = re.IGNORECASE if icase else 0
            anywhere = not regex.pattern.startswith("^")
            source = f"(?:{regex.pattern})\\Z" if anywhere else regex.pattern
            out.append(_Pattern(line.strip(), bool(p.include), re.compile(source, flags),
                                line.lstrip().lstrip("!").startswith("/"), anywhere=anywhere))
    return out


def _matches_itself(p: _Pattern, text: str) -> bool:
    """Does the pattern match the entry ``text`` itself? pathspec's regex also matches
    the paths below a directory it matches (its match then ends at that directory's
    ``/``); those are the walker's business, which does not descend into an excluded
    directory. A regex without the directory group (``a/**``) matches everything below.
    An unanchored one (``anywhere``) was compiled to end at the entry's end."""
    if p.anywhere:
        return p.regex.search(text) is not None
    m = p.regex.match(text)
    return m is not None and (m.end() == len(text) or _DIR_MARK not in p.regex.groupindex)


def pattern_lines(files: Iterable[str]) -> list[str]:
    """The lines of exclude files, in order (comments are dropped later)."""
    pats: list[str] = []
    for f in files:
        try:
            with open(f, encoding="utf-8", errors="surrogateescape") as fh:
                pats.extend(line.rstrip("\n") for line in fh)
        except OSError as e:
            raise UsageError(f"cannot read exclude file {f}: {e.strerror}") from e
    return pats


def _lines(patterns: Iterable[str]) -> list[str]:
    return [p for p in patterns if p.strip() and not p.lstrip().startswith("#")]


class Excluder:
    def __init__(self, patterns: Iterable[str] = (), *, exclude_caches: bool = False,
                 ipatterns: Iterable[str] = (), markers: Iterable[str] = (),
                 larger_than: int | None = None) -> None:
        self._pats = _compile(_lines(patterns), False) + _compile(_lines(ipatterns), True)
        self._absolute = any(p.absolute for p in self._pats)
        self._markers = [parse_marker(m) for m in markers]
        if exclude_caches:
            self._markers.append(CACHEDIR_MARKER)
        self.larger_than = larger_than

    @classmethod
    def from_options(
        cls, patterns: Iterable[str], files: Iterable[str], exclude_caches: bool, *,
        ipatterns: Iterable[str] = (), markers: Iterable[str] = (),
        larger_than: int | None = None,
    ) -> Excluder:
        return cls([*patterns, *pattern_lines(files)], exclude_caches=exclude_caches,
                   ipatterns=ipatterns, markers=markers, larger_than=larger_than)

    def excluded(self, rel: bytes, is_dir: bool, path: bytes | None = None,
                 size: int | None = None) -> bool:
        """Is the entry at ``rel`` (below its source root; ``path``: its absolute path, for
        patterns starting with ``/``; ``size``: a file's size, for ``larger_than``) left
        out? Its parent directories are assumed not to be."""
        if (self.larger_than is not None and size is not None and not is_dir
                and size > self.larger_than):
            return True
        if not self._pats:
            return False
        mark = "/" if is_dir else ""
        text = os.fsdecode(rel) + mark
        full = (os.fsdecode(path).lstrip("/") + mark
                if path is not None and self._absolute else None)
        result = False
        for p in self._pats:
            if _matches_itself(p, text) or (
                    p.absolute and full is not None and _matches_itself(p, full)):
                p.hit = True
                result = p.include
        return result

    def fingerprint(self) -> bytes:
        """What decides which entries are left out, as bytes (equal for equal rules): the
        directory cache (ops/dircache.py) is kept per set of rules."""
        return repr(([(p.regex.pattern, p.regex.flags, p.include, p.absolute, p.anywhere)
                      for p in self._pats], self._markers, self.larger_than)).encode()

    def unmatched(self) -> list[str]:
        """The patterns that have matched no entry yet."""
        return [p.text for p in self._pats if not p.hit]

    def skips_contents(self, path: bytes) -> bool:
        """Does the directory at ``path`` hold a marker, so that its contents stay out?"""
        for name, header in self._markers:
            marker = os.path.join(path, name)
            try:
                if not header:
                    os.lstat(marker)
                    return True
                fd = os.open(marker, _MARKER_FLAGS)  # a FIFO named so must not block
                try:
                    if os.read(fd, len(header)) == header:
                        return True
                finally:
                    os.close(fd)
            except OSError:
                continue
        return False
