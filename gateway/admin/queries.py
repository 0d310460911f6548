"""What admins read from the ledger: partners' health, files, one file's story, licenses.

Pure reads on a read-only connection, returning dataclasses and dicts; ``report`` renders them
for the terminal (or as JSON). The web page has its own queries (``gateway.admin.web.queries``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from gateway.config import Config, PartnerConfig, SftpSource
from gateway.ledger.db import like
from gateway.ledger.store import QUARANTINED_IDS, FileRow, Ledger, ledger_exists, open_ledger
from gateway.service.alerts import ALERT_EVENTS, last_file_at, silence
from gateway.service.quarantine import failure, mark_quarantined, quarantined_count

LICENSE_COLUMNS = ("license_number", "partner", "ref", "importer", "exporter", "manufacturer",
                   "country_of_origin", "entry_type", "port_of_entry", "issue_date",
                   "valid_from", "valid_through", "file_id", "lines", "quantity_kg",
                   "value_usd")


@contextmanager
def reading(config: Config) -> Iterator[Ledger | None]:
    """A read-only ledger, or None when the gateway has not run yet (nothing to show)."""
    if not ledger_exists(config):
        yield None
        return
    ledger = open_ledger(config, readonly=True)
    try:
        yield ledger
    finally:
        ledger.close()


# -- files --------------------------------------------------------------------------------------


def day_start_utc(config: Config, day: date) -> str:
    """Midnight of ``day`` in the gateway's zone, as the ledger writes times (UTC ISO)."""
    start = datetime.combine(day, time(0), tzinfo=config.gateway.zone).astimezone(UTC)
    return start.isoformat(timespec="seconds")


def file_filter(config: Config, partner: str | None = None, status: str | None = None,
                since: date | None = None) -> tuple[str, tuple[object, ...]]:
    """The WHERE clause of a file listing. ``status`` FAILED = rejected with an F-code."""
    where, params = ["1 = 1"], []
    if partner:
        where.append("partner = ?")
        params.append(partner)
    if status:
        wanted = status.upper()
        if wanted == "FAILED":
            where.append("error IS NOT NULL")
        elif wanted == "IN PROGRESS":
            where.append("status IS NULL")
        elif wanted == "QUARANTINED":
            where.append(f"file_id IN ({QUARANTINED_IDS})")
        else:
            where.append("status = ?")
            params.append(wanted)
    if since:
        # received_at is UTC ISO 8601 text: it sorts as time.
        where.append("received_at >= ?")
        params.append(day_start_utc(config, since))
    return " AND ".join(where), tuple(params)


def files(config: Config, *, partner: str | None = None, status: str | None = None,
          since: date | None = None, limit: int = 50) -> list[FileRow]:
    """Files, newest first, filtered by partner, status (or FAILED / IN PROGRESS) and date."""
    with reading(config) as ledger:
        if ledger is None:
            return []
        where, params = file_filter(config, partner, status, since)
        return mark_quarantined(ledger.db, ledger.files(where, params, limit=limit))


# -- licenses -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LicenseRow:
    license_number: str
    partner: str
    ref: str
    importer: str
    exporter: str
    manufacturer: str
    country_of_origin: str
    entry_type: str
    port_of_entry: str
    issue_date: str
    valid_from: str
    valid_through: str
    file_id: str
    lines: int
    quantity_kg: str
    value_usd: str


def licenses(config: Config, *, number: str | None = None, ref: str | None = None,
             importer: str | None = None, partner: str | None = None,
             since: date | None = None, until: date | None = None,
             limit: int = 100) -> list[LicenseRow]:
    """Licenses by number, ref, importer (part of the name, any case), partner and issue date
    (``since`` and ``until`` inclusive), newest first."""
    with reading(config) as ledger:
        if ledger is None:
            return []
        where, params = ["1 = 1"], []
        for column, value in (("license_number", number), ("ref", ref), ("partner", partner)):
            if value:
                where.append(f"{column} = ?")
                params.append(value.upper() if column == "license_number" else value)
        if importer:
            where.append("LOWER(importer) LIKE ? ESCAPE '\\'")  # % and _ are literal
            params.append(like(importer))
        if since:
            where.append("issue_date >= ?")
            params.append(since.isoformat())
        if until:
            where.append("issue_date <= ?")
            params.append(until.isoformat())
        rows = ledger.db.execute(
            f"SELECT {', '.join(LICENSE_COLUMNS)} FROM licenses WHERE {' AND '.join(where)} "
            "ORDER BY issue_date DESC, license_number DESC LIMIT ?",
            (*params, limit)).fetchall()
        return [LicenseRow(*r) for r in rows]


# -- partners -----------------------------------------------------------------------------------


@dataclass(slots=True)
class PartnerStatus:
    """One partner at a glance."""

    partner: str
    name: str
    kind: str
    enabled: bool
    state: str  # ok, error, failing, backing off, silent, never polled, disabled
    last_poll: str | None = None
    last_success: str | None = None
    failures: int = 0
    last_error: str | None = None
    retry_at: str | None = None
    last_file: str | None = None
    last_name: str | None = None
    last_status: str | None = None
    last_received: str | None = None
    files: dict[str, int] | None = None
    unfinished: int = 0
    quarantined: int = 0  # files set aside after 3 failures in a row, until released
    licenses: int = 0
    backlog: int | None = None  # files waiting in a local inbox; None = not known (SFTP)
    failing: bool = False
    silent: bool = False
    silent_hours: float | None = None
    expected_cadence_hours: float | None = None
    last_alert: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _backlog(ledger: Ledger, partner: PartnerConfig) -> int | None:
    """Complete files in a local inbox not yet taken; an SFTP listing is not cheap: None."""
    if partner.kind != "local":
        return None
    from gateway.inbox.local import LocalInbox

    try:
        waiting = LocalInbox(partner).list()
    except OSError:
        return None
    return sum(not ledger.already_taken(partner.id, f.name, f.size, f.mtime) for f in waiting)


def partner_status(ledger: Ledger, partner: PartnerConfig, now: datetime) -> PartnerStatus:
    db = ledger.db
    state = ledger.partner_state(partner.id)
    out = PartnerStatus(partner.id, partner.name, partner.kind, partner.enabled, "ok",
                        last_poll=state["last_poll_at"],
                        last_success=state["last_success_at"],
                        failures=int(state["failures"] or 0),
                        last_error=state["last_error"],
                        failing=bool(state["alerting"]),
                        expected_cadence_hours=partner.expected_cadence_hours)
    retry = float(state["next_attempt_at"] or 0)
    if retry > now.timestamp():
        out.retry_at = datetime.fromtimestamp(retry, UTC).isoformat(timespec="seconds")
    last = db.execute("SELECT file_id, remote_name, status, received_at FROM files "
                      "WHERE partner = ? ORDER BY received_at DESC, file_id DESC LIMIT 1",
                      (partner.id,)).fetchone()
    if last:
        out.last_file, out.last_name, out.last_status, out.last_received = last
        out.last_status = out.last_status or "IN PROGRESS"
    out.files = dict(db.execute(
        "SELECT COALESCE(status, 'IN PROGRESS'), COUNT(*) FROM files WHERE partner = ? "
        "GROUP BY COALESCE(status, 'IN PROGRESS')", (partner.id,)).fetchall())
    out.unfinished = db.execute("SELECT COUNT(*) FROM files WHERE partner = ? AND "
                                "state != 'DONE'", (partner.id,)).fetchone()[0]
    out.quarantined = quarantined_count(ledger, partner.id)
    out.licenses = db.execute("SELECT COUNT(*) FROM licenses WHERE partner = ?",
                              (partner.id,)).fetchone()[0]
    out.backlog = _backlog(ledger, partner)
    # Computed now, so that the screen is right even before the alert is recorded.
    quiet = silence(partner, last_file_at(ledger, partner.id),
                    state["watched_since"], now)
    if quiet is not None:
        out.silent = True
        out.silent_hours = round(quiet.total_seconds() / 3600, 1)
    marks = ", ".join("?" for _ in ALERT_EVENTS)
    alert = db.execute(f"SELECT at, kind, data FROM events WHERE partner = ? AND kind IN "
                       f"({marks}) ORDER BY id DESC LIMIT 1",
                       (partner.id, *ALERT_EVENTS)).fetchone()
    if alert:
        out.last_alert = {"at": alert[0], "event": alert[1], **json.loads(alert[2])}
    out.state = ("disabled" if not partner.enabled else "backing off" if out.retry_at
                 else "failing" if out.failing else "error" if out.failures
                 else "silent" if out.silent else "never polled" if not out.last_poll
                 else "ok")
    return out


def partners(config: Config, now: datetime | None = None) -> list[PartnerStatus]:
    now = now or datetime.now(UTC)
    with reading(config) as ledger:
        if ledger is None:
            return [PartnerStatus(p.id, p.name, p.kind, p.enabled,
                                  "never polled" if p.enabled else "disabled",
                                  expected_cadence_hours=p.expected_cadence_hours)
                    for p in config.partners]
        return [partner_status(ledger, p, now) for p in config.partners]


# -- the whole story of one file ----------------------------------------------------------------


def _rows(ledger: Ledger, sql: str, params: tuple[object, ...],
          keys: tuple[str, ...]) -> list[dict[str, Any]]:
    return [dict(zip(keys, r, strict=True)) for r in ledger.db.execute(sql, params)]


def story(config: Config, file_id: str) -> dict[str, Any] | None:
    """Receipt, applications and their licenses, findings, ACE files, the acknowledgment and
    its delivery, reprocessing links, and every event of one file; None if unknown."""
    with reading(config) as ledger:
        if ledger is None:
            return None
        row = ledger.file(file_id)
        if row is None:
            return None
        failed = failure(ledger, file_id)
        filer = ledger.filer(file_id)
        apps = _rows(ledger,
                     "SELECT a.seq, a.ref, a.status, a.license_number, a.reused, a.lines, "
                     "l.valid_from, l.valid_through FROM applications a LEFT JOIN licenses l "
                     "ON l.license_number = a.license_number WHERE a.file_id = ? "
                     "ORDER BY a.seq", (file_id,),
                     ("seq", "ref", "status", "license", "reused", "lines", "valid_from",
                      "valid_through"))
        issued = _rows(ledger,
                       "SELECT license_number, ref, importer, issue_date, valid_from, "
                       "valid_through FROM licenses WHERE file_id = ? ORDER BY license_number",
                       (file_id,), ("license", "ref", "importer", "issue_date", "valid_from",
                                    "valid_through"))
        # SQLite keeps insertion order in rowid; PostgreSQL has no such column: file order.
        order = "rowid" if ledger.db.dialect == "sqlite" else "source_line, line, code"
        findings = _rows(ledger,
                         "SELECT code, severity, ref, line, field, value, message "
                         f"FROM findings WHERE file_id = ? ORDER BY {order}", (file_id,),
                         ("code", "severity", "ref", "line", "field", "value", "message"))
        events = [{"at": at, "event": kind, **json.loads(data)} for at, kind, data in
                  ledger.db.execute("SELECT at, kind, data FROM events WHERE file_id = ? "
                                    "ORDER BY id", (file_id,))]
        later = _rows(ledger,
                      "SELECT file_id, status, received_at FROM files WHERE reprocess_of = ? "
                      "ORDER BY file_id", (file_id,), ("file_id", "status", "received_at"))
        for entry in later:
            reason = ledger.db.execute(
                "SELECT at, data FROM events WHERE file_id = ? AND kind = 'admin.reprocess' "
                "ORDER BY id LIMIT 1", (entry["file_id"],)).fetchone()
            if reason:
                data = json.loads(reason[1])
                entry.update(at=reason[0], actor=data.get("actor"), reason=data.get("reason"))
    partner = next((p for p in config.partners if p.id == row.partner), None)
    return {
        "file": asdict(row),
        "ack": {"name": row.ack_name, "delivered": row.state == "DONE",
                "to": ("remote_ack_dir" if partner is not None and isinstance(
                    partner.source, SftpSource) and partner.source.remote_ack_dir else "outbox")},
        "ace_files": (row.ace_names or "").split(",") if row.ace_names else [],
        "filer": asdict(filer) if filer is not None else None,
        "licenses_issued": issued,
        "applications": apps,
        "findings": findings,
        "reprocessed_as": later,
        "failures": asdict(failed) if failed is not None else None,
        "events": events,
    }
