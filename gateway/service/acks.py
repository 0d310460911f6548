"""A file's acknowledgment as the gateway names, writes and keeps it: its format (guide 7),
the name the partner sees, and the gateway's own stored copy."""

from __future__ import annotations

from pathlib import Path

from gateway.ledger.store import FileRow
from gateway.licensing.results import FileSummary
from gateway.outputs.ack_csv import AckCsvWriter, render_csv_ack
from gateway.outputs.ack_xml import AckXmlWriter, render_ack
from gateway.storage import Layout, safe_name


def ack_kind(fmt: str | None) -> str:
    """The acknowledgment's format: CSV for CSV input, XML for everything else (guide 7)."""
    return "csv" if fmt == "csv" else "xml"


def ack_writer(kind: str, path: Path, delimiter: str = ",") -> AckXmlWriter | AckCsvWriter:
    """The acknowledgment of ``kind``, streamed to ``path`` as the applications are decided
    (a CSV one with the partner's ``delimiter``, FileSummary.ack_delimiter)."""
    return AckCsvWriter(path, delimiter) if kind == "csv" else AckXmlWriter(path)


def render_whole_ack(kind: str, summary: FileSummary) -> bytes:
    """The acknowledgment of a file without applications (rejected with an F-code)."""
    return (render_csv_ack if kind == "csv" else render_ack)(summary, [])


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
