"""What admins do: reprocess a file, purge by the retention policy. Each is recorded as an
``admin.*`` event (ledger and JSON lines) with who did it and why.

The command line and the web page call these; the reads they show are in
``gateway.ledger.reads``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.admin.reasons import clean_reason
from gateway.config import Config
from gateway.errors import FatalError, GatewayError, TransientError
from gateway.inbox.base import Inbox, copy_with_digest
from gateway.inbox.kinds import open_inbox
from gateway.inbox.receipt import failure_reason, record_receipt, work_temp
from gateway.ledger.reads.files import failure
from gateway.ledger.store import FileRow, Ledger, Receipt, ledger_exists, open_ledger
from gateway.outputs.status_files import write_status_files
from gateway.service.leases import LeaseKeeper
from gateway.service.mail import purge_outbox
from gateway.service.process import processing_date
from gateway.service.quarantine import QUARANTINE_AFTER
from gateway.service.runner import InboxUnavailable, PollReport, Runner, event_log
from gateway.storage import Layout

Watch = Callable[[Path], AbstractContextManager[object]]

# -- reprocess ----------------------------------------------------------------------------------


class ReprocessFailed(GatewayError):
    """The reprocess was received as a new file (``file_id``, linked to the original) and that
    file failed as a poll's file can: counted, tried again by the next polls, quarantined after
    3 failures in a row. Nothing of it was committed; the original's ack stands."""

    def __init__(self, file_id: str, message: str) -> None:
        super().__init__(message)
        self.file_id = file_id


def reprocess(config: Config, file_id: str, reason: str, actor: str = "cli", *,
              as_of: date | None = None, watch: Watch | None = None,
              wait_seconds: float = 60.0) -> str:
    """Take an archived or failed file through the pipeline again; return the new file's id.

    The original's bytes (from data/archive or data/failed) are received again as a new file
    row linked to it by ``reprocess_of``: copied to work/ durably and recorded with an
    ``admin.reprocess`` event (actor, reason) in one transaction, then processed like any
    file. Licenses issued before come back as I201 (same ref, same content), so nothing is
    issued twice; the partner's remote file is never touched; the new acknowledgment is
    delivered as usual. Runs under the partner's lease, so a poll never races it.

    ``watch(path)`` wraps the processing (the command line's progress line). Raises
    FatalError when the file cannot be reprocessed (unknown, unfinished, original gone, a
    reprocess of it still in progress), TransientError when the partner stays busy for
    ``wait_seconds``, ReprocessFailed when the new file failed (``Runner.attempt``).
    """
    reason = clean_reason(reason, "reprocess")
    runner = Runner(config, as_of=as_of)
    try:
        original = runner.ledger.file(file_id)
        if original is None:
            raise FatalError(f"no file {file_id!r} in the ledger")
        partner = config.partner(original.partner)
        with leased(runner, partner.id, wait_seconds):
            _no_reprocess_in_progress(runner.ledger, original)
            new_id = _receive_again(runner, original, _reprocessable(original), reason, actor)
            row = runner.ledger.file(new_id)
            assert row is not None
            inbox = open_inbox(partner, runner.ledger)
            try:
                with watch(runner.layout.received / row.local_name) if watch else \
                        nullcontext():
                    _complete(runner, inbox, row)
                if partner.status_files:  # the partner sees the corrected file at once
                    write_status_files(runner.ledger, runner.config, partner, inbox,
                                       runner.events)
            except InboxUnavailable as err:
                # Processed and archived; the next poll delivers the acknowledgment.
                runner.events.emit(runner.ledger, "file.delivery_deferred",
                                   partner=partner.id, file_id=new_id, error=str(err))
            finally:
                inbox.close()
    finally:
        runner.close()
    return new_id


def _complete(runner: Runner, inbox: Inbox, row: FileRow) -> None:
    """Take the reprocess to DONE as a poll takes a file (``Runner.attempt``): a failure is
    counted towards quarantine and left to the next polls, and said so (ReprocessFailed)."""
    report = PollReport(row.partner)
    then = "the next poll tries it again"
    try:
        if runner.attempt(inbox, row, report) and report.error is None:
            return
    except InboxUnavailable:
        raise
    except Exception as err:  # a full data disk: rolled back, not counted, retried all the same
        reason = failure_reason(err)
    else:
        held = failure(runner.ledger, row.file_id)
        reason = held.last_error if held and held.last_error else str(report.error)
        if held and held.quarantined_at:
            then = "it is quarantined until an admin releases it"
        elif held:
            then += f" (failure {held.failures}; quarantined after {QUARANTINE_AFTER} in a row)"
    raise ReprocessFailed(row.file_id, f"reprocess of {row.reprocess_of} received as file "
                          f"{row.file_id}, which failed: {reason}; {then}")


def _no_reprocess_in_progress(ledger: Ledger, original: FileRow) -> None:
    """One reprocess of a file at a time: a second would race the first for its ack name."""
    for row in ledger.unfinished_for(original.partner):
        if row.reprocess_of == original.file_id:
            raise FatalError(f"file {original.file_id} has a reprocess in progress (file "
                             f"{row.file_id}), which the next poll finishes; see "
                             f"`aim-gateway show {row.file_id}`")


@contextmanager
def leased(runner: Runner, partner_id: str, wait_seconds: float) -> Iterator[None]:
    """The block runs under the partner's lease, kept renewed (a poll never races it);
    TransientError when the partner stays busy for ``wait_seconds``."""
    _take_lease(runner, partner_id, wait_seconds)
    keeper = LeaseKeeper(runner.config, partner_id, runner.worker)
    try:
        yield
    finally:
        keeper.stop()
        runner.ledger.release_lease(partner_id, runner.worker)


def _take_lease(runner: Runner, partner_id: str, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    while not runner.lease(partner_id):
        if time.monotonic() >= deadline:
            raise TransientError(f"partner {partner_id} is being polled right now; "
                                 "try again when the poll is over")
        time.sleep(0.5)


def _reprocessable(row: FileRow) -> Path:
    """The original's bytes on disk, or FatalError saying why there are none."""
    if row.state not in ("ARCHIVED", "DONE"):
        raise FatalError(f"file {row.file_id} is still being processed (state {row.state}); "
                         "the next poll finishes it")
    if row.archive_purged_at or not row.archive_path:
        raise FatalError(f"the original of file {row.file_id} was purged "
                         f"({row.archive_purged_at or 'never archived'}); it cannot be "
                         "reprocessed")
    path = Path(row.archive_path)
    if not path.is_file():
        raise FatalError(f"the original of file {row.file_id} is not at {path} any more")
    return path


def _receive_again(runner: Runner, original: FileRow, source: Path, reason: str,
                   actor: str) -> str:
    """Copy ``source`` into work/received as a new file and record it, as inbox.receipt.receive
    does: a crash before the commit leaves only a temp file, which recovery removes."""
    ledger, layout = runner.ledger, runner.layout
    tmp = work_temp(layout, f"reprocess-{original.file_id}")
    with open(source, "rb") as fh:
        size, sha256 = copy_with_digest(fh, tmp)
    if sha256 != original.sha256:
        tmp.unlink(missing_ok=True)
        raise FatalError(f"the archived copy of file {original.file_id} is not what was "
                         f"received (SHA-256 {sha256[:12]}…, expected {original.sha256[:12]}…)"
                         "; not reprocessed")
    today = processing_date(runner.config, runner.as_of)

    def announce(file_id: str) -> None:
        runner.events.emit(ledger, "admin.reprocess", partner=original.partner,
                           file_id=file_id, actor=actor, reason=reason,
                           original=original.file_id, name=original.remote_name)

    return record_receipt(ledger, layout, tmp, today, Receipt(
        partner=original.partner, remote_name=original.remote_name, size=size,
        mtime=original.mtime, sha256=sha256, reprocess_of=original.file_id), announce)


# -- purge --------------------------------------------------------------------------------------


@dataclass
class PurgeReport:
    """What a purge removed (or, dry run, would remove)."""

    now: str
    dry_run: bool
    events_before: str | None
    files_before: str | None
    archive_before: str | None
    events: int = 0  # events removed by age
    files: list[str] = field(default_factory=list)  # file ids whose details were removed
    findings: int = 0
    applications: int = 0
    file_events: int = 0
    mail: int = 0  # e-mails sent or given up, queued before files_before
    archived: list[str] = field(default_factory=list)  # paths removed from disk

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_CHUNK = 500  # file ids per statement and transaction: a long purge never blocks a poll long


def _cutoff(now: datetime, days: int | None) -> datetime | None:
    return None if days is None else now - timedelta(days=days)


def _older(ledger: Ledger, cutoff: datetime, extra: str) -> list[FileRow]:
    """Finished files received before ``cutoff``. received_at is UTC ISO text (local in a
    ledger of an older gateway, until its migration), so SQL takes everything up to the next
    day and the exact comparison is made here."""
    day_after = (cutoff.astimezone(UTC) + timedelta(days=1)).date().isoformat()
    rows = ledger.files(f"state = 'DONE' AND received_at < ? AND {extra}", (day_after,),
                        limit=10**9)
    return [r for r in rows if datetime.fromisoformat(r.received_at) < cutoff]


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _count(ledger: Ledger, table: str, ids: list[str]) -> int:
    marks = ", ".join("?" for _ in ids)
    return int(ledger.db.execute(f"SELECT COUNT(*) FROM {table} WHERE file_id IN ({marks})",
                                 ids).fetchone()[0])


def purge(config: Config, now: datetime | None = None, dry_run: bool = False,
          actor: str = "cli", reason: str | None = None) -> PurgeReport:
    """Apply ``[retention]``: old events; findings, applications and events of old files;
    archived originals and failed files on disk. Licenses and file rows are never purged
    (file rows are the memory of what was taken). ``admin.*`` events are the audit trail and
    are kept as long as file details.

    A real purge needs a ``reason`` (FatalError) and is recorded as ``admin.purge`` (who,
    why, cut-offs, the files planned) in a transaction committed BEFORE anything is deleted,
    so that a purge that dies half-way is audited all the same; what it removed follows as
    ``purge.done``. A dry run changes nothing and records nothing."""
    text = None if dry_run else clean_reason(reason, "purge")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    r = config.retention
    events_cut, files_cut = _cutoff(now, r.events_days), _cutoff(now, r.files_days)
    archive_cut = _cutoff(now, r.archive_days)
    events_before, files_before, archive_before = (
        c.isoformat(timespec="seconds") if c else None
        for c in (events_cut, files_cut, archive_cut))
    report = PurgeReport(now.isoformat(timespec="seconds"), dry_run, events_before,
                         files_before, archive_before)
    if not ledger_exists(config):
        return report
    ledger = open_ledger(config, readonly=dry_run)
    events = None if dry_run else event_log(config)  # a dry run writes nothing, not even a log
    stamp = now.isoformat(timespec="seconds")
    started = _event_time(datetime.now(UTC))  # events from here on are this purge's own
    try:
        if files_cut is not None:
            report.files = [row.file_id for row in
                            _older(ledger, files_cut, "details_purged_at IS NULL")]
        if events is not None:
            with ledger.transaction():
                events.emit(ledger, "admin.purge", actor=actor, reason=text,
                            files=len(report.files), events_before=events_before,
                            files_before=files_before, archive_before=archive_before)
        for ids in _chunks(report.files):
            report.findings += _count(ledger, "findings", ids)
            report.applications += _count(ledger, "applications", ids)
            report.file_events += _count(ledger, "events", ids)
            if not dry_run:
                _purge_details(ledger, ids, stamp)
        report.events = _purge_events(ledger, events_cut, files_cut, report.files if dry_run
                                      else [], started)
        if files_before is not None:
            report.mail = purge_outbox(ledger, files_before, dry_run)
        if archive_cut is not None:
            _purge_archive(ledger, Layout.of(config), archive_cut, report, stamp)
        if events is not None:
            with ledger.transaction():
                events.emit(ledger, "purge.done", actor=actor, events=report.events,
                            files=len(report.files), findings=report.findings,
                            applications=report.applications, file_events=report.file_events,
                            mail=report.mail, archived=len(report.archived))
    finally:
        if events is not None:
            events.close()
        ledger.close()
    return report


def _purge_details(ledger: Ledger, ids: list[str], stamp: str) -> None:
    marks = ", ".join("?" for _ in ids)
    with ledger.transaction():
        for table in ("findings", "applications", "events"):
            ledger.db.execute(f"DELETE FROM {table} WHERE file_id IN ({marks})", ids)
        ledger.db.execute(f"UPDATE files SET details_purged_at = ? WHERE file_id IN ({marks})",
                          (stamp, *ids))


def _purge_events(ledger: Ledger, events_cut: datetime | None, files_cut: datetime | None,
                  counted: list[str], started: str) -> int:
    """Events older than events_days; admin.* ones (the audit trail) only after files_days.

    ``counted``: a dry run's files whose events were counted already (a real purge has
    deleted them by now), so that the dry run's figures are the real ones. ``started``: no
    event from then on is removed (a purge as of a later date keeps its own admin.purge)."""
    conditions: list[tuple[str, tuple[object, ...]]] = []
    # Events are stamped in UTC with milliseconds, so the cutoff in that form compares as text.
    if events_cut is not None:
        conditions.append(("at < ? AND kind NOT LIKE 'admin.%'",
                           (min(_event_time(events_cut), started),)))
    if files_cut is not None:
        conditions.append(("at < ? AND kind LIKE 'admin.%'",
                           (min(_event_time(files_cut), started),)))
    removed = 0
    for where, params in conditions:
        removed += int(ledger.db.execute(f"SELECT COUNT(*) FROM events WHERE {where}",
                                         params).fetchone()[0])
        for ids in _chunks(counted):
            marks = ", ".join("?" for _ in ids)
            removed -= int(ledger.db.execute(
                f"SELECT COUNT(*) FROM events WHERE {where} AND file_id IN ({marks})",
                (*params, *ids)).fetchone()[0])
        if not ledger.readonly:
            with ledger.transaction():
                ledger.db.execute(f"DELETE FROM events WHERE {where}", params)
    return removed


def _event_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _purge_archive(ledger: Ledger, layout: Layout, cutoff: datetime, report: PurgeReport,
                   stamp: str) -> None:
    """Remove old originals from data/archive and data/failed (with their .error.txt).

    The file goes first and the ledger is marked after, so a crash in between is mended by
    the next purge. Only paths inside those two folders are ever removed."""
    roots = [(layout.data_dir / "archive").resolve(), (layout.data_dir / "failed").resolve()]
    for row in _older(ledger, cutoff, "archive_purged_at IS NULL AND archive_path IS NOT NULL"):
        path = Path(row.archive_path or "")
        if not any(path.resolve().is_relative_to(root) for root in roots):
            continue  # a path outside the data folder is not the gateway's to delete
        targets = [path, path.with_name(path.name + ".error.txt")]
        report.archived += [str(p) for p in targets if p.exists()]
        if report.dry_run:
            continue
        for target in targets:
            target.unlink(missing_ok=True)
        _remove_empty_parents(path.parent, roots)
        with ledger.transaction():
            ledger.update_file(row.file_id, archive_purged_at=stamp)


def _remove_empty_parents(folder: Path, roots: list[Path]) -> None:
    """Drop month and partner folders left empty (never the archive or failed root)."""
    while folder.resolve() not in roots and any(folder.resolve().is_relative_to(r)
                                                 for r in roots):
        try:
            folder.rmdir()
        except OSError:  # not empty
            return
        folder = folder.parent
