"""Dry run: the acknowledgment a file would get, with nothing issued, moved or written.

The configured ledger (SQLite or PostgreSQL) is opened read-only (when it exists) so that
I201, A104, F006 and F007 come out as they would in a real run; licenses that would be issued
read ``PENDING``. A ledger that is configured but cannot be read fails the check (exit 2).

``DrySinks`` is what every sink of the decision core that commits nothing shares (``check``
here, ``replay`` in ``gateway.admin.replay``); ``history`` opens their read-only ledger.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Protocol, TypeVar

from gateway.config import Config
from gateway.errors import FatalError, GatewayError
from gateway.findings import Finding
from gateway.ledger.store import FileRow, Ledger, ledger_exists, ledger_location, utc_now
from gateway.licensing.issuer import LicenseIssuer
from gateway.licensing.pipeline import DecisionCore, PassSink, Submission
from gateway.licensing.results import AppOutcome, FileSummary
from gateway.model import FileStatus
from gateway.outputs.ack_csv import duplicate_csv_ack
from gateway.outputs.ack_xml import duplicate_ack
from gateway.parse.detect import canonical_content
from gateway.service.acks import ack_kind, ack_writer, render_whole_ack, stored_ack
from gateway.service.process import internal_error_finding, processing_date
from gateway.storage import Layout
from gateway.validate.staging import StagedApplication


@dataclass(frozen=True)
class CheckResult:
    status: FileStatus
    ack: bytes


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(config: Config, path: Path, partner_id: str | None,
               as_of: date | None = None, ack_format: str | None = None) -> CheckResult:
    """Validate ``path`` as ``partner_id`` would send it; return the would-be acknowledgment.

    ``ack_format`` None: the form the file would get (CSV for CSV input, else XML). The
    decisions are the run's own (``licensing.pipeline``), from a read-only ledger.
    """
    now = utc_now()
    sub = Submission(file_id="CHECK", partner=partner_id, name=path.name, path=path,
                     sha256=file_sha256(path), size=path.stat().st_size, received_at=now,
                     history_before="")
    ledger = history(config, "check", _read_only)
    try:
        with tempfile.TemporaryDirectory(prefix="aimgw-check-") as tmp:
            sinks = CheckSinks(Layout.of(config), ack_format, Path(tmp),
                               partner_hint(config, path) if partner_id is None else "")
            core = DecisionCore(config, ledger, processing_date(config, as_of), Path(tmp))
            core.decide_file(sub, sinks, now)
            assert sinks.result is not None, "the core gives every file an acknowledgment"
            return sinks.result
    finally:
        if ledger is not None:
            ledger.close()


L = TypeVar("L", bound=Ledger)


def partner_hint(config: Config, path: Path) -> str:
    """What a file rejected whole is told when checked without ``--partner`` while partners
    have mappings and the file is not canonical: it may be one of theirs (issue 14, 9b)."""
    mapped = [p.id for p in config.partners if p.mapping or p.mappings]
    if not mapped or canonical_content(path) is not None:
        return ""
    return ("If this is the file of a partner with a mapping, check it with --partner ID "
            f"(partners with a mapping: {', '.join(mapped)}).")


def _read_only(target: Path | str) -> Ledger:
    return Ledger(target, readonly=True)


def history(config: Config, command: str, opener: Callable[[Path | str], L]) -> L | None:
    """The configured ledger (SQLite or PostgreSQL), opened read-only by ``opener``, for the
    history checks (I201, A104, F006, F007); None before the first run. FatalError (exit 2)
    when it is configured but cannot be read: a dry run without the history would answer
    wrongly (a check ACCEPTED, a replay "no change")."""
    if not ledger_exists(config):
        return None
    try:
        ledger = opener(ledger_location(config))
    except GatewayError as err:
        raise FatalError(f"{command} cannot read the ledger for the history checks (I201, "
                         f"A104, F006, F007): {err}") from err
    if ledger.schema_version() == 0:  # an empty database: no history yet
        ledger.close()
        return None
    return ledger


class DryPass(PassSink, Protocol):
    def discard(self) -> None:
        """The pass failed (a repeated ref: the core decides again): forget it."""


class DrySinks(abc.ABC):
    """What the sinks of a dry run share: a pass that fails is forgotten, and a bug of the
    gateway is said as such (an F001 that names it, never a traceback) rather than raised.
    Each dry run (check, replay) says where its pass goes."""

    @abc.abstractmethod
    def open_pass(self, summary: FileSummary, fmt: str) -> DryPass:
        """A new pass over the file, holding its decisions in memory."""

    @contextlib.contextmanager
    def decisions(self, summary: FileSummary, fmt: str) -> Iterator[DryPass]:
        out = self.open_pass(summary, fmt)
        try:
            yield out
        except BaseException:
            out.discard()
            raise

    def internal_error(self, err: Exception) -> Finding | None:
        return internal_error_finding(err)

    def reading(self, path: Path) -> None:  # noqa: B027 (not abstract: the same for every dry run)
        """A dry run records no progress: nothing to follow."""


class CheckSinks(DrySinks):
    """``check``'s sinks of the decision core: nothing is committed, the acknowledgment is
    rendered (in a temp folder, as a run streams it) and kept in ``result``."""

    def __init__(self, layout: Layout, ack_format: str | None, tmp: Path,
                 hint: str = "") -> None:
        self.layout = layout
        self.ack_format = ack_format
        self.tmp = tmp
        self.hint = hint  # partner_hint: added to the F-code of a file rejected whole
        self.result: CheckResult | None = None

    def kind(self, fmt: str | None) -> str:
        return self.ack_format or ack_kind(fmt)

    def duplicate(self, summary: FileSummary, original: FileRow, notice: Finding) -> bool:
        stored = stored_ack(self.layout, original)
        kind = stored.name.rsplit(".", 1)[-1]
        if not stored.exists() or self.ack_format not in (None, kind):
            return False  # the original's ack cannot be shown in this form: decide the file
        rewrite = duplicate_csv_ack if kind == "csv" else duplicate_ack
        ack = rewrite(stored, summary.file_name,
                      summary.received_at.isoformat(timespec="seconds"), utc_now(), notice)
        self.result = CheckResult(FileStatus.DUPLICATE, ack)
        return True

    def open_pass(self, summary: FileSummary, fmt: str) -> CheckPass:
        return CheckPass(self, self.kind(fmt), summary.ack_delimiter)

    def rejected(self, summary: FileSummary, fmt: str | None) -> None:
        if self.hint:
            summary.findings = [replace(f, message=f"{f.message} {self.hint}")
                                for f in summary.findings]
        self.result = CheckResult(FileStatus.REJECTED,
                                  render_whole_ack(self.kind(fmt), summary))


class CheckPass:
    """One pass of a check: only the acknowledgment, which ``finish`` reads back."""

    def __init__(self, sinks: CheckSinks, kind: str, delimiter: str = ",") -> None:
        self.sinks = sinks
        self.path = sinks.tmp / "ack"
        self.ack = ack_writer(kind, self.path, delimiter)

    def add(self, item: StagedApplication, outcome: AppOutcome) -> None:
        self.ack.add(outcome, item.app)

    def finish(self, summary: FileSummary, issuer: LicenseIssuer) -> None:
        self.ack.finish(summary)
        self.sinks.result = CheckResult(summary.status, self.path.read_bytes())

    def discard(self) -> None:
        self.ack.discard()
