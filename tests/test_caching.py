"""Caches keyed by a partner's values hold short values only (gateway/caching.py): a hostile
file's long values (a 64 KB attribute, a 10 MB CSV cell) are computed each time and never
kept, so that ``serve`` cannot be made to hold gigabytes by one partner's rejected
applications, while the few short values that repeat are still remembered."""

from __future__ import annotations

import contextlib
import functools
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.caching import LONGEST, short_cache
from gateway.licensing import decide
from gateway.outputs import ace, ack_xml
from gateway.parse import mapping
from gateway.validate import smelt_cast

ROOT = Path(__file__).resolve().parent.parent
LONG = "9" * (64 * 1024)


@functools.cache
def _hanse() -> mapping.Mapping:
    return mapping.load_mapping(ROOT / "mappings" / "hanse-metall.toml")


Case = tuple[Callable[..., Any], Callable[[str], tuple[Any, ...]]]
CASES: dict[str, Case] = {
    "ack product head": (ack_xml._product_head, lambda v: (v, v, v)),
    "license products head": (decide._product_head, lambda v: (v, "Group 1", v, v, v)),
    "54 record grounded": (smelt_cast._grounded, lambda v: (v, v, v)),
    "ACE line number": (ace._line_number, lambda v: (v,)),
    "ACE line context": (ace._line_context, lambda v: (v, v, None)),
    "CSV country": (mapping._country, lambda v: (_hanse(), v, True)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_long_value_is_computed_each_time_and_never_kept(name: str) -> None:
    fn, args = CASES[name]
    fn.cache_clear()
    fn(*args("12"))
    fn(*args("12"))
    assert fn.cache_info() == (1, 1)  # short: computed once, remembered
    for n in range(40):
        with contextlib.suppress(ValueError):  # what a long value gives is not the point
            fn(*args(f"{n}{LONG}"))
    assert fn.cache_info() == (41, 1)  # each long one computed, none kept


def test_long_values_leave_no_memory_behind() -> None:
    """300 acknowledgment entries with 64 KB values: about 58 MB if they were kept."""
    ack_xml._product_head.cache_clear()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(300):
            ack_xml._product_head(f"{n}{LONG}", f"{n}{LONG}", f"{n}{LONG}")
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1_000_000, f"{kept:,} bytes kept"


def test_the_limit_is_on_the_length_of_each_text() -> None:
    calls: list[tuple[object, ...]] = []

    @short_cache(8, longest=4)
    def seen(*args: object) -> int:
        calls.append(args)
        return len(calls)

    assert seen("abcd", 7) == seen("abcd", 7) == 1  # at the limit: cached
    assert seen("abcde", 7) == 2 and seen("abcde", 7) == 3  # over it: computed each time
    assert seen(b"x" * 100) == seen(b"x" * 100) == 4  # only texts count
    assert LONGEST >= 30  # a product group's name is remembered


def test_a_full_cache_starts_again() -> None:
    calls: list[object] = []

    @short_cache(3)
    def seen(value: object) -> int:
        calls.append(value)
        return len(calls)

    assert [seen(v) for v in "abcabc"] == [1, 2, 3, 1, 2, 3]  # three kept
    assert seen("d") == 4 and seen.cache_info().currsize == 1  # a fourth: emptied first
    assert seen("a") == 5 and seen("d") == 4
    seen.cache_clear()  # forgets the results and the count
    assert seen.cache_info() == (0, 0) and seen("d") == 6 and seen.cache_info() == (1, 1)
