"""Every documented exit code, provoked through the real CLI (130 and 143: in
test_signals_cmd.py), and the README's table matching errors.py."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from casbackup import errors
from casbackup.store.locks import exclusive_lock
from tests.helpers import cli_env, open_test_store, run_cli

ROOT = Path(__file__).resolve().parents[2]
Case = Callable[[Path, Path], subprocess.CompletedProcess[bytes]]


def _fatal(store: Path, src: Path) -> subprocess.CompletedProcess[bytes]:
    return run_cli("backup", "--store", str(store), "--stdin-from-command", "false")


def _partial(store: Path, src: Path) -> subprocess.CompletedProcess[bytes]:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to run without CAP_DAC_OVERRIDE")
    (src / "secret").write_text("no")
    (src / "secret").chmod(0)
    return subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--",
                           sys.executable, "-m", "casbackup", "backup", "--store", str(store),
                           str(src)], env=cli_env(), capture_output=True, timeout=120)


def _locked(store: Path, src: Path) -> subprocess.CompletedProcess[bytes]:
    with open_test_store(store) as st, exclusive_lock(st, "test"):
        return run_cli("backup", "--store", str(store), str(src))


def _integrity(store: Path, src: Path) -> subprocess.CompletedProcess[bytes]:
    pack = next(p for p in (store / "packs").rglob("*") if p.is_file())
    pack.write_bytes(pack.read_bytes()[:-1])
    return run_cli("verify", "--store", str(store))


CASES: dict[int, Case] = {
    0: lambda s, src: run_cli("snapshots", "--store", str(s)),
    1: _fatal,
    2: lambda s, src: run_cli("backup", "--store", str(s), "--no-such-option", str(src)),
    3: _partial,
    4: lambda s, src: run_cli("forget", "--store", str(s), "--keep-last", "1", "--host", "nosuch"),
    10: lambda s, src: run_cli("snapshots", "--store", str(s.parent / "nowhere")),
    11: _locked,
    12: lambda s, src: run_cli("snapshots", "--store", str(s),
                               env=cli_env(CASBACKUP_PASSWORD="wrong")),
    13: _integrity,
}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    s = tmp_path / "store"
    assert run_cli("init", "--store", str(s)).returncode == 0
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_text("a" * 3000)
    assert run_cli("backup", "--store", str(s), str(tmp_path / "src")).returncode == 0
    return s


@pytest.mark.parametrize("code", sorted(CASES))
def test_exit_code(store: Path, tmp_path: Path, code: int) -> None:
    r = CASES[code](store, tmp_path / "src")
    assert r.returncode == code, r.stderr
    assert b"Traceback" not in r.stderr
    if code not in (0, 2, 3):  # 2: click's usage text; 3: warnings, then the summary line
        (line,) = r.stderr.decode().strip().splitlines()
        assert line.startswith("casbackup: ")


def test_readme_table_is_errors_py() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Exit codes"):]
    documented = {int(c) for c in re.findall(r"^\| (\d+) \|", table, re.M)}
    raised = {c.exit_code for c in vars(errors).values()
              if isinstance(c, type) and issubclass(c, errors.CasError)}
    assert documented == raised | {0}
    assert set(CASES) | {130, 143} == documented
    doc = errors.__doc__ or ""
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, errors.CasError) and cls.exit_code != 1:
            assert f"{cls.__name__} ({cls.exit_code})" in doc
