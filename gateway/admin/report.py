"""Rendering what admins read (``gateway.ledger.reads``) for a terminal, or as JSON (what a
replay found: ``gateway.admin.replay_report``).

Pure functions from data to text; the CLI prints them. Tables come from ``listing.table``:
one line per row, cut to the terminal's width.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, tzinfo
from typing import Any, TextIO

from gateway.admin import queries
from gateway.admin.actions import PurgeReport
from gateway.admin.listing import files_csv, findings_csv, licenses_csv, more_line, table
from gateway.admin.run_report import file_line
from gateway.config import Config
from gateway.ledger.reads.clock import person_time
from gateway.ledger.reads.files import display_status
from gateway.ledger.reads.health import PartnerHealth
from gateway.ledger.reads.health_words import describe, label
from gateway.ledger.reads.licenses import LicenseRow, LicenseStory
from gateway.ledger.reads.story import FileStory, FindingGroup
from gateway.ledger.store import FileRow
from gateway.model import Filer
from gateway.textsafe import printable

# What ``show`` says to an id that is neither a file's nor a license's.
ID_FORMAT = ("a file id is YYYYMMDD-NNNNNN, its day and number (e.g. 20261201-000001, see "
             "`aim-gateway files`); a license number 1-10 letters and digits (e.g. A26000001, "
             "see `aim-gateway licenses`)")


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


# -- status -------------------------------------------------------------------------------------


def _alert_text(p: PartnerHealth, zone: tzinfo) -> str:
    now = []
    if p.failing:
        now.append(f"FAILING ({p.failures} polls)")
    if p.silent_hours is not None:
        now.append(f"SILENT {p.silent_hours:g} h (expected every "
                   f"{p.partner.expected_cadence_hours:g} h)")
    if now:
        return ", ".join(now)
    if p.last_alert:
        return f"last: {p.last_alert.kind} {person_time(p.last_alert.at, zone)}"
    return "-"


RED, RESET = "\x1b[1;31m", "\x1b[0m"


def status(config: Config, json_out: bool, stream: TextIO) -> str:
    """``aim-gateway status``: every partner's health and the note on the running service,
    in red on a terminal (unless $NO_COLOR is set, https://no-color.org)."""
    now = datetime.now(UTC)
    partners, note = queries.partners(config, now), queries.running_note(config, now)
    if json_out:
        return status_json(partners, now, note)
    color = not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()
    return status_text(partners, now, note, color=color, zone=config.gateway.zone)


def status_text(partners: list[PartnerHealth], now: datetime | None = None,
                note: str | None = None, color: bool = False, zone: tzinfo = UTC) -> str:
    """The partners' table; a partner in alarm has its state in capitals (``FAILING (3
    polls)``), its row in red when ``color`` (a terminal), and a line saying why below."""
    now = now or datetime.now(UTC)
    rows = [[p.partner.id, p.partner.kind, label(p, now), person_time(p.last_poll, zone),
             f"{last.remote_name} ({display_status(last)})" if last else None,
             person_time(last.received_at if last else None, zone),
             p.failures, "-" if p.backlog is None else p.backlog, p.unfinished, p.quarantined,
             ", ".join(f"{k} {v}" for k, v in sorted((p.files or {}).items())) or "0",
             p.licenses, _alert_text(p, zone)] for p in partners for last in [p.last_file]]
    lines = table(["partner", "kind", "state", "last poll", "last file", "received",
                   "failures", "backlog", "unfinished", "quarantined", "files", "licenses",
                   "alert"], rows).splitlines()
    if color:  # after the padding: escape codes have no width
        lines[2:] = [f"{RED}{line}{RESET}" if p.alarm else line
                     for line, p in zip(lines[2:], partners, strict=True)]
    out = ([f"NOTE: {note}", ""] if note else []) + lines
    working = [f"  {p.partner.id}: {w.file_id} {printable(w.name)} {w.text()}"
               for p in partners for w in p.in_progress]
    if working:
        out += ["", "in progress now:", *working]
    alarms = [f"  {p.partner.id}: {printable(describe(p, now))}" for p in partners if p.alarm]
    if alarms:
        out += ["", "attention:", *alarms]
    errors = [f"  {p.partner.id}: {printable(p.last_error)}" for p in partners
              if p.last_error and not p.alarm]
    if errors:
        out += ["", "last errors:", *errors]
    paused = [f"  {p.partner.id}: {printable(p.paused.words)}" for p in partners if p.paused]
    if paused:
        out += ["", "paused (not polled until `aim-gateway resume`):", *paused]
    return "\n".join(out)


def _health_dict(p: PartnerHealth, now: datetime) -> dict[str, Any]:
    last, partner = p.last_file, p.partner
    return {"partner": partner.id, "name": partner.name, "kind": partner.kind,
            "enabled": partner.enabled, "state": p.state, "last_poll": p.last_poll,
            "last_success": p.last_success, "failures": p.failures,
            "last_error": p.last_error, "retry_at": p.retry_at,
            "last_file": last.file_id if last else None,
            "last_name": last.remote_name if last else None,
            "last_status": display_status(last) if last else None,
            "last_received": last.received_at if last else None, "files": p.files,
            "failed_today": p.failed_today,  # FAILED as everywhere: an F-code
            "unfinished": p.unfinished, "quarantined": p.quarantined,
            "in_progress": [w.to_json() for w in p.in_progress],
            "licenses": p.licenses, "backlog": p.backlog, "failing": p.failing,
            "alarm": p.alarm, "why": describe(p, now),
            "silent": p.silent, "silent_hours": p.silent_hours,
            "paused": ({"by": p.paused.paused_by, "at": p.paused.paused_at,
                        "reason": p.paused.reason} if p.paused else None),
            "expected_cadence_hours": partner.expected_cadence_hours,
            "last_alert": ({"at": p.last_alert.at, "event": p.last_alert.kind,
                            **p.last_alert.data} if p.last_alert else None)}


def status_json(partners: list[PartnerHealth], now: datetime | None = None,
                note: str | None = None) -> str:
    """One object per partner; ``service_note`` (the running service needs a reload, or
    null) is repeated in each, so that the list stays a list."""
    now = now or datetime.now(UTC)
    return as_json([_health_dict(p, now) | {"service_note": note} for p in partners])


# -- files and licenses -------------------------------------------------------------------------


def files_text(rows: list[FileRow], total: int = 0, zone: tzinfo = UTC) -> str:
    """The files as a table; ``total`` (when more match than are shown) ends it "50 of N"."""
    if not rows:
        return "no files"
    return _with_more(len(rows), total, "files", table(
        ["file id", "partner", "file", "received", "status", "apps", "licensed", "rejected",
         "cancelled", "note"],
                 [[r.file_id, r.partner, r.remote_name, person_time(r.received_at, zone),
                   r.status or f"({r.state})", r.applications, r.licensed, r.rejected,
                   r.cancelled,
                   r.error or (f"reprocess of {r.reprocess_of}" if r.reprocess_of else
                               f"duplicate of {r.duplicate_of}" if r.duplicate_of else "")]
                  for r in rows]))


def _with_more(shown: int, total: int, noun: str, text: str) -> str:
    more = more_line(shown, total, noun)
    return f"{text}\n{more}" if more else text


def files_json(rows: list[FileRow]) -> str:
    return as_json([asdict(r) for r in rows])


def licenses_text(rows: list[LicenseRow], total: int = 0) -> str:
    """The licenses as a table; ``total`` (when more match) ends it "100 of N"."""
    if not rows:
        return "no licenses"
    return _with_more(len(rows), total, "licenses", table(
        ["license", "state", "kind", "source", "partner", "ref", "issued", "valid through",
         "lines", "kg", "USD", "replaces", "replaced by", "file id", "importer"],
                 [[r.license_number, r.state, r.kind, r.source, r.partner, r.ref, r.issue_date,
                   r.valid_through, r.lines, r.quantity_kg, r.value_usd, r.replaces,
                   r.replaced_by, r.file_id, r.importer] for r in rows]))


def licenses_json(rows: list[LicenseRow]) -> str:
    return as_json([asdict(r) for r in rows])


_LISTINGS: dict[str, dict[str, Callable[..., str]]] = {
    "files": {"": files_text, "json": files_json, "csv": files_csv},
    "licenses": {"": licenses_text, "json": licenses_json, "csv": licenses_csv}}


def listing(noun: str, rows: list[Any], total: int, form: str = "",
            zone: tzinfo = UTC) -> tuple[str, str]:
    """The ``noun`` listing as text (``form`` ""), JSON or CSV, and, for data only, the
    "N of M" line apart (a table ends with it)."""
    if not form:
        # Licenses show dates only; files their receipt time, in the gateway's zone.
        text = files_text(rows, total, zone) if noun == "files" else licenses_text(rows, total)
        return text + "\n", ""
    out = _LISTINGS[noun][form](rows)
    return out if form == "csv" else out + "\n", more_line(len(rows), total, noun)


# -- one license --------------------------------------------------------------------------------


def license_text(story: LicenseStory) -> str:
    """A license, its products and its history (``show LICENSE``)."""
    x = story.license
    out = [f"license {x.license_number}  {x.state}  {x.kind}  {x.source}  partner {x.partner}"
           f"  ref {printable(x.ref)}",
           f"  issued {x.issue_date} by file {x.file_id}  valid {x.valid_from} to "
           f"{x.valid_through}",
           f"  importer {printable(x.importer)}  exporter {printable(x.exporter)}  "
           f"manufacturer {printable(x.manufacturer)}  origin {x.country_of_origin}",
           f"  entry type {x.entry_type}  port {x.port_of_entry}  lines {x.lines}  "
           f"{x.quantity_kg} kg  {x.value_usd} USD"]
    if x.replaces:
        out.append(f"  replaces {x.replaces}")
    if x.replaced_by:
        out.append(f"  replaced by {x.replaced_by}")
    out += ["", "products:", table(
        ["hts", "product group", "smelt (largest)", "smelt (second)", "cast", "lines", "kg",
         "USD"], [list(p) for p in story.products])]
    out += ["", "history:"] + [f"  {printable(e.summary)}" for e in story.history]
    return "\n".join(out)


def license_json(story: LicenseStory) -> str:
    return as_json({"license": asdict(story.license), "products": story.products,
                    "history": [asdict(e) | {"summary": e.summary} for e in story.history]})


# -- one file -----------------------------------------------------------------------------------


def story_dict(story: FileStory) -> dict[str, Any]:
    """The story as ``show --json`` prints it."""
    f = story.file
    return {
        "file": asdict(f),
        "ack": {"name": f.ack_name, "delivered": story.ack_delivered, "to": story.ack_to},
        "ace_files": story.ace_files,
        "filer": asdict(story.filer) if story.filer is not None else None,
        "changes_report": story.changes_name,
        "licenses_issued": [
            {"license": x.license_number, "ref": x.ref, "importer": x.importer,
             "issue_date": x.issue_date, "valid_from": x.valid_from,
             "valid_through": x.valid_through, "state": x.state, "kind": x.kind,
             "source": x.source, "replaces": x.replaces} for x in story.licenses_issued],
        "license_changes": [
            {"license": c.license_number, "ref": c.ref, "change": c.change,
             "replaced_by": c.replaced_by, "when": c.change_date, "reason": c.reason}
            for c in story.changes],
        "applications": [
            {"seq": a.seq, "ref": a.ref, "status": a.status, "license": a.license_number,
             "reused": a.reused, "lines": a.lines, "valid_from": a.valid_from,
             "valid_through": a.valid_through} for a in story.applications],
        "findings": [
            {"code": x.code, "severity": x.severity, "ref": x.ref, "line": x.line,
             "field": x.field, "value": x.value, "message": x.message}
            for x in story.findings],
        "reprocessed_as": [
            {"file_id": r.file_id, "status": r.status, "received_at": r.received_at,
             **({"at": r.at, "actor": r.actor, "reason": r.reason} if r.at else {})}
            for r in story.reprocessed_as],
        "failures": asdict(story.failures) if story.failures is not None else None,
        "events": [{"at": e.at, "event": e.kind, **e.data} for e in story.events],
    }


def show_text(story: FileStory, groups: list[FindingGroup], zone: tzinfo = UTC) -> str:
    """A file's story; its applications and findings as far as ``story`` was cut, the
    findings also grouped by code (``groups``: every one counted)."""

    def at(value: str | None) -> str:
        return person_time(value, zone) or "-"

    f = story.file
    delivered = "delivered" if story.ack_delivered else "not yet delivered"
    took = "-" if f.duration_ms is None else f.duration_ms
    out = [f"file {f.file_id}  {printable(f.remote_name)}  partner {f.partner}",
           f"  received {at(f.received_at)}  size {f.size}  sha256 {f.sha256}",
           f"  status {display_status(f)}  state {f.state}  processed "
           f"{at(f.processed_at)}  rule set {f.rule_set_date or '-'}  took {took} ms",
           f"  applications {f.applications}: licensed {f.licensed} "
           f"(new {f.new_licenses}), not required {f.not_required}, "
           f"rejected {f.rejected}, cancelled {f.cancelled}",
           f"  ack {printable(f.ack_name or '-')} ({delivered}, {story.ack_to})",
           f"  ACE files {', '.join(story.ace_files) or '-'}",
           f"  changes report {story.changes_name or '-'}",
           f"  filer {_filer_text(story.filer)}",
           f"  original at {printable(f.archive_path or '-')}"
           + (f" (purged {at(f.archive_purged_at)})" if f.archive_purged_at else "")]
    if f.error:
        out.append(f"  error {printable(f.error)}")
    failed = story.failures
    if failed and failed.quarantined_at:
        out.append(f"  QUARANTINED {at(failed.quarantined_at)} after {failed.failures} "
                   f"failures in a row: {printable(failed.last_error)} (after the fix: "
                   f"aim-gateway release {f.file_id} --reason ...)")
    elif failed:
        out.append(f"  failed {failed.failures} time(s) in a row, last "
                   f"{at(failed.last_failed_at)}: {printable(failed.last_error)}")
    if f.duplicate_of:
        out.append(f"  duplicate of {f.duplicate_of}")
    if f.reprocess_of:
        out.append(f"  reprocess of {f.reprocess_of}")
    for later in story.reprocessed_as:
        out.append(f"  reprocessed as {later.file_id} ({later.status or 'IN PROGRESS'})"
                   f" by {printable(later.actor or '?')}: {printable(later.reason or '-')}")
    if f.details_purged_at:
        out.append(f"  findings, applications and events purged {at(f.details_purged_at)}")
    if story.licenses_issued:
        out += ["", "licenses issued:", table(
            ["license", "state", "kind", "ref", "issued", "valid from", "valid through",
             "replaces", "importer"],
            [[x.license_number, x.state, x.kind, x.ref, x.issue_date, x.valid_from,
              x.valid_through, x.replaces, x.importer] for x in story.licenses_issued])]
    if story.changes:
        out += ["", "license changes:", table(
            ["license", "ref", "change", "replaced by", "when", "reason"],
            [[c.license_number, c.ref, c.change, c.replaced_by, c.change_date, c.reason]
             for c in story.changes])]
    out += _rows_cut("applications", ["#", "ref", "status", "license", "I201", "valid through",
                                      "lines"],
                     [[a.seq, a.ref, a.status, a.license_number, "yes" if a.reused else "",
                       a.valid_through, a.lines] for a in story.applications],
                     story.applications_total)
    out += _finding_groups(groups)
    out += _rows_cut("findings", ["code", "severity", "ref", "line", "field", "value",
                                  "message"],
                     [[x.code, x.severity, x.ref, x.line, x.field, x.value, x.message]
                      for x in story.findings], story.findings_total)
    out += ["", "events:"] + [f"  {at(e.at)} {e.kind}" + _event_detail(e.data)
                              for e in story.events]
    return "\n".join(out)


def _rows_cut(title: str, headers: list[str], rows: list[list[object]],
              total: int) -> list[str]:
    """A titled table of the rows shown, and how many more there are."""
    if not rows:
        return []
    out = ["", f"{title}" + (f" (the first {len(rows):,} of {total:,})" if total > len(rows)
                             else "") + ":", table(headers, rows)]
    if total > len(rows):
        out.append(f"  … {total - len(rows):,} more: --limit N shows more, --csv or --json "
                   "all of them")
    return out


def _finding_groups(groups: list[FindingGroup]) -> list[str]:
    """Findings by code, as the web page groups them: how many, where, a first example."""
    if not groups:
        return []
    return ["", "findings by code:", table(
        ["code", "severity", "findings", "applications", "file lines", "e.g. ref", "e.g."],
        [[g.code, g.severity, f"{g.count:,}", f"{g.refs:,}", g.where, g.ref, g.message]
         for g in groups])]


def _event_detail(event: dict[str, Any]) -> str:
    keys = ("status", "actor", "reason", "original", "error", "path")
    shown = [f"{k}={printable(event[k])}" for k in keys if event.get(k)]
    return ("  " + " ".join(shown)) if shown else ""


def _filer_text(filer: Filer | None) -> str:
    """The applicant recorded with the file (guide 2.3), on one line; "-" when none was."""
    if filer is None:
        return "-"
    return printable(f"{filer.name}, {filer.street}, {filer.city}, {filer.state} "
                     f"{filer.postal_code}; contact {filer.contact_name}, "
                     f"{filer.phone}, {filer.email}")


def show_json(story: FileStory) -> str:
    return as_json(story_dict(story))


def story_out(story: FileStory, form: str, groups: list[FindingGroup],
              zone: tzinfo = UTC) -> str:
    """``show FILE`` as text (``form`` "": its findings grouped too), JSON, or CSV (its
    findings, the web page's columns)."""
    if form == "csv":
        return findings_csv(story.findings)
    return (show_json(story) if form == "json" else show_text(story, groups, zone)) + "\n"


def reprocessed_text(row: FileRow, original: str) -> str:
    """One line on the new file a reprocess made."""
    return f"{file_line(row)}  reprocess of {original}"


def reprocessed_json(row: FileRow) -> str:
    return as_json(asdict(row))


# -- purge --------------------------------------------------------------------------------------


def purge_text(report: PurgeReport, zone: tzinfo = UTC) -> str:
    verb = "would remove" if report.dry_run else "removed"
    dry = " (dry run: nothing changed)" if report.dry_run else ""
    out = [f"purge at {person_time(report.now, zone)}{dry}",
           f"  events before {report.events_before or 'never'}: {verb} {report.events}",
           f"  file details before {report.files_before or 'never'}: {verb} those of "
           f"{len(report.files)} file(s): {report.findings} finding(s), "
           f"{report.applications} application(s), {report.file_events} event(s); "
           f"{report.mail} e-mail(s) sent or given up",
           f"  originals before {report.archive_before or 'never'}: {verb} "
           f"{len(report.archived)} file(s) from disk",
           "  licenses are never purged"]
    out += [f"    {path}" for path in report.archived]
    return "\n".join(out)


def purge_json(report: PurgeReport) -> str:
    return as_json(report.to_dict())
