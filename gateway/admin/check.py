"""Dry run: the acknowledgment a file would get, with nothing issued, moved or written.

The configured ledger (SQLite or PostgreSQL) is opened read-only (when it exists) so that
I201, A104, F006 and F007 come out as they would in a real run; licenses that would be issued
read ``PENDING``. A ledger that is configured but cannot be read fails the check (exit 2).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from gateway.config import Config
from gateway.errors import FatalError, GatewayError, RejectedSubmission
from gateway.findings import Finding, finding
from gateway.ledger.store import Ledger, utc_now
from gateway.licensing.decide import LicenseIssuer, RepeatedRef, decide
from gateway.licensing.results import FileSummary
from gateway.model import FileStatus, SubmissionHeader
from gateway.outputs.ack_csv import AckCsvWriter, duplicate_csv_ack, render_csv_ack
from gateway.outputs.ack_xml import AckXmlWriter, duplicate_ack, render_ack
from gateway.parse.detect import check_size
from gateway.parse.mapping import mapping_for
from gateway.service.process import (
    ack_kind,
    internal_error_finding,
    processing_date,
    rule_context,
    stored_ack,
)
from gateway.storage import Layout
from gateway.textsafe import printable
from gateway.validate.staging import Reader, Staged, StagedApplication, prepare


@dataclass(frozen=True)
class CheckResult:
    status: FileStatus
    ack: bytes


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(config: Config, path: Path, partner_id: str | None,
               as_of: date | None = None, ack_format: str | None = None) -> CheckResult:
    """Validate ``path`` as ``partner_id`` would send it; return the would-be acknowledgment.

    ``ack_format`` None: the form the file would get (CSV for CSV input, else XML).
    """
    on = processing_date(config, as_of)
    now = utc_now()
    ledger = _history(config)
    sha256 = _sha256(path)
    summary = FileSummary(file_id="CHECK", partner=partner_id or "", file_name=path.name,
                          sha256=sha256, received_at=now, processed_at=now, rule_set_date=on,
                          status=FileStatus.REJECTED)
    try:
        if ledger is not None and partner_id:
            original = ledger.original_of(partner_id, sha256, "~")
            if original is not None:
                notice = finding("F006", "These bytes were processed before as "
                                 f"{printable(original.remote_name)} (file "
                                 f"{original.file_id}): the original acknowledgment would "
                                 "be sent again.",
                                 value=original.file_id)
                stored = stored_ack(Layout.of(config), original)
                kind = stored.name.rsplit(".", 1)[-1]
                if stored.exists() and ack_format in (None, kind):
                    rewrite = duplicate_csv_ack if kind == "csv" else duplicate_ack
                    ack = rewrite(stored, path.name, now.isoformat(timespec="seconds"), now,
                                  notice)
                    return CheckResult(FileStatus.DUPLICATE, ack)
        with tempfile.TemporaryDirectory(prefix="aimgw-check-") as tmp:
            return _check(config, path, partner_id, ledger, summary, Path(tmp), ack_format)
    finally:
        if ledger is not None:
            ledger.close()


def _history(config: Config) -> Ledger | None:
    """The configured ledger (SQLite or PostgreSQL), read-only, for the history checks (I201,
    A104, F006, F007); None before the first run. FatalError (exit 2) when it is configured
    but cannot be read: a check without the history would answer ACCEPTED wrongly."""
    # imported here: the run's modules, not check's start
    from gateway.ledger.store import ledger_exists, open_ledger

    if not ledger_exists(config):
        return None
    try:
        ledger = open_ledger(config, readonly=True)
    except GatewayError as err:
        raise FatalError(f"check cannot read the ledger for the history checks (I201, A104, "
                         f"F006, F007): {err}") from err
    if ledger.schema_version() == 0:  # an empty database: no history yet
        ledger.close()
        return None
    return ledger


def _check(config: Config, path: Path, partner_id: str | None, ledger: Ledger | None,
           summary: FileSummary, tmp: Path, ack_format: str | None) -> CheckResult:
    base = replace(summary)
    kind = ack_format or "xml"
    try:
        check_size(path, config.gateway.max_file_bytes)
        mapping = mapping_for(config.partner(partner_id).mapping) if partner_id else None
        prepared = prepare(path, rule_context(config, summary.rule_set_date), mapping, tmp,
                           path.name)
        kind = ack_format or ack_kind(prepared.fmt)
        try:
            return _one_pass(config, prepared.reader(), None, partner_id, ledger, summary,
                             tmp, kind)
        except RepeatedRef:
            summary = replace(base)
            staged = prepared.stage(tmp / "staged")
            return _one_pass(config, staged, staged.ref_counts, partner_id, ledger, summary,
                             tmp, kind)
    except RejectedSubmission as rejected:
        return _rejected(base, rejected.finding, kind)
    except GatewayError:
        raise  # the ledger or the configuration: exit 2, said by the CLI
    except Exception as err:  # a bug of the gateway: said as such, never a traceback
        return _rejected(base, internal_error_finding(err), kind)


def _rejected(base: FileSummary, problem: Finding, kind: str) -> CheckResult:
    summary = replace(base, findings=[problem])
    render = render_csv_ack if kind == "csv" else render_ack
    return CheckResult(FileStatus.REJECTED, render(summary, []))


def _one_pass(config: Config, source: Reader | Staged, ref_counts: Counter[str] | None,
              partner_id: str | None, ledger: Ledger | None, summary: FileSummary,
              tmp: Path, kind: str) -> CheckResult:
    writer = (AckCsvWriter if kind == "csv" else AckXmlWriter)(tmp / "ack")
    # A read-only ledger: prior licenses are read (I201, A104), new numbers are PENDING.
    quota = config.partner(partner_id).max_licenses_per_day if partner_id else None
    issuer = LicenseIssuer(ledger, summary.rule_set_date, config.gateway.license_validity_days,
                           quota)

    def items() -> Iterator[StagedApplication]:
        for n, item in enumerate(source.applications()):
            if n == 0:
                _check_submission_id(ledger, partner_id, summary, source.header)
            yield item

    try:
        for _, outcome in decide(items(), ref_counts, partner_id, issuer):
            summary.count(outcome)
            writer.add(outcome)
    except BaseException:
        writer.discard()
        raise
    summary.settle_status()
    writer.finish(summary)
    return CheckResult(summary.status, (tmp / "ack").read_bytes())


def _check_submission_id(ledger: Ledger | None, partner_id: str | None, summary: FileSummary,
                         header: SubmissionHeader | None) -> None:
    summary.submission_id = header.submission_id if header else None
    if ledger is None or not partner_id or not summary.submission_id:
        return
    clash = ledger.submission_id_conflict(partner_id, summary.submission_id, summary.sha256,
                                          "~")
    if clash is not None:
        raise RejectedSubmission(finding(
            "F007", f"SubmissionId {summary.submission_id!r} was used before by file "
            f"{printable(clash.remote_name)} ({clash.file_id}) with different content.",
            field="SubmissionId", value=summary.submission_id))
