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
from gateway.errors import FatalError, GatewayError, LedgerUnavailable, TransientError
from gateway.inbox.base import FileRefused, Inbox, NotTaken
from gateway.inbox.kinds import open_inbox
from gateway.inbox.receipt import (
    DISK_FULL,
    clean_leftovers,
    clean_work,
    disk_full,
    failure_reason,
    receive,
)
from gateway.ledger.events import EventLog
from gateway.ledger.pauses import pause_of
from gateway.ledger.progress import remove_stale
from gateway.ledger.store import FileRow, PartnerState, open_ledger
from gateway.outputs.status_files import write_status_files
from gateway.service.acks import stored_ack
from gateway.service.alerts import Alerts, check_silence
from gateway.service.leases import LeaseKeeper, dead_local_worker, sole_process, worker_name
from gateway.service.process import FileProcessor, processing_date
from gateway.service.quarantine import (
    QUARANTINE_AFTER,
    clear_failures,
    quarantine,
    reason_of,
    record_failure,
)
from gateway.storage import Layout, syncs_overlapped
from gateway.textsafe import printable
from gateway.validate.read_process import discard_spare, prestart

log = logging.getLogger("gateway.runner")
_ERROR_LIMIT = 2000  # characters of a poll's error kept in the ledger
LIVE_STATUS_BYTES = 8 << 20  # a file this large is shown in progress in the status files


@dataclass
class PollReport:
    partner: str
    taken: list[str] = field(default_factory=list)  # file ids
    skipped: int = 0
    error: str | None = None
    backing_off: bool = False
    leased_elsewhere: bool = False  # another worker is polling this partner
    file_failed: bool = False  # the error is one file's (counted per file), not the partner's
    failed_file: str | None = None  # that file's id
    paused: str | None = None  # "paused by <actor>: <reason>": an admin paused the partner


class InboxUnavailable(TransientError):
    """The partner's server failed while a file was delivered or disposed of: the partner's
    poll fails (back-off), the file in hand is not counted as a poison file."""


def file_line(row: FileRow) -> str:
    """The service log's one line per file: ``acme big.xml 20261201-000001 ACCEPTED:
    12 applications, 10 licensed, 1 not required, 1 rejected, 0 cancelled``."""
    return (f"{row.partner} {printable(row.remote_name)} {row.file_id} {row.status}: "
            f"{row.applications} applications, {row.licensed} licensed, {row.not_required} "
            f"not required, {row.rejected} rejected, {row.cancelled} cancelled"
            + (f" ({printable(row.error)})" if row.error else ""))


def event_log(config: Config) -> EventLog:
    return EventLog(config.events_path, config.log.max_bytes, config.log.backups)


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
        self.alerts = Alerts(config.alerts, self.events, config.mail)
        self.worker = worker_name()
        self._recovered = False
        # Files the start-up recovery just tried and that failed: the first poll of their
        # partner does not try them again at once, so that one `run --once` counts one failure
        # per file (three runs to quarantine, as documented), not two.
        self._failed_in_recovery: dict[str, str] = {}  # file id -> the failure in words

    def close(self) -> None:
        self.ledger.close()
        if self._own_events:
            self.events.close()

    def recover(self) -> None:
        """Finish every file a crash left half-done, before any new file is taken.

        Each partner's files are finished under its lease, so that with several workers a
        file another worker is processing right now is never touched.
        """
        try:
            removed = self._clean_work()
        except OSError as err:  # a leftover that cannot go never stops the start
            log.warning("cleaning the work folders at start: %s", err)
            removed = []
        if removed:
            self.events.emit(None, "recovery.cleaned", files=removed)
        known = {p.id for p in self.config.partners}
        unfinished = self.ledger.unfinished_files()
        # The partner of a file whose outputs a crash left published goes first. On SQLite the
        # license counter rolls back with the crashed pass, and its rerun writes the same bytes
        # (OPERATIONS.md) only if it draws the same numbers again: another partner's file
        # received meanwhile (serve's threads), finished first, would draw the numbers of an
        # ACE file a transmitter may have sent. SQLite's one writer leaves at most one such file.
        first = {row.partner for row in unfinished if self._published_uncommitted(row)}
        for partner_id in sorted({row.partner for row in unfinished},
                                 key=lambda p: (p not in first, p)):
            if partner_id not in known:
                log.warning("files of unknown partner %s left as they are", partner_id)
                continue
            partner = self.config.partner(partner_id)
            if pause_of(self.ledger.db, partner_id) is not None:
                continue  # paused by an admin: its files wait for the resume, as its polls do
            if not self._lease(partner_id):
                continue  # another worker holds it and finishes them
            try:
                inbox = open_inbox(partner, self.ledger)
                try:
                    report = PollReport(partner_id)
                    if not self._finish_unfinished(inbox, partner, report) and \
                            report.failed_file is not None:
                        self._failed_in_recovery[report.failed_file] = report.error or ""
                finally:
                    inbox.close()
            except Exception as err:
                # The partner's server is down, or its setup broken: its files wait for its
                # next poll, which reports it. A file that fails was counted by _attempt.
                self.events.emit(self.ledger, "recovery.deferred", partner=partner_id,
                                 error=reason_of(err))
            finally:
                self.ledger.release_lease(partner_id, self.worker)
        self.alerts.flush(self.ledger)
        self._recovered = True

    def _published_uncommitted(self, row: FileRow) -> bool:
        """A received file whose outputs a crashed pass published before its commit: its stored
        ack is the first of them written (``RunPass.finish``)."""
        return row.state == "RECEIVED" and any(
            stored_ack(self.layout, row, kind).exists() for kind in ("xml", "csv"))

    def _clean_work(self) -> list[str]:
        if self.ledger.concurrent:
            # Workers on other machines may be mid-step: only old leftovers are a crash's.
            return clean_work(self.ledger, self.layout, 2 * self.config.gateway.lease_seconds)
        with sole_process(self.config.gateway.data_dir) as alone:
            if alone:
                # No other gateway process uses this data folder: every leftover is a crash's.
                return clean_work(self.ledger, self.layout)
        # Another process (a running serve, an overlapping run --once) is at work here: its
        # temp files are not leftovers. It cleaned at its own start.
        return []

    def _clean_leftovers(self) -> None:
        """What a worker killed mid-receipt left in work/: removed while the service runs
        (``clean_work`` at a start waits for 2 x lease_seconds with several workers)."""
        try:
            removed = clean_leftovers(self.ledger, self.layout)
            # A killed worker's progress record too, once it is stale (no reader shows it).
            removed += remove_stale(self.config.gateway.data_dir)
        except (GatewayError, OSError) as err:  # never fails the poll: the next one retries
            log.warning("cleaning work/: %s", err)
            return
        if removed:
            self.events.emit(None, "recovery.cleaned", files=removed)

    def _lease(self, partner_id: str) -> bool:
        seconds, now = self.config.gateway.lease_seconds, self.ledger.now()
        if self.ledger.acquire_lease(partner_id, self.worker, seconds, now):
            return True
        # A worker of this machine that died (kill -9, a crash) need not be waited for.
        owner = self.ledger.lease_owner(partner_id)
        if owner is not None and dead_local_worker(owner):
            self.events.emit(self.ledger, "lease.taken_over", partner=partner_id,
                             dead_worker=owner)
            return self.ledger.take_over_lease(partner_id, owner, self.worker, seconds, now)
        return False

    def lease(self, partner_id: str) -> bool:
        """Take the partner's lease for work outside a poll (``admin.reprocess``)."""
        return self._lease(partner_id)

    def run_once(self) -> list[PollReport]:
        if not self._recovered:
            self.recover()
        return [self.poll(p) for p in self.config.partners if p.enabled and
                not self.stop.is_set()]

    def poll(self, partner: PartnerConfig) -> PollReport:
        """Take what one partner has waiting, within its per-poll caps and back-off, while
        holding the partner's lease (no two workers ever poll one partner at once)."""
        report = PollReport(partner.id)
        if (paused := pause_of(self.ledger.db, partner.id)) is not None:
            # Nothing is taken, finished or uploaded, and no poll is recorded: the health
            # says "paused" (who, why) until an admin resumes it (gateway.admin.operations).
            report.paused = paused.words
            return report
        state = self.ledger.partner_state(partner.id)
        if float(state["next_attempt_at"] or 0) > time.time():
            report.backing_off = True
            return report
        if not self._lease(partner.id):
            report.leased_elsewhere = True
            return report
        self._clean_leftovers()
        keeper = LeaseKeeper(self.config, partner.id, self.worker)
        inbox = open_inbox(partner, self.ledger)
        started = time.time()
        try:
            try:
                with syncs_overlapped():
                    if self._finish_unfinished(inbox, partner, report, keeper):
                        self._take_new(inbox, partner, report, keeper)
            except (TransientError, FatalError, OSError) as err:
                # FatalError here is the partner's own (a key file that cannot be read),
                # OSError a local disk that is full or gone: it fails this poll (the file in
                # hand is rolled back, to be taken again), never the gateway or the others.
                report.error = failure_reason(err)  # "data disk full: ..." for ENOSPC
            except Exception as err:
                # A gateway bug in this partner's listing or intake: this poll fails, logged
                # with its traceback; the other partners are polled all the same.
                log.exception("poll of %s failed", partner.id)
                report.error = reason_of(err)
            if report.error is not None:
                # A hostile server's text can hold anything (a NUL, which PostgreSQL refuses in
                # a text column; escape sequences): stored and shown escaped, and bounded.
                report.error = printable(report.error)[:_ERROR_LIMIT]
            try:
                self._record_health(partner, report, state)
                self._after_poll(partner, report, inbox)  # the inbox still open: status upload
            except Exception:  # the ledger failing here fails this poll's bookkeeping only
                log.exception("recording the poll of %s", partner.id)
        finally:
            discard_spare()  # a reading process started ahead for a file not read after all
            inbox.close()
            keeper.stop()
            crash.trace_poll(partner.id, self.worker, started, time.time())
            self.ledger.release_lease(partner.id, self.worker)
        return report

    def _after_poll(self, partner: PartnerConfig, report: PollReport, inbox: Inbox) -> None:
        """Silence alerts, the webhook, the partner's status files: none of them fails a poll."""
        try:
            check_silence(self.ledger, self.alerts, partner)
        except GatewayError as err:  # the ledger busy: the next poll checks again
            log.warning("silence check of %s: %s", partner.id, err)
        self.alerts.flush(self.ledger)
        if partner.status_files:
            # Not uploaded when the poll failed: the server is likely down, and a second
            # connection attempt would only double the wait.
            write_status_files(self.ledger, self.config, partner,
                               inbox if report.error is None else None, self.events)

    def _take_new(self, inbox: Inbox, partner: PartnerConfig, report: PollReport,
                  keeper: LeaseKeeper) -> None:
        budget_files, budget_bytes = partner.max_files, partner.max_bytes
        for remote in inbox.list():
            if self.stop.is_set() or keeper.lost.is_set():
                break
            if self.ledger.already_taken(partner.id, remote.name, remote.size, remote.mtime):
                report.skipped += 1
                continue
            if budget_files <= 0 or (remote.size > budget_bytes and report.taken):
                break  # the rest waits for the next poll: no partner starves the others
            budget_files -= 1
            budget_bytes -= remote.size
            today = processing_date(self.config, self.as_of)
            # A large file's reading process starts while the file is fetched and stored.
            prestart(remote.size, self.config.gateway.read_process_min_bytes)
            try:
                file_id = receive(inbox, remote, self.ledger, self.layout, self.events, today,
                                  self.config.gateway.max_file_bytes)
            except NotTaken as why:  # that file's trouble, not the poll's: the rest go on
                self.events.emit(self.ledger, "file.not_taken", partner=partner.id,
                                 name=remote.name, reason=str(why))
                continue
            report.taken.append(file_id)
            row = self.ledger.file(file_id)
            assert row is not None
            if not self._attempt(inbox, row, report):
                return

    def _finish_unfinished(self, inbox: Inbox, partner: PartnerConfig, report: PollReport,
                           keeper: LeaseKeeper | None = None) -> bool:
        """Finish what a crash or an earlier failure left; False when a file failed (the
        poll ends there: the file is tried first again until it is quarantined)."""
        for row in self.ledger.unfinished_for(partner.id):
            if self.stop.is_set() or (keeper is not None and keeper.lost.is_set()):
                return False
            if row.file_id in self._failed_in_recovery:
                # It failed moments ago, in this process's recovery: reported, not tried again.
                report.file_failed, report.failed_file = True, row.file_id
                report.error = self._failed_in_recovery.pop(row.file_id)
                return False
            if not self._attempt(inbox, row, report):
                return False
        return True

    def _attempt(self, inbox: Inbox, row: FileRow, report: PollReport) -> bool:
        """``_complete`` one file; whatever it raises (content, name, disk, database, memory,
        a gateway bug, the server refusing this file) fails this file only: counted, and
        quarantined at the third failure in a row. False when it failed and is to be tried
        first again; True when it is done or now set aside (the poll goes on with the
        partner's other files). The partner's server being down is the poll's."""
        try:
            self._complete(inbox, row)
            return True
        except (InboxUnavailable, LedgerUnavailable):
            raise  # the server or the ledger, not the file: the poll fails, nothing counted
        except Exception as err:
            if disk_full(err):
                # The gateway's own disk, not the file: the poll fails ("data disk full",
                # alert at once) and the file, rolled back, is not counted towards quarantine.
                raise
            if isinstance(err, GatewayError):  # a known condition, its message says it all
                log.error("file %s of %s failed: %s", row.file_id, row.partner, err)
            else:  # a gateway bug: the traceback is for the operators
                log.exception("file %s of %s failed", row.file_id, row.partner)
            reason = reason_of(err)
            report.file_failed = True
            report.failed_file = row.file_id
            report.error = (f"file {row.file_id} ({printable(row.remote_name)}) failed: "
                            f"{reason}")
            try:
                failures = record_failure(self.ledger, self.events, row, reason)
                if failures >= QUARANTINE_AFTER:
                    quarantine(self.processor, self.alerts, inbox, row, reason, failures)
                    report.error += f"; quarantined after {failures} failures in a row"
                    return True
            except Exception:  # the ledger itself failing: the file is tried again
                log.exception("could not record the failure of file %s", row.file_id)
            return False

    def attempt(self, inbox: Inbox, row: FileRow, report: PollReport) -> bool:
        """``_attempt`` for work outside a poll (``admin.reprocess``): the file is taken to
        DONE, or its failure is counted as a poll's would be."""
        return self._attempt(inbox, row, report)

    def _complete(self, inbox: Inbox, row: FileRow) -> None:
        row = self.processor.finish(row, lambda: self._status_at_start(inbox, row))
        if row.state == "ARCHIVED":
            left = None
            try:
                if row.reprocess_of is None and (ahead := getattr(inbox, "dispose_next", None)):
                    ahead(row)  # SftpInbox: the dispose's checks sent with the delivery
                inbox.deliver(stored_ack(self.layout, row), row.ack_name or row.file_id)
                if row.reprocess_of is None:
                    left = inbox.dispose(row)
            except FileRefused:
                raise  # this file's failure, counted by _attempt
            except TransientError as err:  # the server, not the file
                raise InboxUnavailable(str(err)) from err
            # Not synced (one WAL sync a file saved): a power cut that takes DONE back leaves
            # the file ARCHIVED, and the recovery delivers the same ack again and finds the
            # input disposed of, as after a crash between the disposition and this commit.
            # The next synced commit (the next file's receipt, the poll's health) makes it
            # durable.
            with self.ledger.transaction(synced=False):
                if left is not None:
                    self.events.emit(self.ledger, "file.not_disposed", partner=row.partner,
                                     file_id=row.file_id, reason=left)
                self.ledger.update_file(row.file_id, state="DONE")
                clear_failures(self.ledger, row.file_id)
                self.events.emit(self.ledger, "file.done", partner=row.partner,
                                 file_id=row.file_id, ack_delivered=row.ack_name)
            crash.point("after_disposition")
            log.info("%s", file_line(row))

    def _status_at_start(self, inbox: Inbox, row: FileRow) -> None:
        """A large file's partner sees it in progress in its status files from the start (a
        small one is done before anyone would look: no extra upload for it)."""
        partner = self.config.partner(row.partner)
        if partner.status_files and row.size >= LIVE_STATUS_BYTES:
            write_status_files(self.ledger, self.config, partner, inbox, self.events)

    def _record_health(self, partner: PartnerConfig, report: PollReport,
                       state: PartnerState) -> None:
        """Failures back off exponentially; one alert per failing spell, one on recovery."""
        now = time.time()
        failures = int(state["failures"] or 0)
        alerting = bool(state["alerting"])
        with self.ledger.transaction():
            if report.error is None or report.file_failed:
                # A failing file is counted (and alerted) per file, not as the partner's
                # server failing: no back-off, so that it reaches quarantine in 3 polls.
                self.ledger.set_partner_state(
                    partner.id, failures=0, last_error=report.error, last_poll_at=_now_iso(),
                    last_success_at=_now_iso(), next_attempt_at=0, alerting=0)
                if alerting:
                    self.alerts.emit(self.ledger, "partner.recovered", partner=partner.id,
                                     after_failures=failures)
                return
            failures += 1
            # A full data disk stops every partner: alerted at once, not after N failures.
            alert = failures >= partner.failure_alert_after or report.error.startswith(DISK_FULL)
            interval = partner.interval_seconds or self.config.gateway.poll_interval_seconds
            delay = min(partner.max_backoff_seconds, interval * 2 ** (failures - 1))
            self.ledger.set_partner_state(
                partner.id, failures=failures, last_error=report.error, last_poll_at=_now_iso(),
                next_attempt_at=now + delay if failures > 1 else 0,
                alerting=int(alerting or alert))
            self.events.emit(self.ledger, "partner.error", partner=partner.id,
                             error=report.error, failures=failures, retry_in_s=delay)
            if not alerting and alert:
                self.alerts.emit(self.ledger, "partner.failing", partner=partner.id,
                                 failures=failures, error=report.error)


def run_once(config: Config, as_of: date | None = None) -> list[PollReport]:
    """One whole cycle with a fresh Runner, closed afterwards: what `run --once` does."""
    runner = Runner(config, as_of=as_of)
    try:
        return runner.run_once()
    finally:
        runner.close()
