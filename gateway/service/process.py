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
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway import crash
from gateway.config import Config, PartnerConfig
from gateway.errors import RejectedSubmission
from gateway.findings import Finding, finding
from gateway.ledger.events import EventLog
from gateway.ledger.store import FileRow, Ledger, utc_now
from gateway.licensing.decide import LicenseIssuer, RepeatedRef, decide, license_row
from gateway.licensing.results import FileSummary
from gateway.model import AppStatus, Filer, FileStatus, SubmissionHeader
from gateway.outputs.ace import MANIFEST_SUFFIX, AceFileWriter
from gateway.outputs.ack_csv import AckCsvWriter, duplicate_csv_ack_chunks, render_csv_ack
from gateway.outputs.ack_xml import AckXmlWriter, duplicate_ack_chunks, render_ack
from gateway.parse.detect import check_size
from gateway.parse.mapping import mapping_for
from gateway.service.alerts import Alerts, license_alerts
from gateway.storage import Layout, atomic_write, durable_move, publish, safe_name, temp_name
from gateway.textsafe import printable
from gateway.validate.hts import covered_list
from gateway.validate.rules import RuleContext
from gateway.validate.staging import (
    Prepared,
    Reader,
    Staged,
    StagedApplication,
    prepare,
    spool_path,
)

log = logging.getLogger("gateway.process")

_BATCH = 2000  # ledger rows buffered before an executemany


def processing_date(config: Config, as_of: date | None) -> date:
    return as_of or datetime.now(ZoneInfo(config.gateway.timezone)).date()


def rule_context(config: Config, on: date) -> RuleContext:
    r = config.rules
    from decimal import Decimal

    return RuleContext(
        processing_date=on, covered=covered_list(),
        unit_value_min=Decimal(str(r.unit_value_min_usd_per_mt)),
        unit_value_max=Decimal(str(r.unit_value_max_usd_per_mt)),
        low_value_usd=Decimal(str(r.low_value_usd)),
        max_days_before_import=r.max_days_before_import,
        max_days_after_import=r.max_days_after_import,
    )


def internal_error_finding(err: BaseException) -> Finding:
    """What ``check`` answers for a file that met a bug of the gateway: the fault is put where
    it is (a run counts such a file and quarantines it after 3 failures, with the same words
    in its acknowledgment; ``gateway.service.quarantine``)."""
    detail = ascii(f"{type(err).__name__}: {err}")[1:-1][:300]
    return finding("F001", f"The gateway could not process this file: an internal error of the "
                   f"gateway stopped it ({detail}). It is not a fault found in your file; the "
                   "gateway's operators will look into it. Nothing was issued.")


def ack_kind(fmt: str | None) -> str:
    """The acknowledgment's format: CSV for CSV input, XML for everything else (guide 7)."""
    return "csv" if fmt == "csv" else "xml"


def ack_name(row: FileRow, kind: str, later: bool = False) -> str:
    """The name the partner sees: ``<file name>.ack.xml`` or ``<file name>.ack.csv``; for a
    later file under a name that already has its ack (a corrected resend), ``<file name>~<file
    id>.ack.xml``, so that no ack ever replaces another and file ids sort them in order."""
    suffix = f"~{row.file_id}" if later else ""
    return f"{safe_name(row.remote_name)}{suffix}.ack.{kind}"


def stored_ack(layout: Layout, row: FileRow, kind: str | None = None) -> Path:
    """The gateway's own copy of a file's acknowledgment (DUPLICATE sends it again)."""
    if kind is None:
        kind = (row.ack_name or "x.xml").rsplit(".", 1)[-1]
    return layout.ack_store(row.partner) / f"{row.file_id}.ack.{kind}"


class FileProcessor:
    """Takes received files through validation, licensing and outputs."""

    def __init__(self, config: Config, ledger: Ledger, events: EventLog,
                 as_of: date | None = None) -> None:
        self.config = config
        self.ledger = ledger
        self.events = events
        self.as_of = as_of
        self.layout = Layout.of(config)
        self.alerts = Alerts(config.alerts, events)

    # -- the whole story of one file ---------------------------------------------------------

    def finish(self, row: FileRow) -> FileRow:
        """Take ``row`` from wherever it stopped to ARCHIVED (idempotent)."""
        if row.state == "RECEIVED":
            self._process(row)
            row = self.ledger.file(row.file_id)  # type: ignore[assignment]
            crash.point("after_commit")
        if row.state == "PROCESSED":
            self._archive(row)
            row = self.ledger.file(row.file_id)  # type: ignore[assignment]
            crash.point("after_archive")
        return row

    def _process(self, row: FileRow) -> None:
        started = utc_now()
        on = processing_date(self.config, self.as_of)
        partner = self.config.partner(row.partner)
        path = self.layout.received / row.local_name

        def new_summary() -> FileSummary:
            return FileSummary(
                file_id=row.file_id, partner=row.partner, file_name=row.remote_name,
                sha256=row.sha256, received_at=datetime.fromisoformat(row.received_at),
                processed_at=started, rule_set_date=on, status=FileStatus.REJECTED)

        summary = new_summary()
        original = self.ledger.original_of(row.partner, row.sha256, row.file_id)
        # A file over the size limit was read only to the limit + 1 byte: its digest is not
        # the whole file's, so it is F003 every time, never a DUPLICATE of another such file.
        if original is not None and row.reprocess_of is None and \
                row.size <= self.config.gateway.max_file_bytes:
            self._duplicate(row, original, summary)
            return
        fmt = None
        prepared: Prepared | None = None
        try:
            check_size(path, self.config.gateway.max_file_bytes, row.size)
            prepared = prepare(path, rule_context(self.config, on), mapping_for(partner.mapping),
                               self.layout.work_tmp, row.remote_name)
            fmt = prepared.fmt
            try:
                # One pass: read, decide and write as the file streams by.
                self._license(row, partner, prepared.reader(), None, summary, fmt, started)
            except RepeatedRef:
                # A ref came twice: everything was rolled back; decide with the counts.
                summary = new_summary()
                staged = prepared.stage(spool_path(self.layout.work_tmp, row.file_id))
                try:
                    self._license(row, partner, staged, staged.ref_counts, summary, fmt,
                                  started)
                finally:
                    staged.discard()
        except RejectedSubmission as rejected:
            self._reject(row, new_summary(), rejected.finding, fmt, started)
        # Anything else is a bug of the gateway, never blamed on the sender with an F-code:
        # it rolls back and fails this attempt (Runner._attempt), which counts it; at the
        # third failure in a row the file is quarantined with an "internal error" ack and
        # one alert (gateway.service.quarantine).
        finally:
            if prepared is not None:
                prepared.cleanup()

    def _check_submission_id(self, row: FileRow, summary: FileSummary,
                             header: SubmissionHeader | None) -> None:
        summary.submission_id = header.submission_id if header else None
        if not summary.submission_id:
            return
        clash = self.ledger.submission_id_conflict(
            row.partner, summary.submission_id, row.sha256, row.file_id)
        if clash is not None:
            raise RejectedSubmission(finding(
                "F007", f"SubmissionId {summary.submission_id!r} was used before by file "
                f"{printable(clash.remote_name)} ({clash.file_id}) with different content: "
                "give every new file its own SubmissionId.", field="SubmissionId",
                value=summary.submission_id))

    def _license(self, row: FileRow, partner: PartnerConfig, source: Reader | Staged,
                 ref_counts: Counter[str] | None, summary: FileSummary, fmt: str,
                 started: datetime) -> None:
        layout = self.layout
        kind = ack_kind(fmt)
        ack_path = stored_ack(layout, row, kind)
        ack: AckXmlWriter | AckCsvWriter = (AckCsvWriter if kind == "csv" else AckXmlWriter)(
            ack_path)
        filer_code = partner.effective_filer_code(self.config.ace)
        source_info = {"file_id": row.file_id, "file_name": row.remote_name,
                       "partner": row.partner, "submission_id": ""}
        writers: dict[str, AceFileWriter] = {}

        def ace_writer(app_id: str) -> AceFileWriter:
            # Made on first use: the submission id is known by then.
            if app_id not in writers:
                source_info["submission_id"] = summary.submission_id or ""
                writers[app_id] = AceFileWriter(
                    layout.ace_outbox / f"{app_id}-{row.file_id}.txt", app_id=app_id,
                    submission_id=summary.submission_id or "",
                    site_code=self.config.ace.site_code, sender_id=self.config.ace.sender_id,
                    processing_date=summary.rule_set_date, file_id=row.file_id,
                    source=source_info)
            return writers[app_id]

        def items() -> Iterator[StagedApplication]:
            for n, item in enumerate(source.applications()):
                if n == 0:
                    self._check_submission_id(row, summary, source.header)
                yield item

        ledger = self.ledger
        published: list[Path] = []
        ack_target: tuple[Path, Path | None] | None = None  # (outbox name, what it held)
        try:
            with ledger.transaction():
                issuer = LicenseIssuer(ledger, summary.rule_set_date,
                                       self.config.gateway.license_validity_days,
                                       partner.max_licenses_per_day)
                apps: list[tuple[object, ...]] = []
                found: list[tuple[object, ...]] = []
                licenses: list[tuple[object, ...]] = []
                for item, outcome in decide(items(), ref_counts, row.partner, issuer):
                    summary.count(outcome)
                    ack.add(outcome)
                    apps.append((row.file_id, outcome.seq, outcome.ref, outcome.status.value,
                                 outcome.license_number, int(outcome.reused),
                                 len(item.app.lines), item.digest))
                    found.extend(_finding_row(row.file_id, f) for f in outcome.findings)
                    if outcome.status is AppStatus.LICENSED and not outcome.reused:
                        covered = [r.line for r in outcome.lines if r.covered is not None]
                        writer = ace_writer("FT" if item.app.entry_type == "FZ" else "AE")
                        writer.add(item.app, covered, outcome.license_number or "", filer_code)
                        licenses.append(license_row(item, outcome, row.partner, row.file_id))
                    if len(apps) >= _BATCH or len(found) >= _BATCH * 10:
                        _flush(ledger, apps, found, licenses)
                _flush(ledger, apps, found, licenses)
                issuer.save()
                license_alerts(ledger, self.alerts, issuer, row.partner, row.file_id)
                summary.settle_status()
                if summary.findings:  # the count of findings not listed (FileBound)
                    ledger.add_findings([_finding_row(row.file_id, f) for f in summary.findings])
                summary.processed_at = utc_now()
                ack.finish(summary)
                for w in writers.values():
                    published += [w.path, w.path.with_name(w.path.name + MANIFEST_SUFFIX)]
                manifests = [writers[k].finish() for k in ("AE", "FT") if k in writers]
                ace_names = [m.file_name for m in manifests if m is not None]
                ack_target = self.ack_target(row, kind)
                self.publish_ack(row, ack_path, kind)
                crash.point("after_outputs")
                header = source.header.filer if source.header is not None else None
                self._record(row, summary, fmt, ace_names, started, error=None, kind=kind,
                             filer=partner.applicant(header))
        except BaseException:
            self.alerts.discard()
            ack.discard()
            for writer in writers.values():
                writer.discard()
            # The transaction rolled back (a failure, not a crash: a crash's rerun rewrites
            # the same bytes): license numbers in outputs already published are not issued
            # and may be drawn by the next file, so none of them may stay for the
            # transmitter or the partner.
            for path in published:
                path.unlink(missing_ok=True)
            if ack_target is not None:
                self.withdraw_ack(*ack_target)
            raise
        self.alerts.flush(ledger)  # the webhook, after the commit

    def _reject(self, row: FileRow, summary: FileSummary, problem: Finding, fmt: str | None,
                started: datetime) -> None:
        summary.status = FileStatus.REJECTED
        summary.findings = [problem]
        summary.applications = summary.licensed = summary.not_required = summary.rejected = 0
        summary.new_licenses = 0
        summary.processed_at = utc_now()
        kind = ack_kind(fmt)
        ack_path = stored_ack(self.layout, row, kind)
        render = render_csv_ack if kind == "csv" else render_ack
        atomic_write(ack_path, render(summary, []))
        ack_target = self.ack_target(row, kind)
        self.publish_ack(row, ack_path, kind)
        crash.point("after_outputs")
        try:
            with self.ledger.transaction():
                self.ledger.add_findings([_finding_row(row.file_id, problem)])
                self._record(row, summary, fmt, [], started, error=f"{problem.code}: "
                             f"{problem.message}", kind=kind)
        except BaseException:
            self.withdraw_ack(*ack_target)
            raise

    def _duplicate(self, row: FileRow, original: FileRow, summary: FileSummary) -> None:
        """Send the original acknowledgment again, marked DUPLICATE with F006; nothing else."""
        notice = finding("F006", "These bytes were processed before as "
                         f"{printable(original.remote_name)} "
                         f"(file {original.file_id}, received {original.received_at}): the "
                         "original acknowledgment is sent again; nothing was issued.",
                         value=original.file_id)
        source = stored_ack(self.layout, original)
        kind = (original.ack_name or "x.xml").rsplit(".", 1)[-1]
        summary.processed_at = utc_now()
        ack_path = stored_ack(self.layout, row, kind)
        rewrite = duplicate_csv_ack_chunks if kind == "csv" else duplicate_ack_chunks
        atomic_write(ack_path, rewrite(source, row.remote_name, row.received_at,
                                       summary.processed_at, notice))
        self.publish_ack(row, ack_path, kind)
        crash.point("after_outputs")
        summary.status = FileStatus.DUPLICATE
        summary.submission_id = original.submission_id
        summary.applications = original.applications
        summary.licensed = original.licensed
        summary.not_required = original.not_required
        summary.rejected = original.rejected
        with self.ledger.transaction():
            self.ledger.add_findings([_finding_row(row.file_id, notice)])
            self._record(row, summary, original.format, [], summary.processed_at, error=None,
                         duplicate_of=original.file_id, kind=kind)

    # -- shared steps ------------------------------------------------------------------------

    def ack_name_of(self, row: FileRow, kind: str) -> str:
        """This file's ack name: its own, never one an earlier file's ack holds (the same on a
        rerun after a crash: only committed rows of other files decide it)."""
        if row.reprocess_of is not None:
            # A reprocess replaces the ack it corrects (docs/operations.md).
            original = self.ledger.file(row.reprocess_of)
            if original is not None and original.ack_name and \
                    original.ack_name.endswith(f".ack.{kind}"):
                return original.ack_name
        name = ack_name(row, kind)
        if self.ledger.ack_name_taken(row.partner, name, row.file_id):
            return ack_name(row, kind, later=True)
        return name

    def publish_ack(self, row: FileRow, stored: Path, kind: str) -> None:
        """The partner's copy in outbox/<partner>/: a hard link to the stored ack."""
        _link_into_place(stored, self.layout.partner_outbox(row.partner) /
                         self.ack_name_of(row, kind))

    def ack_target(self, row: FileRow, kind: str) -> tuple[Path, Path | None]:
        """Where ``row``'s ack goes in the outbox, and the stored ack of the file whose ack
        that name holds now (a reprocess replaces its original's, or an earlier reprocess's:
        the latest committed owner), None when the name is ``row``'s own. Asked before
        publishing, while the ledger answers: ``withdraw_ack`` needs it after a failure."""
        target = self.layout.partner_outbox(row.partner) / self.ack_name_of(row, kind)
        owners = self.ledger.files("partner = ? AND ack_name = ? AND file_id != ?",
                                   (row.partner, target.name, row.file_id), limit=1)
        return target, stored_ack(self.layout, owners[0]) if owners else None

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
                duplicate_of: str | None = None, filer: Filer | None = None) -> None:
        duration = int((utc_now() - started).total_seconds() * 1000)
        ack = self.ack_name_of(row, kind)
        self.ledger.update_file(
            row.file_id, state="PROCESSED", status=summary.status.value, format=fmt,
            submission_id=summary.submission_id,
            processed_at=summary.processed_at.isoformat(timespec="seconds"),
            rule_set_date=summary.rule_set_date.isoformat(),
            applications=summary.applications, licensed=summary.licensed,
            not_required=summary.not_required, rejected=summary.rejected,
            new_licenses=summary.new_licenses, ack_name=ack,
            ace_names=",".join(ace_names) or None, error=error, duplicate_of=duplicate_of,
            duration_ms=duration, filer=filer.to_json() if filer is not None else None)
        self.events.emit(
            self.ledger, "file.processed", partner=row.partner, file_id=row.file_id,
            name=row.remote_name, size=row.size, sha256=row.sha256, status=summary.status.value,
            applications=summary.applications, licensed=summary.licensed,
            new_licenses=summary.new_licenses, not_required=summary.not_required,
            rejected=summary.rejected, ack=ack, ace=ace_names, error=error,
            duration_ms=duration)

    def _archive(self, row: FileRow) -> None:
        """Move the input to archive/ (or failed/ with its .error.txt) and record it."""
        src = self.layout.received / row.local_name
        if row.error:
            dest = self.layout.failed(row.partner) / row.local_name
            atomic_write(dest.with_name(dest.name + ".error.txt"), error_text(row).encode())
        else:
            dest = self.layout.archive(row.partner, row.received_at) / row.local_name
        if src.exists():
            durable_move(src, dest)
        with self.ledger.transaction():
            self.ledger.update_file(row.file_id, state="ARCHIVED", archive_path=str(dest))
            self.events.emit(self.ledger, "file.failed" if row.error else "file.archived",
                             partner=row.partner, file_id=row.file_id, path=str(dest),
                             error=row.error)


def _link_into_place(stored: Path, target: Path) -> None:
    """Publish ``stored`` at ``target`` as a hard link (a copy where links fail), atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if os.path.samefile(stored, target):
            # Already in place. (Renaming a hard link over another link of the same file
            # does nothing at all, POSIX says: the temp name would stay behind.)
            return
    tmp = temp_name(target)
    tmp.unlink(missing_ok=True)
    try:
        os.link(stored, tmp)
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
