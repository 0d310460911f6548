"""Files as admins and partners see them: one filter (``FileQuery``) for every listing (the
CLI's ``files``, the web page's lists, the partner's status files), and the quarantine marks.

Pure reads in the SQL that SQLite and PostgreSQL share; the callers only render.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, tzinfo

from gateway.findings import CODES
from gateway.ledger.db import Database, like
from gateway.ledger.store import QUARANTINED_IDS, FileRow, Ledger

# What a listing can ask for: a file status, or IN PROGRESS (no status yet), FAILED (rejected
# with an F-code: the file went to failed/) or QUARANTINED (failed 3 times in a row).
# FAILED means that one thing everywhere (issue 14): `files --status FAILED`, the web page's
# filter, its red rows and "failed today", the partner status file's open errors. A file
# whose every application was rejected is REJECTED (it was read; its ack says why per
# application), not FAILED.
FILE_STATUSES = ("ACCEPTED", "PARTIAL", "REJECTED", "DUPLICATE", "IN PROGRESS", "FAILED",
                 "QUARANTINED")
IN_PROGRESS = "IN PROGRESS"
FAILED_SQL = "error IS NOT NULL"  # an F-code: the one test of FAILED (is_failed in Python)


def day_start_utc(zone: tzinfo, day: date) -> str:
    """Midnight of ``day`` in the gateway's zone, as the ledger writes times (UTC ISO)."""
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    return start.isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class FileQuery:
    """Which files, newest first: a partner's, by status, received since a day (in the
    gateway's zone), with ``text`` in the name or id, still open (an F-code not since
    reprocessed)."""

    partner: str = ""
    status: str = ""  # one of FILE_STATUSES, any case
    since: date | None = None
    text: str = ""
    unresolved: bool = False
    limit: int = 50

    def where(self, zone: tzinfo) -> tuple[str, tuple[object, ...]]:
        clauses, params = ["1 = 1"], []
        if self.partner:
            clauses.append("partner = ?")
            params.append(self.partner)
        wanted = self.status.upper()
        if wanted == "FAILED":
            clauses.append(FAILED_SQL)
        elif wanted == IN_PROGRESS:
            clauses.append("status IS NULL")
        elif wanted == "QUARANTINED":
            clauses.append(f"file_id IN ({QUARANTINED_IDS})")
        elif wanted:
            clauses.append("status = ?")
            params.append(wanted)
        if self.since is not None:
            # received_at is UTC ISO 8601 text: it sorts as time.
            clauses.append("received_at >= ?")
            params.append(day_start_utc(zone, self.since))
        if self.text:
            clauses.append("(LOWER(remote_name) LIKE ? ESCAPE '\\' OR file_id LIKE ? "
                           "ESCAPE '\\')")
            params += [like(self.text)] * 2
        if self.unresolved:  # a failed reprocess is the open one then: the chain's last file
            clauses.append("NOT EXISTS (SELECT 1 FROM files AS later "
                           "WHERE later.reprocess_of = files.file_id)")
        return " AND ".join(clauses), tuple(params)


def select_files(ledger: Ledger, query: FileQuery, zone: tzinfo) -> list[FileRow]:
    """The files as recorded (what a partner is shown: never the gateway's own failures)."""
    where, params = query.where(zone)
    return ledger.files(where, params, limit=query.limit)


def count_files(ledger: Ledger, query: FileQuery, zone: tzinfo) -> int:
    """How many files ``query`` matches, its limit aside (a listing says "50 of N")."""
    where, params = query.where(zone)
    return int(ledger.db.execute(f"SELECT COUNT(*) FROM files WHERE {where}",
                                 params).fetchone()[0])


def list_files(ledger: Ledger, query: FileQuery, zone: tzinfo) -> list[FileRow]:
    """The files as admins list them: a quarantined one reads QUARANTINED (``mark``)."""
    return mark_quarantined(ledger.db, select_files(ledger, query, zone))


def display_status(row: FileRow) -> str:
    return row.status or IN_PROGRESS


def is_failed(row: FileRow) -> bool:
    """FAILED: rejected by an F-code (as FAILED_SQL)."""
    return row.error is not None


def failure_reason(db: Database, row: FileRow) -> str:
    """Why a file failed, in one line: its F-code, else its most frequent error codes."""
    if row.error:
        return row.error
    codes = db.execute(
        "SELECT code, COUNT(*) FROM findings WHERE file_id = ? AND severity = 'ERROR' "
        "GROUP BY code ORDER BY COUNT(*) DESC, code LIMIT 6", (row.file_id,)).fetchall()
    if not codes:
        return "every application rejected"
    return "every application rejected: " + ", ".join(
        f"{code} ×{count} ({CODES[code][1] if code in CODES else 'unknown code'})"
        for code, count in codes)


# -- quarantine: files that failed in a row (gateway.service.quarantine writes them) ---------


@dataclass(frozen=True, slots=True)
class FailureRow:
    file_id: str
    partner: str
    failures: int
    last_error: str | None
    last_failed_at: str | None
    quarantined_at: str | None


_FAILURE_COLUMNS = "file_id, partner, failures, last_error, last_failed_at, quarantined_at"


def failure(ledger: Ledger, file_id: str) -> FailureRow | None:
    row = ledger.db.execute(f"SELECT {_FAILURE_COLUMNS} FROM file_failures WHERE file_id = ?",
                            (file_id,)).fetchone()
    return FailureRow(*row) if row else None


def quarantined_count(db: Database, partner: str | None = None) -> int:
    """Files set aside (of one partner, or of all)."""
    where, params = ("AND partner = ?", (partner,)) if partner else ("", ())
    return int(db.execute("SELECT COUNT(*) FROM file_failures WHERE quarantined_at IS NOT "
                          f"NULL {where}", params).fetchone()[0])


def quarantined_ids(db: Database, file_ids: list[str]) -> dict[str, FailureRow]:
    """The quarantined files among ``file_ids`` (a listing marks them)."""
    found: dict[str, FailureRow] = {}
    for start in range(0, len(file_ids), 500):
        chunk = file_ids[start:start + 500]
        marks = ", ".join("?" for _ in chunk)
        for r in db.execute(f"SELECT {_FAILURE_COLUMNS} FROM file_failures WHERE "
                            f"quarantined_at IS NOT NULL AND file_id IN ({marks})",
                            tuple(chunk)):
            found[r[0]] = FailureRow(*r)
    return found


def mark(row: FileRow, held: FailureRow | None) -> FileRow:
    """A quarantined file as admins see it: status QUARANTINED, its note the failure that
    set it aside."""
    if held is None or held.quarantined_at is None:
        return row
    return replace(row, status="QUARANTINED",
                   error=f"quarantined after {held.failures} failures: {held.last_error}")


def mark_quarantined(db: Database, rows: list[FileRow]) -> list[FileRow]:
    held = quarantined_ids(db, [r.file_id for r in rows])
    return [mark(r, held.get(r.file_id)) for r in rows]


def unfinished_count(db: Database) -> int:
    """Files received but not through every step yet (finished at the next poll or start)."""
    return int(db.execute("SELECT COUNT(*) FROM files WHERE state != 'DONE'").fetchone()[0])
