"""Caches keyed by a partner's values: the one place that keeps them bounded in bytes, not
only in entries.

A file repeats a few values (HTS numbers, countries, dates, line numbers) application after
application, and remembering what was computed from them saves real time. But the key is
the partner's text, and a rejected application's text can be as long as the file allows
(a 64 KB attribute, a 10 MB CSV cell): an ``lru_cache`` of 8,192 entries would then hold
gigabytes for the life of ``serve``, one partner's file taking the memory of all. So a call
with a text longer than ``longest`` is computed and not remembered: such a text is not one
of the few values that repeat.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, NamedTuple, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])

# Longer than every value worth remembering (an HTS number has 10 digits, a date 10
# characters, a country 2, a product group's name about 30), shorter than any flood.
LONGEST = 64


class CacheInfo(NamedTuple):
    misses: int  # calls computed (a long text's each time)
    currsize: int  # results kept


def short_cache(maxsize: int, longest: int = LONGEST) -> Callable[[F], F]:
    """A cache of up to ``maxsize`` results of a function of positional, hashable arguments,
    except that a call with a ``str`` argument longer than ``longest`` characters is computed
    and not remembered. Full, it starts again empty: its values are the few that repeat, which
    come back at once.

    Why not ``lru_cache`` behind the length test: a hit here is one dict look-up in the
    wrapper, where the test of every argument and the second call cost about as much as the
    work saved (380,000 calls a 100,000-line file, issue 15); the length is tested on a miss
    only, before the result is kept."""

    def wrap(fn: F) -> F:
        cache: dict[tuple[Any, ...], Any] = {}
        misses = 0

        @wraps(fn)
        def call(*args: Any) -> Any:
            try:
                return cache[args]
            except KeyError:
                pass
            nonlocal misses
            misses += 1
            value = fn(*args)
            for arg in args:
                if arg.__class__ is str and len(arg) > longest:
                    return value
            if len(cache) >= maxsize:
                cache.clear()
            cache[args] = value
            return value

        def cache_info() -> CacheInfo:
            return CacheInfo(misses, len(cache))

        def cache_clear() -> None:
            nonlocal misses
            cache.clear()
            misses = 0

        call.cache_info = cache_info  # type: ignore[attr-defined]
        call.cache_clear = cache_clear  # type: ignore[attr-defined]
        return cast(F, call)

    return wrap
