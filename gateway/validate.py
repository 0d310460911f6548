"""Phase 1 of processing: read a file, run XSD and value rules, stage each application.

Staging goes to a spool file (one pickle per application) so that a file of a million lines
is never held in memory, and so that the decisions that need the whole file (A105: the same
ref twice) are taken in phase 2, before anything is issued.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gateway.amounts import canonical_amount
from gateway.detect import Format
from gateway.errors import RejectedSubmission
from gateway.findings import Finding, finding
from gateway.model import APPLICATION_FIELDS, Application, SubmissionHeader
from gateway.parse_xml import XmlSubmission, xsd_findings
from gateway.rules import LineResult, RuleContext, check_application

_APP_ATTRS = tuple(attr for attr, _ in APPLICATION_FIELDS)


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


def application_digest(app: Application) -> str:
    """SHA-256 of the request's content, independent of formatting ("24000" = "24000.000").

    The same ref with the same digest is the same request (I201); another digest is A104.
    Fields are joined with separators that cannot occur in parsed values (C0 controls).
    """
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

    ``header`` is known once the first application has been yielded.
    """

    def __init__(self, path: Path, fmt: Format, ctx: RuleContext) -> None:
        if fmt != "xml":
            raise RejectedSubmission(finding(
                "F002", "CSV submissions are not enabled for this partner yet: send XML."))
        self.path = path
        self.ctx = ctx
        self._xml = XmlSubmission(path)

    @property
    def header(self) -> SubmissionHeader | None:
        return self._xml.header

    def applications(self) -> Iterator[StagedApplication]:
        ctx = self.ctx
        for seq, parsed in enumerate(self._xml.applications(), start=1):
            check = check_application(parsed.app, ctx)
            findings = check.findings
            if parsed.xsd_errors:
                findings = findings + xsd_findings(parsed, findings)
            yield StagedApplication(seq, parsed.app, findings, check.lines, check.exempt,
                                    application_digest(parsed.app))


def stage_file(path: Path, fmt: Format, ctx: RuleContext, spool: Path) -> Staged:
    """Phase 1 to a spool (the two-pass path). Raises ``RejectedSubmission`` on F-codes."""
    reader = Reader(path, fmt, ctx)
    counts: Counter[str] = Counter()
    count = 0
    spool.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(spool, "wb") as fh:
            dump = pickle.Pickler(fh, protocol=pickle.HIGHEST_PROTOCOL)
            for item in reader.applications():
                count += 1
                if item.app.ref:
                    counts[item.app.ref] += 1
                dump.dump(item)
                dump.clear_memo()
    except BaseException:
        spool.unlink(missing_ok=True)
        raise
    return Staged(reader.header, spool, count, counts)


def spool_path(work_dir: Path, file_id: str) -> Path:
    return work_dir / f".{file_id}.{os.getpid()}.staged"
