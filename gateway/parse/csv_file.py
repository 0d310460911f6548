"""CSV submissions (guide section 4): one row per product line, grouped by application_ref.

Rows are read as a stream. Consecutive rows with the same ref form one application; a ref that
comes back after other refs is joined to its earlier rows by ``validate`` (rare, so the
common case stays one pass). Every application and line carries its row number (the header is
row 1, as a spreadsheet shows it).

Contract 1.1 adds the optional columns ``action``, ``license_number``, ``corrects`` and
``license_kind`` (guide 3, 5.1a, 5.1b). A row whose ``action`` is ``CANCEL`` (in any case) is a
cancellation: its own unit, an ``Application`` with ``cancel`` set and no lines, never joined
with other rows (so its ref counts once more: A105 with an application of that ref).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Protocol

from gateway.errors import RejectedSubmission
from gateway.findings import Finding, finding
from gateway.model import (
    ACTION_CANCEL,
    APPLICATION_FIELDS,
    LINE_FIELDS,
    MAX_LINES,
    Application,
    ProductLine,
    line_number,
)
from gateway.parse.encoding import find_bad_byte
from gateway.textsafe import closest

APP_COLUMNS = tuple(attr for attr, _ in APPLICATION_FIELDS)
LINE_COLUMNS = tuple(attr for attr, _ in LINE_FIELDS)
# The columns of contract 1.0, in the guide's order.
ALL_COLUMNS = ("submission_id", "application_ref", *APP_COLUMNS, "line_no", *LINE_COLUMNS)
# Contract 1.1: optional, a file without them is read as before.
LIFECYCLE_COLUMNS = ("action", "license_number", "corrects", "license_kind")
KNOWN_COLUMNS = (*ALL_COLUMNS, *LIFECYCLE_COLUMNS)
OPTIONAL_COLUMNS = frozenset({"entry_number", "description", *LIFECYCLE_COLUMNS})
REQUIRED_COLUMNS = tuple(c for c in ALL_COLUMNS if c not in OPTIONAL_COLUMNS)
# The application fields of a row (column, model attribute): every row of one application
# must agree on them (A103).
ROW_FIELDS = (*((c, c) for c in APP_COLUMNS), ("license_kind", "kind"),
              ("corrects", "corrects"), ("license_number", "license_number"))
# The cells a cancellation row may fill (guide 5.1b); any other filled is A101.
CANCEL_COLUMNS = frozenset({"submission_id", "application_ref", "license_number", "action"})

# Formats of guide section 2 that the XSD checks for XML (A101 there too): CSV cells get the same.
REF_FORMAT = re.compile(r"[A-Za-z0-9._/-]{1,35}")
TEXT_LIMITS = {"importer": 100, "exporter": 100, "manufacturer": 100, "corrects": 35}
LICENSE_REFERENCE_LIMIT = 35  # a license named by a cancellation (the XSD's LicenseReference)
DESCRIPTION_LIMIT = 200
SUBMISSION_ID_LIMIT = 35

FIELD_SIZE_LIMIT = 64 * 1024  # bytes in one cell: a longer cell is a broken or hostile file
MAX_COLUMNS = 200


@dataclass(frozen=True)
class CsvDialect:
    """How a partner's CSV is written (the canonical one, or one set by a mapping)."""

    delimiter: str = ","
    encoding: str = "utf-8"  # "utf-8" accepts a BOM too


@dataclass(slots=True)
class CsvApplication:
    """One application as read from consecutive rows, with what only CSV can get wrong."""

    app: Application
    rows: list[int]  # row number of each line, in order
    findings: list[Finding] = field(default_factory=list)  # A103 (rows disagree)
    header_values: tuple[str | None, ...] = ()  # the ROW_FIELDS of its first row
    extra_lines: int = 0  # rows past MAX_LINES + 1: counted, not kept (see ``closed``)


# Delimiters a partner's export often uses instead of ours, as the hint names them.
OTHER_DELIMITERS = {";": "`;`", "\t": "tab", "|": "`|`"}


def other_delimiter(names: list[str], delimiter: str) -> str | None:
    """The delimiter (of ``OTHER_DELIMITERS``) that splits a header row read with
    ``delimiter`` into known columns, if any: a canonical CSV written with another one."""
    text = delimiter.join(names)
    for other in OTHER_DELIMITERS:
        if other != delimiter and other in text and any(
                n.strip().strip('"').lower() in KNOWN_COLUMNS for n in text.split(other)):
            return other
    return None


def delimiter_hint(names: list[str], delimiter: str) -> str:
    """The start of an F005 message for a header written with another delimiter, else ""."""
    other = other_delimiter(names, delimiter)
    if other is None:
        return ""
    return (f"The file looks like CSV with {OTHER_DELIMITERS[other]} between the columns, "
            f"not {delimiter!r}: add a mapping for this partner (mappings/, csv.delimiter) "
            "or send the columns separated by commas. ")


def _rows(path: Path, dialect: CsvDialect) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) of every non-blank row; F001/F009 on unreadable input."""
    encoding = "utf-8-sig" if dialect.encoding.lower().replace("_", "-") in (
        "utf-8", "utf8", "utf-8-sig") else dialect.encoding
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise RejectedSubmission(finding("F009", f"Unknown encoding {encoding!r}.")) from None
    raw = open(path, "rb")  # noqa: SIM115 (closed below; text wrapper owns it)
    text = io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")
    reader = csv.reader(text, delimiter=dialect.delimiter, strict=True)
    number = 0
    previous_limit = csv.field_size_limit(FIELD_SIZE_LIMIT)
    try:
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except UnicodeError:  # UnicodeDecodeError, or e.g. UTF-16 without its BOM
                # The text wrapper decodes ahead of the reader: find the row itself.
                row, reason = _undecodable_row(path, encoding, dialect.delimiter)
                bad = find_bad_byte(path, encoding)
                where = f" at {bad.where()}" if bad is not None else ""
                raise RejectedSubmission(finding(
                    "F009", f"Row {row} is not valid {dialect.encoding}: {reason}{where}. "
                    f"Save the file as {dialect.encoding}.", source_line=row)) from None
            except csv.Error as err:
                raise RejectedSubmission(finding(
                    "F001", f"The CSV cannot be read at row {number + 1}: {err}.",
                    source_line=number + 1)) from None
            number += 1
            # One join per row, then C-level searches: cheaper than a generator over the
            # cells for each check (a row is blank when its cells joined are whitespace).
            joined = "".join(cells)
            if "\x00" in joined:
                raise RejectedSubmission(finding(
                    "F001", f"Row {number} holds a NUL byte: this is not a text CSV file.",
                    source_line=number))
            if len(cells) > MAX_COLUMNS:
                raise RejectedSubmission(finding(
                    "F001", f"Row {number} has {len(cells)} cells; at most {MAX_COLUMNS} are "
                    "read.", source_line=number))
            if not joined or joined.isspace():
                continue
            yield number, cells
    finally:
        csv.field_size_limit(previous_limit)
        text.close()


def _undecodable_row(path: Path, encoding: str, delimiter: str) -> tuple[int, str]:
    """The row (header = 1) holding the first byte sequence not valid in ``encoding``.

    Decodes line by line (slow, but only on this error path) so that the failure falls in the
    row being read. The encodings a CSV can be read in are ASCII-compatible, so no character
    spans a line feed byte.
    """
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")

    def lines() -> Iterator[str]:
        with open(path, "rb") as fh:
            # The last line is decoded as final: a sequence cut short at the end of the file
            # belongs to that row, not to one after it.
            raw = fh.readline()
            while raw:
                following = fh.readline()
                yield decoder.decode(raw, final=not following)
                raw = following

    number = 0
    try:
        for _ in csv.reader(lines(), delimiter=delimiter):
            number += 1
    except UnicodeError as err:
        return number + 1, str(getattr(err, "reason", err))
    except csv.Error:
        pass
    return number + 1, "invalid byte sequence"


class RowMapping(Protocol):
    """What a partner's CSV mapping provides (``gateway.parse.mapping.CsvMapping``)."""

    # Read-only (properties), as a frozen dataclass provides them.
    @property
    def columns(self) -> dict[str, str]: ...

    @property
    def constants(self) -> dict[str, str]: ...

    @property
    def dialect(self) -> CsvDialect: ...

    def apply_application(self, app: Application) -> None: ...

    def apply_line(self, line: ProductLine) -> None: ...


class CsvSubmission:
    """A CSV submission, canonical or through a mapping. ``submission_id`` is known after the
    first row. ``file_name`` fills a ``{file_name}`` constant (an ERP export without an id)."""

    def __init__(self, path: Path, mapping: RowMapping | None = None,
                 file_name: str | None = None) -> None:
        self.path = path
        self.mapping = mapping
        self.dialect = mapping.dialect if mapping else CsvDialect()
        # partner column name -> canonical column (a mapping's renames); identity by default
        self.columns = mapping.columns if mapping else {}
        self.constants = {k: v.replace("{file_name}", file_name or path.name)
                          for k, v in (mapping.constants if mapping else {}).items()}
        self.submission_id: str | None = None
        self.application_count = 0
        self._misshapen_refs: set[str] = set()  # refs whose application fields were reported
        self.lifecycle = False  # the header (or a constant) has a contract 1.1 column

    def header(self, cells: list[str]) -> dict[str, int]:
        """Canonical column -> index; F005 for unknown, repeated or missing columns."""
        index: dict[str, int] = {}
        unknown = []
        for i, name in enumerate(cells):
            key = name.strip().lstrip("\ufeff")
            key = self.columns.get(key, key).lower()
            if key not in KNOWN_COLUMNS:
                close = closest(key, KNOWN_COLUMNS)
                unknown.append(name.strip() + (f" (did you mean {close!r}?)" if close else ""))
            elif key in index:
                raise RejectedSubmission(finding("F005", f"Column {key!r} appears twice in "
                                                 "the header row.", source_line=1, value=key))
            else:
                index[key] = i
        missing = [c for c in REQUIRED_COLUMNS if c not in index and c not in self.constants]
        self.lifecycle = any(c in index or c in self.constants for c in LIFECYCLE_COLUMNS)
        problems = []
        if missing:
            problems.append("missing column(s): " + ", ".join(missing))
        if unknown:
            problems.append("unknown column(s): " + ", ".join(unknown[:20]))
        if problems:
            hint = delimiter_hint(cells, self.dialect.delimiter)
            raise RejectedSubmission(finding(
                "F005", hint + "The header row does not match the CSV format: "
                + "; ".join(problems)
                + ". The columns are: " + ", ".join(ALL_COLUMNS) + "; optional (contract "
                "1.1): " + ", ".join(LIFECYCLE_COLUMNS) + ".", source_line=1,
                field="header"))
        return index

    def applications(self, close: bool = True) -> Iterator[CsvApplication]:
        """Runs of consecutive rows with one ref, in file order; ``close`` False leaves the
        line bound to the caller (``closed``), which joins the runs of a ref first."""
        done = closed if close else _as_is
        rows = _rows(self.path, self.dialect)
        first = next(rows, None)
        if first is None:
            raise RejectedSubmission(finding("F005", "The CSV has no header row."))
        index = self.header(first[1])
        width = len(first[1])
        app_idx = tuple(index.get(c) for c, _ in ROW_FIELDS)
        line_idx = tuple(index.get(c) for c in LINE_COLUMNS)
        # The partner's own cells a cancellation row may not fill (before any constant).
        not_cancel = tuple((c, i) for c, i in index.items() if c not in CANCEL_COLUMNS)
        constants = self.constants
        if constants:
            # A constant fills a column the file does not have, or a blank cell of one it has.
            # It goes in an extra cell past the partner's own, so rows stay plain lists.
            extra = {c: width + n for n, c in enumerate(constants)}
            app_idx = tuple(i if i is not None or c not in extra else extra[c]
                            for (c, _), i in zip(ROW_FIELDS, app_idx, strict=True))
            line_idx = tuple(i if i is not None or c not in extra else extra[c]
                             for c, i in zip(LINE_COLUMNS, line_idx, strict=True))
            index = {**extra, **index}
        fill = list(constants.values())
        # Each row's cells are stripped once, in one list (a blank cell is None), with one
        # None after them: a column the file lacks reads that one, so that the application
        # and line fields come out of one itemgetter call each (a tuple in C, the line's in
        # LINE_COLUMNS order) instead of a call per cell.
        absent = width + len(fill)
        app_values = itemgetter(*(absent if i is None else i for i in app_idx))
        line_values = itemgetter(*(absent if i is None else i for i in line_idx))
        ref_idx = index["application_ref"]
        sub_idx = index["submission_id"]
        line_no_idx = index["line_no"]
        action_idx = index.get("action")
        number_idx = index.get("license_number")
        mapping = self.mapping
        current: CsvApplication | None = None
        for number, cells in rows:
            if len(cells) != width:
                raise RejectedSubmission(finding(
                    "F001", f"Row {number} has {len(cells)} cells; the header has {width}.",
                    source_line=number))
            own = cells
            if fill:
                cells = cells + fill
                for column, i in index.items():
                    if column in constants and not cells[i].strip():
                        cells[i] = constants[column]
            values = [cell.strip() or None for cell in cells]
            values.append(None)
            submission_id = values[sub_idx]
            if self.submission_id is None:
                if submission_id is None:
                    raise RejectedSubmission(finding(
                        "F005", "submission_id is blank: give the same id on every row.",
                        source_line=number, field="submission_id"))
                if len(submission_id) > SUBMISSION_ID_LIMIT:
                    raise RejectedSubmission(finding(
                        "F005", f"submission_id has {len(submission_id)} characters; at most "
                        f"{SUBMISSION_ID_LIMIT} are allowed.", source_line=number,
                        field="submission_id", value=submission_id))
                self.submission_id = submission_id
            elif submission_id != self.submission_id:
                raise RejectedSubmission(finding(
                    "F005", f"Row {number} has submission_id {submission_id!r}, not "
                    f"{self.submission_id!r}: one file is one submission.",
                    source_line=number, field="submission_id", value=submission_id))
            ref = values[ref_idx]
            action = values[action_idx] if action_idx is not None else None
            if action is not None and action.upper() == ACTION_CANCEL:
                if current is not None:
                    self.application_count += 1
                    yield done(current)
                    current = None
                self.application_count += 1
                number_cell = values[number_idx] if number_idx is not None else None
                yield self._cancellation(ref, number_cell, own, number, not_cancel)
                continue
            header_values: tuple[str | None, ...] = app_values(values)
            hts, description, largest, second, cast, quantity, value = line_values(values)
            line = ProductLine(values[line_no_idx], hts, description, largest, second, cast,
                               quantity, value, number)
            if mapping is not None:
                mapping.apply_line(line)
            line_findings = _line_format(ref, line, number)
            if action is not None:
                line_findings.append(finding(
                    "A101", f"action must be empty (an application) or {ACTION_CANCEL} (a "
                    "cancellation).", ref=ref, line=line_number(line.line_no), field="action",
                    value=action, source_line=number))
            if current is not None and ref is not None and ref == current.app.ref:
                if len(current.app.lines) > MAX_LINES:
                    current.extra_lines += 1  # an application of a million rows: bounded memory
                    continue
                current.app.lines.append(line)
                current.rows.append(number)
                if header_values != current.header_values:  # one C comparison when they agree
                    compare(current, header_values, number)
                current.findings.extend(line_findings)
                continue
            if current is not None:
                self.application_count += 1
                yield done(current)
            # In ROW_FIELDS order (one constructor call, not a setattr per field).
            (entry_type, entry_number, importer, exporter, manufacturer, origin,
             export_country, export_date, import_date, port, kind, corrects,
             license_number) = header_values
            app = Application(ref, entry_type, entry_number, importer, exporter, manufacturer,
                              origin, export_country, export_date, import_date, port, [line],
                              number, kind, corrects, license_number)
            if mapping is not None:
                mapping.apply_application(app)
            current = CsvApplication(app, [number], self._application_format(app, number),
                                     header_values)
            current.findings.extend(line_findings)
        if current is not None:
            self.application_count += 1
            yield done(current)
        if self.application_count == 0:
            raise RejectedSubmission(finding("F008", "The CSV has a header but no data row: "
                                             "nothing to license."))

    def _cancellation(self, ref: str | None, number: str | None, own: list[str], row: int,
                      not_cancel: tuple[tuple[str, int], ...]) -> CsvApplication:
        """A cancellation row (guide 5.1b) as its own unit: A101 for each of the partner's
        cells it fills besides its ref and license number (a mapping's constants are not
        the partner's: they fill application rows only)."""
        app = Application(ref=ref, source_line=row, cancel=True, license_number=number)
        found = self._application_format(app, row)
        if number is not None and len(number) > LICENSE_REFERENCE_LIMIT:
            found.append(finding(
                "A101", f"license_number has {len(number)} characters; a license number "
                f"named by a cancellation has at most {LICENSE_REFERENCE_LIMIT}.", ref=ref,
                field="license_number", value=number, source_line=row))
        for column, i in not_cancel:
            if i < len(own) and own[i].strip():
                found.append(finding(
                    "A101", f"A cancellation row ({ACTION_CANCEL}) holds application_ref and "
                    f"license_number only: leave {column} empty, or send the application on "
                    "a row of its own.", ref=ref, field=column, value=own[i].strip(),
                    source_line=row))
        return CsvApplication(app, [row], found)

    def _application_format(self, app: Application, row: int) -> list[Finding]:
        """A101 for a ref or text field that breaks its format (guide 2.1), once per ref: the
        rows of a ref that comes back later are compared (A103), not checked again. A
        cancellation, a unit of its own that is compared with nothing, is always checked."""
        if app.ref in self._misshapen_refs and not app.cancel:
            return []
        out = []
        if app.ref is not None and not REF_FORMAT.fullmatch(app.ref):
            out.append(finding(
                "A101", "application_ref must be 1 to 35 characters, each a letter, a digit or "
                "one of . _ / -.", ref=app.ref, field="ref", value=app.ref, source_line=row))
        for name, limit in TEXT_LIMITS.items():
            value = getattr(app, name)
            if value is not None and len(value) > limit:
                out.append(finding(
                    "A101", f"{name} has {len(value)} characters; at most {limit} are allowed.",
                    ref=app.ref, field=name, value=value, source_line=row))
        if out and app.ref is not None and not app.cancel:
            self._misshapen_refs.add(app.ref)
        return out


def _as_is(current: CsvApplication) -> CsvApplication:
    return current


def join(first: CsvApplication, later: CsvApplication) -> None:
    """Add the rows of ``later``, a run of the same ref after other refs, to ``first``: kept
    and compared like consecutive rows up to MAX_LINES + 1 lines, counted after that (with
    ``closed``: one A190 with the true count). Findings come with the rows kept only, so a
    ref that comes back a million times costs no more memory than one of 1,000 rows."""
    kept: set[int] = set()
    for line in later.app.lines:
        if len(first.app.lines) > MAX_LINES:
            first.extra_lines += 1
            continue
        row = line.source_line or 0
        first.app.lines.append(line)
        first.rows.append(row)
        kept.add(row)
        compare(first, later.header_values, row)
    first.extra_lines += later.extra_lines
    first.findings.extend(f for f in later.findings
                          if f.source_line is None or f.source_line in kept)


def closed(current: CsvApplication) -> CsvApplication:
    """An application whose rows went past MAX_LINES + 1 keeps its first MAX_LINES lines and
    gets one A190 with the true count (the rules then report no second one)."""
    if current.extra_lines:
        total = len(current.app.lines) + current.extra_lines
        del current.app.lines[MAX_LINES:]
        del current.rows[MAX_LINES:]
        current.findings.insert(0, finding(
            "A190", f"An application holds at most {MAX_LINES} product lines; this one has "
            f"{total:,}: split it. Only the first {MAX_LINES} were read.",
            ref=current.app.ref, field="line_no", value=str(total),
            source_line=current.rows[0] if current.rows else None))
    return current


def _line_format(ref: str | None, line: ProductLine, row: int) -> list[Finding]:
    """A101 for a description longer than the guide's 200 characters."""
    text = line.description
    if text is None or len(text) <= DESCRIPTION_LIMIT:
        return []
    no = line.line_no
    return [finding("A101", f"description has {len(text)} characters; at most "
                    f"{DESCRIPTION_LIMIT} are allowed.", ref=ref,
                    line=line_number(no),
                    field="description", value=text, source_line=row)]


def compare(current: CsvApplication, values: tuple[str | None, ...], row: int) -> None:
    """A103 for each application field of ``row`` that differs from the application's."""
    for (column, _), mine, theirs in zip(ROW_FIELDS, current.header_values, values,
                                         strict=True):
        if mine != theirs:
            current.findings.append(finding(
                "A103", f"Row {row} has {column} {_shown(theirs)} but the application's first "
                f"row has {_shown(mine)}: all rows of one application must agree (or use another "
                "application_ref).", ref=current.app.ref, field=column, value=theirs,
                source_line=row))


def _shown(cell: str | None) -> str:
    """A cell in a message: quoted, or ``empty`` (never Python's ``None``)."""
    return "empty" if cell is None else repr(cell)
