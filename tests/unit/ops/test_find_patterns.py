"""find's glob patterns (issue #14 point 4, restic's semantics) against independent
references on random names, paths and patterns: a name pattern is ``fnmatch`` on the
name; a path pattern matches the path's trailing components (all of them when it starts
with ``/``), ``*``/``?`` never cross ``/``, ``**`` spans any number of components."""

from __future__ import annotations

import fnmatch
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casbackup.errors import UsageError
from casbackup.ops.find import compile_pattern

NAME = st.text("ab.", min_size=1, max_size=5)
GLOB = st.text("ab.*?", min_size=1, max_size=5)


def _ref(pattern: list[str], comps: list[str]) -> bool:
    """A recursive reference: fnmatch per component, '**' eating 0..n components."""
    @cache
    def m(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(comps)
        if pattern[i] == "**":
            return m(i + 1, j) or (j < len(comps) and m(i, j + 1))
        return j < len(comps) and fnmatch.fnmatchcase(comps[j], pattern[i]) and m(i + 1, j + 1)
    return m(0, 0)


@given(NAME, GLOB)
def test_a_pattern_without_slash_is_fnmatch_on_the_name(name: str, glob: str) -> None:
    p = compile_pattern(glob)
    assert not p.whole_path
    assert p.matches_path(f"/x/y/{name}") == fnmatch.fnmatchcase(name, glob)


@given(st.lists(NAME, min_size=1, max_size=5),
       st.lists(st.one_of(GLOB, st.just("**")), min_size=1, max_size=4), st.booleans())
def test_a_path_pattern_matches_like_the_reference(comps: list[str], pat: list[str],
                                                  anchored: bool) -> None:
    text = ("/" if anchored else "") + "/".join(pat)
    if "/" not in text:
        text = "**/" + text
    expected = _ref(pat if anchored else ["**", *pat], comps)
    assert compile_pattern(text).matches_path("/" + "/".join(comps)) == expected


@given(st.lists(NAME, min_size=1, max_size=5), st.data())
def test_a_pattern_made_from_a_path_matches_it(comps: list[str], data: st.DataObject) -> None:
    """Any suffix of a path, with characters replaced by '?' or runs by '*', matches."""
    k = data.draw(st.integers(1, len(comps)))
    pat = []
    for c in comps[-k:]:
        mode = data.draw(st.sampled_from(["keep", "?", "*", "**"]))
        pat.append({"keep": c, "?": "?" * len(c), "*": c[:1] + "*", "**": "**"}[mode])
    path = "/" + "/".join(comps)
    assert compile_pattern("/".join(pat)).matches_path(path)
    if k == len(comps):
        assert compile_pattern("/" + "/".join(pat)).matches_path(path)


def test_classes_escapes_and_case() -> None:
    assert compile_pattern("[ab]*.c").matches_path("/s/b1.c")
    assert not compile_pattern("[!ab]*.c").matches_path("/s/b1.c")
    assert compile_pattern("[!ab]*.c").matches_path("/s/c1.c")
    assert compile_pattern(r"\*.txt").matches_path("/s/*.txt")
    assert not compile_pattern(r"\*.txt").matches_path("/s/a.txt")
    assert compile_pattern("[x").matches_path("/[x")  # an unclosed class is literal
    assert not compile_pattern("*.C").matches_path("/a/b.c")
    assert compile_pattern("*.C", ignore_case=True).matches_path("/a/b.c")
    assert compile_pattern("/home/*/work").matches_path("/home/me/work")
    assert not compile_pattern("/home/*/work").matches_path("/srv/home/me/work")
    assert compile_pattern("home/*/work").matches_path("/srv/home/me/work")
    assert not compile_pattern("home/*").matches_path("/home/me/work")  # * is one level
    assert compile_pattern("home/**").matches_path("/home/me/work")


@pytest.mark.parametrize("bad", ["", "/", "//"])
def test_a_pattern_naming_nothing_is_a_usage_error(bad: str) -> None:
    with pytest.raises(UsageError):
        compile_pattern(bad)
