"""Reading ``casbackup.yaml``'s composed YAML nodes with the line of every value: the typed
accessors the configuration loader (``daemon/config.py``) validates its sections with.

Invariants:

* Every problem is a ``UsageError`` naming the file, the 1-based line of the offending
  node and the dotted key: ``casbackup.yaml:12: jobs.nightly.cron: …``. A value is never
  coerced: a wrong type is an error saying what was expected.
* Mappings refuse duplicate keys (checked before YAML merge keys ``<<:`` are flattened),
  unknown keys (with a "did you mean" when one is close) and, in tables of names, names
  that could not sit in a dotted key; required keys are checked.
* ``collect`` records an error instead of raising it, so that every entry is checked and
  all problems are reported at once; an entry found invalid is marked broken, and a
  reference to it (``ref``) raises ``Broken``: it is reported where it is defined, not
  again where it is used.
* Relative paths resolve against the configuration file's directory; ``~`` is expanded.
  Nothing here reads a file or the environment, or runs a command.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from casbackup.errors import UsageError
from casbackup.source.exclude import parse_size

T = TypeVar("T")
D = TypeVar("D")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # no ".": names sit in dotted keys
_MERGE_TAG = "tag:yaml.org,2002:merge"


class ConfigErrors(UsageError):
    """Every problem of one configuration file, one line each (``problems``)."""

    def __init__(self, problems: list[UsageError]) -> None:
        self.problems = [str(p) for p in problems]
        super().__init__("\n".join(self.problems))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""



class NodeReader:
    """Typed reads of the composed YAML nodes of one file (``name``), so that every error
    can name its line; the problems ``collect`` kept are in ``problems``."""

    def __init__(self, name: str, base_dir: Path) -> None:
        self.name = name
        self.base = base_dir
        self.constructor = yaml.SafeLoader("")  # turns scalar nodes into Python values
        self.problems: list[UsageError] = []
        self.broken: set[tuple[str, str]] = set()  # (kind, name) of entries found invalid
        self.lines: dict[str, int] = {}  # "sources.home" -> its line, for later messages

    def collect(self, kind: str, name: str, read: Callable[[], T]) -> T | None:
        """``read()``, or None with its error recorded (and ``name`` marked broken)."""
        try:
            return read()
        except ConfigErrors as e:
            self.problems.extend(UsageError(p) for p in e.problems)
        except UsageError as e:
            self.problems.append(e)
        self.broken.add((kind, name))
        return None

    def error(self, node: Node, where: str, message: str) -> UsageError:
        return UsageError(f"{self.name}:{node.start_mark.line + 1}: {where}: {message}")

    def mapping(
        self, node: Node, where: str, keys: tuple[str, ...] | None, required: tuple[str, ...] = ()
    ) -> dict[str, Node]:
        """A mapping's value nodes by key; ``keys=None`` is a table of names (any name)."""
        if not isinstance(node, MappingNode):
            raise self.error(node, where, "expected a mapping")
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag != _MERGE_TAG:
                key = self.key(key_node, where)
                if key in seen:
                    raise self.error(key_node, f"{where}.{key}", "duplicate key")
                seen.add(key)
        self.constructor.flatten_mapping(node)  # YAML merge keys: <<: *defaults
        out: dict[str, Node] = {}
        for key_node, value in node.value:
            key = self.key(key_node, where)
            if keys is not None and key not in keys:
                raise self.error(
                    key_node, f"{where}.{key}",
                    f"unknown key (expected {one_of(keys)}){did_you_mean(key, keys)}",
                )  # fmt: skip
            if keys is None and not _NAME_RE.match(key):
                raise self.error(
                    key_node, f"{where}.{key}", "invalid name (use letters, digits, _ and -)"
                )
            out[key] = value
        for key in required:
            if key not in out:
                raise self.error(node, where, f"missing required key {key!r}")
        return out

    def key(self, node: Node, where: str) -> str:
        key = self.scalar(node, where)
        if not isinstance(key, str):
            raise self.error(node, where, f"key {key!r} is not a string")
        return key

    def scalar(self, node: Node, where: str) -> Any:
        if not isinstance(node, ScalarNode):
            raise self.error(node, where, "expected a single value")
        return self.constructor.construct_object(node, deep=True)

    def string(self, node: Node, where: str, choices: tuple[str, ...] = ()) -> str:
        value = self.scalar(node, where)
        if not isinstance(value, str) or not value.strip():
            raise self.error(node, where, f"expected a non-empty string, not {value!r}")
        if choices and value not in choices:
            raise self.error(node, where, f"{value!r} is not {one_of(choices)}")
        return value

    def items(self, node: Node, where: str) -> list[tuple[Node, str]]:
        if not isinstance(node, SequenceNode):
            raise self.error(node, where, "expected a list")
        return [(item, f"{where}[{i}]") for i, item in enumerate(node.value)]

    def strings(self, node: Node, where: str) -> tuple[str, ...]:
        return tuple(self.string(item, at) for item, at in self.items(node, where))

    def expect(self, node: Node, where: str, ok: Callable[[Any], bool], expected: str) -> Any:
        """The node's value if ``ok(value)``; else "expected EXPECTED, not VALUE"."""
        value = self.scalar(node, where)
        if not ok(value):
            raise self.error(node, where, f"expected {expected}, not {value!r}")
        return value

    def boolean(self, node: Node, where: str) -> bool:
        return bool(self.expect(node, where, lambda v: isinstance(v, bool), "true or false"))

    def count(self, node: Node, where: str) -> int:
        return int(self.expect(node, where, lambda v: _number(v, int), "an integer >= 0"))

    def seconds(self, node: Node, where: str, zero_ok: bool = False) -> float:
        value = self.expect(node, where, _number, "a number of seconds")
        if value == 0 and not zero_ok:
            raise self.error(node, where, "must be more than 0 seconds")
        return float(value)

    def fraction(self, node: Node, where: str) -> float:
        return float(self.expect(node, where, _number, "a number >= 0 (0.5 = 50%)"))

    def path(self, node: Node, where: str) -> str:
        return os.path.normpath(self.base / os.path.expanduser(self.string(node, where)))

    def ref(self, node: Node, where: str, table: Mapping[str, object], kind: str) -> str:
        name = self.string(node, where)
        if (kind, name) in self.broken:  # reported where it is defined
            raise Broken()
        if name not in table:
            defined = ", ".join(table) or "none"
            raise self.error(node, where, f"unknown {kind} {name!r} (defined: {defined})"
                             f"{did_you_mean(name, table)}")  # fmt: skip
        return name

    def size(self, node: Node, where: str) -> int:
        """A size: bytes, or a string with a K/M/G/T suffix (as --exclude-larger-than)."""
        value = self.scalar(node, where)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        try:
            return parse_size(str(value))
        except UsageError as e:
            raise self.error(node, where, str(e)) from None

    def paths(self, node: Node, where: str) -> tuple[str, ...]:
        return tuple(self.path(item, at) for item, at in self.items(node, where))


class Broken(UsageError):
    """A reference to an entry that is itself invalid (already reported: not again)."""

    def __init__(self) -> None:
        super().__init__("")


def _number(value: Any, kind: type[int] | type[float] | tuple[type, ...] = (int, float)
            ) -> bool:
    """A number >= 0 of KIND (YAML's true/false are not numbers)."""
    ok = not isinstance(value, bool) and isinstance(value, kind)
    return ok and cast(float, value) >= 0


def line_of(e: UsageError) -> int:
    m = re.match(r"^[^:]*:(\d+):", str(e))
    return int(m.group(1)) if m else 0


def opt(
    m: Mapping[str, Node], key: str, where: str, read: Callable[[Node, str], T], default: D
) -> T | D:
    return read(m[key], f"{where}.{key}") if key in m else default


def one_of(choices: tuple[str, ...]) -> str:
    return "one of " + ", ".join(choices)
