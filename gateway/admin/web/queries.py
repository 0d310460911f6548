"""What the admin pages show, read from the ledger: partner health, files, one file's story,
licenses. Pure reads on a read-only connection; the page modules only render the results.
The SQL is the subset SQLite and PostgreSQL share (the ledger may be either).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import islice

from gateway.admin.queries import PartnerStatus, day_start_utc, partner_status
from gateway.config import Config, PartnerConfig
from gateway.findings import CODES
from gateway.ledger.db import Database, like
from gateway.ledger.store import FILE_COLUMNS, QUARANTINED_IDS, FileRow, Ledger
from gateway.service.quarantine import mark_quarantined

FILE_STATUSES = ("ACCEPTED", "PARTIAL", "REJECTED", "DUPLICATE", "IN PROGRESS", "FAILED",
                 "QUARANTINED")
MAX_ROWS = 200        # rows on a list page; the page says when there are more
MAX_RANGES = 12       # line ranges shown per finding code before "…"
# A partner not polled for this many poll intervals (or past its next cron time by as much)
# is "not polled": the scheduler is not running or its job is stuck.
MISSED_POLLS = 3


def now_utc() -> datetime:
    return datetime.now(UTC)


def local_today(config: Config, now: datetime | None = None) -> date:
    return (now or now_utc()).astimezone(config.gateway.zone).date()


def parse_time(text: object) -> datetime | None:
    """An ISO time from the ledger (always with an offset there; UTC assumed if not)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _files(db: Database, where: str, params: Iterable[object],
           limit: int = MAX_ROWS) -> list[FileRow]:
    rows = db.execute(f"SELECT {', '.join(FILE_COLUMNS)} FROM files WHERE {where} "
                      "ORDER BY received_at DESC, file_id DESC LIMIT ?",
                      (*params, limit)).fetchall()
    return [FileRow(*r) for r in rows]


# "Failed" on the dashboard: rejected whole, by an F-code (the file went to failed/) or with
# every application rejected; either way nothing of it was licensed.
FAILED_SQL = "(status = 'REJECTED' OR error IS NOT NULL)"
# PostgreSQL cannot SUM a boolean; both count a CASE.
FAILED_COUNT = f"SUM(CASE WHEN {FAILED_SQL} THEN 1 ELSE 0 END)"


def is_failed(row: FileRow) -> bool:
    return row.status == "REJECTED" or row.error is not None


def display_status(row: FileRow) -> str:
    return row.status or "IN PROGRESS"


# --- partner health ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PartnerHealth:
    """One partner on the dashboard: its state as ``aim-gateway status`` computes it
    (gateway.admin.queries, one definition for both), in words, with today's counts."""

    partner: PartnerConfig
    status: PartnerStatus
    verdict: str  # PartnerStatus.state, or "not polled" when an ok partner's polls stopped
    detail: str
    last_file: FileRow | None
    files_today: int
    failed_today: int

    @property
    def healthy(self) -> bool:
        return self.verdict in ("ok", "disabled")


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def expected_poll(config: Config, partner: PartnerConfig, last_poll: datetime) -> datetime:
    """When the scheduler should poll next after ``last_poll`` (interval or cron)."""
    if partner.schedule:
        from apscheduler.triggers.cron import CronTrigger

        zone = partner.schedule_timezone or config.gateway.timezone
        trigger = CronTrigger.from_crontab(partner.schedule, timezone=zone)
        following: datetime | None = trigger.get_next_fire_time(None, last_poll)
        if following is not None:
            return following.astimezone(UTC)
    interval = partner.interval_seconds or config.gateway.poll_interval_seconds
    return last_poll + timedelta(seconds=interval)


def partner_health(config: Config, ledger: Ledger, today_start: str,
                   now: datetime) -> list[PartnerHealth]:
    db = ledger.db
    out = []
    for partner in config.partners:
        status = partner_status(ledger, partner, now)
        last = _files(db, "partner = ?", (partner.id,), limit=1)
        today = db.execute(
            f"SELECT COUNT(*), COALESCE({FAILED_COUNT}, 0) FROM files "
            "WHERE partner = ? AND received_at >= ?", (partner.id, today_start)).fetchone()
        verdict, detail = describe(config, partner, status, now)
        if status.quarantined:  # a file set aside waits for an admin: needs attention
            verdict = "quarantined" if verdict == "ok" else verdict
            detail = (f"{detail}; " if detail else "") + (
                f"{status.quarantined} file(s) quarantined after failing 3 times in a row "
                "(aim-gateway release FILE_ID after the fix)")
        out.append(PartnerHealth(partner, status, verdict, detail, last[0] if last else None,
                                 int(today[0]), int(today[1])))
    return out


def describe(config: Config, partner: PartnerConfig, status: PartnerStatus,
             now: datetime) -> tuple[str, str]:
    """The verdict and one sentence saying why, for an admin who has not read the code."""
    failed = f"{status.failures} failed poll(s) in a row: {status.last_error}"
    retry = parse_time(status.retry_at)
    if status.state == "backing off" and retry is not None:
        return status.state, f"{failed}; next try in {_age(retry - now)}"
    if status.state == "failing":
        return status.state, f"{failed} (alert raised)"
    if status.state == "error":
        return status.state, failed
    if status.state == "silent":
        quiet = (f"no file for {status.silent_hours:g} h" if status.silent_hours is not None
                 else "no file")
        return status.state, f"{quiet}; one is expected every " \
                             f"{status.expected_cadence_hours:g} h"
    if status.state == "disabled":
        return status.state, "enabled = false in the configuration"
    if status.state == "never polled":
        return status.state, "no poll recorded yet (is `aim-gateway serve` running?)"
    waiting = f"; {status.backlog} file(s) waiting in the inbox" if status.backlog else ""
    last_poll = parse_time(status.last_poll)
    if last_poll is None:
        return status.state, waiting.lstrip("; ")
    # Polls that stopped (no `serve`, a stuck job) are no partner's fault and raise no
    # alert: the page is where an admin sees them.
    due = expected_poll(config, partner, last_poll)
    if status.state == "ok" and now > due + (MISSED_POLLS - 1) * (due - last_poll):
        return "not polled", (f"no poll for {_age(now - last_poll)} (expected every "
                              f"{_age(due - last_poll)}): is `aim-gateway serve` running?"
                              f"{waiting}")
    return status.state, f"last poll {_age(now - last_poll)} ago{waiting}"


# --- files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileFilter:
    partner: str = ""
    status: str = ""
    since: date | None = None
    text: str = ""

    def where(self, config: Config) -> tuple[str, list[object]]:
        clauses: list[str] = ["1 = 1"]
        params: list[object] = []
        if self.partner:
            clauses.append("partner = ?")
            params.append(self.partner)
        if self.status == "IN PROGRESS":
            clauses.append("status IS NULL")
        elif self.status == "FAILED":  # as `aim-gateway files --status FAILED`: an F-code
            clauses.append("error IS NOT NULL")
        elif self.status == "QUARANTINED":  # failed 3 times in a row, set aside
            clauses.append(f"file_id IN ({QUARANTINED_IDS})")
        elif self.status:
            clauses.append("status = ?")
            params.append(self.status)
        if self.since is not None:
            clauses.append("received_at >= ?")
            params.append(day_start_utc(config, self.since))
        if self.text:
            clauses.append("(LOWER(remote_name) LIKE ? ESCAPE '\\' OR file_id LIKE ? "
                           "ESCAPE '\\')")
            params += [like(self.text)] * 2
        return " AND ".join(clauses), params


def list_files(config: Config, db: Database, filt: FileFilter) -> list[FileRow]:
    where, params = filt.where(config)
    return mark_quarantined(db, _files(db, where, params, limit=MAX_ROWS + 1))


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


# --- one file's story ------------------------------------------------------------------------


@dataclass
class FindingGroup:
    code: str
    severity: str
    rule: str
    count: int = 0
    lines: int = 0           # distinct file lines
    ranges: list[str] = field(default_factory=list)
    more_ranges: bool = False
    refs: int = 0
    message: str = ""

    @property
    def summary(self) -> str:
        if not self.lines:
            return f"{self.code} on the file"
        shown = ", ".join(self.ranges) + (", …" if self.more_ranges else "")
        return f"{self.code} on {self.lines} line{'s' if self.lines != 1 else ''}: {shown}"


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


def finding_groups(db: Database, file_id: str) -> list[FindingGroup]:
    """Findings by code, with their file lines compressed to ranges.

    The ranges are read in line order and only the first few are kept, so a code found on a
    million lines costs one index walk, not a million strings.
    """
    groups = []
    for code, severity, count, lines, refs, message in db.execute(
            "SELECT code, MIN(severity), COUNT(*), COUNT(DISTINCT source_line), "
            "COUNT(DISTINCT ref), MIN(message) FROM findings WHERE file_id = ? GROUP BY code",
            (file_id,)).fetchall():
        rule = CODES[code][1] if code in CODES else ""
        ordered = (r[0] for r in db.execute(
            "SELECT DISTINCT source_line FROM findings WHERE file_id = ? AND code = ? AND "
            "source_line IS NOT NULL ORDER BY source_line", (file_id, code)))
        ranges = list(islice(compress(ordered), MAX_RANGES + 1))
        groups.append(FindingGroup(code, severity, rule, count, lines, ranges[:MAX_RANGES],
                                   len(ranges) > MAX_RANGES, refs, message))
    order = {"ERROR": 0, "WARNING": 1, "INFO": 2}
    return sorted(groups, key=lambda g: (order.get(g.severity, 3), -g.count, g.code))


@dataclass(frozen=True)
class FileStory:
    row: FileRow
    applications: list[tuple[object, ...]]
    applications_total: int
    groups: list[FindingGroup]
    findings: list[tuple[object, ...]]
    findings_total: int
    events: list[tuple[str, str, dict[str, object]]]
    reprocessed_as: list[FileRow]


def file_story(db: Database, ledger: Ledger, file_id: str) -> FileStory | None:
    row = ledger.file(file_id)
    if row is None:
        return None
    row = mark_quarantined(db, [row])[0]
    apps = db.execute(
        "SELECT seq, ref, status, license_number, reused, lines FROM applications "
        "WHERE file_id = ? ORDER BY seq LIMIT ?", (file_id, MAX_ROWS)).fetchall()
    findings = db.execute(
        "SELECT code, severity, ref, line, source_line, field, value, message FROM findings "
        "WHERE file_id = ? ORDER BY COALESCE(source_line, 0), code, ref, line LIMIT ?",
        (file_id, MAX_ROWS)).fetchall()
    count = db.execute(
        "SELECT (SELECT COUNT(*) FROM applications WHERE file_id = ?), "
        "(SELECT COUNT(*) FROM findings WHERE file_id = ?)", (file_id, file_id)).fetchone()
    events = [(at, kind, json.loads(data)) for at, kind, data in db.execute(
        "SELECT at, kind, data FROM events WHERE file_id = ? ORDER BY id", (file_id,))]
    return FileStory(row, apps, count[0], finding_groups(db, file_id), findings, count[1],
                     events, _files(db, "reprocess_of = ?", (file_id,)))


# --- licenses ---------------------------------------------------------------------------------

LICENSE_COLUMNS = ("license_number", "partner", "ref", "file_id", "issue_date", "valid_from",
                   "valid_through", "entry_type", "port_of_entry", "importer", "exporter",
                   "manufacturer", "country_of_origin", "lines", "quantity_kg", "value_usd")


@dataclass(frozen=True)
class LicenseSearch:
    text: str = ""       # license number or ref
    importer: str = ""
    partner: str = ""
    issued_from: date | None = None
    issued_to: date | None = None

    @property
    def empty(self) -> bool:
        return not (self.text or self.importer or self.partner or self.issued_from
                    or self.issued_to)


def search_licenses(db: Database, search: LicenseSearch) -> list[dict[str, object]]:
    clauses: list[str] = ["1 = 1"]
    params: list[object] = []
    if search.text:
        clauses.append("(license_number = ? OR LOWER(ref) LIKE ? ESCAPE '\\')")
        params += [search.text.upper(), like(search.text)]
    if search.importer:
        clauses.append("LOWER(importer) LIKE ? ESCAPE '\\'")
        params.append(like(search.importer))
    if search.partner:
        clauses.append("partner = ?")
        params.append(search.partner)
    if search.issued_from:
        clauses.append("issue_date >= ?")
        params.append(search.issued_from.isoformat())
    if search.issued_to:
        clauses.append("issue_date <= ?")
        params.append(search.issued_to.isoformat())
    rows = db.execute(
        f"SELECT {', '.join(LICENSE_COLUMNS)} FROM licenses WHERE {' AND '.join(clauses)} "
        "ORDER BY issue_date DESC, license_number DESC LIMIT ?",
        (*params, MAX_ROWS + 1)).fetchall()
    return [dict(zip(LICENSE_COLUMNS, r, strict=True)) for r in rows]


def applications_for_ref(db: Database, text: str) -> list[tuple[object, ...]]:
    """Every application with a ref like ``text``, licensed or not: what each one got, and
    for a rejected one the error codes that rejected it."""
    pattern = like(text)
    apps = db.execute(
        "SELECT a.ref, f.partner, a.status, a.license_number, a.reused, a.file_id, "
        "f.remote_name, f.received_at FROM applications a JOIN files f USING (file_id) "
        "WHERE LOWER(a.ref) LIKE ? ESCAPE '\\' "
        "ORDER BY f.received_at DESC, a.file_id DESC LIMIT ?",
        (pattern, MAX_ROWS + 1)).fetchall()
    codes: dict[tuple[str, str], list[str]] = {}
    for file_id, ref, code in db.execute(
            "SELECT DISTINCT file_id, ref, code FROM findings WHERE severity = 'ERROR' "
            "AND LOWER(ref) LIKE ? ESCAPE '\\' ORDER BY code", (pattern,)):
        codes.setdefault((file_id, ref), []).append(code)
    return [(*a, ", ".join(codes.get((str(a[5]), str(a[0])), []))) for a in apps]


def license_detail(db: Database, number: str,
                   ) -> tuple[dict[str, object], list[list[object]]] | None:
    row = db.execute(f"SELECT {', '.join(LICENSE_COLUMNS)}, products FROM licenses "
                     "WHERE license_number = ?", (number,)).fetchone()
    if row is None:
        return None
    return dict(zip(LICENSE_COLUMNS, row[:-1], strict=True)), json.loads(row[-1])
