"""The processing log: one JSON object a line, rotating, and the same event in the ledger."""

from __future__ import annotations

import json
import logging
import logging.handlers
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.ledger import audit
from gateway.ledger.store import Event, Ledger

log = logging.getLogger("gateway")

# The alerts (gateway.service.alerts raises them; a partner's health shows the last one).
ALERT_EVENTS = ("partner.failing", "partner.recovered", "partner.silent", "partner.active",
                "partner.quota_reached", "licenses.running_low", "file.quarantined")


@dataclass(frozen=True, slots=True)
class EventRow:
    """One event as the ledger keeps it (its partner and file aside)."""

    at: str
    kind: str
    data: dict[str, Any]


class EventLog:
    """Writes events to ``events.jsonl`` (rotated by size) and to the ledger's events table."""

    def __init__(self, path: Path | None, max_bytes: int = 10 * 1024 * 1024,
                 backups: int = 5) -> None:
        self._handler: logging.Handler | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
            self._handler.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, ledger: Ledger | None, kind: str, *, partner: str | None = None,
             file_id: str | None = None, **data: Any) -> dict[str, Any]:
        """Record one event; call inside the ledger transaction that made it true. An
        ``admin.<verb>`` event is also appended to the audit trail (gateway.ledger.audit).

        Returns the event as written to the JSON lines (alerts pass it on to a webhook).
        """
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        record = {"at": at, "event": kind, "partner": partner, "file_id": file_id, **data}
        if audit.is_audited(kind):
            # The audit trail's one hook: an admin action that could not be audited is a bug
            # of its caller (no ledger, or a read-only one), so it fails before it is done.
            if ledger is None or ledger.readonly:
                raise RuntimeError(f"{kind} must be emitted with a writable ledger")
            audit.append(ledger.db, at, kind, partner, file_id, data)
        if ledger is not None and not ledger.readonly:
            ledger.add_event(Event(at, kind, partner, file_id, data))
        if self._handler is not None:
            line = json.dumps(record, sort_keys=False, default=str)
            # handle(), not emit(): it takes the handler's lock, so that two serve threads
            # never interleave their lines or rotate the file under each other.
            self._handler.handle(logging.makeLogRecord({"msg": line, "args": None}))
        # DEBUG (-v on serve): the service's INFO log is one line per file (runner). Its
        # text is made only when it is written (4 events a file in a poll, each formatting
        # every field for nothing otherwise).
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s %s %s", kind, partner or "-", file_id or "-",
                      " ".join(f"{k}={v}" for k, v in data.items()))
        return record

    def close(self) -> None:
        if self._handler is not None:
            self._handler.close()
