"""The package's layers, read from its imports (issue #13 point 1): every module of
``casbackup`` is parsed (``ast``: imports at any depth, inside functions and
``TYPE_CHECKING`` blocks too) and

- no module imports a higher layer (ids/errors/serde/model/chunking/crypto and the small
  utilities → backends → store → source → ops → daemon → cli);
- ``cli/``, ``daemon/`` and ``ops/`` import from ``store/`` only the package itself and
  its public modules, and never ``crypto/`` or ``backends/``;
- key names (``"index/"``, ``"packs/…"``, …) are spelt only in ``store/layout.py``, and
  ``key.rsplit("/", 1)`` (a name from a key) is written only there.

What is not yet so is listed below by name, each with why. The test fails when a new
violation appears *and* when a listed exception is no longer needed, so the lists can
only shrink.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import casbackup

ROOT = Path(casbackup.__file__).parent

# The layer of each top-level module or package of casbackup; a module may import its
# own layer and the ones below it.
LAYERS: dict[str, int] = {
    **dict.fromkeys(["__init__", "ids", "errors", "serde", "fields", "clock", "faults",
                     "scratch", "passwords", "whoami", "lru", "model", "chunking", "crypto",
                     "envopts"], 0),
    "backends": 1,
    "store": 2,
    "source": 3,
    "ops": 4,
    "daemon": 5,
    "mount": 5,  # the FUSE view: over ops (snapshot selection) and the store, below cli
    "cli": 6,
    "__main__": 7,
    "entry": 7,  # the console script: its early signal handler, then cli.app.main
}

# The store's public face for cli/, daemon/ and ops/: the package (``Store``, the pack
# reader's types, the maintenance interface, ``open_store`` …) and these modules.
PUBLIC_STORE = {
    "casbackup.store",
    "casbackup.store.locks",  # sessions and locks (docs/design.md §8)
    "casbackup.store.commit",  # a writer's session (``WriteSession``)
    "casbackup.store.identity",  # who holds a lock (gc judges liveness)
    "casbackup.store.gcrecords",  # gc's condemnation records (ops/gc.py alone)
    "casbackup.store.keyring",  # key objects (``key`` and ``cat keys``)
}
LOWER_FORBIDDEN = ("casbackup.crypto", "casbackup.backends")
UPPER = ("casbackup.cli", "casbackup.daemon", "casbackup.ops")

# (importing module, imported module): still allowed, each for a named reason.
EXCEPTIONS: set[tuple[str, str]] = set()

KEY_PREFIXES = ("config/", "keys/", "packs/", "index/", "snapshots/", "locks/", "gc/")
LAYOUT = "casbackup.store.layout"
# module -> how many key-name literals (or ``rsplit("/", 1)``) it may still hold.
LITERAL_EXCEPTIONS: dict[str, int] = {}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(ROOT.rglob("*.py")):
        parts = ("casbackup", *path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


MODULES = dict(_modules())


def _package(mod: str, path: Path) -> str:
    return mod if path.name == "__init__.py" else mod.rpartition(".")[0]


def imports_of(mod: str, path: Path) -> set[str]:
    """Every casbackup module MOD imports; ``from P import name`` counts as ``P.name``
    when that is a module, else as ``P``."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package(mod, path).split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.add(sub if sub in MODULES else target)
    return {m for m in out if m == "casbackup" or m.startswith("casbackup.")}


def _layer(mod: str) -> int:
    top = mod.split(".")[1] if "." in mod else "__init__"
    assert top in LAYERS, f"{mod}: give its top-level module a layer in LAYERS"
    return LAYERS[top]


def boundary_violations() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for mod, path in MODULES.items():
        for imp in imports_of(mod, path):
            if _layer(imp) > _layer(mod):
                found.add((mod, imp))  # upward
            if not mod.startswith(UPPER):
                continue
            if imp.startswith(LOWER_FORBIDDEN) or (
                    imp.startswith("casbackup.store.") and imp not in PUBLIC_STORE):
                found.add((mod, imp))
    return found


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def key_literals(path: Path) -> list[str]:
    """The key-name literals of a module (string constants and f-string pieces starting
    with a key prefix, or equal to ``config``'s key), and its ``rsplit("/", 1)`` calls."""
    tree = ast.parse(path.read_text(), str(path))
    docs = _docstrings(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if node.value.startswith(KEY_PREFIXES):
                out.append(f"{path.name}:{node.lineno}: {node.value!r}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "rsplit" and node.args
              and isinstance(node.args[0], ast.Constant) and node.args[0].value == "/"):
            out.append(f"{path.name}:{node.lineno}: rsplit('/')")
    return out


def test_every_module_has_a_layer_and_is_read() -> None:
    assert "casbackup.store.store" in MODULES and "casbackup.cli.app" in MODULES
    for mod in MODULES:
        _layer(mod)


def test_no_upward_or_private_store_imports() -> None:
    found = boundary_violations()
    new = sorted(found - EXCEPTIONS)
    assert not new, "imports across the layers (see this test's docstring):\n" + "\n".join(
        f"  {a} imports {b}" for a, b in new)
    stale = sorted(EXCEPTIONS - found)
    assert not stale, "listed exceptions no longer needed: remove them from EXCEPTIONS:\n" + \
        "\n".join(f"  {a} -> {b}" for a, b in stale)


def test_key_names_only_in_layout() -> None:
    problems = []
    for mod, path in MODULES.items():
        if mod == LAYOUT:
            continue
        lits = key_literals(path)
        allowed = LITERAL_EXCEPTIONS.get(mod, 0)
        if len(lits) > allowed:
            problems.append(f"{mod}: {len(lits)} key-name literals (allowed {allowed}):\n    "
                            + "\n    ".join(lits))
        elif len(lits) < allowed:
            problems.append(f"{mod}: only {len(lits)} key-name literals now: lower its "
                            f"LITERAL_EXCEPTIONS entry from {allowed}")
    assert not problems, "\n".join(problems)


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """The scanners see what they must: an upward import, a private store module, a
    crypto import in ops, a key literal and a key split."""
    src = tmp_path / "fake.py"
    src.write_text('"""docstring packs/ is prose"""\n'
                   "from ..store.pack import PackEntry\n"
                   "from ..crypto import codec\n"
                   "from .. import cli\n"
                   "def f(key):\n"
                   "    from ..backends.base import ObjectInfo\n"
                   "    return f'snapshots/{key}', key.rsplit('/', 1)[1]\n")
    imps = imports_of("casbackup.ops.fake", src)
    assert {"casbackup.store.pack", "casbackup.crypto.codec", "casbackup.cli",
            "casbackup.backends.base"} <= imps
    lits = key_literals(src)
    assert len(lits) == 2 and "snapshots/" in lits[0] and "rsplit" in lits[1]
    assert _layer("casbackup.cli") > _layer("casbackup.ops.fake")


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of GRAPH, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_store_modules_import_no_cycle() -> None:
    """store/'s modules import one way (store.py no longer imports keyring.py while
    keyring.py imports store.py); the package's ``__init__`` only re-exports."""
    inner = {m: p for m, p in MODULES.items() if m.startswith("casbackup.store.")}
    graph = {m: {i for i in imports_of(m, p) if i in inner and i != m} for m, p in inner.items()}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
