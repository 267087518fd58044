"""A ``dump`` job against a real PostgreSQL server on loopback: the example config's
pg_dump recipe is saved into a snapshot, restored with ``casbackup dump``-free tools
(``casbackup restore`` then ``psql``) into a fresh database, and the rows compared. A
``pg_dump`` that fails (a database that does not exist) commits nothing.

The server is a private cluster (initdb under the test's tmp dir, run as the ``postgres``
user, listening on a free port on 127.0.0.1 and a socket in the tmp dir). Skipped where
PostgreSQL is not installed, except under CI, where ``scripts/setup.sh`` installs it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from casbackup.daemon.config import load_config
from casbackup.daemon.jobs import run_job
from tests.conftest import free_port
from tests.helpers import PASSWORD, cli_env, make_store, open_test_store

BINDIR = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1:] or [""]
PG = Path(BINDIR[0])


class Cluster:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.sock = base / "sock"
        self.user = "postgres"
        uid = pwd.getpwnam(self.user).pw_uid
        for d in (base / "data", self.sock):
            d.mkdir(parents=True)
            os.chown(d, uid, -1)
        os.chown(base, uid, -1)
        self.run(str(PG / "initdb"), "-D", str(base / "data"), "-A", "trust", "-U", "postgres")
        self.run(str(PG / "pg_ctl"), "-D", str(base / "data"), "-l", str(base / "log"), "-w",
                 "-o", f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1", "start")

    def run(self, *cmd: str, input: bytes | None = None) -> bytes:
        r = subprocess.run(["setpriv", "--reuid", self.user, "--regid", self.user,
                            "--init-groups", *cmd], input=input, capture_output=True,
                           timeout=120, cwd=self.base)  # fmt: skip
        assert r.returncode == 0, r.stderr.decode()
        return r.stdout

    def psql(self, db: str, sql: str) -> str:
        return self.run(str(PG / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                        "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-At", "-c",
                        sql).decode()  # fmt: skip

    def stop(self) -> None:
        self.run(str(PG / "pg_ctl"), "-D", str(self.base / "data"), "-m", "fast", "-w", "stop")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if not (PG / "initdb").exists() or shutil.which("setpriv") is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (scripts/setup.sh installs it)")
        pytest.skip("PostgreSQL is not installed")
    # pytest's tmp dirs are root's 0700: the server's user needs a directory of its own
    base = Path(tempfile.mkdtemp(prefix="casbackup-pg-"))
    try:
        c = Cluster(base)
        try:
            yield c
        finally:
            c.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_pg_dump_job_round_trips_the_rows(cluster: Cluster, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASBACKUP_PASSWORD", PASSWORD)
    cluster.psql("postgres", "CREATE DATABASE shop")
    cluster.psql("shop", "CREATE TABLE orders (id int primary key, item text, price numeric);"
                 "INSERT INTO orders SELECT g, 'item ' || g || E' \\u00e9\\t\"q\"', g * 1.25 "
                 "FROM generate_series(1, 5000) g")
    rows = cluster.psql("shop", "SELECT * FROM orders ORDER BY id")
    make_store(tmp_path / "store").close()
    pg_dump = f"{PG / 'pg_dump'} -h 127.0.0.1 -p {cluster.port} -U postgres"
    (tmp_path / "c.yaml").write_text(f"""\
stores:
  s: {{url: store, password: {{env: CASBACKUP_PASSWORD}}}}
jobs:
  shop: {{type: dump, cron: "@daily", store: s, filename: shop.sql, tags: [db],
          command: "{pg_dump} --no-owner shop"}}
  missing: {{type: dump, cron: "@daily", store: s, filename: nope.sql,
             command: "{pg_dump} no_such_database"}}
""")
    config = load_config(tmp_path / "c.yaml")
    out = run_job(config, "shop")
    assert out.result == "success", out.error
    bad = run_job(config, "missing")
    assert bad.result == "failure" and bad.error is not None
    assert "no_such_database" in bad.error and "nothing was committed" in bad.error
    with open_test_store(tmp_path / "store") as st:
        assert [s.paths for s in st.snapshots()] == [["/shop.sql"]]
    r = subprocess.run([sys.executable, "-m", "casbackup", "restore", "latest",
                        str(tmp_path / "out"), "--store", str(tmp_path / "store")],
                       env=cli_env(), capture_output=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    dump = (tmp_path / "out" / "shop.sql").read_bytes()
    cluster.psql("postgres", "CREATE DATABASE shop2")
    cluster.run(str(PG / "psql"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres",
                "-d", "shop2", "-v", "ON_ERROR_STOP=1", "-q", input=dump)
    assert cluster.psql("shop2", "SELECT * FROM orders ORDER BY id") == rows
    assert rows.count("\n") == 5000
