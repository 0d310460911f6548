"""How every listing leaves the gateway: the one table renderer (aligned, cut to the
terminal), the one CSV writer (the CLI's ``--csv`` and the web page's CSV links, the same
columns), and the "N of M" line of a listing cut at its limit.

Pure functions from rows to text; the CLI prints them, the web page sends them.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import astuple, fields

from gateway.ledger.reads.licenses import LICENSE_COLUMNS, LicenseRow
from gateway.ledger.reads.story import ApplicationRow, FindingRow
from gateway.ledger.store import FILE_COLUMNS, FileRow
from gateway.outputs.ack_csv import neutralise
from gateway.textsafe import printable

MAX_CELL = 40  # characters a table cell shows at most, whatever the terminal's width
MIN_CELL = 4  # a column cut to fit the terminal keeps this much ("AB…" still says something)
GAP = "  "


def _cell(value: object) -> str:
    if value is None:
        return "-"
    # A partner's file name is shown escaped: \r, \n or an escape sequence in it must not
    # hide a row, forge one, or recolour the terminal.
    return printable(value)


def cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, its end replaced by "…" when cut."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def terminal_width() -> int:
    """The terminal's columns ($COLUMNS first); 0 (no limit) when the output is no terminal,
    so that ``files | grep`` sees whole cells."""
    return shutil.get_terminal_size(fallback=(0, 0)).columns


def _fit(natural: list[int], width: int) -> list[int]:
    """Column widths summing (with the gaps) to at most ``width``: the widest columns give
    way first, down to MIN_CELL, then to 1 if the terminal is that narrow; the first column
    (the id a reader copies into the next command) gives way last. ``width`` 0: no limit."""
    widths = list(natural)
    room = width - len(GAP) * (len(widths) - 1)
    for floor in (MIN_CELL, 1):
        while width and sum(widths) > room:
            rest = range(1, len(widths)) if len(widths) > 1 else range(1)
            widest = max(rest, key=lambda i: widths[i])
            if widths[widest] <= floor:
                if widths[0] > floor and rest != range(1):
                    widths[0] -= 1
                    continue
                break
            widths[widest] -= 1
    return widths


def table(headers: Sequence[str], rows: Iterable[Sequence[object]],
          max_cell: int = MAX_CELL, width: int | None = None) -> str:
    """Aligned columns under a header, every line within ``width`` (default: the terminal's):
    cells longer than ``max_cell`` (the last column excepted) or than their column's share of
    the width are cut with "…"."""
    last = len(headers) - 1
    cells = [[_cell(c) if i == last else cut(_cell(c), max_cell) for i, c in enumerate(row)]
             for row in rows]
    natural = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    widths = _fit(natural, terminal_width() if width is None else width)

    def line(values: Sequence[str]) -> str:
        return GAP.join(cut(v, w).ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    return "\n".join([line(headers), GAP.join("-" * w for w in widths),
                      *(line(r) for r in cells)])


def more_line(shown: int, total: int, noun: str) -> str:
    """``2 of 7 licenses shown: --limit N shows more``; "" when nothing was left out."""
    if total <= shown:
        return ""
    return f"{shown:,} of {total:,} {noun} shown: --limit N shows more"


# -- CSV: one writer, one set of columns per listing ------------------------------------------

FINDING_COLUMNS = tuple(f.name for f in fields(FindingRow))
APPLICATION_COLUMNS = (*(f.name for f in fields(ApplicationRow)), "codes")


def csv_text(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """RFC 4180 CSV with a header row; cells a spreadsheet would run as a formula are
    neutralised (names and refs come from partners)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(headers)
    for row in rows:
        writer.writerow([neutralise(v) for v in row])
    return out.getvalue()


def files_csv(rows: Iterable[FileRow]) -> str:
    return csv_text(FILE_COLUMNS, (astuple(r) for r in rows))


def licenses_csv(rows: Iterable[LicenseRow]) -> str:
    return csv_text(LICENSE_COLUMNS, (astuple(r) for r in rows))


def findings_csv(rows: Iterable[FindingRow]) -> str:
    return csv_text(FINDING_COLUMNS, (astuple(r) for r in rows))


def applications_csv(rows: Iterable[tuple[ApplicationRow, Sequence[str]]]) -> str:
    """Each application with the error codes that rejected it (space-separated)."""
    return csv_text(APPLICATION_COLUMNS, ((*astuple(a), " ".join(codes)) for a, codes in rows))

