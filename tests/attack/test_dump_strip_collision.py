"""``dump --strip-components N`` of a directory where two entries strip to one member name
(``/a/x`` and ``/b/x`` with N = 1; a file and a directory alike): a real ``casbackup dump``
refuses with one line and exit 2 (README's exit codes: usage error) before writing a byte,
to stdout or to ``--target`` (which is not left behind); without the clash the same
command writes every entry once.
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.helpers import make_store, run_cli


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(store, source): src/a/x (file), src/b/x (directory holding y), src/b/z, src/c/z."""
    root = tmp_path_factory.mktemp("strip-clash")
    src = root / "src"
    for d in ("a", "b/x", "c"):
        (src / d).mkdir(parents=True)
    (src / "a" / "x").write_bytes(os.urandom(2000))
    (src / "b" / "x" / "y").write_bytes(b"y")
    (src / "b" / "z").write_bytes(b"z1")
    (src / "c" / "z").write_bytes(b"z2")
    make_store(root / "store").close()
    r = run_cli("backup", "--store", str(root / "store"), str(src))
    assert r.returncode == 0, r.stderr
    return root / "store", src


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_a_clash_is_refused_before_a_byte_is_written(store: tuple[Path, Path], fmt: str,
                                                     tmp_path: Path) -> None:
    st, src = store
    ref = f"latest:{src}"
    r = run_cli("dump", "--store", str(st), "-a", fmt, ref, "/", "--strip-components", "1")
    assert r.returncode == 2 and r.stdout == b"", r.stderr
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 1 and "puts two entries at" in lines[0], lines
    assert lines[0].endswith(("x", "z")), lines  # the first clash in tree order names it
    out = tmp_path / f"out.{fmt}"
    r = run_cli("dump", "--store", str(st), "-a", fmt, ref, "/", "--strip-components", "1",
                "--target", str(out))
    assert r.returncode == 2 and not out.exists(), r.stderr
    assert os.listdir(tmp_path) == []


def test_without_a_clash_every_entry_is_written_once(store: tuple[Path, Path]) -> None:
    st, src = store
    r = run_cli("dump", "--store", str(st), f"latest:{src}", "/b", "--strip-components", "1")
    assert r.returncode == 0, r.stderr
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as t:
        assert sorted(t.getnames()) == ["x", "x/y", "z"]
    r = run_cli("dump", "--store", str(st), "-a", "zip", f"latest:{src}", "/c",
                "--strip-components", "1")
    assert r.returncode == 0, r.stderr
    with zipfile.ZipFile(io.BytesIO(r.stdout)) as z:
        assert [i.filename for i in z.infolist()] == ["z"]
