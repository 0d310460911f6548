"""Amounts as text: the fast path shared by the digest, the rules and the ACE writer."""

from __future__ import annotations

from decimal import Decimal


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


def canonical_amount(text: str | None) -> str | None:
    """An amount written one way only ("024000.50" and "24000.500" are "24000.5").

    Hot path (twice per product line): a plain amount starting with 1-9 needs only its
    trailing zeros cut.
    """
    if not text:
        return text
    if text[0] in "123456789" and text.isascii():
        whole, dot, fraction = text.partition(".")
        if whole.isdigit() and (not dot or fraction.isdigit()):
            fraction = fraction.rstrip("0")
            return f"{whole}.{fraction}" if fraction else whole
    plain = split_plain(text)
    if plain is not None:
        whole = plain[0].lstrip("0") or "0"
        fraction = plain[1].rstrip("0")
        return f"{whole}.{fraction}" if fraction else whole
    if not text.isascii():  # Decimal reads other scripts' digits: not an amount here
        return text
    try:
        value = Decimal(text)
        # A huge exponent ("1E+999999") would overflow, or spell out a million digits.
        if value.is_finite() and -100 < value.adjusted() < 100:
            return format(value.normalize(), "f")
    except ArithmeticError:  # InvalidOperation, Overflow
        pass
    return text


def decimal_places(text: str) -> int:
    """Decimal places that carry precision ('61200.00' has 0, '1.2345' has 4)."""
    _, dot, fraction = text.partition(".")
    if fraction.isdigit() and fraction.isascii():
        return len(fraction.rstrip("0"))
    if not dot and text.isascii() and text.lstrip("+-").isdigit():
        return 0
    try:
        _, digits, exponent = Decimal(text).as_tuple()  # e.g. exponent form
    except ArithmeticError:  # not a number
        return 0
    if not isinstance(exponent, int):
        return 0
    # Counted exactly: normalize() would round to the context's 28 digits (1.000…0001 has
    # 31 decimals, not 0) or overflow. Trailing zeros of the coefficient carry no precision.
    zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + zeros)) if zeros < len(digits) else 0
