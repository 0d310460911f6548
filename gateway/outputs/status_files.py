"""The partner's own status files: ``status.json`` and ``status.csv`` in its outbox (and its
remote acknowledgment folder), rewritten after each poll, so that a broker sees its health
(last files, their states, open errors) without a portal.

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

from gateway.config import PartnerConfig
from gateway.errors import GatewayError
from gateway.inbox.base import Inbox
from gateway.ledger.events import EventLog
from gateway.ledger.store import FileRow, Ledger
from gateway.outputs.ack_csv import neutralise
from gateway.storage import Layout, atomic_write

log = logging.getLogger("gateway.statusfile")

FILES_SHOWN = 20
STATUS_JSON = "status.json"
STATUS_CSV = "status.csv"
CSV_COLUMNS = ("file_id", "file_name", "received_at", "state", "status", "applications",
               "licensed", "not_required", "rejected", "ack_name", "error")


def open_errors(ledger: Ledger, partner_id: str, limit: int = FILES_SHOWN) -> list[FileRow]:
    """Files rejected with an F-code and not since reprocessed (a failed reprocess is the open
    one then: the chain's last file says where it stands)."""
    return ledger.files(
        "partner = ? AND error IS NOT NULL AND NOT EXISTS (SELECT 1 FROM files AS later "
        "WHERE later.reprocess_of = files.file_id)", (partner_id,), limit=limit)


def _file_entry(row: FileRow) -> dict[str, Any]:
    return {"file_id": row.file_id, "file_name": row.remote_name,
            "received_at": row.received_at, "state": row.state,
            "status": row.status or "IN PROGRESS", "applications": row.applications,
            "licensed": row.licensed, "not_required": row.not_required,
            "rejected": row.rejected, "ack_name": row.ack_name, "error": row.error}


def partner_status(ledger: Ledger, partner: PartnerConfig,
                   now: datetime | None = None) -> dict[str, Any]:
    """What the partner's status files say, as one JSON-ready dict."""
    now = now or datetime.now(UTC)
    state = ledger.partner_state(partner.id)
    failing, silent = bool(state["alerting"]), bool(state["silent"])
    return {
        "partner": partner.id,
        "name": partner.name,
        "generated_at": now.astimezone(UTC).isoformat(timespec="seconds"),
        "last_poll": state["last_poll_at"],
        "last_success": state["last_success_at"],
        "failures": state["failures"],
        "last_error": state["last_error"],
        "state": "failing" if failing else "silent" if silent else
                 "error" if state["failures"] else "ok",
        "alerts": {"failing": failing, "silent": silent},
        "files": [_file_entry(r) for r in ledger.files("partner = ?", (partner.id,),
                                                       limit=FILES_SHOWN)],
        "open_errors": [{"file_id": r.file_id, "file_name": r.remote_name,
                         "received_at": r.received_at, "error": r.error}
                        for r in open_errors(ledger, partner.id)],
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


def write_status_files(ledger: Ledger, layout: Layout, partner: PartnerConfig,
                       inbox: Inbox | None, events: EventLog,
                       now: datetime | None = None) -> bool:
    """Write both files to ``outbox/<partner>/`` and, given an inbox, deliver them to the
    partner (SFTP: its remote_ack_dir). True when all went well; failures are logged only."""
    try:
        status = partner_status(ledger, partner, now)
        folder = layout.partner_outbox(partner.id)
        written = []
        for name, data in ((STATUS_JSON, render_status_json(status)),
                           (STATUS_CSV, render_status_csv(status))):
            atomic_write(folder / name, data)
            written.append((folder / name, name))
        if inbox is not None:
            for path, name in written:
                inbox.deliver(path, name)
    except (OSError, GatewayError) as err:
        log.warning("status files of partner %s: %s", partner.id, err)
        # JSON log only: a partner whose server refuses uploads would otherwise add a ledger
        # row every poll.
        events.emit(None, "partner.status_failed", partner=partner.id, error=str(err))
        return False
    return True
