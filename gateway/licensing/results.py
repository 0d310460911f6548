"""What processing decided, per application and per file: the input of every report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from gateway.findings import FileBound, Finding
from gateway.model import AppStatus, Filer, FileStatus
from gateway.validate.hts import CoveredList
from gateway.validate.rules import LineResult


def has_error(findings: list[Finding]) -> bool:
    """An error among ``findings``: the application is REJECTED."""
    # Loops, not any() over a generator: these two are asked twice an application (the
    # decision and the numbers drawn ahead), where a generator costs 0.2-0.4 us to start.
    for f in findings:  # noqa: SIM110 (see above)
        if f.is_error:
            return True
    return False


def any_covered(lines: list[LineResult]) -> bool:
    """A line whose HTS number is on the covered list: a license is needed (or NOT_REQUIRED)."""
    for r in lines:  # noqa: SIM110 (see has_error)
        if r.covered:
            return True
    return False


@dataclass(slots=True)
class AppOutcome:
    """One application's final status, its license when licensed, and all its findings."""

    seq: int
    ref: str | None
    status: AppStatus
    findings: list[Finding]
    lines: list[LineResult]
    license_number: str | None = None
    valid_from: date | None = None
    valid_through: date | None = None
    reused: bool = False  # I201: the license was issued before
    # Contract 1.1 (guide 5.1b): the license a correction superseded (I202); for a
    # cancellation (status CANCELLED) ``license_number`` is the license it cancelled.
    replaces: str | None = None


@dataclass(slots=True)
class FileSummary:
    """The file-level part of an acknowledgment."""

    file_id: str
    partner: str
    file_name: str
    sha256: str
    received_at: datetime
    processed_at: datetime
    rule_set_date: date
    status: FileStatus
    # The covered-list edition the rules used (the XML ack's ReferenceEdition, contract 1.1).
    reference_edition: CoveredList | None = None
    submission_id: str | None = None
    schema_version: str | None = None  # the XML submission's schemaVersion (its ack's, 1.1)
    header_filer: Filer | None = None  # the XML header's Filer, when the file sent one
    applications: int = 0
    licensed: int = 0
    not_required: int = 0
    rejected: int = 0
    cancelled: int = 0  # cancellation requests with status CANCELLED (the ack's Cancelled)
    new_licenses: int = 0
    findings: list[Finding] = field(default_factory=list)
    # The CSV ack's delimiter: the partner's mapping's ack_delimiter (issue 14, 9b), else ",".
    ack_delimiter: str = ","
    # A reprocess whose ack has another name than the original's: that name (issue 14, 7).
    replaces: str | None = None
    # Not an argument: a copy made with ``dataclasses.replace`` (check's second pass) starts
    # its own count.
    bound: FileBound = field(default_factory=FileBound, init=False, repr=False)

    def count(self, outcome: AppOutcome) -> None:
        """Count ``outcome``, and cut its findings to what the file's bound lets the ack and
        the ledger list (``findings.MAX_FILE_FINDINGS``): every writer of an outcome counts
        it first."""
        if outcome.findings:  # most have none: nothing to bound
            outcome.findings = self.bound.limit(outcome.findings)
        self.applications += 1
        if outcome.status is AppStatus.LICENSED:
            self.licensed += 1
            self.new_licenses += 0 if outcome.reused else 1
        elif outcome.status is AppStatus.NOT_REQUIRED:
            self.not_required += 1
        elif outcome.status is AppStatus.CANCELLED:
            self.cancelled += 1
        else:
            self.rejected += 1

    def settle_status(self) -> FileStatus:
        """ACCEPTED, PARTIAL or REJECTED from the counts (guide section 5); the file-level
        finding that counts the findings not listed, if any."""
        unlisted = self.bound.finding()
        if unlisted is not None and unlisted not in self.findings:
            self.findings = [*self.findings, unlisted]
        if self.rejected == 0:
            self.status = FileStatus.ACCEPTED
        elif self.rejected == self.applications:
            self.status = FileStatus.REJECTED
        else:
            self.status = FileStatus.PARTIAL
        return self.status
