"""Poison files: failures counted per file, quarantine after 3 in a row, release by an admin.

Any error while processing, acknowledging or disposing of one received file fails that file
and its partner's poll only (``Runner`` catches it and calls ``record_failure``). A file that
fails ``QUARANTINE_AFTER`` times in a row is quarantined: its input moved to
``failed/<partner>/`` with a ``.error.txt``, an acknowledgment sent where possible (the
gateway's own internal error, never "your file is bad"), one ``file.quarantined`` alert; no
poll and no start takes it again, so it never blocks the partner's newer files. An admin
releases it (``aim-gateway release``) after a fix: it is then finished at the next poll.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from gateway.config import Config
from gateway.errors import FatalError
from gateway.findings import finding
from gateway.inbox.base import Inbox
from gateway.ledger.events import EventLog
from gateway.ledger.reads.files import failure
from gateway.ledger.store import FileRow, Ledger, utc_now, utc_stamp
from gateway.licensing.results import FileSummary
from gateway.model import FileStatus
from gateway.outputs.ack_csv import render_csv_ack
from gateway.outputs.ack_xml import render_ack
from gateway.service.acks import ack_kind, stored_ack
from gateway.service.alerts import Alerts
from gateway.service.process import FileProcessor, error_text, processing_date
from gateway.storage import Layout, atomic_write, durable_move
from gateway.textsafe import printable

log = logging.getLogger("gateway.quarantine")

QUARANTINE_AFTER = 3  # OPERATIONS.md "Partner isolation and quarantine"
_REASON_LIMIT = 500


def _now() -> str:
    return utc_stamp()


def reason_of(err: BaseException) -> str:
    """One line that says what went wrong, safe to store, log and show."""
    return printable(f"{type(err).__name__}: {err}")[:_REASON_LIMIT]


def record_failure(ledger: Ledger, events: EventLog, row: FileRow, reason: str) -> int:
    """Count one more failure of ``row`` in a row (with its event); the count so far."""
    with ledger.transaction():
        ledger.db.execute(
            "INSERT INTO file_failures (file_id, partner, failures) VALUES (?, ?, 0) "
            "ON CONFLICT (file_id) DO NOTHING", (row.file_id, row.partner))
        ledger.db.execute(
            "UPDATE file_failures SET failures = failures + 1, last_error = ?, "
            "last_failed_at = ? WHERE file_id = ?", (reason, _now(), row.file_id))
        count = int(ledger.db.execute("SELECT failures FROM file_failures WHERE file_id = ?",
                                      (row.file_id,)).fetchone()[0])
        events.emit(ledger, "file.error", partner=row.partner, file_id=row.file_id,
                    name=row.remote_name, error=reason, failures=count)
    return count


def clear_failures(ledger: Ledger, file_id: str) -> None:
    """The file got through: its count starts again (call inside the caller's transaction).
    Sent with the transaction's next statement (``execute_later``): on PostgreSQL the DONE
    transaction of a file was two round trips for this DELETE, now one."""
    ledger.db.execute_later("DELETE FROM file_failures WHERE file_id = ?", (file_id,))


def _internal_error_ack(processor: FileProcessor, row: FileRow) -> str:
    """Write and publish the acknowledgment of a file the gateway could not process; its
    name. The wording puts the fault where it is: with the gateway, not the partner."""
    kind = ack_kind("csv" if row.remote_name.lower().endswith(".csv") else None)
    now = utc_now()
    summary = FileSummary(
        file_id=row.file_id, partner=row.partner, file_name=row.remote_name,
        sha256=row.sha256, received_at=datetime.fromisoformat(row.received_at),
        processed_at=now, rule_set_date=processing_date(processor.config, processor.as_of),
        status=FileStatus.REJECTED,
        findings=[finding(
            "F001", f"The gateway could not process this file: an internal error of the "
            f"gateway stopped it {QUARANTINE_AFTER} times. It was set aside for the gateway's "
            "operators, who will contact you; nothing was issued. Do not send it again.")])
    path = stored_ack(processor.layout, row, kind)
    atomic_write(path, (render_csv_ack if kind == "csv" else render_ack)(summary, []))
    processor.publish_ack(row, path, kind)
    return processor.ack_name_of(row, kind)


def _withdraw_reprocess_ack(processor: FileProcessor, row: FileRow) -> None:
    """A reprocess set aside sends the partner nothing (an admin's retry, not the partner's
    file): its original's ack, which carries the licenses it issued, stays under its name.
    Whatever a crash of the reprocess left published there is taken back."""
    for kind in ("xml", "csv"):
        processor.withdraw_ack(*processor.ack_target(row, kind))


def quarantine(processor: FileProcessor, alerts: Alerts, inbox: Inbox, row: FileRow,
               reason: str, failures: int) -> None:
    """Set ``row`` aside for good: failed/ with its reason, an ack where possible, one alert.

    Each step that fails is logged and skipped: the file has failed already, and nothing
    here may fail the poll a second time.
    """
    ledger, layout = processor.ledger, processor.layout
    row = ledger.file(row.file_id) or row
    moved = None
    src = layout.received / row.local_name
    if row.state in ("RECEIVED", "PROCESSED") and src.exists():
        moved = layout.failed(row.partner) / row.local_name
        try:
            durable_move(src, moved)
        except OSError as err:
            log.error("quarantine of %s: cannot move %s: %s", row.file_id, src, err)
            moved = None
    error_file = layout.failed(row.partner) / f"{row.local_name}.error.txt"
    try:
        atomic_write(error_file, error_text(replace(
            row, error=f"quarantined after {failures} failures in a row: {reason}")).encode())
    except OSError as err:
        log.error("quarantine of %s: cannot write %s: %s", row.file_id, error_file, err)
    ack = row.ack_name
    try:
        if row.state == "RECEIVED" and row.reprocess_of is not None:
            _withdraw_reprocess_ack(processor, row)
        elif row.state == "RECEIVED":  # no ack yet: say the gateway could not process it
            ack = _internal_error_ack(processor, row)
        if ack:
            inbox.deliver(stored_ack(layout, row, ack.rsplit(".", 1)[-1]), ack)
    except Exception as err:  # where possible: the admin sees the reason in any case
        log.error("quarantine of %s: acknowledgment not delivered: %s", row.file_id, err)
    with ledger.transaction():
        ledger.db.execute("UPDATE file_failures SET quarantined_at = ? WHERE file_id = ?",
                          (_now(), row.file_id))
        if moved is not None:
            ledger.update_file(row.file_id, archive_path=str(moved))
        if ack and ack != row.ack_name:
            ledger.update_file(row.file_id, ack_name=ack)
        alerts.emit(ledger, "file.quarantined", partner=row.partner, file_id=row.file_id,
                    name=row.remote_name, failures=failures, error=reason, ack=ack,
                    path=str(moved) if moved else None)


def release(config: Config, ledger: Ledger, events: EventLog, file_id: str, reason: str,
            actor: str) -> FileRow:
    """Put a quarantined file back, to be finished at the next poll; recorded with who and
    why. FatalError (with the reason) when it is unknown or not quarantined."""
    row = ledger.file(file_id)
    if row is None:
        raise FatalError(f"no file {file_id!r} in the ledger")
    state = failure(ledger, file_id)
    if state is None or state.quarantined_at is None:
        raise FatalError(f"file {file_id} is not quarantined")
    layout = Layout.of(config)
    held = layout.failed(row.partner) / row.local_name
    # Only an unfinished file was moved aside by the quarantine; an archived one stays.
    moved = row.state in ("RECEIVED", "PROCESSED") and row.archive_path == str(held)
    with ledger.transaction():
        ledger.db.execute("DELETE FROM file_failures WHERE file_id = ?", (file_id,))
        if moved:
            ledger.update_file(file_id, archive_path=None)
        events.emit(ledger, "admin.release", partner=row.partner, file_id=file_id,
                    actor=actor, reason=reason or None, failures=state.failures,
                    error=state.last_error)
        if moved and held.exists():
            # Inside the transaction: a move that fails releases nothing.
            durable_move(held, layout.received / row.local_name)
    if row.state in ("RECEIVED", "PROCESSED"):
        (layout.failed(row.partner) / f"{row.local_name}.error.txt").unlink(missing_ok=True)
    return row
