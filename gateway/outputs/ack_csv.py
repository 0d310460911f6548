"""CSV acknowledgments (guide section 7): one row per input row, plus file-level rows.

Columns: row, application_ref, line_no, status, license_number, valid_from, valid_through,
codes, messages. The first data row is the file's own (row empty): its status is the file
status, its codes the file-level findings, and its last message names the file it answers
(``file <name>``). Cells that a spreadsheet would run as a formula
are neutralised with a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from gateway.findings import Finding, Severity
from gateway.licensing.results import AppOutcome, FileSummary
from gateway.model import Application, AppStatus
from gateway.storage import SpooledOutput
from gateway.textsafe import printable

COLUMNS = ("row", "application_ref", "line_no", "status", "license_number", "valid_from",
           "valid_through", "codes", "messages")
FILE_PART = "file "
# Before the file part: the earlier ack of another name a reprocess replaces (issue 14, 7).
REPLACES_PART = "replaces "
# The message of a row of a rejected application that has no error of its own.
REJECTED_WITH = "Rejected with its application"
# OWASP CSV injection: these leading characters make a spreadsheet evaluate the cell.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _message(f: Finding) -> str:
    where = f" (line {f.line})" if f.line is not None and f.source_line is None else ""
    value = f" [value: {f.value}]" if f.value is not None and f.code[0] == "A" else ""
    return f"{f.code} {f.message}{where}{value}"


def _file_part(file_name: str) -> str:
    """The file row's last message: the file this ack answers (its own name may carry a hash
    or a file id), its control characters escaped (``textsafe.printable``). A ``|`` in the
    name is written ``\\x7c``, so the part never splits."""
    return FILE_PART + printable(file_name).replace("|", "\\x7c")


def file_row(summary: FileSummary, v1_1: bool = False) -> list[str]:
    """The file's own row; ``v1_1``: an application used what contract 1.1 added (a
    cancellation, a correction, a license kind or number)."""
    codes = " ".join(f.code for f in summary.findings)
    # A file that uses none of contract 1.1 reads as under contract 1.0.
    cancelled = f", {summary.cancelled} cancelled" if v1_1 or summary.cancelled else ""
    messages = " | ".join(_message(f) for f in summary.findings) or (
        f"{summary.applications} application(s): {summary.licensed} licensed, "
        f"{summary.not_required} not required, {summary.rejected} rejected{cancelled}")
    if summary.replaces:
        messages = f"{messages} | {REPLACES_PART}{printable(summary.replaces)}"
    messages = f"{messages} | {_file_part(summary.file_name)}"
    return [neutralise(v) for v in ("", "", "", summary.status.value, "", "", "", codes,
                                    messages)]


def application_rows(o: AppOutcome, source_line: int | None = None) -> list[list[str]]:
    """One row per product line (= input row); app-level findings go on the first row. An
    application without lines (a cancellation, contract 1.1) gets the one row it was sent
    in, ``source_line``, with line_no empty."""
    lines = [(r.line.source_line, r.line.line_no or "") for r in o.lines] or \
        [(source_line, "")]
    by_row: dict[int | None, list[Finding]] = {}
    if o.findings:
        rows = [row for row, _ in lines]
        for f in o.findings:
            key = f.source_line if f.source_line in rows else rows[0]
            by_row.setdefault(key, []).append(f)
    # The cells all rows of the application share are neutralised once, not once per row, and
    # a row without findings skips the joins: 4.2 -> 3.7 us per one-line application, 10.1 -> 6.3
    # at four lines (the benchmark generator's outcomes, issue 15).
    dated = o.status is AppStatus.LICENSED
    shared = [neutralise(v) for v in (
        o.ref or "", o.status.value, o.license_number or "",
        # A cancellation names the license it cancelled, which is valid no more: no dates.
        o.valid_from.isoformat() if o.valid_from and dated else "",
        o.valid_through.isoformat() if o.valid_through and dated else "")]
    ref = shared[0]
    reason = _reason(o, by_row)
    reason_cell = neutralise(reason)
    out = []
    for row, line_no in lines:
        found = by_row.get(row)
        if found is None:
            codes, text = "", reason_cell
        else:
            messages = [_message(f) for f in found]
            if reason and not any(f.severity is Severity.ERROR for f in found):
                # A row of a rejected application with no error of its own carries the reason
                # (issue 14, 9b) in its messages only: its codes stay the findings of the row,
                # so an application's findings are counted (and bounded) once, not once per
                # row.
                messages.append(reason)
            codes = neutralise(" ".join(f.code for f in found))
            text = neutralise(" | ".join(messages))
        out.append(["" if row is None else neutralise(row), ref, neutralise(line_no),
                    *shared[1:], codes, text])
    return out


def _reason(o: AppOutcome, by_row: dict[int | None, list[Finding]]) -> str:
    """What rejected ``o`` (its first error, on the row it is on); "" unless REJECTED."""
    if o.status is not AppStatus.REJECTED:
        return ""
    for row, found in by_row.items():
        for f in found:
            if f.severity is Severity.ERROR:
                at = f" on row {row}" if row is not None else ""
                return f"{REJECTED_WITH}{at}: {_message(f)}"
    return ""


def render_csv_ack(summary: FileSummary,
                   outcomes: Iterable[tuple[AppOutcome, Application | None]]) -> bytes:
    """The whole ack in memory (a file rejected whole, tests): each outcome with its
    application."""
    decided = list(outcomes)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=summary.ack_delimiter, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerow(file_row(summary, any(a is not None and a.contract_1_1 for _, a in decided)))
    for o, app in decided:
        writer.writerows(application_rows(o, app.source_line if app is not None else None))
    return buffer.getvalue().encode("utf-8")


class AckCsvWriter:
    """Stream rows to a spool; ``finish`` writes header, file row and spool atomically."""

    def __init__(self, path: Path, delimiter: str = ",") -> None:
        self.path = path
        self.delimiter = delimiter  # the partner's (FileSummary.ack_delimiter)
        self._out = SpooledOutput(path, newline="")
        self._writer = csv.writer(self._out.body, delimiter=delimiter, lineterminator="\r\n")
        self._v1_1 = False  # an application using what contract 1.1 added was added

    def add(self, outcome: AppOutcome, app: Application | None = None) -> None:
        """``outcome`` of ``app``, whose row is that of an application without lines."""
        self._v1_1 = self._v1_1 or (app is not None and app.contract_1_1)
        self._writer.writerows(application_rows(
            outcome, app.source_line if app is not None else None))

    def finish(self, summary: FileSummary) -> None:
        head = io.StringIO()
        writer = csv.writer(head, delimiter=self.delimiter, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        writer.writerow(file_row(summary, self._v1_1))
        self._out.publish(head.getvalue())

    def discard(self) -> None:
        self._out.discard()


_COPY_CHUNK = 1 << 20
_HEAD_LIMIT = 1 << 20  # the column row and the file row: names, codes and messages
_HEAD_CHUNK = 64 * 1024


def duplicate_csv_ack(original: Path, file_name: str, received_at: str,
                      processed_at: datetime, notice: Finding) -> bytes:
    """``duplicate_csv_ack_chunks`` in one piece (``check``: the ack goes to stdout)."""
    return b"".join(duplicate_csv_ack_chunks(original, file_name, received_at, processed_at,
                                             notice))


def duplicate_csv_ack_chunks(original: Path, file_name: str, received_at: str,
                             processed_at: datetime, notice: Finding) -> Iterator[bytes]:
    """The original CSV acknowledgment again, its file row marked DUPLICATE with F006.

    Only the file row (the second) changes: it is rewritten and the rest copied in chunks,
    so that an ack of any size costs a chunk of memory (issue 10, item 3).
    """
    del received_at, processed_at  # the CSV form has no columns for them
    with open(original, "rb") as fh:  # our own output, never partner input
        head, rows, delimiter = _first_rows(fh, original)
        stored = _csv_bytes(rows, delimiter)
        if not head.startswith(stored):
            raise ValueError(f"{original}: its first rows are not as this gateway writes them")
        file_level = rows[1]
        file_level[3] = "DUPLICATE"
        file_level[7] = " ".join(filter(None, [notice.code, file_level[7]]))
        before, _, last = file_level[8].rpartition(" | ")
        kept = before if before and last.startswith(FILE_PART) else file_level[8]
        file_level[8] = " | ".join(filter(None, [_message(notice), kept,
                                                 _file_part(file_name)]))
        yield _csv_bytes(rows, delimiter)
        yield head[len(stored):]
        while chunk := fh.read(_COPY_CHUNK):
            yield chunk


def _first_rows(fh: BinaryIO, original: Path) -> tuple[bytes, list[list[str]], str]:
    """The first bytes of the ack, read until they hold the column row and the file row, and
    its delimiter (the character after ``row``: a partner's ``ack_delimiter`` or ",")."""
    head = b""
    while len(head) < _HEAD_LIMIT:
        more = fh.read(_HEAD_CHUNK)
        head += more
        delimiter = head[len(COLUMNS[0]):len(COLUMNS[0]) + 1].decode("latin-1") or ","
        try:
            rows = list(itertools.islice(csv.reader(io.StringIO(
                head.decode("utf-8", errors="replace"), newline=""), delimiter=delimiter), 3))
        except csv.Error:  # cut inside a quoted cell: read on
            rows = []
        if len(rows) == 3 or (not more and len(rows) == 2):  # a third row: the second is whole
            return head, rows[:2], delimiter
        if not more:
            break
    raise ValueError(f"{original}: no file row in the first {len(head)} bytes")


def _csv_bytes(rows: list[list[str]], delimiter: str) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")
