"""Phase 1 of processing: read a file, run XSD and value rules, stage each application.

Staging goes to a spool file (one pickle per application) so that a file of a million lines
is never held in memory, and so that the decisions that need the whole file (A105: the same
ref twice) are taken in phase 2, before anything is issued.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from operator import attrgetter
from pathlib import Path

from gateway.findings import Finding, bounded
from gateway.model import (
    APPLICATION_FIELDS,
    Application,
    ProductLine,
    SubmissionHeader,
    line_number,
)
from gateway.parse.csv_file import CsvApplication, CsvSubmission, RowMapping, closed, join
from gateway.parse.detect import Format, detect_format
from gateway.parse.mapping import CsvMapping, Mapping, XsltMapping, applicable
from gateway.parse.xml_file import XmlSubmission
from gateway.parse.xml_model import ParsedApplication, xsd_findings
from gateway.turns import TURNS
from gateway.validate.amounts import canonical_amount
from gateway.validate.rules import LineResult, RuleContext, check_application

_APP_ATTRS = tuple(attr for attr, _ in APPLICATION_FIELDS)
_app_values = attrgetter(*_APP_ATTRS)  # the fields in one C call, not a getattr each


@dataclass(slots=True)
class StagedApplication:
    seq: int
    app: Application
    findings: list[Finding]
    lines: list[LineResult]
    exempt: bool
    digest: str


@dataclass
class Staged:
    """The result of phase 1: the header, the spool, and how often each ref appeared."""

    header: SubmissionHeader | None
    spool: Path
    count: int
    ref_counts: Counter[str] = field(default_factory=Counter)

    def applications(self) -> Iterator[StagedApplication]:
        with open(self.spool, "rb") as fh:
            for _ in range(self.count):
                yield pickle.load(fh)

    def discard(self) -> None:
        self.spool.unlink(missing_ok=True)


# Marks a digest of version 2, so that no version-2 text can be read as a version-1 one.
_DIGEST_V2 = "\x1d2"


def application_digest(app: Application) -> str:
    """SHA-256 of the request's content, however it is written: amounts ("24000" =
    "24000.000"), line numbers ("01" = "1") and the order of the lines do not count.

    The same ref with the same digest is the same request (I201); another digest is A104.
    Fields are joined with separators that cannot occur in parsed values (C0 controls).
    Version 2 (issue 10); ledgers keep version-1 digests, see ``legacy_application_digest``.
    """
    head = [_DIGEST_V2, app.ref or "", *[v or "" for v in _app_values(app)]]
    # Contract 1.1: what the license is (a low-value one, a registered number) is content;
    # appended only when given, so that every digest of a 1.0 request stays as it was.
    # ``corrects`` is not content: the same correction sent again is the same request (I201).
    if app.kind or app.license_number:
        head += ["\x1d", app.kind or "", app.license_number or ""]
    lines = sorted("\x1f".join(_line_parts(line)) for line in app.lines)
    return hashlib.sha256("\x1e".join(["\x1f".join(head), *lines]).encode("utf-8")).hexdigest()


def _line_parts(line: ProductLine) -> tuple[str, ...]:
    line_no = line.line_no or ""
    if line_no[:1] == "0":  # a number with a leading zero is written as the number
        number = line_number(line_no)
        line_no = line_no if number is None else str(number)
    return (line_no,
            (line.hts or "").replace(".", ""), line.description or "",
            line.smelt_country_largest or "", line.smelt_country_second or "",
            line.cast_country or "", canonical_amount(line.quantity_kg) or "",
            canonical_amount(line.value_usd) or "")


def _no_digest(app: Application) -> str:
    return ""


def legacy_application_digest(app: Application) -> str:
    """The digest of version 1 (before issue 10): the lines in file order, their numbers as
    written. Licenses issued before hold it; never recomputed, as the lines are not kept."""
    parts = [app.ref or ""]
    parts += [getattr(app, a) or "" for a in _APP_ATTRS]
    for line in app.lines:
        parts.append("\x1e")
        parts += (line.line_no or "", (line.hts or "").replace(".", ""), line.description or "",
                  line.smelt_country_largest or "", line.smelt_country_second or "",
                  line.cast_country or "", canonical_amount(line.quantity_kg) or "",
                  canonical_amount(line.value_usd) or "")
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


class Reader:
    """Reads one file as checked applications, in file order (phase 1, streaming).

    ``header`` is known once the first application has been yielded. A CSV application is
    a run of consecutive rows with one ref; a ref that comes back later is joined to its first
    run by ``stage_file`` (the one-pass path stops at it: see ``licensing.decide.RepeatedRef``).
    """

    def __init__(self, path: Path, fmt: Format, ctx: RuleContext,
                 mapping: RowMapping | None = None, file_name: str | None = None,
                 digests: bool = True) -> None:
        self.path = path
        self.fmt = fmt
        # Without: each digest is "" (validate.read_process's child leaves them to its parent).
        self._digest = application_digest if digests else _no_digest
        if fmt == "csv":
            self.ctx = replace(ctx, source_format="csv")
            self._csv: CsvSubmission | None = CsvSubmission(path, mapping, file_name)
            self._xml: XmlSubmission | None = None
        else:
            self.ctx = ctx
            self._csv = None
            self._xml = XmlSubmission(path)

    @property
    def header(self) -> SubmissionHeader | None:
        if self._csv is not None:
            sid = self._csv.submission_id
            return SubmissionHeader(sid) if sid else None
        return self._xml.header if self._xml else None

    def applications(self) -> Iterator[StagedApplication]:
        check = self.check
        for seq, raw in enumerate(self.read(), start=1):
            yield check(seq, raw)

    def read(self) -> Iterator[ParsedApplication | CsvApplication]:
        """The applications as read, not yet checked (``check`` does that)."""
        if self._csv is not None:
            return self._csv.applications()
        assert self._xml is not None
        return self._xml.applications()

    def check(self, seq: int, raw: ParsedApplication | CsvApplication) -> StagedApplication:
        """An application as read, checked: the value rules, its findings bounded, its digest."""
        if type(raw) is CsvApplication:
            return self.check_csv(seq, raw)
        assert isinstance(raw, ParsedApplication)
        check = check_application(raw.app, self.ctx)
        findings = raw.findings + check.findings if raw.findings else check.findings
        if raw.xsd_errors:
            findings = findings + xsd_findings(raw, findings)
        findings = bounded(findings, ref=raw.app.ref, unlisted=raw.unlisted,
                           source_line=raw.app.source_line)
        return StagedApplication(seq, raw.app, findings, check.lines, check.exempt,
                                 self._digest(raw.app))

    def raw_csv(self) -> Iterator[CsvApplication]:
        """The runs of rows, their line bound not yet applied (``parse.csv_file.closed``)."""
        assert self._csv is not None
        return self._csv.applications(close=False)

    def check_csv(self, seq: int, chunk: CsvApplication) -> StagedApplication:
        check = check_application(chunk.app, self.ctx)
        findings = bounded(chunk.findings + check.findings, ref=chunk.app.ref,
                           source_line=chunk.app.source_line)
        return StagedApplication(seq, chunk.app, findings, check.lines,
                                 check.exempt, self._digest(chunk.app))


def stage_file(path: Path, fmt: Format, ctx: RuleContext, spool: Path,
               mapping: RowMapping | None = None, file_name: str | None = None) -> Staged:
    """Phase 1 to a spool (the two-pass path). Raises ``RejectedSubmission`` on F-codes."""
    reader = Reader(path, fmt, ctx, mapping, file_name)
    counts: Counter[str] = Counter()
    count = 0
    spool.parent.mkdir(parents=True, exist_ok=True)
    items = reader.applications() if fmt != "csv" else _joined_csv(reader, spool)
    try:
        with open(spool, "wb") as fh:
            dump = pickle.Pickler(fh, protocol=pickle.HIGHEST_PROTOCOL)
            for item in items:
                count += 1
                if item.app.ref:
                    counts[item.app.ref] += 1
                dump.dump(item)
                dump.clear_memo()
                TURNS.share()  # the whole file, in a pass's turn: others get theirs
    except BaseException:
        spool.unlink(missing_ok=True)
        raise
    return Staged(reader.header, spool, count, counts)


def _joined_csv(reader: Reader, spool: Path) -> Iterator[StagedApplication]:
    """CSV runs of rows joined by ref (rows of one ref need not be consecutive), then checked.

    The runs go to a scratch SQLite file on disk, and a ref that comes back is joined from
    there where its first run stands: memory holds one application at a time, however many
    refs come back how often (red-team finding 7 of issue 10), and each keeps at most
    MAX_LINES + 1 lines, like consecutive rows (``parse.csv_file.join``).
    """
    store = spool.with_name(spool.name + ".runs")
    store.unlink(missing_ok=True)
    db = sqlite3.connect(store)
    try:
        db.execute("PRAGMA journal_mode = OFF")  # scratch: no journal, no sync
        db.execute("PRAGMA synchronous = OFF")
        db.execute("CREATE TABLE runs (n INTEGER PRIMARY KEY, ref TEXT, data BLOB NOT NULL)")
        runs: Counter[str] = Counter()

        def rows() -> Iterator[tuple[int, str | None, bytes]]:
            for n, chunk in enumerate(reader.raw_csv()):
                # A cancellation row is its own unit (guide 5.1b): stored without its ref, it
                # is never joined with the ref's application rows (its ref still counts, A105).
                ref = None if chunk.app.cancel else chunk.app.ref
                if ref:
                    runs[ref] += 1
                yield n, ref, pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)

        db.executemany("INSERT INTO runs VALUES (?, ?, ?)", rows())
        db.execute("CREATE INDEX runs_ref ON runs (ref, n)")
        db.commit()
        seq = 0
        for n, ref, data in db.execute("SELECT n, ref, data FROM runs ORDER BY n"):
            if ref and runs[ref] < 0:
                continue  # joined where its first run stood
            chunk = pickle.loads(data)
            if ref and runs[ref] > 1:
                runs[ref] = -1
                for (later,) in db.execute("SELECT data FROM runs WHERE ref = ? AND n > ? "
                                           "ORDER BY n", (ref, n)):
                    join(chunk, pickle.loads(later))
            seq += 1
            yield reader.check_csv(seq, closed(chunk))
    finally:
        db.close()
        store.unlink(missing_ok=True)


def spool_path(work_dir: Path, file_id: str) -> Path:
    return work_dir / f".{file_id}.{os.getpid()}.staged"


@dataclass
class Prepared:
    """A received file made ready to read: its format, and the file to read (an XSLT
    mapping's output for a partner whose XML differs from ours)."""

    path: Path
    fmt: Format
    ctx: RuleContext
    csv_mapping: RowMapping | None
    file_name: str
    temporary: Path | None = None

    def reader(self, digests: bool = True) -> Reader:
        return Reader(self.path, self.fmt, self.ctx, self.csv_mapping, self.file_name, digests)

    def stage(self, spool: Path) -> Staged:
        return stage_file(self.path, self.fmt, self.ctx, spool, self.csv_mapping,
                          self.file_name)

    def cleanup(self) -> None:
        if self.temporary is not None:
            self.temporary.unlink(missing_ok=True)


def prepare(path: Path, ctx: RuleContext, mapping: Mapping | None, work_dir: Path,
            file_name: str) -> Prepared:
    """Detect the format (with the partner's CSV header names) and apply an XSLT mapping.

    Raises ``RejectedSubmission``: F002 (neither format), F004 (checked on the partner's own
    bytes, before the stylesheet runs), F001/F009 (not parseable), F005 (the stylesheet
    cannot turn the document into a submission).
    """
    mapping = applicable(mapping, path)
    csv_mapping = mapping if isinstance(mapping, CsvMapping) else None
    if csv_mapping is not None:
        fmt = detect_format(path, csv_mapping.headers, csv_mapping.delimiter,
                            csv_mapping.encoding)
        # Its messages speak the partner's date pattern (issue 14, 9b).
        ctx = replace(ctx, date_format=csv_mapping.date_format)
    else:
        fmt = detect_format(path)
    if fmt != "xml" or not isinstance(mapping, XsltMapping):
        return Prepared(path, fmt, ctx, csv_mapping, file_name)
    work_dir.mkdir(parents=True, exist_ok=True)
    target = work_dir / f".{path.name}.{os.getpid()}.mapped.xml"
    mapping.to_submission(path, target)
    return Prepared(target, fmt, ctx, None, file_name, temporary=target)
