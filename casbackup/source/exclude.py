"""Exclude rules: gitignore-style patterns (pathspec), exclude files, CACHEDIR.TAG.

Invariants: a pattern is matched against the path relative to the source root with ``/``
separators (directories with a trailing ``/``), exactly as git matches a .gitignore at the
root; names that are not UTF-8 are matched via ``surrogateescape``, and so are patterns read
from an exclude file that is not UTF-8 (its bytes match the same bytes in a name). An
excluded directory is not descended into.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


class Excluder:
    def __init__(self, patterns: Iterable[str] = (), *, exclude_caches: bool = False) -> None:
        pats = [p for p in patterns if p.strip() and not p.lstrip().startswith("#")]
        self.exclude_caches = exclude_caches
        self._spec: GitIgnoreSpec | None = None
        if not pats:
            return
        import pathspec  # imported only when there are patterns: it costs ~20 ms at startup

        try:
            self._spec = pathspec.GitIgnoreSpec.from_lines(pats)
        except (ValueError, TypeError) as e:
            raise UsageError(f"bad exclude pattern: {e}") from e

    @classmethod
    def from_options(
        cls, patterns: Iterable[str], files: Iterable[str], exclude_caches: bool
    ) -> Excluder:
        pats = list(patterns)
        for f in files:
            try:
                with open(f, encoding="utf-8", errors="surrogateescape") as fh:
                    pats.extend(line.rstrip("\n") for line in fh)
            except OSError as e:
                raise UsageError(f"cannot read exclude file {f}: {e.strerror}") from e
        return cls(pats, exclude_caches=exclude_caches)

    def excluded(self, rel: bytes, is_dir: bool) -> bool:
        if self._spec is None:
            return False
        text = os.fsdecode(rel) + ("/" if is_dir else "")
        return self._spec.match_file(text)

    def is_cache_dir(self, path: bytes) -> bool:
        if not self.exclude_caches:
            return False
        try:
            with open(os.path.join(path, b"CACHEDIR.TAG"), "rb") as f:
                return f.read(len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
        except OSError:
            return False
