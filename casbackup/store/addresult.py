"""What storing one blob did (``Store.add_blob``): the result type alone, apart from the
writer (``writer.py``), so that naming it loads no write path (a reading command never
writes, and never imports the writer).

Invariant: ``stored`` is the sealed bytes this call put in a pack, 0 exactly when
``added`` is False (the blob was already present or reserved by another writer thread).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AddResult:
    id: bytes
    added: bool
    stored: int  # sealed bytes written (0 when the blob was already present)
