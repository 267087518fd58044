"""The package metadata builds without warnings (a deprecated field becomes an error in a
later setuptools), and the wheel carries the entry point the README's install relies on."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_wheel_builds_without_warnings(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w",
                        str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout + r.stderr
    for warning in ("BuildBackendWarning", "SetuptoolsDeprecationWarning",
                    "SetuptoolsWarning", "is deprecated"):
        assert warning not in out, [ln for ln in out.splitlines() if warning in ln][:3]
    [wheel] = tmp_path.glob("casbackup-*.whl")
    with zipfile.ZipFile(wheel) as z:
        entry = next(n for n in z.namelist() if n.endswith("entry_points.txt"))
        assert "casbackup = casbackup.entry:main" in z.read(entry).decode()
        meta = z.read(next(n for n in z.namelist() if n.endswith("METADATA"))).decode()
        assert "License-Expression: MIT" in meta
