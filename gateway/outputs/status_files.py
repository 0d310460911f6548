"""The partner's own status files: ``status.json`` and ``status.csv`` in its outbox (and its
remote status folder, apart from the acks: ``SftpSource.remote_status_dir``), rewritten after
each poll, so that a broker sees its health (last files, their states, open errors) without a
portal; ``status.json`` also counts its licenses by state and lists their latest supersessions
and cancellations (guide 5.1b); a reprocess's file names the ack it replaces (issue 14, 7).

Rendered purely, written atomically (readers see the old file or the whole new one); writing
or uploading them never fails a poll.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from datetime import UTC, datetime
from typing import Any

from gateway.config import Config, PartnerConfig
from gateway.errors import GatewayError
from gateway.inbox.base import Inbox
from gateway.ledger.events import EventLog
from gateway.ledger.reads.files import FileQuery, display_status, select_files
from gateway.ledger.reads.health import partner_health
from gateway.ledger.reads.licenses import recent_changes, state_counts
from gateway.ledger.store import FileRow, Ledger
from gateway.outputs.ack_csv import neutralise
from gateway.storage import Layout, atomic_write

log = logging.getLogger("gateway.statusfile")

FILES_SHOWN = 20
CHANGES_SHOWN = 20  # latest license changes in status.json (each is in a changes report too)
STATUS_JSON = "status.json"
STATUS_CSV = "status.csv"
# ``cancelled`` (contract 1.1) comes last, so that a partner's reader of the earlier columns
# by position reads them where they always were.
# ``replaces`` (issue 14, item 7) after it, for the same reason.
CSV_COLUMNS = ("file_id", "file_name", "received_at", "state", "status", "applications",
               "licensed", "not_required", "rejected", "ack_name", "error", "cancelled",
               "replaces")


def _file_entry(ledger: Ledger, row: FileRow) -> dict[str, Any]:
    return {"file_id": row.file_id, "file_name": row.remote_name,
            "received_at": row.received_at, "state": row.state,
            "status": display_status(row), "applications": row.applications,
            "licensed": row.licensed, "not_required": row.not_required,
            "rejected": row.rejected, "ack_name": row.ack_name, "error": row.error,
            "cancelled": row.cancelled, "replaces": _replaces(ledger, row)}


def _replaces(ledger: Ledger, row: FileRow) -> str | None:
    """The earlier ack a reprocess's ack of another name replaces (its ack says so too)."""
    original = ledger.file(row.reprocess_of) if row.reprocess_of else None
    if original is None or not original.ack_name or original.ack_name == row.ack_name:
        return None
    return original.ack_name


def partner_status(ledger: Ledger, config: Config, partner: PartnerConfig,
                   now: datetime | None = None) -> dict[str, Any]:
    """What the partner's status files say, as one JSON-ready dict: its health as admins see
    it (gateway.ledger.reads), its files as recorded (a quarantine's internal reason is the
    gateway's own and stays with the admins), the F-codes not since reprocessed."""
    now = now or datetime.now(UTC)
    health = partner_health(ledger, config, partner, now, counts=False)
    zone = config.gateway.zone
    unresolved = FileQuery(partner=partner.id, status="FAILED", unresolved=True,
                           limit=FILES_SHOWN)
    today = now.astimezone(zone).date()  # the gateway's processing date: states on it
    return {
        "partner": partner.id,
        "name": partner.name,
        "generated_at": now.astimezone(UTC).isoformat(timespec="seconds"),
        "last_poll": health.last_poll,
        "last_success": health.last_success,
        "failures": health.failures,
        "last_error": health.last_error,
        "state": health.state,
        # The files being processed now: bytes read, percent, an estimate (seconds left).
        "in_progress": [{("file_name" if k == "name" else k): v
                         for k, v in p.to_json().items() if k != "partner"}
                        for p in health.in_progress],
        "alerts": {"failing": health.failing, "silent": health.silent_alert},
        "files": [_file_entry(ledger, r) for r in select_files(
            ledger, FileQuery(partner=partner.id, limit=FILES_SHOWN), zone)],
        "open_errors": [{"file_id": r.file_id, "file_name": r.remote_name,
                         "received_at": r.received_at, "error": r.error}
                        for r in select_files(ledger, unresolved, zone)],
        "licenses": {"as_of": today.isoformat(), **state_counts(ledger, partner.id, today)},
        "license_changes": [
            {"license_number": c.license_number, "ref": c.ref, "change": c.change,
             "replaced_by": c.replaced_by, "when": c.change_date, "file_id": c.file_id,
             "reason": c.reason} for c in recent_changes(ledger, partner.id, CHANGES_SHOWN)],
    }


def render_status_json(status: dict[str, Any]) -> bytes:
    return (json.dumps(status, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def render_status_csv(status: dict[str, Any]) -> bytes:
    """One row per recent file; cells a spreadsheet would run as a formula are neutralised
    (file names come from the partner)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for entry in status["files"]:
        writer.writerow([neutralise(entry[c]) for c in CSV_COLUMNS])
    return out.getvalue().encode("utf-8")


def write_status_files(ledger: Ledger, config: Config, partner: PartnerConfig,
                       inbox: Inbox | None, events: EventLog,
                       now: datetime | None = None) -> bool:
    """Write both files to ``outbox/<partner>/`` and, given an inbox, deliver them to the
    partner (SFTP: its remote status folder). True when all went well; failures are logged only."""
    try:
        status = partner_status(ledger, config, partner, now)
        folder = Layout.of(config).partner_outbox(partner.id)
        written = []
        for name, data in ((STATUS_JSON, render_status_json(status)),
                           (STATUS_CSV, render_status_csv(status))):
            atomic_write(folder / name, data)
            written.append((folder / name, name))
        if inbox is not None:
            for path, name in written:
                inbox.deliver(path, name, status=True)
    except (OSError, GatewayError) as err:
        log.warning("status files of partner %s: %s", partner.id, err)
        # JSON log only: a partner whose server refuses uploads would otherwise add a ledger
        # row every poll.
        events.emit(None, "partner.status_failed", partner=partner.id, error=str(err))
        return False
    return True
