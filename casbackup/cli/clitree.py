"""The click command tree that typer builds: walking it, and its metavars.

Invariant: every option that takes a value shows a metavar naming what it takes. An
option that declares none gets one from its name, as argparse does (``--retry-lock`` ->
``RETRY_LOCK``; ``…-file`` -> ``FILE``, ``…-command`` -> ``CMD``, ``--store`` -> ``URL``,
a float -> ``SECONDS``): never click's generic ``TEXT`` / ``<str>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_BY_NAME = {"--store": "URL", "--from": "URL", "--sync-to": "URL", "--tag": "TAG",
            "--host": "HOST", "--path": "PATH", "--include": "PATTERN",
            "--exclude": "PATTERN", "--config": "FILE", "--encryption": "MODE",
            "--read-data-subset": "N/M|P%"}
_BY_SUFFIX = (("-file", "FILE"), ("-command", "CMD"))


def walk(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command of the tree (groups too), parents first, with its words."""
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from walk(sub, (*path, name))


def options(cmd: Any) -> Iterator[Any]:
    yield from (p for p in cmd.params if p.param_type_name == "option" and not p.hidden)


def takes_value(opt: Any) -> bool:
    return not (opt.is_flag or opt.count)


def _derived(opt: Any) -> str:
    long: str = max(opt.opts, key=len)
    if long in _BY_NAME:
        return _BY_NAME[long]
    for suffix, meta in _BY_SUFFIX:
        if long.endswith(suffix):
            return meta
    if getattr(opt.type, "name", "") == "float":
        return "SECONDS"
    if getattr(opt.type, "name", "") == "integer":
        return "N"
    return long.lstrip("-").replace("-", "_").upper()


def fill_metavars(root: Any) -> Any:
    """Give every value-taking option of the tree without a metavar its derived one."""
    for _, cmd in walk(root):
        for opt in options(cmd):
            if takes_value(opt) and not opt.metavar:
                opt.metavar = _derived(opt)
    return root
