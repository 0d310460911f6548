"""The whole story of one file, as ``aim-gateway show`` (text and JSON) and the web page's
file page tell it: receipt, applications and their licenses (in their state on the day asked),
the supersessions and cancellations it made, findings (also grouped by code with line ranges),
reprocessing links, failures in a row, and every event.

Pure reads in the SQL that SQLite and PostgreSQL share; the callers only render.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from itertools import islice

from gateway.config import Config, SftpSource
from gateway.findings import CODES
from gateway.ledger.db import Database
from gateway.ledger.events import EventRow
from gateway.ledger.licenses import LicenseChange
from gateway.ledger.reads.files import FailureRow, failure, mark
from gateway.ledger.reads.licenses import STATE_ON
from gateway.ledger.store import FileRow, Ledger
from gateway.model import Filer

MAX_RANGES = 12  # line ranges kept per finding code before "…"
# Findings in the order of the file: the file's own first (no line), then by line. Real
# columns, the same on both databases (SQLite's rowid has no PostgreSQL twin).
FINDING_ORDER = "COALESCE(source_line, 0), code, ref, line"


@dataclass(frozen=True, slots=True)
class ApplicationRow:
    seq: int
    ref: str | None
    status: str
    license_number: str | None
    reused: int
    lines: int
    valid_from: str | None  # of its license
    valid_through: str | None


@dataclass(frozen=True, slots=True)
class FindingRow:
    code: str
    severity: str
    ref: str | None
    line: int | None
    source_line: int | None
    field: str | None
    value: str | None
    message: str


@dataclass(frozen=True, slots=True)
class IssuedLicense:
    license_number: str
    ref: str
    importer: str
    issue_date: str
    valid_from: str
    valid_through: str
    state: str  # on the day asked (reads.licenses.STATE_ON)
    kind: str
    source: str
    replaces: str | None  # the license this one corrected


@dataclass(frozen=True, slots=True)
class Reprocessed:
    """A later file made from this one by a reprocess: who asked for it and why."""

    file_id: str
    status: str | None
    received_at: str
    at: str | None
    actor: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class FileStory:
    file: FileRow  # as recorded
    ack_to: str  # where the acknowledgment goes: "remote_ack_dir" or "outbox"
    filer: Filer | None  # the applicant recorded with the file's licenses (guide 2.3)
    failures: FailureRow | None  # failed in a row (quarantined when quarantined_at is set)
    licenses_issued: list[IssuedLicense]
    applications: list[ApplicationRow]  # the first ``limit``
    applications_total: int
    findings: list[FindingRow]  # the first ``limit``
    findings_total: int
    reprocessed_as: list[Reprocessed]
    events: list[EventRow]
    changes: list[LicenseChange]  # the licenses this file superseded or cancelled
    changes_name: str | None  # its changes report (outbox/changes/), when it made a change

    @property
    def shown(self) -> FileRow:
        """The file as listings show it (quarantined: says so)."""
        return mark(self.file, self.failures)

    @property
    def ace_files(self) -> list[str]:
        return self.file.ace_names.split(",") if self.file.ace_names else []

    @property
    def ack_delivered(self) -> bool:
        return self.file.state == "DONE"


def _count(db: Database, table: str, file_id: str) -> int:
    return int(db.execute(f"SELECT COUNT(*) FROM {table} WHERE file_id = ?",
                          (file_id,)).fetchone()[0])


def _reprocessed_as(db: Database, file_id: str) -> list[Reprocessed]:
    out = []
    for later, status, received_at in db.execute(
            "SELECT file_id, status, received_at FROM files WHERE reprocess_of = ? "
            "ORDER BY file_id", (file_id,)).fetchall():
        asked = db.execute("SELECT at, data FROM events WHERE file_id = ? AND "
                           "kind = 'admin.reprocess' ORDER BY id LIMIT 1", (later,)).fetchone()
        data = json.loads(asked[1]) if asked else {}
        out.append(Reprocessed(later, status, received_at, asked[0] if asked else None,
                               data.get("actor"), data.get("reason")))
    return out


def file_story(ledger: Ledger, config: Config, file_id: str, limit: int | None = None, *,
               today: date | None = None) -> FileStory | None:
    """The story of ``file_id`` (None if unknown), its applications and findings cut at
    ``limit`` (None: all of them), its licenses in their state on ``today`` (None: as
    stored)."""
    row = ledger.file(file_id)
    if row is None:
        return None
    db = ledger.db
    tail, cap = ("", ()) if limit is None else (" LIMIT ?", (limit,))
    apps = db.execute(
        "SELECT a.seq, a.ref, a.status, a.license_number, a.reused, a.lines, l.valid_from, "
        "l.valid_through FROM applications a LEFT JOIN licenses l "
        "ON l.license_number = a.license_number WHERE a.file_id = ? ORDER BY a.seq" + tail,
        (file_id, *cap)).fetchall()
    findings = db.execute(
        "SELECT code, severity, ref, line, source_line, field, value, message FROM findings "
        f"WHERE file_id = ? ORDER BY {FINDING_ORDER}" + tail, (file_id, *cap)).fetchall()
    issued = db.execute(
        "SELECT l.license_number, l.ref, l.importer, l.issue_date, l.valid_from, "
        f"l.valid_through, {STATE_ON}, l.kind, l.source, l.replaces FROM licenses l "
        "WHERE l.file_id = ? ORDER BY l.license_number",
        (today.isoformat() if today else "", file_id)).fetchall()
    changes_name = db.execute("SELECT changes_name FROM files WHERE file_id = ?",
                              (file_id,)).fetchone()[0]
    events = [EventRow(at, kind, json.loads(data)) for at, kind, data in db.execute(
        "SELECT at, kind, data FROM events WHERE file_id = ? ORDER BY id", (file_id,))]
    partner = next((p for p in config.partners if p.id == row.partner), None)
    ack_to = ("remote_ack_dir" if partner is not None and isinstance(partner.source, SftpSource)
              and partner.source.remote_ack_dir else "outbox")
    return FileStory(
        row, ack_to, ledger.filer(file_id), failure(ledger, file_id),
        [IssuedLicense(*r) for r in issued],
        [ApplicationRow(*a) for a in apps], _count(db, "applications", file_id),
        [FindingRow(*f) for f in findings], _count(db, "findings", file_id),
        _reprocessed_as(db, file_id), events, ledger.changes_of(file_id), changes_name)


# -- findings by code ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FindingGroup:
    code: str
    severity: str
    rule: str
    count: int
    lines: int  # distinct file lines
    ranges: list[str]
    more_ranges: bool
    refs: int
    message: str  # a first example (the least, so that the same file always shows the same)
    ref: str | None  # an application it was found in (likewise)

    @property
    def where(self) -> str:
        """The file lines, as ranges: ``3–5, 9, …``; "the file" for a finding on no line."""
        if not self.lines:
            return "the file"
        return ", ".join(self.ranges) + (", …" if self.more_ranges else "")

    @property
    def summary(self) -> str:
        if not self.lines:
            return f"{self.code} on the file"
        return f"{self.code} on {self.lines} line{'s' if self.lines != 1 else ''}: {self.where}"


def compress(numbers: Iterable[int]) -> Iterator[str]:
    """Sorted line numbers as ranges: 3, 4, 5, 9 → "3–5", "9" (duplicates ignored)."""
    start = end = None
    for n in numbers:
        if end is not None and n <= end:
            continue
        if end is not None and n == end + 1:
            end = n
            continue
        if start is not None:
            yield f"{start}–{end}" if end != start else str(start)
        start = end = n
    if start is not None:
        yield f"{start}–{end}" if end != start else str(start)


def finding_groups(ledger: Ledger, file_id: str) -> list[FindingGroup]:
    """Findings by code, errors first, with their file lines compressed to ranges.

    The ranges are read in line order and only the first few are kept, so a code found on a
    million lines costs one index walk, not a million strings.
    """
    db = ledger.db
    groups = []
    for code, severity, count, lines, refs, message, ref in db.execute(
            "SELECT code, MIN(severity), COUNT(*), COUNT(DISTINCT source_line), "
            "COUNT(DISTINCT ref), MIN(message), MIN(ref) FROM findings WHERE file_id = ? "
            "GROUP BY code", (file_id,)).fetchall():
        rule = CODES[code][1] if code in CODES else ""
        ordered = (r[0] for r in db.execute(
            "SELECT DISTINCT source_line FROM findings WHERE file_id = ? AND code = ? AND "
            "source_line IS NOT NULL ORDER BY source_line", (file_id, code)))
        ranges = list(islice(compress(ordered), MAX_RANGES + 1))
        groups.append(FindingGroup(code, severity, rule, count, lines, ranges[:MAX_RANGES],
                                   len(ranges) > MAX_RANGES, refs, message, ref))
    order = {"ERROR": 0, "WARNING": 1, "INFO": 2}
    return sorted(groups, key=lambda g: (order.get(g.severity, 3), -g.count, g.code))


# -- a file's applications, a page at a time ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApplicationPage:
    """One page of a file's applications (all, or the rejected ones), each with the error
    codes found under its ref, and how many there are in all."""

    rows: list[tuple[ApplicationRow, tuple[str, ...]]]
    total: int
    offset: int
    limit: int

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.limit if self.offset + self.limit < self.total else None

    @property
    def previous_offset(self) -> int | None:
        return max(0, self.offset - self.limit) if self.offset else None


def application_page(ledger: Ledger, file_id: str, offset: int = 0, limit: int | None = None,
                     rejected_only: bool = False) -> ApplicationPage:
    """Applications of ``file_id`` in file order from ``offset`` (``limit`` None: all), with
    their error codes: those found under the application's ref (an application is known by
    its ref; two applications sharing one share their codes)."""
    db = ledger.db
    where = "a.file_id = ?" + (" AND a.status = 'REJECTED'" if rejected_only else "")
    total = int(db.execute(f"SELECT COUNT(*) FROM applications a WHERE {where}",
                           (file_id,)).fetchone()[0])
    tail, cap = (" LIMIT ? OFFSET ?", (limit, offset)) if limit is not None else ("", ())
    apps = [ApplicationRow(*a) for a in db.execute(
        "SELECT a.seq, a.ref, a.status, a.license_number, a.reused, a.lines, l.valid_from, "
        "l.valid_through FROM applications a LEFT JOIN licenses l "
        f"ON l.license_number = a.license_number WHERE {where} ORDER BY a.seq" + tail,
        (file_id, *cap)).fetchall()]
    codes: dict[str, list[str]] = {}
    refs = sorted({a.ref for a in apps if a.ref is not None})
    for start in range(0, len(refs), 500):  # the page's refs only, in bounded chunks
        chunk = refs[start:start + 500]
        marks = ", ".join("?" for _ in chunk)
        for ref, code in db.execute(
                "SELECT DISTINCT ref, code FROM findings WHERE file_id = ? AND severity = "
                f"'ERROR' AND ref IN ({marks}) ORDER BY code", (file_id, *chunk)):
            codes.setdefault(ref, []).append(code)
    return ApplicationPage([(a, tuple(codes.get(a.ref or "", ()))) for a in apps], total,
                           offset, limit if limit is not None else total)
