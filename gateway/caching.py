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
from functools import lru_cache, wraps
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])

# Longer than every value worth remembering (an HTS number has 10 digits, a date 10
# characters, a country 2, a product group's name about 30), shorter than any flood.
LONGEST = 64


def short_cache(maxsize: int, longest: int = LONGEST) -> Callable[[F], F]:
    """``lru_cache(maxsize)`` for a function of positional arguments, except that a call with
    a ``str`` argument longer than ``longest`` characters is computed and not cached."""

    def wrap(fn: F) -> F:
        cached = lru_cache(maxsize=maxsize)(fn)

        @wraps(fn)
        def call(*args: Any) -> Any:
            for arg in args:
                if arg.__class__ is str and len(arg) > longest:
                    return fn(*args)
            return cached(*args)

        call.cache_info = cached.cache_info  # type: ignore[attr-defined]
        call.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
        return cast(F, call)

    return wrap
