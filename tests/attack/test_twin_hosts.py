"""Two machines with one hostname sharing one store (``unshare --uts`` sets the name for
each backup process): each backup takes as parent the last snapshot of its own paths,
never the twin's, and ``restore latest --host H`` restores the newest of them and says
which snapshot it restored.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import cli_env, make_store, restored_root, run_cli

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None, reason="no unshare")


def _as_twin(*args: str) -> subprocess.CompletedProcess[bytes]:
    cmd = " ".join(["hostname twin &&", sys.executable, "-m", "casbackup", *args])
    r = subprocess.run(["unshare", "--uts", "sh", "-c", cmd], env=cli_env(),
                       capture_output=True, timeout=120)
    if r.returncode and b"unshare" in r.stderr:
        pytest.skip(r.stderr.decode().strip())
    return r


def _saved(r: subprocess.CompletedProcess[bytes]) -> tuple[str, str | None]:
    assert r.returncode == 0, r.stderr
    m = re.search(rb"snapshot ([0-9a-f]{8}) saved \(\w+(?:, parent ([0-9a-f]{8}))?\)", r.stdout)
    assert m, r.stdout
    return m.group(1).decode(), m.group(2).decode() if m.group(2) else None


def test_twins_take_their_own_parents_and_restore_says_which(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    make_store(url).close()
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        (d / "d").mkdir(parents=True)
        (d / "d" / "f").write_bytes(d.name.encode())
    a1, _ = _saved(_as_twin("backup", "--store", url, str(a)))
    b1, _ = _saved(_as_twin("backup", "--store", url, str(b)))
    (a / "d" / "f").write_bytes(b"a, changed")
    a2, parent = _saved(_as_twin("backup", "--store", url, str(a)))
    assert parent == a1, (parent, a1, b1)
    b2, parent = _saved(_as_twin("backup", "--store", url, str(b)))
    assert parent == b1, (parent, b1, a2)

    out = tmp_path / "out"
    r = run_cli("restore", "--store", url, "latest", "--host", "twin", str(out))
    assert r.returncode == 0, r.stderr
    assert f"restored snapshot {b2}".encode() in r.stdout, r.stdout
    assert (restored_root(out, b) / "d" / "f").read_bytes() == b"b"
    assert not restored_root(out, a).exists()
