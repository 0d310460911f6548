"""Process one received file: validate, decide, write outputs, commit, archive.

Order (OPERATIONS.md): outputs written to temp names and renamed → ledger commit → input moved
to the archive (or failed/) → remote disposition (by the caller). Each step can be repeated
after a crash: output names are fixed by the file id, and license numbers are drawn inside the
transaction that records them, so a rerun writes the same bytes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway import crash
from gateway.config import Config
from gateway.findings import Finding, finding
from gateway.ledger.events import EventLog
from gateway.ledger.progress import ProgressRecorder
from gateway.ledger.store import FileRow, Ledger, utc_now
from gateway.licensing.decide import license_row
from gateway.licensing.issuer import LicenseIssuer
from gateway.licensing.pipeline import DecisionCore, Submission
from gateway.licensing.results import AppOutcome, FileSummary
from gateway.model import AppStatus, Filer, FileStatus
from gateway.outputs.ace import AceFileWriter
from gateway.outputs.ack_csv import duplicate_csv_ack_chunks
from gateway.outputs.ack_xml import duplicate_ack_chunks
from gateway.outputs.changes import withdraw_changes, write_changes
from gateway.outputs.manifest import manifest_path
from gateway.service.acks import ack_kind, ack_name, ack_writer, render_whole_ack, stored_ack
from gateway.service.alerts import Alerts, license_alerts
from gateway.service.mail import queue_notice
from gateway.storage import (
    Layout,
    atomic_write,
    dir_syncs_deferred,
    durable_move,
    files_synced_together,
    in_folder,
    publish,
    temp_name,
)
from gateway.textsafe import printable
from gateway.validate.staging import StagedApplication

log = logging.getLogger("gateway.process")

_BATCH = 2000  # ledger rows buffered before an executemany


def processing_date(config: Config, as_of: date | None) -> date:
    return as_of or datetime.now(ZoneInfo(config.gateway.timezone)).date()


def internal_error_finding(err: BaseException) -> Finding:
    """What ``check`` answers for a file that met a bug of the gateway: the fault is put where
    it is (a run counts such a file and quarantines it after 3 failures, with the same words
    in its acknowledgment; ``gateway.service.quarantine``)."""
    detail = ascii(f"{type(err).__name__}: {err}")[1:-1][:300]
    return finding("F001", f"The gateway could not process this file: an internal error of the "
                   f"gateway stopped it ({detail}). It is not a fault found in your file; the "
                   "gateway's operators will look into it. Nothing was issued.")


class FileProcessor:
    """Takes received files through validation, licensing and outputs."""

    def __init__(self, config: Config, ledger: Ledger, events: EventLog,
                 as_of: date | None = None) -> None:
        self.config = config
        self.ledger = ledger
        self.events = events
        self.as_of = as_of
        self.layout = Layout.of(config)
        self.alerts = Alerts(config.alerts, events, config.mail)

    # -- the whole story of one file ---------------------------------------------------------

    def finish(self, row: FileRow, on_start: Callable[[], None] | None = None) -> FileRow:
        """Take ``row`` from wherever it stopped to ARCHIVED (idempotent); ``on_start`` is
        called once its progress is recorded, before it is decided."""
        if row.state == "RECEIVED":
            self._process(row, on_start)
            row = self.ledger.known_file(row.file_id)
            crash.point("after_commit")
        if row.state == "PROCESSED":
            row = self._archive(row)
            crash.point("after_archive")
        return row

    def _process(self, row: FileRow, on_start: Callable[[], None] | None = None) -> None:
        """Decide ``row`` with the one core (``licensing.pipeline``); the run's sinks commit."""
        started = utc_now()
        core = DecisionCore(self.config, self.ledger, processing_date(self.config, self.as_of),
                            self.layout.work_tmp)
        sub = Submission(
            file_id=row.file_id, partner=row.partner, name=row.remote_name,
            path=self.layout.received / row.local_name, sha256=row.sha256, size=row.size,
            received_at=datetime.fromisoformat(row.received_at), history_before=row.file_id,
            reprocess_of=row.reprocess_of)
        # Every view shows the file in progress, with how far it has been read (a thread).
        with ProgressRecorder(self.config.gateway.data_dir, row.file_id, row.partner,
                              row.remote_name, sub.path) as recorder:
            if on_start is not None:
                on_start()
            core.decide_file(sub, RunSinks(self, row, started, recorder), started)

    # -- shared steps ------------------------------------------------------------------------

    def ack_name_of(self, row: FileRow, kind: str) -> str:
        """This file's ack name: its own, never one an earlier file's ack holds (the same on a
        rerun after a crash: only committed rows of other files decide it)."""
        return self._ack_name_and_owner(row, kind)[0]

    def _ack_name_and_owner(self, row: FileRow, kind: str) -> tuple[str, FileRow | None]:
        """``ack_name_of`` and the latest other file whose ack has that name (None: none), in
        one question (PostgreSQL: a round trip a file fewer than "taken?", then "whose?")."""
        if row.reprocess_of is not None:
            # A reprocess replaces the ack it corrects (docs/operations.md).
            original = self.ledger.file(row.reprocess_of)
            if original is not None and original.ack_name and \
                    original.ack_name.endswith(f".ack.{kind}"):
                return original.ack_name, self._ack_owner(row, original.ack_name)
        name = ack_name(row, kind)
        if self._ack_owner(row, name) is None:
            return name, None
        name = ack_name(row, kind, later=True)
        return name, self._ack_owner(row, name)

    def _ack_owner(self, row: FileRow, name: str) -> FileRow | None:
        owners = self.ledger.files("partner = ? AND ack_name = ? AND file_id != ?",
                                   (row.partner, name, row.file_id), limit=1, few=True)
        return owners[0] if owners else None

    def replaced_ack(self, row: FileRow, kind: str) -> str | None:
        """The original's ack when a reprocess's ack gets another name (x.ack.csv after
        x.ack.xml): the new ack names it (issue 14, item 7)."""
        original = self.ledger.file(row.reprocess_of) if row.reprocess_of else None
        if original is None or not original.ack_name or \
                original.ack_name == self.ack_name_of(row, kind):
            return None
        return original.ack_name

    def publish_ack(self, row: FileRow, stored: Path, kind: str,
                    target: Path | None = None) -> None:
        """The partner's copy in outbox/<partner>/ (at ``target`` when the caller has asked
        ``ack_target``): a hard link to the stored ack."""
        if target is None:
            target = self.layout.partner_outbox(row.partner) / self.ack_name_of(row, kind)
        _link_into_place(stored, target)

    def ack_target(self, row: FileRow, kind: str) -> tuple[Path, Path | None]:
        """Where ``row``'s ack goes in the outbox, and the stored ack of the file whose ack
        that name holds now (a reprocess replaces its original's, or an earlier reprocess's:
        the latest committed owner), None when the name is ``row``'s own. Asked before
        publishing, while the ledger answers: ``withdraw_ack`` needs it after a failure."""
        name, owner = self._ack_name_and_owner(row, kind)
        target = self.layout.partner_outbox(row.partner) / name
        return target, stored_ack(self.layout, owner) if owner is not None else None

    @staticmethod
    def withdraw_ack(target: Path, owner: Path | None) -> None:
        """Take back an ack whose ledger commit failed (``ack_target``): a name another file
        owns gets that file's ack back (the licenses the original issued stay with the
        partner), never removed; a name of the file's own is removed."""
        if owner is not None and owner.exists():
            _link_into_place(owner, target)
        else:
            target.unlink(missing_ok=True)

    def _record(self, row: FileRow, summary: FileSummary, fmt: str | None, ace_names: list[str],
                started: datetime, *, error: str | None, kind: str,
                duplicate_of: str | None = None, filer: Filer | None = None,
                changes_name: str | None = None, ack: str | None = None) -> None:
        duration = int((utc_now() - started).total_seconds() * 1000)
        if ack is None:  # (given by a caller that asked ack_target already)
            ack = self.ack_name_of(row, kind)
        self.ledger.update_file(
            row.file_id, state="PROCESSED", status=summary.status.value, format=fmt,
            submission_id=summary.submission_id,
            processed_at=summary.processed_at.isoformat(timespec="seconds"),
            rule_set_date=summary.rule_set_date.isoformat(),
            applications=summary.applications, licensed=summary.licensed,
            not_required=summary.not_required, rejected=summary.rejected,
            cancelled=summary.cancelled, new_licenses=summary.new_licenses, ack_name=ack,
            ace_names=",".join(ace_names) or None, error=error, duplicate_of=duplicate_of,
            duration_ms=duration, filer=filer.to_json() if filer is not None else None,
            changes_name=changes_name)
        self.events.emit(
            self.ledger, "file.processed", partner=row.partner, file_id=row.file_id,
            name=row.remote_name, size=row.size, sha256=row.sha256, status=summary.status.value,
            applications=summary.applications, licensed=summary.licensed,
            new_licenses=summary.new_licenses, not_required=summary.not_required,
            rejected=summary.rejected, ack=ack, ace=ace_names, error=error,
            duration_ms=duration, **({"changes": changes_name} if changes_name else {}),
            # Contract 1.1's count, in the events of the files that have one.
            **({"cancelled": summary.cancelled} if summary.cancelled else {}))
        partner = next((p for p in self.config.partners if p.id == row.partner), None)
        if partner is not None and summary.status in (FileStatus.REJECTED, FileStatus.PARTIAL):
            queue_notice(self.ledger, self.config, partner, row.file_id, row.remote_name,
                         summary.status.value, {
                             "licensed": summary.licensed, "not required": summary.not_required,
                             "rejected": summary.rejected, "cancelled": summary.cancelled})

    def _archive(self, row: FileRow) -> FileRow:
        """Move the input to archive/ (or failed/ with its .error.txt) and record it; the
        row as recorded (not read back: one SELECT a file saved).

        The move is durable before the record, the record is not synced (``synced=False``,
        one WAL sync a file saved): a power cut that takes it back leaves the file PROCESSED
        with its input already moved, which the recovery finishes as after a crash between
        the move and the commit (the move is skipped, the same record written), before the
        disposition."""
        src = self.layout.received / row.local_name
        if row.error:
            dest = self.layout.failed(row.partner) / row.local_name
            atomic_write(dest.with_name(dest.name + ".error.txt"), error_text(row).encode())
        else:
            dest = self.layout.archive(row.partner, row.received_at) / row.local_name
        if src.exists():
            durable_move(src, dest)
        with self.ledger.transaction(synced=False):
            self.ledger.update_file(row.file_id, state="ARCHIVED", archive_path=str(dest))
            self.events.emit(self.ledger, "file.failed" if row.error else "file.archived",
                             partner=row.partner, file_id=row.file_id, path=str(dest),
                             error=row.error)
        return replace(row, state="ARCHIVED", archive_path=str(dest))


class RunSinks:
    """The run's sinks of the decision core: every decision is committed. Outputs are written
    to temp names and published, then the ledger commits (OPERATIONS.md); a pass that fails
    takes back all it published, so that no license number of a rolled-back pass stays."""

    def __init__(self, processor: FileProcessor, row: FileRow, started: datetime,
                 progress: ProgressRecorder | None = None) -> None:
        self.processor = processor
        self.row = row
        self.started = started
        self.progress = progress

    def reading(self, path: Path) -> None:
        if self.progress is not None:
            self.progress.follow(path)

    def duplicate(self, summary: FileSummary, original: FileRow, notice: Finding) -> bool:
        """Send the original acknowledgment again, marked DUPLICATE with F006; nothing else."""
        p, row = self.processor, self.row
        source = stored_ack(p.layout, original)
        kind = (original.ack_name or "x.xml").rsplit(".", 1)[-1]
        summary.processed_at = utc_now()
        ack_path = stored_ack(p.layout, row, kind)
        rewrite = duplicate_csv_ack_chunks if kind == "csv" else duplicate_ack_chunks
        atomic_write(ack_path, rewrite(source, row.remote_name, row.received_at,
                                       summary.processed_at, notice))
        p.publish_ack(row, ack_path, kind)
        crash.point("after_outputs")
        summary.status = FileStatus.DUPLICATE
        summary.submission_id = original.submission_id
        summary.applications = original.applications
        summary.licensed = original.licensed
        summary.not_required = original.not_required
        summary.rejected = original.rejected
        summary.cancelled = original.cancelled
        with p.ledger.transaction():
            p.ledger.add_findings([_finding_row(row.file_id, notice)])
            p._record(row, summary, original.format, [], summary.processed_at, error=None,
                      duplicate_of=original.file_id, kind=kind)
        return True

    @contextlib.contextmanager
    def decisions(self, summary: FileSummary, fmt: str) -> Iterator[RunPass]:
        p = self.processor
        out = RunPass(p, self.row, summary, fmt, self.started)
        try:
            with p.ledger.transaction():
                yield out
        except BaseException:
            out.undo()
            raise
        p.alerts.flush(p.ledger)  # the webhook, after the commit

    def rejected(self, summary: FileSummary, fmt: str | None) -> None:
        p, row = self.processor, self.row
        problem = summary.findings[0]
        kind = ack_kind(fmt)
        ack_path = stored_ack(p.layout, row, kind)
        summary.replaces = p.replaced_ack(row, kind)
        atomic_write(ack_path, render_whole_ack(kind, summary))
        ack_target = p.ack_target(row, kind)
        p.publish_ack(row, ack_path, kind)
        crash.point("after_outputs")
        try:
            with p.ledger.transaction():
                p.ledger.add_findings([_finding_row(row.file_id, problem)])
                p._record(row, summary, fmt, [], self.started, error=f"{problem.code}: "
                          f"{problem.message}", kind=kind)
        except BaseException:
            p.withdraw_ack(*ack_target)
            raise

    @staticmethod
    def internal_error(err: Exception) -> Finding | None:
        # A bug rolls back and fails this attempt (Runner._attempt), which counts it; at the
        # third failure in a row the file is quarantined with an "internal error" ack and
        # one alert (gateway.service.quarantine).
        return None


@dataclass
class RunPass:
    """One pass of a run: the acknowledgment, the ACE files and the ledger rows, written as
    the decisions come, inside the ledger transaction ``RunSinks.decisions`` holds."""

    p: FileProcessor
    row: FileRow
    summary: FileSummary
    fmt: str
    started: datetime

    def __post_init__(self) -> None:
        row, config = self.row, self.p.config
        self.kind = ack_kind(self.fmt)
        self.ack_path = stored_ack(self.p.layout, row, self.kind)
        self.ack = ack_writer(self.kind, self.ack_path, self.summary.ack_delimiter)
        self.summary.replaces = self.p.replaced_ack(row, self.kind)
        partner = config.partner(row.partner)  # looked up once, not once per license
        self.filer_code = partner.effective_filer_code(config.ace)
        self.registered = partner.registered
        self.source_info = {"file_id": row.file_id, "file_name": row.remote_name,
                            "partner": row.partner, "submission_id": ""}
        self.writers: dict[str, AceFileWriter] = {}
        self.apps: list[tuple[object, ...]] = []
        self.found: list[tuple[object, ...]] = []
        self.licenses: list[tuple[object, ...]] = []
        self.published: list[Path] = []
        self.ack_target: tuple[Path, Path | None] | None = None  # (outbox name, what it held)

    def ace_writer(self, app_id: str) -> AceFileWriter:
        # Made on first use: the submission id is known by then.
        if app_id not in self.writers:
            config, summary, file_id = self.p.config, self.summary, self.row.file_id
            self.source_info["submission_id"] = summary.submission_id or ""
            self.writers[app_id] = AceFileWriter(
                self.p.layout.ace_outbox / f"{app_id}-{file_id}.txt", app_id=app_id,
                submission_id=summary.submission_id or "", site_code=config.ace.site_code,
                sender_id=config.ace.sender_id, processing_date=summary.rule_set_date,
                file_id=file_id, source=self.source_info)
        return self.writers[app_id]

    def add(self, item: StagedApplication, outcome: AppOutcome) -> None:
        file_id = self.row.file_id
        seq, status, reused = outcome.seq, outcome.status, outcome.reused
        if seq <= 1:
            crash.pause("mid_file")  # a test holds a file half read here (progress views)
        app = item.app
        self.ack.add(outcome, app)
        apps = self.apps
        apps.append((file_id, seq, outcome.ref, status.value, outcome.license_number,
                     int(reused), len(app.lines), item.digest))
        found = self.found
        if outcome.findings:
            found.extend(_finding_row(file_id, f) for f in outcome.findings)
        if status is AppStatus.LICENSED and not reused:
            covered = [r.line for r in outcome.lines if r.covered is not None]
            app_id = "FT" if app.entry_type == "FZ" else "AE"
            writer = self.writers.get(app_id) or self.ace_writer(app_id)
            writer.add(app, covered, outcome.license_number or "", self.filer_code)
            self.licenses.append(license_row(item, outcome, self.row.partner, file_id,
                                             self.registered))
        if len(apps) >= _BATCH or len(found) >= _BATCH * 10:
            _flush(self.p.ledger, apps, found, self.licenses)

    def finish(self, summary: FileSummary, issuer: LicenseIssuer) -> None:
        p, row, ledger = self.p, self.row, self.p.ledger
        _flush(ledger, self.apps, self.found, self.licenses)
        issuer.save()
        license_alerts(ledger, p.alerts, issuer, row.partner, row.file_id)
        if summary.findings:  # the count of findings not listed (FileBound)
            ledger.add_findings([_finding_row(row.file_id, f) for f in summary.findings])
        summary.processed_at = utc_now()
        # The ack's name is asked once (ack_target), for the link and the record: two
        # SELECTs a file saved.
        self.ack_target = p.ack_target(row, self.kind)
        target = self.ack_target[0]
        # The stored ack, the ACE files, manifests and changes report, then the partner's ack
        # linked last: their folders fsynced together once all are in place (storage), before
        # the ledger commits. (The link's folder no longer has a journal commit of its own:
        # one fewer a file. A crash before the commit reruns the file, which writes the same
        # bytes under the same names, as after a crash between the link and the commit.)
        # The stored ack, ACE files, manifests and changes report are fsynced at once, then
        # renamed into place (storage.files_synced_together), before the partner's link.
        with dir_syncs_deferred():
            with files_synced_together():
                self.ack.finish(summary)
                for w in self.writers.values():
                    self.published += [w.path, manifest_path(w.path)]
                manifests = [self.writers[k].finish() for k in ("AE", "FT")
                             if k in self.writers]
                ace_names = [m.file_name for m in manifests if m is not None]
                changes = self.write_changes(issuer.changed > 0)
            crash.point("after_changes")
            p.publish_ack(row, self.ack_path, self.kind, target)
        crash.point("after_outputs")
        filer = p.config.partner(row.partner).applicant(summary.header_filer)
        p._record(row, summary, self.fmt, ace_names, self.started, error=None, kind=self.kind,
                  filer=filer, changes_name=changes, ack=target.name)

    def write_changes(self, changed: bool) -> str | None:
        """The changes report of the supersessions and cancellations this file made (guide
        5.1b), read back from the open transaction, published beside the ACE files; its name,
        or None when the file changed no license. ``changed``: its issuer changed any (else
        there is nothing to read back: a round trip a file saved on PostgreSQL)."""
        self.source_info["submission_id"] = self.summary.submission_id or ""
        made = self.p.ledger.changes_of(self.row.file_id) if changed else []
        manifest = write_changes(self.p.layout.changes_outbox, self.row.file_id, made,
                                 self.source_info)
        return manifest.file_name if manifest is not None else None

    def undo(self) -> None:
        """The transaction rolled back (a failure, not a crash: a crash's rerun rewrites the
        same bytes): license numbers in outputs already published are not issued and may be
        drawn by the next file, so none of them may stay for the transmitter or the
        partner."""
        self.p.alerts.discard()
        self.ack.discard()
        for writer in self.writers.values():
            writer.discard()
        for path in self.published:
            path.unlink(missing_ok=True)
        # The report's name is this file's own and the file is not committed: whatever stands
        # there (this pass's, or a crashed attempt's) names changes that were not made.
        withdraw_changes(self.p.layout.changes_outbox, self.row.file_id)
        if self.ack_target is not None:
            self.p.withdraw_ack(*self.ack_target)


def _link_into_place(stored: Path, target: Path) -> None:
    """Publish ``stored`` at ``target`` as a hard link (a copy where links fail), atomically."""
    with contextlib.suppress(FileNotFoundError):
        if os.path.samefile(stored, target):
            # Already in place. (Renaming a hard link over another link of the same file
            # does nothing at all, POSIX says: the temp name would stay behind.)
            return
    tmp = temp_name(target)
    tmp.unlink(missing_ok=True)
    try:
        in_folder(lambda: os.link(stored, tmp), target.parent)
    except OSError:  # another file system: copied in chunks, never read whole
        atomic_write(tmp, _chunks(stored))
    publish(tmp, target)


def _chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def _flush(ledger: Ledger, apps: list[tuple[object, ...]], found: list[tuple[object, ...]],
           licenses: list[tuple[object, ...]]) -> None:
    if licenses:
        ledger.add_licenses(licenses)
    if apps:
        ledger.add_applications(apps)
    if found:
        ledger.add_findings(found)
    for buffer in (apps, found, licenses):
        buffer.clear()


def _finding_row(file_id: str, f: Finding) -> tuple[object, ...]:
    return (file_id, f.ref, f.line, f.code, f.severity.value, f.field, f.value, f.message,
            f.source_line)


def error_text(row: FileRow) -> str:
    return (
        f"file:        {printable(row.remote_name)}\n"
        f"partner:     {row.partner}\n"
        f"file id:     {row.file_id}\n"
        f"sha256:      {row.sha256}\n"
        f"received at: {row.received_at}\n"
        f"reason:      {printable(row.error)}\n"
        f"ack:         {row.ack_name}\n"
    )
