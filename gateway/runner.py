"""One whole cycle: finish half-done work, then poll every partner once (``run_once``).

``serve`` (scheduling) and the tests call exactly this; nothing else drives the pipeline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date

from gateway import crash
from gateway.config import Config, PartnerConfig
from gateway.errors import GatewayError, TransientError
from gateway.events import EventLog
from gateway.intake import Inbox, clean_work, open_inbox, receive
from gateway.ledger import FileRow, Ledger
from gateway.process import FileProcessor, Layout, processing_date, stored_ack

log = logging.getLogger("gateway.runner")


@dataclass
class PollReport:
    partner: str
    taken: list[str] = field(default_factory=list)  # file ids
    skipped: int = 0
    error: str | None = None


def open_ledger(config: Config, *, readonly: bool = False) -> Ledger:
    return Ledger(config.gateway.data_dir / "ledger.sqlite", readonly=readonly)


def event_log(config: Config) -> EventLog:
    return EventLog(config.log.events_file, config.log.max_bytes, config.log.backups)


class Runner:
    """Holds the ledger and event log for a process; ``run_once`` is one full cycle."""

    def __init__(self, config: Config, as_of: date | None = None) -> None:
        self.config = config
        self.as_of = as_of
        self.ledger = open_ledger(config)
        self.events = event_log(config)
        self.layout = Layout.of(config)
        self.processor = FileProcessor(config, self.ledger, self.events, as_of)
        self._recovered = False

    def close(self) -> None:
        self.ledger.close()
        self.events.close()

    def recover(self) -> None:
        """Finish every file a crash left half-done, before any new file is taken."""
        removed = clean_work(self.ledger, self.layout)
        if removed:
            self.events.emit(None, "recovery.cleaned", files=removed)
        for row in self.ledger.unfinished_files():
            if row.partner not in {p.id for p in self.config.partners}:
                log.warning("file %s belongs to unknown partner %s: left as is",
                            row.file_id, row.partner)
                continue
            self.events.emit(None, "recovery.resume", partner=row.partner,
                             file_id=row.file_id, state=row.state)
            inbox = open_inbox(self.config.partner(row.partner))
            try:
                self._complete(inbox, row)
            finally:
                inbox.close()
        self._recovered = True

    def run_once(self) -> list[PollReport]:
        if not self._recovered:
            self.recover()
        return [self.poll(p) for p in self.config.partners if p.enabled]

    def poll(self, partner: PartnerConfig) -> PollReport:
        """Take what one partner has waiting, within its per-poll caps."""
        report = PollReport(partner.id)
        try:
            inbox = open_inbox(partner)
        except GatewayError as err:
            report.error = str(err)
            self.events.emit(None, "partner.error", partner=partner.id, error=str(err))
            return report
        try:
            budget_files, budget_bytes = partner.max_files, partner.max_bytes
            for remote in inbox.list():
                if self.ledger.already_taken(partner.id, remote.name, remote.size, remote.mtime):
                    report.skipped += 1
                    continue
                if budget_files <= 0 or (remote.size > budget_bytes and report.taken):
                    break  # the rest waits for the next poll: no partner starves the others
                budget_files -= 1
                budget_bytes -= remote.size
                today = processing_date(self.config, self.as_of)
                file_id = receive(inbox, remote, self.ledger, self.layout, self.events, today)
                row = self.ledger.file(file_id)
                assert row is not None
                self._complete(inbox, row)
                report.taken.append(file_id)
        except TransientError as err:
            report.error = str(err)
            self.events.emit(None, "partner.error", partner=partner.id, error=str(err))
        finally:
            inbox.close()
        return report

    def _complete(self, inbox: Inbox, row: FileRow) -> None:
        row = self.processor.finish(row)
        if row.state == "ARCHIVED":
            stored = stored_ack(self.layout, row)
            inbox.deliver(stored, row.ack_name or stored.name)
            if row.reprocess_of is None:
                inbox.dispose(row.remote_name)
            with self.ledger.transaction():
                self.ledger.update_file(row.file_id, state="DONE")
            crash.point("after_disposition")
