"""Plain-tool baselines for ``run.py``: what the machine does without a backup tool.

Each benchmark step has one or more baseline commands, run and measured exactly like a
tool's step (cold cache, ``wait4`` rusage of the shell and the children it waited for):

    backup            tar|zstd     ``tar -cf - -C DATA . | zstd -3 -T0`` into a file
    backup-unchanged  walk+lstat   ``find DATA -printf '%s %T@'`` (lstat of every entry)
                      cat          ``find DATA -type f -print0 | xargs -0 cat`` (read cost)
    backup-mutated    walk+lstat, cat, as above on the changed tree
    restore           cp -a        ``cp -a DATA TARGET``
    verify            zstd -t      decompress and check the tar.zst archive

Ratios are (tool wall time) / (baseline wall time) on the same corpus state, so 1.25 for
``backup`` vs ``tar|zstd`` means the first backup took 25 % longer than tar | zstd.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import Any

NAME = "baseline"

# (step, baseline label, target ratio from issue 17 or None)
PAIRS: tuple[tuple[str, str, float | None], ...] = (
    ("backup", "tar|zstd", 1.25),
    ("backup-unchanged", "walk+lstat", 1.2),
    ("backup-unchanged", "cat", None),
    ("backup-mutated", "walk+lstat", None),
    ("backup-mutated", "cat", None),
    ("restore", "cp -a", 1.3),
    ("verify", "zstd -t", None),
)


def missing() -> str | None:
    need = [t for t in ("sh", "tar", "zstd", "find", "xargs", "cat", "cp") if not shutil.which(t)]
    return f"not on PATH: {', '.join(need)}" if need else None


def commands(step: str, data: Path, workdir: Path) -> list[tuple[str, list[str]]]:
    """(label, argv) of the baselines of STEP; TARGET of ``cp -a`` is workdir/restore/baseline
    (the caller empties it before and after)."""
    d = shlex.quote(str(data))
    archive_path = workdir / "repos" / "baseline.tar.zst"
    archive = shlex.quote(str(archive_path))
    walk = ("walk+lstat", ["sh", "-c", f"find {d} -printf '%s %T@\\n' > /dev/null"])
    cat = ("cat", ["sh", "-c", f"find {d} -type f -print0 | xargs -0 cat > /dev/null"])
    if step == "backup":
        return [("tar|zstd", ["sh", "-c", f"tar -cf - -C {d} . | zstd -3 -T0 -q -f -o {archive}"])]
    if step in ("backup-unchanged", "backup-mutated"):
        return [walk, cat]
    if step == "restore":
        target = workdir / "restore" / NAME / "data"
        return [("cp -a", ["cp", "-a", str(data), str(target)])]
    if step == "verify":
        return [("zstd -t", ["zstd", "-t", "-q", "-T0", str(archive_path)])]
    return []


def _wall(results: list[Any], tool: str, step: str) -> float | None:
    for r in results:
        if r.tool == tool and r.step == step and r.status == "ok":
            return r.wall_s  # type: ignore[no-any-return]
    return None


def ratios(results: list[Any], tools: list[str]) -> list[dict[str, Any]]:
    """For every (step, baseline) pair: each tool's wall time over the baseline's."""
    out = []
    for step, label, target in PAIRS:
        base = _wall(results, label, step)
        if base is None:
            continue
        row: dict[str, Any] = {"step": step, "baseline": label, "baseline_wall_s": base,
                               "target": target}
        for t in tools:
            w = _wall(results, t, step)
            row[t] = None if w is None or base == 0 else round(w / base, 3)
        if target is not None and row.get("casbackup") is not None:
            row["status"] = "PASS" if row["casbackup"] <= target else "FAIL"
        out.append(row)
    return out


def print_ratios(rows: list[dict[str, Any]], tools: list[str]) -> None:
    if not rows:
        return
    print("\nwall time / baseline wall time (same corpus state):")
    head = "".join(f" {t:>10}" for t in tools)
    print(f"  {'step':<17} {'baseline':<11} {'base s':>7}{head}  issue-17 target")
    for r in rows:
        cells = "".join(f" {('-' if r.get(t) is None else format(r[t], '.2f')):>10}"
                        for t in tools)
        tgt = "" if r["target"] is None else f"casbackup <= {r['target']}: {r.get('status', 'n/a')}"
        print(f"  {r['step']:<17} {r['baseline']:<11} {r['baseline_wall_s']:>7.2f}{cells}  {tgt}")
