"""One whole cycle: finish half-done work, then poll every partner once (``run_once``).

``serve`` (scheduling) and the tests call exactly this; nothing else drives the pipeline.
Each partner is isolated: a partner whose server is down, slow or refusing us fails its own
poll only, backs off exponentially, and raises one alert when it starts failing and one when
it recovers.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from gateway import crash
from gateway.config import Config, PartnerConfig
from gateway.errors import FatalError, GatewayError, TransientError
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
    backing_off: bool = False


def open_ledger(config: Config, *, readonly: bool = False) -> Ledger:
    return Ledger(config.gateway.data_dir / "ledger.sqlite", readonly=readonly)


def event_log(config: Config) -> EventLog:
    return EventLog(config.log.events_file, config.log.max_bytes, config.log.backups)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Runner:
    """Holds a ledger connection and the event log; ``run_once`` is one full cycle.

    One Runner per thread (the SQLite connection is not shared). ``stop`` is checked between
    files: when it is set no new file is taken, and the file in hand is finished.
    """

    def __init__(self, config: Config, as_of: date | None = None,
                 stop: threading.Event | None = None, events: EventLog | None = None) -> None:
        self.config = config
        self.as_of = as_of
        self.stop = stop or threading.Event()
        self.ledger = open_ledger(config)
        self._own_events = events is None
        self.events = events or event_log(config)
        self.layout = Layout.of(config)
        self.processor = FileProcessor(config, self.ledger, self.events, as_of)
        self._recovered = False

    def close(self) -> None:
        self.ledger.close()
        if self._own_events:
            self.events.close()

    def recover(self) -> None:
        """Finish every file a crash left half-done, before any new file is taken."""
        removed = clean_work(self.ledger, self.layout)
        if removed:
            self.events.emit(None, "recovery.cleaned", files=removed)
        known = {p.id for p in self.config.partners}
        for partner_id in sorted({row.partner for row in self.ledger.unfinished_files()}):
            if partner_id not in known:
                log.warning("files of unknown partner %s left as they are", partner_id)
                continue
            partner = self.config.partner(partner_id)
            inbox = open_inbox(partner, self.ledger)
            try:
                self._finish_unfinished(inbox, partner)
            except GatewayError as err:
                # The partner's server is down: its files wait for its next poll.
                self.events.emit(self.ledger, "recovery.deferred", partner=partner_id,
                                 error=str(err))
            finally:
                inbox.close()
        self._recovered = True

    def run_once(self) -> list[PollReport]:
        if not self._recovered:
            self.recover()
        return [self.poll(p) for p in self.config.partners if p.enabled and
                not self.stop.is_set()]

    def poll(self, partner: PartnerConfig) -> PollReport:
        """Take what one partner has waiting, within its per-poll caps and back-off."""
        report = PollReport(partner.id)
        state = self.ledger.partner_state(partner.id)
        if float(state["next_attempt_at"] or 0) > time.time():  # type: ignore[arg-type]
            report.backing_off = True
            return report
        inbox = open_inbox(partner, self.ledger)
        try:
            self._finish_unfinished(inbox, partner)
            self._take_new(inbox, partner, report)
        except (TransientError, FatalError) as err:
            # FatalError here is the partner's own (a key file that cannot be read): it
            # fails this partner, never the gateway or the other partners.
            report.error = str(err)
        finally:
            inbox.close()
        self._record_health(partner, report, state)
        return report

    def _take_new(self, inbox: Inbox, partner: PartnerConfig, report: PollReport) -> None:
        budget_files, budget_bytes = partner.max_files, partner.max_bytes
        for remote in inbox.list():
            if self.stop.is_set():
                break
            if self.ledger.already_taken(partner.id, remote.name, remote.size, remote.mtime):
                report.skipped += 1
                continue
            if budget_files <= 0 or (remote.size > budget_bytes and report.taken):
                break  # the rest waits for the next poll: no partner starves the others
            budget_files -= 1
            budget_bytes -= remote.size
            today = processing_date(self.config, self.as_of)
            file_id = receive(inbox, remote, self.ledger, self.layout, self.events, today)
            report.taken.append(file_id)
            row = self.ledger.file(file_id)
            assert row is not None
            self._complete(inbox, row)

    def _finish_unfinished(self, inbox: Inbox, partner: PartnerConfig) -> None:
        for row in self.ledger.unfinished_for(partner.id):
            if self.stop.is_set():
                return
            self._complete(inbox, row)

    def _complete(self, inbox: Inbox, row: FileRow) -> None:
        row = self.processor.finish(row)
        if row.state == "ARCHIVED":
            inbox.deliver(stored_ack(self.layout, row), row.ack_name or row.file_id)
            if row.reprocess_of is None:
                inbox.dispose(row.remote_name)
            with self.ledger.transaction():
                self.ledger.update_file(row.file_id, state="DONE")
                self.events.emit(self.ledger, "file.done", partner=row.partner,
                                 file_id=row.file_id, ack_delivered=row.ack_name)
            crash.point("after_disposition")

    def _record_health(self, partner: PartnerConfig, report: PollReport,
                       state: dict[str, object]) -> None:
        """Failures back off exponentially; one alert per failing spell, one on recovery."""
        now = time.time()
        failures = int(state["failures"] or 0)  # type: ignore[call-overload]
        alerting = bool(state["alerting"])
        with self.ledger.transaction():
            if report.error is None:
                self.ledger.set_partner_state(
                    partner.id, failures=0, last_error=None, last_poll_at=_now_iso(),
                    last_success_at=_now_iso(), next_attempt_at=0, alerting=0)
                if alerting:
                    self.events.emit(self.ledger, "partner.recovered", partner=partner.id,
                                     after_failures=failures)
                return
            failures += 1
            interval = partner.interval_seconds or self.config.gateway.poll_interval_seconds
            delay = min(partner.max_backoff_seconds, interval * 2 ** (failures - 1))
            self.ledger.set_partner_state(
                partner.id, failures=failures, last_error=report.error, last_poll_at=_now_iso(),
                next_attempt_at=now + delay if failures > 1 else 0,
                alerting=int(alerting or failures >= partner.failure_alert_after))
            self.events.emit(self.ledger, "partner.error", partner=partner.id,
                             error=report.error, failures=failures, retry_in_s=delay)
            if not alerting and failures >= partner.failure_alert_after:
                self.events.emit(self.ledger, "partner.failing", partner=partner.id,
                                 failures=failures, error=report.error)
