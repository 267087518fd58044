"""The status page: one self-contained HTML document (inline CSS and SVG, no script, no
network) drawn from store reports and the daemon's job state. The daemon serves it at
``/``; ``casbackup report --html FILE`` writes it for stores without a daemon.

Invariants:
* Every text from a store or the configuration is HTML-escaped; nothing is fetched.
* Charts draw at most ``MAX_POINTS`` points per series: a history longer than that is
  grouped by time (``groups``, once per store; max of sizes, sum of added bytes, max of
  durations per group), so a page over 10,000 snapshots stays small and quick.
* The layout is one column under 720 px wide (phones) and a grid above.
* Element ids are stable for tests and scrapers: ``store-<n>``, ``chart-size-<n>``,
  ``chart-added-<n>``, ``chart-duration-<n>``, ``jobs``, ``timeline``; a failed run in the
  timeline has the class ``run failure``.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .. import __version__
from ..ops.report import SnapshotPoint, StoreReport
from ..ops.status import display_url
from .state import RunRecord

MAX_POINTS = 400
TIMELINE_DAYS = 7
_W, _H, _PAD = 640, 300, 44
_COLORS = {"success": "#2e9d57", "partial": "#e0a100", "failure": "#d93838"}


@dataclass(frozen=True, slots=True)
class JobRow:
    name: str
    type: str
    store: str
    cron: str
    last_result: str | None = None
    last_run: float | None = None
    last_duration: float | None = None
    last_error: str | None = None
    next_run: float | None = None
    runs: int = 0
    failures: int = 0


@dataclass
class PageData:
    title: str
    generated: float
    stores: list[StoreReport] = field(default_factory=list)
    jobs: list[JobRow] = field(default_factory=list)
    history: list[RunRecord] = field(default_factory=list)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h" if s < 172800 else f"{s / 86400:.1f} d"


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def when(t: float | None, now: float) -> str:
    if t is None:
        return "never"
    stamp = _stamp(t)
    d = t - now
    return f"{stamp} (in {seconds(d)})" if d > 0 else f"{stamp} ({seconds(-d)} ago)"


def groups(points: Sequence[SnapshotPoint]) -> list[tuple[float, Sequence[SnapshotPoint]]]:
    """``points`` (sorted by time) in at most ``MAX_POINTS`` groups of equal time span,
    each with the time of its middle; one group per point when there are few."""
    if len(points) <= MAX_POINTS:
        return [(p.time, (p,)) for p in points]
    t0, t1 = points[0].time, points[-1].time
    width = (t1 - t0) / MAX_POINTS or 1.0
    out: list[tuple[float, Sequence[SnapshotPoint]]] = []
    first, cur_i = 0, 0
    for k, p in enumerate(points):
        i = min(MAX_POINTS - 1, int((p.time - t0) / width))
        if i != cur_i:
            out.append((t0 + (cur_i + 0.5) * width, points[first:k]))
            first, cur_i = k, i
    out.append((t0 + (cur_i + 0.5) * width, points[first:]))
    return out


def bucket(grouped: list[tuple[float, Sequence[SnapshotPoint]]],
           value: Callable[[SnapshotPoint], float],
           combine: Callable[[list[float]], float]) -> list[tuple[float, float]]:
    """One (time, combined value) per group."""
    return [(t, combine([value(p) for p in grp])) for t, grp in grouped]


def _chart(cid: str, title: str, series: list[tuple[float, float]], fmt: Callable[[float], str],
           bars: bool = False) -> str:
    head = f'<figure><figcaption>{_e(title)}</figcaption>'
    if not series:
        return head + '<p class="empty">no snapshots yet</p></figure>'
    xs = [x for x, _ in series]
    top = max(y for _, y in series) or 1.0
    x0, x1 = min(xs), max(xs)
    span = (x1 - x0) or 1.0
    iw, ih = _W - 2 * _PAD, _H - 2 * _PAD
    n = len(series)

    def py(y: float) -> float:
        return _PAD + ih - y / top * ih

    if bars:  # one band per point, in time order: bars never leave the plot
        band = iw / n
        marks = "".join(f'<rect x="{_PAD + i * band + band * 0.1:.1f}" y="{py(y):.1f}" '
                        f'width="{max(0.5, band * 0.8):.1f}" height="{_PAD + ih - py(y):.1f}"/>'
                        for i, (_, y) in enumerate(series))  # fmt: skip
    else:
        pts = " ".join(f"{(_PAD + (x - x0) / span * iw) if n > 1 else _PAD + iw / 2:.1f},"
                       f"{py(y):.1f}" for x, y in series)  # fmt: skip
        marks = f'<polyline points="{pts}"/>'
    return (f'{head}<svg id="{cid}" class="{"bars" if bars else "line"}" data-points="{n}" '
            f'viewBox="0 0 {_W} {_H}" role="img" aria-label="{_e(title)}">'
            f'<line class="axis" x1="{_PAD}" y1="{_PAD + ih}" x2="{_W - _PAD}" y2="{_PAD + ih}"/>'
            f'<text x="{_PAD}" y="{_PAD - 10}">{_e(fmt(top))}</text>'
            f'<text x="{_PAD}" y="{_H - 8}">{_day(x0, span)}</text>'
            f'<text x="{_W - _PAD}" y="{_H - 8}" text-anchor="end">{_day(x1, span)}</text>'
            f'{marks}</svg></figure>')  # fmt: skip


def _day(t: float, span: float) -> str:
    fmt = "%Y-%m-%d" if span > 2 * 86400 else "%m-%d %H:%M"
    return datetime.fromtimestamp(t, UTC).strftime(fmt)


def _store_card(i: int, r: StoreReport, now: float, verify: JobRow | None = None) -> str:
    st = r.status
    if not st.reachable:
        return (f'<section class="card down" id="store-{i}"><h2>{_e(r.name)}</h2>'
                f'<p class="url">{_e(display_url(st.url))}</p>'
                f'<p class="error">unreachable: {_e(st.error or "unknown error")}</p></section>')
    dedup = f"{st.dedup_ratio:.2f}×" if st.dedup_ratio else "–"
    comp = f"{r.compression_ratio:.2f}×" if r.compression_ratio else "–"
    facts = [("stored", size(st.size_bytes)), ("snapshots", f"{st.snapshots:,}"),
             ("source data (all snapshots)", size(st.logical_bytes)), ("dedup", dedup),
             ("compression", comp), ("last snapshot", when(st.last_snapshot_time, now))]
    if r.damaged:
        facts.append(("damaged snapshot objects", str(r.damaged)))
    if verify is not None:
        facts.append(("last verify", f"{verify.last_result or 'not run yet'}"
                      + (f", {when(verify.last_run, now)}" if verify.last_run else "")))
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    g = groups(r.snapshots)
    charts = (
        _chart(f"chart-size-{i}", "source size per snapshot",
               bucket(g, lambda p: p.total_size, max), size)
        + _chart(f"chart-added-{i}", "bytes added per snapshot",
                 bucket(g, lambda p: p.bytes_added, sum), size, bars=True)
        + _chart(f"chart-duration-{i}", "backup duration",
                 bucket(g, lambda p: p.duration, max), seconds)
    )  # fmt: skip
    return (f'<section class="card" id="store-{i}"><h2>{_e(r.name)}</h2>'
            f'<p class="url">{_e(display_url(st.url))}</p><dl>{dl}</dl>'
            f'<div class="charts">{charts}</div></section>')


def _jobs_table(jobs: list[JobRow], now: float) -> str:
    if not jobs:
        return ""
    rows = []
    for j in jobs:
        result = j.last_result or "not run"
        err = f'<div class="error">{_e(j.last_error)}</div>' if j.last_error else ""
        dur = seconds(j.last_duration) if j.last_duration is not None else "–"
        rows.append(
            f'<tr class="{_e(result)}"><td>{_e(j.name)}</td><td>{_e(j.type)}</td>'
            f"<td>{_e(j.store)}</td><td><span class=\"dot\"></span>{_e(result)}{err}</td>"
            f"<td>{_e(when(j.last_run, now))}</td><td>{_e(dur)}</td>"
            f"<td>{_e(when(j.next_run, now))}</td><td>{j.failures}/{j.runs}</td></tr>")
    return ('<section class="card wide"><h2>Jobs</h2><div class="scroll"><table id="jobs">'
            "<tr><th>job</th><th>type</th><th>store</th><th>last result</th><th>last run</th>"
            "<th>took</th><th>next run</th><th>failed/runs</th></tr>"
            + "".join(rows) + "</table></div></section>")


def _timeline(jobs: list[JobRow], history: list[RunRecord], now: float) -> str:
    names = [j.name for j in jobs] or sorted({r.job for r in history})
    if not names:
        return ""
    start = now - TIMELINE_DAYS * 86400
    row_h, left = 22, 120
    h = row_h * len(names) + 24
    iw = _W + 200 - left - 10
    out = []
    by_job: dict[str, list[RunRecord]] = {}
    for r in history:
        if r.started + r.duration >= start:
            by_job.setdefault(r.job, []).append(r)
    for k, name in enumerate(names):
        y = k * row_h + 4
        out.append(f'<text x="4" y="{y + 14}">{_e(name)}</text>'
                   f'<line class="axis" x1="{left}" y1="{y + 10}" x2="{left + iw}" '
                   f'y2="{y + 10}"/>')  # fmt: skip
        for r in by_job.get(name, ()):
            x = left + max(0.0, (r.started - start) / (now - start)) * iw
            w = max(3.0, r.duration / (now - start) * iw)
            tip = f"{name}: {r.result} at {_stamp(r.started)}, {seconds(r.duration)}"
            if r.error:
                tip += f" — {r.error}"
            out.append(f'<rect class="run {_e(r.result)}" x="{x:.1f}" y="{y + 3}" '
                       f'width="{w:.1f}" height="14" fill="{_COLORS.get(r.result, "#888")}">'
                       f"<title>{_e(tip)}</title></rect>")  # fmt: skip
    days = "".join(
        f'<text x="{left + d / TIMELINE_DAYS * iw:.1f}" y="{h - 4}">'
        f'{datetime.fromtimestamp(start + d * 86400, UTC).strftime("%a %d")}</text>'
        for d in range(TIMELINE_DAYS))  # fmt: skip
    return (f'<section class="card wide"><h2>Runs, last {TIMELINE_DAYS} days</h2>'
            f'<div class="scroll"><svg id="timeline" viewBox="0 0 {_W + 200} {h}" role="img" '
            f'aria-label="job timeline">{"".join(out)}{days}</svg></div>'
            '<p class="legend"><span class="dot success"></span>success '
            '<span class="dot partial"></span>partial <span class="dot failure"></span>'
            "failure</p></section>")


_CSS = """
:root{color-scheme:light dark;--fg:#1d232b;--bg:#f4f6f8;--card:#fff;--mute:#667}
@media (prefers-color-scheme:dark){:root{--fg:#e6e9ee;--bg:#14181d;--card:#1e242b;--mute:#99a}}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,sans-serif;color:var(--fg);
background:var(--bg)}header{padding:14px 18px}h1{margin:0;font-size:1.35em}
header p{margin:2px 0;color:var(--mute)}
main{display:grid;gap:14px;padding:0 14px 24px;grid-template-columns:1fr}
.card{background:var(--card);border-radius:10px;padding:12px 16px;
box-shadow:0 1px 3px #0002;min-width:0}.wide{grid-column:1/-1}
h2{margin:0 0 4px;font-size:1.1em}.url{color:var(--mute);margin:0 0 8px;word-break:break-all}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0 0 8px}
dt{color:var(--mute)}dd{margin:0}figure{margin:4px 0}figcaption{color:var(--mute);
font-size:.9em}.charts{display:grid;gap:8px;
grid-template-columns:repeat(auto-fit,minmax(min(100%,240px),1fr))}
svg{width:100%;height:auto;display:block}svg text{font-size:22px;
fill:var(--mute)}polyline{fill:none;stroke:#3b7dd8;stroke-width:2;
vector-effect:non-scaling-stroke}.bars rect{fill:#3b7dd8}.axis{stroke:var(--mute);
stroke-width:1;vector-effect:non-scaling-stroke}.error{color:#d93838}.down{border-left:4px
solid #d93838}.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #8883;vertical-align:top}
th{color:var(--mute);font-weight:600}.dot{display:inline-block;width:.7em;height:.7em;
border-radius:50%;margin-right:6px;background:#888}.success .dot,.dot.success{background:
#2e9d57}.partial .dot,.dot.partial{background:#e0a100}.failure .dot,.dot.failure{background:
#d93838}tr.failure td{background:#d938380f}.legend{color:var(--mute);font-size:.9em}
.empty{color:var(--mute)}#timeline{min-width:640px}#timeline text{font-size:13px}
td{white-space:nowrap}td .error{white-space:normal;min-width:14em}
"""


def render(data: PageData) -> str:
    now = data.generated
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    failing = [j.name for j in data.jobs if j.last_result == "failure"]
    down = [r.name for r in data.stores if not r.status.reachable]
    summary = (f"{len(failing)} failing job(s): {', '.join(failing)}" if failing else
               "all jobs fine" if data.jobs else f"{len(data.stores)} store(s)")
    if down:
        summary += f"; unreachable: {', '.join(down)}"
    verifies = {j.store: j for j in sorted(data.jobs, key=lambda j: j.last_run or 0)
                if j.type == "verify"}  # the most recent verify job of each store
    body = "".join(_store_card(i, r, now, verifies.get(r.name))
                   for i, r in enumerate(data.stores))
    body += _jobs_table(data.jobs, now) + _timeline(data.jobs, data.history, now)
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{_e(data.title)}</title><style>{_CSS}</style></head><body>"
            f'<header><h1>{_e(data.title)}</h1><p id="summary">{_e(summary)}</p>'
            f"<p>as of {stamp} · casbackup {_e(__version__)}</p></header>"
            f"<main>{body}</main></body></html>\n")


def render_timed(data: PageData) -> tuple[str, float]:
    """The page and the seconds it took to render (for the benchmark and the log)."""
    t0 = time.perf_counter()
    page = render(data)
    return page, time.perf_counter() - t0
