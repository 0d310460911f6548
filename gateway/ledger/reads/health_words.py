"""A partner's health in words, the same in every view: the CLI's ``status``, the web
dashboard and (its state) the partner's status files. ``health`` decides the state; this
module only says it, with what it rests on, for an admin who has not read the code.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.ledger.reads.clock import age, parse_time
from gateway.ledger.reads.health import STALE_GRACE, PartnerHealth


def _polls(n: int) -> str:
    return f"{n} poll" if n == 1 else f"{n} polls"


def label(h: PartnerHealth, now: datetime) -> str:
    """The state as a table cell: alarms in capitals, with their count or age."""
    if h.state in ("failing", "backing off", "error"):
        return f"{h.state.upper()} ({_polls(h.failures)})"
    if h.state == "silent" and h.silent_hours is not None:
        return f"SILENT ({h.silent_hours:g} h)"
    last_poll = parse_time(h.last_poll)
    if h.state == "not polled" and last_poll is not None:
        return f"NOT POLLED ({age(now - last_poll)})"
    return h.state.upper() if h.alarm else h.state


def _stopped(h: PartnerHealth, now: datetime) -> str:
    """Polls that stopped, in words (empty when they did not)."""
    last_poll = parse_time(h.last_poll)
    if last_poll is None or h.overdue is None or now <= h.overdue or h.poll_due is None:
        return ""
    # Polls that stopped are no partner's fault and raise no alert: the views are where an
    # admin sees them.
    # The schedule's period: between the two polls it expected (a cron's ticks), else from
    # the last poll to the next.
    period = h.overdue - STALE_GRACE - h.poll_due
    if period <= timedelta(0):
        period = h.poll_due - last_poll
    return (f"not polled for {age(now - last_poll)} (expected every {age(period)}): is "
            "`aim-gateway serve` running?")


def _state_words(h: PartnerHealth, now: datetime) -> str:
    failed = f"{h.failures} failed poll(s) in a row: {h.last_error}"
    retry = parse_time(h.retry_at)
    next_try = f"; next try in {age(retry - now)}" if retry is not None else ""
    stopped = _stopped(h, now)
    if h.state == "not yet served":
        return ("not yet served: the running service does not poll this partner (added to "
                "the configuration after the service loaded it): reload it with SIGHUP")
    if h.state == "failing":
        return f"{failed} (alert raised){next_try}" + (f"; {stopped}" if stopped else "")
    if h.state == "backing off":
        return f"{failed}{next_try}" + (f"; {stopped}" if stopped else "")
    if h.state == "error":
        return failed + (f"; {stopped}" if stopped else "")
    if h.state == "silent":
        return (f"no file for {h.silent_hours:g} h; one is expected every "
                f"{h.partner.expected_cadence_hours:g} h")
    if h.state == "disabled":
        return "enabled = false in the configuration"
    if h.paused is not None:
        return f"{h.paused.words} (not polled until resumed)"
    if h.state == "never polled":
        return "no poll recorded yet (is `aim-gateway serve` running?)"
    waiting = f"; {h.backlog} file(s) waiting in the inbox" if h.backlog else ""
    last_poll = parse_time(h.last_poll)
    if last_poll is None:
        return waiting.lstrip("; ")
    if h.state == "not polled" and stopped:
        return stopped + waiting
    return f"last poll {age(now - last_poll)} ago{waiting}"


def describe(h: PartnerHealth, now: datetime) -> str:
    """One sentence saying why the partner is in its state."""
    words = _state_words(h, now)
    if h.in_progress:  # working now: that first, not how long ago the last poll ended
        words = "; ".join([*(f"processing {w.name}: {w.text()}" for w in h.in_progress),
                           *([words] if words else [])])
    if not h.quarantined:
        return words
    return (f"{words}; " if words else "") + (
        f"{h.quarantined} file(s) quarantined after failing 3 times in a row "
        "(aim-gateway release FILE_ID after the fix)")
