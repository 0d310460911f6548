"""One way to show a partner's text (a file name above all) wherever the gateway writes it
for people or programs: acknowledgments (XML and CSV), ``.error.txt``, every CLI table and
story, status lines. A name is data: it must not end an XML document, forge a line, recolour
or retitle a terminal, hide a row with ``\\r`` or reverse the text around it."""

from __future__ import annotations

import difflib


def printable(text: object) -> str:
    """``text`` with control and other unprintable characters written as Python escapes
    (``\\x01``, ``\\x1b``, ``\\r``, ``\\n``, ``\\x7f``, ``\\u202e``): every character left is
    valid XML 1.0 and draws itself in a terminal, and the same name always reads the same."""
    value = str(text)
    if value.isprintable():  # the usual case: nothing to do
        return value
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in value)


def closest(word: str, names: list[str] | tuple[str, ...]) -> str | None:
    """The one of ``names`` that ``word`` was most likely meant to be, if any is close: the
    one "did you mean" of config keys, partner ids, mapping keys and CSV columns."""
    close = difflib.get_close_matches(word, list(names), n=1)
    return close[0] if close else None


def suggest(word: str, names: list[str] | tuple[str, ...]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``names``, else ``""``."""
    close = closest(word, names)
    return f"; did you mean {close!r}?" if close else ""
