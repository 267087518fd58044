"""A store's config rewritten at the same URL against the config and key objects the
cache remembers for that URL (store/cachedir.py ``KnownStore``), with real processes on a
real sshd: the store deleted and made anew by another ``init``, and a hostile store that
also lists the old store's key object beside its own. A remembered open must open what a
fresh read (``--no-cache``) opens -- never the old store id silently.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import Sshd
from tests.helpers import cli_env, json_lines, make_store, run_cli


def _store_id(url: str, cache: Path | None) -> tuple[str, bytes]:
    """The store id ``cat config`` opens at URL with the cache CACHE (None: no cache), and
    its stderr."""
    opt = ["--no-cache"] if cache is None else ["--cache-dir", str(cache)]
    r = run_cli("cat", "config", "--store", url, *opt, env=cli_env())
    assert r.returncode == 0, r.stderr
    [obj] = json_lines(r.stdout, "object")
    return obj["object"]["store_id"], r.stderr


def _keys(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (path / "keys").iterdir()}


def test_a_store_made_anew_at_the_url_is_read_afresh(sshd_server: Sshd, tmp_path: Path,
                                                     ) -> None:
    path, cache = tmp_path / "remote", tmp_path / "cache"
    url = sshd_server.url(path)
    make_store(url).close()
    first, _ = _store_id(url, cache)
    assert _store_id(url, cache) == (first, b"")  # remembered: the same store, silently
    old_keys = _keys(path)

    shutil.rmtree(path)
    make_store(url).close()  # another init at the same URL, same password
    second, _ = _store_id(url, cache)
    assert second != first and second == _store_id(url, None)[0]

    # hostile (or a careless copy of an old keys/): the old store's key object is listed
    # beside the new one, so the remembered config's key is still there
    for name, data in old_keys.items():
        (path / "keys" / name).write_bytes(data)
    fresh, warned = _store_id(url, tmp_path / "fresh-cache")
    assert fresh == second and b"another store" in warned  # a fresh read skips it, warning
    for _ in range(2):
        assert _store_id(url, cache)[0] == second
    # and the cache that remembers the old store id on this URL (a machine that last
    # opened it before the new init) does not silently reopen the old store either
    old_cache = tmp_path / "old-cache"
    shutil.rmtree(path)
    make_store(url).close()
    third_id, _ = _store_id(url, old_cache)
    third_keys = _keys(path)
    shutil.rmtree(path)
    make_store(url).close()
    for name, data in third_keys.items():
        (path / "keys" / name).write_bytes(data)
    assert _store_id(url, old_cache)[0] == _store_id(url, None)[0]
    assert _store_id(url, old_cache)[0] != third_id
