"""The one decision core of a file, shared by `run` and `check` (issue 11, item 4).

``decide_file`` takes a file from its bytes to its acknowledgment's content: DUPLICATE (F006),
the size limit (F003), format detection and mapping, SubmissionId reuse (F007), every
application's status and license (one pass, or two when a ref comes twice: A105), F-code
rejections. What becomes of the decisions is the ``Sinks``' business: the run's commit them
(ledger, ACE files, acknowledgment, alerts), ``check``'s render the acknowledgment in memory
from a read-only ledger (licenses read ``PENDING``). So ``check`` answers what a run would,
by construction: ``tests/test_check_core.py`` runs both over every case.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Protocol

from gateway.config import Config
from gateway.errors import GatewayError, RejectedSubmission
from gateway.findings import Finding, finding
from gateway.ledger.store import FileRow, Ledger, utc_now
from gateway.licensing.decide import RepeatedRef, decide
from gateway.licensing.issuer import LicenseIssuer
from gateway.licensing.results import AppOutcome, FileSummary
from gateway.model import FileStatus
from gateway.parse.detect import check_size
from gateway.parse.mapping import ack_delimiter, mapping_for
from gateway.textsafe import printable
from gateway.turns import TURNS
from gateway.validate.hts import edition_on
from gateway.validate.read_process import ProcessReader, read_source
from gateway.validate.rules import RuleContext
from gateway.validate.staging import (
    Reader,
    Staged,
    StagedApplication,
    prepare,
    spool_path,
)


def rule_context(config: Config, on: date) -> RuleContext:
    """The rules of processing date ``on``: its dated rules and its covered-list edition
    (``check``, ``run`` and ``replay --as-of`` all build theirs here)."""
    r = config.rules
    return RuleContext(
        processing_date=on, covered=edition_on(on),
        unit_value_min=Decimal(str(r.unit_value_min_usd_per_mt)),
        unit_value_max=Decimal(str(r.unit_value_max_usd_per_mt)),
        low_value_usd=Decimal(str(r.low_value_usd)),
        max_days_before_import=r.max_days_before_import,
        max_days_after_import=r.max_days_after_import,
    )


@dataclass(frozen=True)
class Submission:
    """One file as the core sees it."""

    file_id: str  # shown in the acknowledgment
    partner: str | None  # None: a check without a partner (no mapping, no history)
    name: str  # the name the partner gave it
    path: Path  # its bytes
    sha256: str
    size: int  # as the partner's inbox listed it (F003 names the larger)
    received_at: datetime
    # The history is what the ledger holds before this id: a run's own id (files received
    # earlier count), "" for a check (every file counts).
    history_before: str
    reprocess_of: str | None = None  # a reprocess is never a DUPLICATE of its original


class PassSink(Protocol):
    """Where one pass's decisions go; opened by ``Sinks.decisions``."""

    def add(self, item: StagedApplication, outcome: AppOutcome) -> None:
        """One application, counted in the summary, its findings bounded."""

    def finish(self, summary: FileSummary, issuer: LicenseIssuer) -> None:
        """Every application was added and the file's status settled."""


class Sinks(Protocol):
    """What becomes of the core's decisions: committed (run) or shown (check)."""

    def duplicate(self, summary: FileSummary, original: FileRow, notice: Finding) -> bool:
        """The original acknowledgment again, marked DUPLICATE with ``notice``; False: it
        cannot be shown here (``check`` without the stored ack), decide the file instead."""

    def decisions(self, summary: FileSummary, fmt: str) -> AbstractContextManager[PassSink]:
        """One pass: the run's ledger transaction and outputs, undone when the pass raises
        (``RepeatedRef`` included, for the second pass)."""

    def rejected(self, summary: FileSummary, fmt: str | None) -> None:
        """The whole file rejected: ``summary.findings`` holds the one F-code."""

    def internal_error(self, err: Exception) -> Finding | None:
        """A bug of the gateway: the finding to reject the file with, or None to let it
        raise (a run counts the failure and quarantines the file at the third)."""

    def reading(self, path: Path) -> None:
        """The file is read from ``path`` (an XSLT mapping's output), not from its own bytes:
        what a run's progress follows."""


def duplicate_notice(original: FileRow) -> Finding:
    return finding("F006", "These bytes were processed before as "
                   f"{printable(original.remote_name)} "
                   f"(file {original.file_id}, received {original.received_at}): the "
                   "original acknowledgment is sent again; nothing was issued.",
                   value=original.file_id)


def submission_id_clash(ledger: Ledger | None, sub: Submission,
                        submission_id: str | None) -> Finding | None:
    """F007 when an earlier file of the partner used this SubmissionId with other bytes."""
    if ledger is None or not sub.partner or not submission_id:
        return None
    clash = ledger.submission_id_conflict(sub.partner, submission_id, sub.sha256,
                                          sub.history_before)
    if clash is None:
        return None
    return finding(
        "F007", f"SubmissionId {submission_id!r} was used before by file "
        f"{printable(clash.remote_name)} ({clash.file_id}) with different content: "
        "give every new file its own SubmissionId.", field="SubmissionId", value=submission_id)


@dataclass
class DecisionCore:
    """Decides files for one processing date, reading ``ledger`` for the history (I201,
    A104, A109, F006, F007) and drawing license numbers from it (none when it is read-only
    or None: ``PENDING``)."""

    config: Config
    ledger: Ledger | None
    on: date  # the processing date: rules and issue date
    work_dir: Path  # the mapped XML and the two-pass spool

    def decide_file(self, sub: Submission, sinks: Sinks, started: datetime) -> None:
        rules = rule_context(self.config, self.on)

        partner = self.config.partner(sub.partner) if sub.partner else None
        mapping = mapping_for(partner.mapping_for(sub.name)) if partner else None
        delimiter = ack_delimiter(mapping, sub.path)

        def new_summary() -> FileSummary:
            return FileSummary(
                file_id=sub.file_id, partner=sub.partner or "", file_name=sub.name,
                sha256=sub.sha256, received_at=sub.received_at, processed_at=started,
                rule_set_date=self.on, status=FileStatus.REJECTED,
                reference_edition=rules.covered, ack_delimiter=delimiter)

        fmt = None
        prepared = None
        try:
            original = self._original(sub)
            if original is not None and sinks.duplicate(new_summary(), original,
                                                        duplicate_notice(original)):
                return
            check_size(sub.path, self.config.gateway.max_file_bytes, sub.size)
            if partner is not None and partner.registered:
                rules = replace(rules, registered=True)
            prepared = prepare(sub.path, rules, mapping, self.work_dir, sub.name)
            fmt = prepared.fmt
            if prepared.path != sub.path:
                sinks.reading(prepared.path)
            # Several passes of this process at once (a shared ledger): each computes in
            # turns of its own (gateway.turns), not in the interpreter's microseconds.
            turn = TURNS.held if self.ledger is not None and self.ledger.concurrent \
                else contextlib.nullcontext
            try:
                # One pass: read, decide and write as the file streams by (a large file read
                # by a second process meanwhile: validate.read_process).
                with turn(), read_source(prepared,
                                       self.config.gateway.read_process_min_bytes) as source:
                    self._one_pass(sub, source, None, new_summary(), sinks, fmt)
            except RepeatedRef:
                # A ref came twice: the sinks undid the pass; decide with the counts.
                with turn():
                    staged = prepared.stage(spool_path(self.work_dir, sub.file_id))
                try:
                    with turn():
                        self._one_pass(sub, staged, staged.ref_counts, new_summary(), sinks,
                                       fmt)
                finally:
                    staged.discard()
        except RejectedSubmission as rejected:
            self._reject(new_summary(), rejected.finding, sinks, fmt)
        except GatewayError:
            raise  # the ledger, the configuration, the server: never the file's fault
        except Exception as err:
            # A bug of the gateway, never blamed on the sender with an F-code.
            problem = sinks.internal_error(err)
            if problem is None:
                raise
            self._reject(new_summary(), problem, sinks, fmt)
        finally:
            if prepared is not None:
                prepared.cleanup()

    def _original(self, sub: Submission) -> FileRow | None:
        """The file these bytes were processed as before (DUPLICATE), if any."""
        # A file over the size limit was read only to the limit + 1 byte: its digest is not
        # the whole file's, so it is F003 every time, never a DUPLICATE of another such file.
        if self.ledger is None or not sub.partner or sub.reprocess_of is not None or \
                sub.size > self.config.gateway.max_file_bytes:
            return None
        return self.ledger.original_of(sub.partner, sub.sha256, sub.history_before)

    @staticmethod
    def _reject(summary: FileSummary, problem: Finding, sinks: Sinks, fmt: str | None) -> None:
        summary.findings = [problem]
        summary.processed_at = utc_now()
        sinks.rejected(summary, fmt)

    def _one_pass(self, sub: Submission, source: Reader | ProcessReader | Staged,
                  ref_counts: Counter[str] | None, summary: FileSummary, sinks: Sinks,
                  fmt: str) -> None:
        def items() -> Iterator[StagedApplication]:
            for n, item in enumerate(source.applications()):
                if n == 0:  # the header is read with the first application
                    summary.submission_id = source.header.submission_id \
                        if source.header else None
                    summary.header_filer = source.header.filer if source.header else None
                    summary.schema_version = source.header.schema_version \
                        if source.header else None
                    clash = submission_id_clash(self.ledger, sub, summary.submission_id)
                    if clash is not None:
                        raise RejectedSubmission(clash)
                yield item

        partner = self.config.partner(sub.partner) if sub.partner else None
        with sinks.decisions(summary, fmt) as out:
            # Inside the sink's transaction: the counter is read where numbers are recorded.
            issuer = LicenseIssuer(
                self.ledger, self.on, self.config.gateway.license_validity_days,
                partner.max_licenses_per_day if partner else None, file_id=sub.file_id,
                registered=partner is not None and partner.registered)
            try:
                for item, outcome in decide(issuer.ahead(items(), sub.partner), ref_counts,
                                            sub.partner, issuer):
                    summary.count(outcome)
                    out.add(item, outcome)
                    TURNS.share()
                summary.settle_status()
                out.finish(summary, issuer)
            finally:
                issuer.release()  # the numbers drawn ahead and not issued
