"""Names that are not UTF-8 (latin-1 bytes, as an old filesystem or a Windows share
mounted without iconv leaves them), given on the command line as those same bytes, as
real processes: ``restore --include``, ``ls``, ``find`` and ``dump`` match them, ``ls`` and
``find`` print each such byte as ``\\xNN`` (``cli/escape.py``: bash's ``$'…'`` spelling of
the name), and what is restored or dumped is byte-exact (names and content).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from tests.helpers import cli_env, make_store, restored_root, tree_state

CAFE = b"caf\xe9"  # latin-1 "café": not valid UTF-8
NAIVE = b"na\xefve \xe0 la cr\xe8me.txt"
OTHER = b"\xfcber.txt"


def _cli(*args: bytes | str) -> subprocess.CompletedProcess[bytes]:
    argv = [os.fsencode(a) for a in (sys.executable, "-m", "casbackup", *args)]
    return subprocess.run(argv, env=cli_env(), capture_output=True, timeout=300)


def _escaped(path: bytes) -> bytes:
    """PATH as human output prints it: every byte that is not UTF-8 as ``\\xNN``."""
    assert rb"\\" not in path
    return b"".join(bytes([c]) if c < 0x80 else b"\\x%02x" % c for c in path)


def _setup(tmp: Path) -> tuple[str, bytes]:
    src = os.fsencode(tmp / "src")
    os.makedirs(os.path.join(src, CAFE))
    for name, data in ((NAIVE, b"cream\xff\x00"), (OTHER, b"uber"), (b"plain.txt", b"p")):
        with open(os.path.join(src, CAFE, name), "wb") as f:
            f.write(data)
    url = str(tmp / "store")
    make_store(url).close()
    r = _cli("backup", "--store", url, src)
    assert r.returncode == 0, r.stderr
    return url, src


def test_latin1_names_match_and_restore_byte_exact(tmp_path: Path) -> None:
    url, src = _setup(tmp_path)
    inside = os.path.join(src, CAFE)

    r = _cli("ls", "--store", url, "latest", inside)
    assert r.returncode == 0, r.stderr
    assert rb"na\xefve \xe0 la cr\xe8me.txt" in r.stdout and rb"\xfcber.txt" in r.stdout, r.stdout

    r = _cli("find", "--store", url, b"*\xe0 la*")
    assert r.returncode == 0, r.stderr
    # find prints a path escaped, as ls does: a raw byte never reaches the terminal
    assert _escaped(os.path.join(inside, NAIVE)) + b"\n" in r.stdout, r.stdout
    r = _cli("find", "--store", url, "--long", b"*\xe0 la*")
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip(b"\n").endswith(b" " + _escaped(os.path.join(inside, NAIVE))), \
        r.stdout
    assert b"ber.txt" not in r.stdout, r.stdout

    r = _cli("dump", "--store", url, b"latest:" + os.path.join(inside, NAIVE))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"cream\xff\x00"

    r = _cli("dump", "--store", url, b"latest:" + inside, "--archive", "tar")
    assert r.returncode == 0, r.stderr
    with tarfile.open(fileobj=io.BytesIO(r.stdout), encoding="utf-8",
                      errors="surrogateescape") as tf:
        names = {os.path.basename(os.fsencode(m.name)) for m in tf.getmembers()}
        assert tf.extractfile(next(m for m in tf.getmembers()
                                   if m.name.endswith(os.fsdecode(NAIVE)))).read() \
            == b"cream\xff\x00"  # type: ignore[union-attr]
    assert {NAIVE, OTHER} <= names, names

    out = tmp_path / "out"
    r = _cli("restore", "--store", url, "--include", os.path.join(inside, NAIVE), "latest",
             str(out))
    assert r.returncode == 0, r.stderr
    got = tree_state(restored_root(out, Path(os.fsdecode(src))))
    assert set(got) == {CAFE, CAFE + b"/" + NAIVE}, set(got)
    with open(os.path.join(os.fsencode(restored_root(out, Path(os.fsdecode(src)))), CAFE,
                           NAIVE), "rb") as f:
        assert f.read() == b"cream\xff\x00"

    out2 = tmp_path / "out2"
    r = _cli("restore", "--store", url, "--include", b"*\xfc*", "latest", str(out2))
    assert r.returncode == 0, r.stderr
    got = tree_state(restored_root(out2, Path(os.fsdecode(src))))
    assert set(got) == {CAFE, CAFE + b"/" + OTHER}, set(got)
