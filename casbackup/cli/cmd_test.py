"""``casbackup test``: a self-test of the whole setup, or (the seed's habit) ``verify``.

* With ``--config`` (or a configuration found at ``$CASBACKUP_CONFIG`` /
  ``~/.config/casbackup/casbackup.yaml``) and no ``--store``: check the configuration,
  then for every store resolve its password, open it (reachable?) and run a quick verify
  (structure, plus ``--read-data-subset``, 1% of the packs by default).
* With ``--store`` and no ``--config``: exactly ``casbackup verify``.

Invariants: read only, like verify. Every store is tested even after one failed; the exit
code is the first failure's (2 invalid configuration, 10 no store, 11 wrong password,
13 damaged), 0 when everything passed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from ..errors import CasError, IntegrityError, UsageError
from ..ops.status import display_url
from ..ops.verify import verify
from ..store import open_store
from .cmd_config import ConfigOpt, load_checked
from .cmd_verify import verify_cmd
from .common import JsonOpt, StoreArgs, echo, store_options
from .output import emit

QUICK_SUBSET = "1%"


@store_options()
def test_cmd(
    config: ConfigOpt = None,
    read_data: Annotated[
        bool, typer.Option("--read-data", help="Read and re-hash every blob.")
    ] = False,
    read_data_subset: Annotated[
        str | None, typer.Option(
            "--read-data-subset",
            help=f"Read only packs N/M or P% of them (with a config: {QUICK_SUBSET}).")
    ] = None,  # fmt: skip
    json_out: JsonOpt = False,
    *,
    so: StoreArgs,
) -> None:
    """Self-test: the configuration, every store reachable, a quick verify of each.
    With --store (and no configuration): the same as `casbackup verify`."""
    from ..daemon.config import find_config_path, resolve_password
    from ..daemon.jobs import cache_settings as configured_cache

    if so.store and not config:
        verify_cmd(read_data, read_data_subset, json_out=json_out, **so._asdict())
        return
    if not config and not find_config_path(None).exists():
        raise UsageError("nothing to test: give --config PATH (self-test) or --store URL (verify)")
    path, cfg = load_checked(config, paths_exist=True)
    subset = None if read_data else (read_data_subset or QUICK_SUBSET)
    results: dict[str, dict[str, Any]] = {}
    first: CasError | None = None
    if not json_out:
        echo(f"config {path}: valid ({len(cfg.stores)} stores, {len(cfg.jobs)} jobs)")
    for name, sc in cfg.stores.items():
        r: dict[str, Any] = {"url": display_url(sc.url), "reachable": False, "ok": False}
        try:
            pw = resolve_password(sc.password) if sc.password is not None else None
            with open_store(sc.url, _fixed(pw) if pw is not None else None,
                            cache=configured_cache(sc)) as st:
                r["reachable"] = True
                rep = verify(st, read_data=read_data, subset=subset)
            r.update(ok=rep.ok, problems=rep.problems, notes=rep.notes,
                     snapshots=rep.snapshots, packs_checked=rep.packs_checked,
                     packs_read=rep.packs_read)  # fmt: skip
            if not rep.ok:
                raise IntegrityError(f"store {name}: {len(rep.problems)} problem(s)")
        except CasError as e:
            r["error"] = str(e)
            first = first or e
        results[name] = r
        if not json_out:
            _render(name, r)
    if json_out:
        emit("summary", {"config": str(path), "ok": first is None, "stores": results})
    if first is not None:
        failed = [n for n, r in results.items() if "error" in r]
        err = CasError(f"self-test failed for {len(failed)} of {len(results)} store(s): "
                       f"{', '.join(failed)}")  # fmt: skip
        err.exit_code = first.exit_code
        raise err
    if not json_out:
        echo("self-test passed")


def _fixed(password: str) -> Callable[[], str]:
    return lambda: password


def _render(name: str, r: dict[str, Any]) -> None:
    if not r["reachable"]:
        echo(f"store {name} ({r['url']}): UNREACHABLE: {r['error']}")
        return
    echo(f"store {name} ({r['url']}): reachable; {r.get('snapshots', 0)} snapshots, "
         f"{r.get('packs_checked', 0)} packs checked, {r.get('packs_read', 0)} read")
    for n in r.get("notes", []):
        echo(f"  note: {n}")
    for p in r.get("problems", []):
        echo(f"  error: {p}")
    if "error" in r and not r.get("problems"):
        echo(f"  error: {r['error']}")


def register(app: typer.Typer) -> None:
    app.command("test")(test_cmd)
