"""One way to show a partner's text (a file name above all) wherever the gateway writes it
for people or programs: acknowledgments (XML and CSV), ``.error.txt``, every CLI table and
story, status lines. A name is data: it must not end an XML document, forge a line, recolour
or retitle a terminal, hide a row with ``\\r`` or reverse the text around it."""

from __future__ import annotations


def printable(text: object) -> str:
    """``text`` with control and other unprintable characters written as Python escapes
    (``\\x01``, ``\\x1b``, ``\\r``, ``\\n``, ``\\x7f``, ``\\u202e``): every character left is
    valid XML 1.0 and draws itself in a terminal, and the same name always reads the same."""
    value = str(text)
    if value.isprintable():  # the usual case: nothing to do
        return value
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in value)
