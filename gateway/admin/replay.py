"""`replay` (guide section 8): the archive decided again, in memory, by the rules of a date.

Every file the gateway finished (its original kept in data/archive, or data/failed for an
F-code) is decided again by the one decision core (``licensing.pipeline``), with sinks that
keep only what is compared, and set beside what the ledger recorded: per application (by its
place in the file) its status and the codes of its findings (``A131:2`` is A131 on line 2),
and the file's status, counts and own codes. Nothing is written: the ledger is opened
read-only, the core's work files go to a temp folder outside the data folder, and there is no
output, no event, no file moved.

What "decided again" means (docs/operations.md, "Replay"):

- the rule set is the as-of date's: ``pipeline.rule_context`` gives its dated rules and the
  HTS edition in force then, as for a run on that date;
- the history is the ledger as it was before the file (``LedgerBefore``): neither its own
  licenses nor a later file's count, so I201, A104, A105, F006, F007 and the daily quota
  (A109, counted on the day the file was processed) come out as they did;
- what is measured from the day the file was processed stays so: the A151/A152 windows are
  moved by the days between that day and the as-of date (``as_processed``), so that a replay
  shows what the rules change, not that time has passed.

So an unchanged archive replayed shows no change, and a rule or an edition that takes effect
shows exactly the applications it moves (``tests/test_replay.py``).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path

from gateway.admin.check import DrySinks, file_sha256, history
from gateway.config import Config
from gateway.errors import FatalError
from gateway.findings import MAX_FILE_FINDINGS, Finding
from gateway.ledger.db import Database
from gateway.ledger.licenses import PriorLicense
from gateway.ledger.reads.files import FileQuery
from gateway.ledger.store import FILE_COLUMNS, FileRow, Ledger, utc_now
from gateway.licensing.issuer import LicenseIssuer
from gateway.licensing.pipeline import DecisionCore, Submission
from gateway.licensing.results import AppOutcome, FileSummary
from gateway.model import FileStatus
from gateway.textsafe import printable
from gateway.validate.staging import StagedApplication

NOT_DECIDED = "-"  # an application the other side did not decide (the file rejected whole)
_PAGE = 200  # file rows read at a time: the archive is never listed whole in memory

Watch = Callable[[Path, str], None]  # (the file about to be read, a label): a progress line


# -- the ledger as a file's run saw it -----------------------------------------------------------


class LedgerBefore(Ledger):
    """The ledger, read-only, as the run of one file (``at``) saw it: only licenses of earlier
    files are its history (I201, A104, A109), and its quota counts the licenses of the day
    the file was processed, whatever the as-of date. F006 and F007 read the files before it
    through ``Submission.history_before``; nothing here can draw a license number."""

    def __init__(self, target: Path | str) -> None:
        super().__init__(target, readonly=True)
        self.before = ""  # the file being replayed ("": every file counts)
        self.day: date | None = None

    def at(self, row: FileRow) -> None:
        self.before = row.file_id
        self.day = date.fromisoformat(row.rule_set_date) if row.rule_set_date else None

    def has_licenses(self, partner: str, before: str = "") -> bool:
        return super().has_licenses(partner, self.before)

    def prior_license(self, partner: str, ref: str, before: str = "") -> PriorLicense | None:
        return super().prior_license(partner, ref, self.before)

    def prior_licenses(self, partner: str, refs: Sequence[str],
                       before: str = "") -> dict[str, PriorLicense]:
        return super().prior_licenses(partner, refs, self.before)

    def license_by_number(self, number: str, before: str = "") -> PriorLicense | None:
        return super().license_by_number(number, self.before)

    def licenses_issued(self, partner: str, day: date, before: str = "") -> int:
        return super().licenses_issued(partner, self.day or day, self.before)

    def submission_id_conflict(self, partner: str, submission_id: str, sha256: str,
                               file_id: str, before: str = "") -> FileRow | None:
        # A run sees no later file; a replay must not either (a file resent fixed under its
        # SubmissionId would make the broken first one F007).
        return super().submission_id_conflict(partner, submission_id, sha256, file_id,
                                              self.before)


def as_processed(config: Config, row: FileRow, as_of: date) -> Config:
    """``config`` with the A151/A152 windows moved by the days from the day ``row`` was
    processed to ``as_of``, so that they stay measured from the file's own day."""
    if not row.rule_set_date:
        return config
    shift = (as_of - date.fromisoformat(row.rule_set_date)).days
    if shift == 0:
        return config
    r = config.rules
    # A151: import > as_of + (before - shift) = day + before; A152 likewise, the other way.
    return replace(config, rules=replace(
        r, max_days_before_import=r.max_days_before_import - shift,
        max_days_after_import=r.max_days_after_import + shift))


# -- what is compared ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class State:
    """An application's (or a file's) status and the codes of its findings, sorted."""

    status: str
    codes: tuple[str, ...] = ()

    def text(self) -> str:
        return " ".join((self.status, *self.codes))


@dataclass(frozen=True, slots=True)
class AppChange:
    seq: int  # the application's place in the file, from 1
    ref: str | None
    before: State
    after: State


@dataclass(slots=True)
class Decisions:
    """One side of the comparison, the ledger's record or the replay's: the file's status and
    counts, each application's ref and status by its place, and the findings' codes by ref
    (None: the file's own, and those of an application without a ref)."""

    status: str
    # applications, licensed, not required, rejected, cancelled
    counts: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    apps: dict[int, tuple[str | None, str]] = field(default_factory=dict)
    codes: dict[str | None, list[str]] = field(default_factory=dict)
    listed: int = 0  # findings: at the acknowledgment's bound, codes are not compared

    def code(self, ref: str | None, code: str, line: int | None) -> None:
        self.codes.setdefault(ref, []).append(code if line is None else f"{code}:{line}")
        self.listed += 1

    def finding(self, f: Finding) -> None:
        self.code(f.ref, f.code, f.line)

    def state(self, status: str, ref: str | None, with_codes: bool) -> State:
        return State(status, tuple(sorted(self.codes.get(ref, ()))) if with_codes else ())


def recorded(db: Database, row: FileRow) -> Decisions:
    """What the ledger recorded for ``row`` (its own findings and applications)."""
    out = Decisions(row.status or NOT_DECIDED,
                    (row.applications, row.licensed, row.not_required, row.rejected,
                     row.cancelled))
    for seq, ref, status in db.execute("SELECT seq, ref, status FROM applications WHERE "
                                       "file_id = ?", (row.file_id,)):
        out.apps[int(seq)] = (ref, status)
    for ref, line, code in db.execute("SELECT ref, line, code FROM findings WHERE file_id = ?",
                                      (row.file_id,)):
        out.code(ref, code, line)
    return out


@dataclass
class FileReplay:
    """One archived file: what it got, what it would get, the applications that would change;
    or why it was not replayed (``note`` without ``after``)."""

    row: FileRow
    before: State | None = None
    after: State | None = None
    counts: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # (before, after)
    changes: list[AppChange] = field(default_factory=list)
    note: str | None = None

    @property
    def replayed(self) -> bool:
        return self.after is not None

    @property
    def changed(self) -> bool:
        return self.after is not None and (self.after != self.before or bool(self.changes)
                                           or self.counts is not None)


def compare(result: FileReplay, before: Decisions, after: Decisions) -> None:
    """Fill ``result`` with the differences of ``after`` from ``before``."""
    details = result.row.details_purged_at is None
    # At the bound (findings.MAX_FILE_FINDINGS) the listed codes depend on the findings of
    # the applications before: a rule that adds one early would move codes later in the file.
    with_codes = details and max(before.listed, after.listed) < MAX_FILE_FINDINGS
    if not details:
        result.note = (f"details purged {result.row.details_purged_at}: compared by file "
                       "status and counts")
    elif not with_codes:
        result.note = f"{MAX_FILE_FINDINGS:,} findings or more: compared by status"
    result.before = before.state(before.status, None, with_codes)
    result.after = after.state(after.status, None, with_codes)
    if before.counts != after.counts:
        result.counts = (before.counts, after.counts)
    if not details:
        return
    for seq in sorted(before.apps.keys() | after.apps.keys()):
        b_ref, b_status = before.apps.get(seq, (None, NOT_DECIDED))
        a_ref, a_status = after.apps.get(seq, (None, NOT_DECIDED))
        # An application without a ref has its codes with the file's (the ledger cannot
        # tell them apart): compared there.
        was = before.state(b_status, b_ref, with_codes and b_ref is not None)
        now = after.state(a_status, a_ref, with_codes and a_ref is not None)
        if was != now:
            result.changes.append(AppChange(seq, b_ref if seq in before.apps else a_ref,
                                            was, now))


# -- the sinks: decisions kept, nothing written ----------------------------------------------


class ReplaySinks(DrySinks):
    """The replay's sinks of the decision core: each file's decisions as ``Decisions``."""

    def __init__(self) -> None:
        self.result: Decisions | None = None
        self.error: str | None = None  # a bug of the gateway met on this file

    def duplicate(self, summary: FileSummary, original: FileRow, notice: Finding) -> bool:
        # As a run records it: the original's counts, the notice, no application.
        self.result = Decisions(FileStatus.DUPLICATE.value, (
            original.applications, original.licensed, original.not_required, original.rejected,
            original.cancelled))
        self.result.finding(notice)
        return True

    def open_pass(self, summary: FileSummary, fmt: str) -> ReplayPass:
        return ReplayPass(self)

    def rejected(self, summary: FileSummary, fmt: str | None) -> None:
        self.result = Decisions(summary.status.value)
        for f in summary.findings:
            self.result.finding(f)

    def internal_error(self, err: Exception) -> Finding | None:
        self.error = ascii(f"{type(err).__name__}: {err}")[1:-1][:300]
        return super().internal_error(err)


class ReplayPass:
    """One pass: the outcomes as the ledger would have recorded them (findings as bounded)."""

    def __init__(self, sinks: ReplaySinks) -> None:
        self.sinks = sinks
        self.decisions = Decisions(NOT_DECIDED)

    def add(self, item: StagedApplication, outcome: AppOutcome) -> None:
        self.decisions.apps[outcome.seq] = (outcome.ref, outcome.status.value)
        for f in outcome.findings:
            self.decisions.finding(f)

    def finish(self, summary: FileSummary, issuer: LicenseIssuer) -> None:
        for f in summary.findings:  # the file's own: the count of those not listed
            self.decisions.finding(f)
        self.decisions.status = summary.status.value
        self.decisions.counts = (summary.applications, summary.licensed,
                                 summary.not_required, summary.rejected, summary.cancelled)
        self.sinks.result = self.decisions

    def discard(self) -> None:
        self.decisions = Decisions(NOT_DECIDED)


# -- the archive, file by file ---------------------------------------------------------------


@dataclass(frozen=True)
class ReplayQuery:
    """Which archived files: a partner's, processed from ``since`` through ``until`` (both
    inclusive). The processing date is the day the report names and the file id carries: it
    is the receipt's day in the gateway's zone, or the ``--as-of`` the file was run with."""

    partner: str = ""
    since: date | None = None
    until: date | None = None

    def where(self, config: Config) -> tuple[str, tuple[object, ...]]:
        where, params = FileQuery(partner=self.partner).where(config.gateway.zone)
        # Finished files only: one in progress or quarantined was never decided.
        where += " AND state IN ('ARCHIVED', 'DONE') AND status IS NOT NULL"
        if self.since is not None:
            where += " AND rule_set_date >= ?"
            params += (self.since.isoformat(),)
        if self.until is not None:
            where += " AND rule_set_date <= ?"
            params += (self.until.isoformat(),)
        return where, params


def archived(db: Database, where: str, params: tuple[object, ...]) -> Iterator[FileRow]:
    """The files in the order they were received (file ids), a page at a time."""
    last = ""
    while True:
        rows = db.execute(f"SELECT {', '.join(FILE_COLUMNS)} FROM files WHERE {where} "
                          f"AND file_id > ? ORDER BY file_id LIMIT {_PAGE}",
                          (*params, last)).fetchall()
        yield from (FileRow(*r) for r in rows)
        if len(rows) < _PAGE:
            return
        last = rows[-1][0]


def original(row: FileRow) -> Path | str:
    """The file's original bytes, or why there are none (said, never a failure)."""
    if row.archive_purged_at:
        return f"not replayed: the original was purged {row.archive_purged_at}"
    if not row.archive_path:
        return "not replayed: the original was never archived"
    path = Path(row.archive_path)
    if not path.is_file():
        return f"not replayed: the original is not at {printable(str(path))} any more"
    if file_sha256(path) != row.sha256:
        return "not replayed: the archived copy is not what was received (SHA-256 differs)"
    return path


@dataclass
class Summary:
    as_of: date
    files: int = 0  # finished files that the query selects
    replayed: int = 0
    changed: int = 0  # files with at least one change
    applications: int = 0  # applications that would change
    not_replayed: int = 0
    partial: int = 0  # compared by status (and counts) only: details purged, or the bound
    transitions: Counter[str] = field(default_factory=Counter)  # "LICENSED -> REJECTED": n

    def add(self, result: FileReplay) -> None:
        self.files += 1
        if not result.replayed:
            self.not_replayed += 1
            return
        self.replayed += 1
        self.partial += result.note is not None
        if result.changed:
            self.changed += 1
        self.applications += len(result.changes)
        for c in result.changes:
            self.transitions[f"{c.before.status} -> {c.after.status}"] += 1


class Replay:
    """``for result in Replay(config, as_of, query).files(watch)``: each archived file, in the
    order received; ``summary`` counts them. Reads the ledger only."""

    def __init__(self, config: Config, as_of: date, query: ReplayQuery) -> None:
        self.config = config
        self.as_of = as_of
        self.query = query
        self.summary = Summary(as_of)

    def files(self, watch: Watch | None = None) -> Iterator[FileReplay]:
        ledger = history(self.config, "replay", LedgerBefore)
        if ledger is None:  # nothing processed yet
            return
        try:
            where, params = self.query.where(self.config)
            total = int(ledger.db.execute(f"SELECT COUNT(*) FROM files WHERE {where}",
                                          params).fetchone()[0])
            with tempfile.TemporaryDirectory(prefix="aimgw-replay-") as tmp:
                for n, row in enumerate(archived(ledger.db, where, params), 1):
                    result = self._one(ledger, row, Path(tmp), watch,
                                       f"replay {n:,}/{total:,} {row.file_id}")
                    self.summary.add(result)
                    yield result
        finally:
            ledger.close()

    def _one(self, ledger: LedgerBefore, row: FileRow, tmp: Path, watch: Watch | None,
             label: str) -> FileReplay:
        result = FileReplay(row)
        source = original(row)
        if isinstance(source, str):
            result.note = source
            return result
        try:
            config = as_processed(self.config, row, self.as_of)
            config.partner(row.partner)
        except FatalError:
            result.note = f"not replayed: partner {row.partner} is not configured any more"
            return result
        if watch is not None:
            watch(source, label)
        before = recorded(ledger.db, row)
        ledger.at(row)
        sinks = ReplaySinks()
        sub = Submission(
            file_id=row.file_id, partner=row.partner, name=row.remote_name, path=source,
            sha256=row.sha256, size=row.size, received_at=datetime.fromisoformat(
                row.received_at), history_before=row.file_id, reprocess_of=row.reprocess_of)
        DecisionCore(config, ledger, self.as_of, tmp).decide_file(sub, sinks, utc_now())
        if sinks.error is not None:
            result.note = f"not replayed: an internal error of the gateway ({sinks.error})"
            return result
        assert sinks.result is not None, "the core decides every file"
        compare(result, before, sinks.result)
        return result
