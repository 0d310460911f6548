"""Amounts as text: the fast path shared by the digest, the rules and the ACE writer."""

from __future__ import annotations


def split_plain(text: str) -> tuple[str, str] | None:
    """(whole, fraction) digits of a plain decimal such as ``+0024000.50``; None otherwise.

    Plain means ASCII digits with at most one point and an optional leading ``+``: what the XSD
    decimal type and canonical CSV allow for positive amounts. Anything else (a sign, an
    exponent) is left to ``Decimal``.
    """
    whole, _, fraction = text.strip().lstrip("+").partition(".")
    if not (whole or fraction) or not (whole.isascii() and fraction.isascii()):
        return None
    if (whole and not whole.isdigit()) or (fraction and not fraction.isdigit()):
        return None
    return whole, fraction
