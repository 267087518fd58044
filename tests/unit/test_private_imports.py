"""No module of casbackup imports another module's private names (issue #13 point 2:
watch used backup's ``_build``, ``_trie`` and ``_user``): what one module needs of
another is public, with a docstring, so it has one implementation and one owner."""

from __future__ import annotations

import ast
from pathlib import Path

import casbackup

PKG = Path(casbackup.__file__).parent
# inside store/, which is private as a whole (issue #13 point 1 unifies the pack format)
KNOWN = {"store/packsink.py _TAIL"}


def _private_imports(path: Path, root: Path = PKG) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (
                node.module or "").startswith("casbackup")):
            out += [f"{path.relative_to(root)}:{node.lineno} {a.name}" for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
    return out


def test_no_module_imports_a_private_name_of_another() -> None:
    found = [hit for p in sorted(PKG.rglob("*.py")) for hit in _private_imports(p)]
    assert [h for h in found if h.split(":")[0] + " " + h.split()[-1] not in KNOWN] == []


def test_the_check_sees_a_private_import(tmp_path: Path) -> None:
    text = (PKG / "ops" / "watch.py").read_text()
    probe = tmp_path / "watch.py"
    probe.write_text(text + "\nfrom .backup import _build, build_root\n")
    assert _private_imports(probe, tmp_path) == [f"watch.py:{text.count(chr(10)) + 2} _build"]
