"""Every reference to docs/design.md (``§N``, ``DESIGN §N.M``, ``design.md §8 G2``) in the
package, the tests, the README and the design itself names a section, list item or rule
that exists under that number (issue #13 point 4), and the words around it fit the
section's subject: a reference left behind by a renumbering (``§5`` for the write
ordering, now §9) fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "design.md"
REF = re.compile(r"§\s?(\d+)(?:\.(\d+))?(?:\s+([A-Z]\d+)\b)?")
# what the text around a reference to each section talks about (lowercase stems)
TOPICS: dict[int, tuple[str, ...]] = {
    1: ("term", "word"),
    2: ("layout", "key", "name", "object"),
    3: ("config", "format", "init"),
    4: ("key", "seal", "binding", "codec", "cipher", "encrypt", "passphrase", "password",
        "payload"),
    5: ("pack", "header", "trailer", "cbp1"),
    6: ("index",),
    7: ("tree", "node", "snapshot", "name"),
    8: ("lock", "session", "gc", "record", "condemn", "heartbeat", "stale", "intent",
        "writer", "phase", "protocol"),
    9: ("order", "before", "first", "crash", "kill", "commit", "flush", "durabl", "atomic",
        "write", "gc", "delet"),
    10: ("threat", "attack", "learn", "limit"),
    11: ("backup", "pipeline", "layer", "restore", "cipher", "implementation"),
    12: ("change",),
}


def sections(text: str) -> tuple[dict[int, str], set[tuple[int, int]], set[tuple[int, str]]]:
    """Headings ``## N. Title``; numbered list items ``M.`` in section N; named rules
    (``- G2 …``, ``- R1 …``) in section N."""
    heads: dict[int, str] = {}
    items: set[tuple[int, int]] = set()
    rules: set[tuple[int, str]] = set()
    current = 0
    for line in text.splitlines():
        if m := re.match(r"## (\d+)\. (.+)", line):
            current = int(m[1])
            heads[current] = m[2]
        elif m := re.match(r"(\d+)\. ", line):
            items.add((current, int(m[1])))
        elif m := re.match(r"- \**([A-Z]\d+)\b", line):
            rules.add((current, m[1]))
    return heads, items, rules


def problems(text: str, where: str, design: str) -> list[str]:
    heads, items, rules = sections(design)
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        for m in REF.finditer(line):
            n, item, rule = int(m[1]), m[2], m[3]
            at = f"{where}:{i + 1}: {m[0]!r}"
            if n not in heads:
                out.append(f"{at}: no section {n}")
                continue
            if item is not None and (n, int(item)) not in items:
                out.append(f"{at}: section {n} ({heads[n]}) has no item {item}")
            if rule is not None and (n, rule) not in rules:
                out.append(f"{at}: section {n} ({heads[n]}) has no rule {rule}")
            context = " ".join(lines[max(0, i - 1):i + 2]).lower()
            in_range = "–" in (line[m.end():m.end() + 1], line[m.start() - 1:m.start()])
            if not in_range and not any(t in context for t in TOPICS.get(n, ())):
                out.append(f"{at}: the text around it does not speak of section {n} "
                           f"({heads[n]})")
    return out


def _files() -> list[Path]:
    found = [p for d in ("casbackup", "tests") for p in sorted((ROOT / d).rglob("*.py"))]
    return [*found, ROOT / "README.md", DESIGN]


def test_the_topics_cover_every_section() -> None:
    heads, _, _ = sections(DESIGN.read_text())
    assert sorted(heads) == sorted(TOPICS) == list(range(1, len(heads) + 1))


def test_every_reference_names_an_existing_fitting_section() -> None:
    design = DESIGN.read_text()
    found = [p for f in _files() if f != Path(__file__)
             for p in problems(f.read_text(), str(f.relative_to(ROOT)), design)]
    assert found == []


@pytest.mark.parametrize(("text", "why"), [
    ("the ordering (DESIGN §42)", "no section 42"),
    ("packs before the index (§9.9)", "has no item 9"),
    ("gc waits (§8 Z9)", "has no rule Z9"),
    ("packs, then the index naming them, then the snapshot (DESIGN §3)",
     "does not speak of section 3"),
])
def test_a_bad_reference_is_found(text: str, why: str) -> None:
    (p,) = problems(text, "x.py", DESIGN.read_text())
    assert why in p


def test_good_references_pass() -> None:
    text = "written before it (§9.1)\nthe writers' rule (DESIGN §8 W1) for a lock"
    assert problems(text, "x.py", DESIGN.read_text()) == []
