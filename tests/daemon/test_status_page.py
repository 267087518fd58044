"""The status page (``GET /`` of the daemon, ``casbackup report --html``) in a real
browser: headless Chromium loads the page the real daemon serves and the file the real
CLI writes; the DOM it built is checked (store cards, charts with one point per snapshot,
jobs, a failed run marked in the timeline) and a screenshot is kept as a test artifact
(``test-artifacts/``, or ``$CASBACKUP_TEST_ARTIFACTS``). Chromium is required under CI
(``scripts/setup.sh`` installs it) and skipped elsewhere when missing."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from casbackup.daemon.page import MAX_POINTS, JobRow, PageData, bucket, groups, render
from casbackup.daemon.state import RunRecord
from casbackup.ops.report import SnapshotPoint, StoreReport
from casbackup.ops.status import StoreStatus
from tests.conftest import free_port
from tests.helpers import cli_env, make_store, run_cli

ROOT = Path(__file__).parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def artifacts() -> Path:
    d = Path(os.environ.get("CASBACKUP_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def browser(url: str, tmp: Path, shot: str, width: int = 1200) -> str:
    """The DOM Chromium built for ``url``, and a screenshot of it in the artifacts."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (scripts/setup.sh installs it)")
        pytest.skip("chromium is not installed")
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'chromium'}"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, timeout=120)
    assert dom.returncode == 0, dom.stderr.decode()[-2000:]
    png = artifacts() / shot
    r = subprocess.run([*common, f"--window-size={width},1600", f"--screenshot={png}", url],
                       capture_output=True, timeout=120)
    assert r.returncode == 0 and png.stat().st_size > 10_000, r.stderr.decode()[-2000:]
    return dom.stdout.decode()


def _points(dom: str, cid: str) -> int:
    m = re.search(rf'<svg id="{cid}"[^>]*data-points="(\d+)"', dom)
    assert m, f"no chart {cid}"
    return int(m.group(1))


def test_daemon_serves_the_page_in_a_real_browser(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    make_store(tmp_path / "store").close()
    port = free_port()
    (tmp_path / "c.yaml").write_text(f"""\
stores:
  main: {{url: store, password: {{env: CASBACKUP_PASSWORD}}}}
sources:
  src: {{paths: [src]}}
  gone: {{paths: [nothing-here]}}
jobs:
  often: {{type: backup, cron: "* * * * * */2", store: main, source: src}}
  broken: {{type: backup, cron: "* * * * * */3", store: main, source: gone}}
metrics: {{listen: "127.0.0.1:{port}"}}
state: state.json
""")
    proc = subprocess.Popen([sys.executable, "-m", "casbackup", "daemon", "--config",
                             str(tmp_path / "c.yaml"), "--json"], env=cli_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        for i in range(4):  # a few snapshots with growing content while the daemon runs
            (tmp_path / "src" / f"f{i}").write_bytes(os.urandom(20000 * (i + 1)))
            time.sleep(2.2)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
            if b"run failure" in page and page.count(b'class="run success"') >= 3:
                break
            time.sleep(1)
        dom = browser(f"http://127.0.0.1:{port}/", tmp_path, "status-page-daemon.png")
        phone = browser(f"http://127.0.0.1:{port}/", tmp_path, "status-page-phone.png", 390)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert "1 failing job(s): broken" in dom
    assert 'id="store-0"' in dom and "main" in dom
    n = _points(dom, "chart-size-0")
    assert n >= 4 and n == _points(dom, "chart-added-0") == _points(dom, "chart-duration-0")
    assert re.search(r'<table id="jobs">.*often.*success.*broken.*failure', dom, re.S)
    assert dom.count('class="run failure"') >= 1 and dom.count('class="run success"') >= 3
    assert "nothing-here" in dom  # the failure's reason is on the page
    assert 'name="viewport"' in phone


def test_report_html_cli_for_a_store(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    store = tmp_path / "store"
    make_store(store).close()
    for i in range(3):
        (src / f"f{i}").write_bytes(os.urandom(50000))
        assert run_cli("backup", "--store", str(store), str(src)).returncode == 0
    out = tmp_path / "page.html"
    r = run_cli("report", "--html", str(out), "--store", str(store))
    assert r.returncode == 0, r.stderr
    assert b"3 snapshot(s)" in r.stdout
    dom = browser(out.as_uri(), tmp_path, "status-page-report.png")
    assert _points(dom, "chart-size-0") == 3
    assert "http://" not in out.read_text() and "https://" not in out.read_text()  # offline
    r = run_cli("report", "--html", str(out), "--store", str(tmp_path / "nope"))
    assert r.returncode == 10  # unreachable store: its own exit code, page still written
    assert "unreachable" in out.read_text()


def _report(n: int, name: str = "s") -> StoreReport:
    pts = [SnapshotPoint(f"{i:064x}", 1.7e9 + i * 3600, "h", "incremental", (), 10**9 + i,
                         i * 1000, i * 500, 1.0 + i % 7, 100) for i in range(n)]
    return StoreReport(name, StoreStatus("/s", reachable=True, size_bytes=5 * 10**8,
                                         snapshots=n, logical_bytes=n * 10**9), pts)


def test_page_bounds_chart_points_and_escapes_everything() -> None:
    """10,000 snapshots draw at most MAX_POINTS points; a hostile store name, error or
    job name cannot inject markup."""
    evil = '<script>alert(1)</script>"'
    data = PageData("t", 1.7e9 + 10_000 * 3600, [
        _report(10_000, evil),
        StoreReport("down", StoreStatus("/x", reachable=False, error=evil)),
    ], [JobRow(evil, "backup", "s", "@daily", "failure", last_error=evil)],
        [RunRecord(evil, 1.7e9 + 10_000 * 3600 - 100, 5.0, "failure", evil)])
    page = render(data)
    assert "<script>" not in page and "&lt;script&gt;" in page
    for chart in ("chart-size-0", "chart-added-0", "chart-duration-0"):
        assert 0 < _points(page, chart) <= MAX_POINTS


def test_bucket_keeps_totals_and_extremes() -> None:
    pts = _report(5000).snapshots
    g = groups(pts)
    assert [p for _, grp in g for p in grp] == pts  # every point in exactly one group
    added = bucket(g, lambda p: p.bytes_added, sum)
    assert len(added) <= MAX_POINTS
    assert sum(y for _, y in added) == sum(p.bytes_added for p in pts)  # no bytes lost
    sizes = bucket(g, lambda p: p.total_size, max)
    assert max(y for _, y in sizes) == max(p.total_size for p in pts)
    assert [x for x, _ in sizes] == sorted(x for x, _ in sizes)
    small = _report(10).snapshots
    assert bucket(groups(small), lambda p: p.duration, max) == [(p.time, p.duration)
                                                                for p in small]
