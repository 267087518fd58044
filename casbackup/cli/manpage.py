"""Man pages (roff, man(7) macros) generated from the click command tree.

Invariants: one page per command (``casbackup-backup.1``, ``casbackup-key-add.1``) and
``casbackup.1`` for the program, as restic's ``generate --man``; every option appears
with its metavar and help; text is escaped so that no line starts a roff request by
accident, backslashes print as themselves, ``-`` is a minus (options copy and paste) and
other characters than ASCII are named (``\\[u2026]``).
"""

from __future__ import annotations

import os
from datetime import date
from typing import Any

from .. import __version__
from .clitree import options, takes_value, walk


def _char(c: str) -> str:
    if c == "-":
        return "\\-"  # a minus sign, so that options copy and paste as typed
    return c if ord(c) < 128 else f"\\[u{ord(c):04X}]"  # roff input is not UTF-8


def _esc(text: str) -> str:
    out = []
    text = "".join(_char(c) for c in text.replace("\\", "\\e"))
    for line in text.splitlines():
        line = line.strip()
        out.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(out)


def _page(words: tuple[str, ...], cmd: Any, root: Any) -> str:
    name = "-".join(("casbackup", *words))
    today = date.today().isoformat()
    lines = [f'.TH "{name.upper()}" "1" "{today}" "casbackup {__version__}" "casbackup"',
             ".SH NAME", f"{_esc(name)} \\- {_esc(cmd.get_short_help_str(limit=200))}",
             ".SH SYNOPSIS",
             f"\\fB{' '.join(('casbackup', *words))}\\fR {_esc(_usage(cmd))}",
             ".SH DESCRIPTION", _esc(cmd.help or "")]
    opts = list(options(cmd))
    if opts:
        lines.append(".SH OPTIONS")
        for o in opts:
            flags = ", ".join(f"\\fB{_esc(f)}\\fR" for f in o.opts + o.secondary_opts)
            meta = f" \\fI{_esc(o.metavar or '')}\\fR" if takes_value(o) else ""
            lines += [".TP", flags + meta, _esc(o.help or "")]
    subs = getattr(cmd, "commands", {})
    if subs:
        lines.append(".SH COMMANDS")
        for sub_name, sub in subs.items():
            lines += [".TP", f"\\fB{_esc(sub_name)}\\fR",
                      _esc(sub.get_short_help_str(limit=200))]
    see = sorted({"-".join(("casbackup", *w)) for w, _ in walk(root) if w} - {name})
    lines += [".SH SEE ALSO", ", ".join(f"\\fB{_esc(s)}\\fR(1)" for s in see[:60])]
    return "\n".join(lines) + "\n"


def _usage(cmd: Any) -> str:
    args = [p.human_readable_name for p in cmd.params if p.param_type_name == "argument"]
    return " ".join(["[OPTIONS]", *(f"[{a}]" for a in args)])


def write_man_pages(root: Any, directory: str) -> list[str]:
    """Write every page into ``directory`` (created); returns the files written."""
    os.makedirs(directory, exist_ok=True)
    written = []
    for words, cmd in walk(root):
        path = os.path.join(directory, "-".join(("casbackup", *words)) + ".1")
        with open(path, "w", encoding="utf-8") as f:
            f.write(_page(words, cmd, root))
        written.append(path)
    return written
