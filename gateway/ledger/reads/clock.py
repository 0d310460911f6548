"""One clock for people: every time a person reads (CLI tables and stories, the web page,
summaries) is the gateway's own zone (``gateway.timezone``) with its abbreviation, written by
``person_time`` alone. Machines keep ISO 8601 with an offset (JSON, the ledger, partner files).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo


def parse_time(text: object) -> datetime | None:
    """An ISO time from the ledger (always with an offset there; UTC assumed if not)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def person_time(value: str | datetime | None, zone: tzinfo) -> str | None:
    """``2026-12-04 09:15 EST``: ``value`` (an ISO text or a datetime) on the gateway's wall
    clock, to the minute; None for no time, a text that is not a time as it came."""
    moment = value if isinstance(value, datetime) else parse_time(value)
    if moment is None:
        return value if isinstance(value, str) and value else None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


# -- spans people read: one coarse for "how long ago", one finer for "how long still" --------


def age(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def duration_text(seconds: float) -> str:
    """``45 s``, ``3 min 05 s``, ``1 h 02 min``: an estimate, to the second at most."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
