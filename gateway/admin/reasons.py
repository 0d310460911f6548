"""The one cleaning of the reason an admin gives for an action (command line and web page
alike): on one line, required, at most ``MAX_REASON`` characters. The audit trail records
it as the "why" of the action."""

from __future__ import annotations

from gateway.errors import FatalError

MAX_REASON = 500  # characters of a reason kept (the web form says so too)


class ReasonRequired(FatalError):
    """The action was not tried: its reason is missing or too long (the web page answers
    400 for this one, 409 for what the file's or partner's state refuses)."""


def clean_reason(reason: str | None, what: str) -> str:
    """``reason`` on one line; ReasonRequired when there is none or it is too long."""
    text = " ".join((reason or "").split())
    if not text:
        raise ReasonRequired(f"a reason is required: it is recorded with the {what}")
    if len(text) > MAX_REASON:
        raise ReasonRequired(f"keep the reason under {MAX_REASON} characters")
    return text


def is_text(value: object) -> bool:
    """False for a string that cannot be written as UTF-8: a command-line argument whose bytes
    are not UTF-8 reaches Python as lone surrogates (PEP 383), which no ledger, log or page
    can store. Anything not a string (no reason given) is left to ``clean_reason``."""
    if not isinstance(value, str):
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
