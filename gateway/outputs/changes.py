"""The changes report (guide 5.1b): every supersession and cancellation a file made, for the
licensing authority and CBP, in ``outbox/changes/CHG-<file id>.csv`` with a manifest beside
it like the ACE files' (``gateway.outputs.manifest``).

Columns: license_number, partner, ref, change (SUPERSEDED or CANCELLED), replaced_by (the
correction's new license), when (the change's processing date, YYYY-MM-DD), reason (a
cancellation's, as the partner gave it). Rows are the ledger's ``changes_of(file_id)``: each
change is recorded once, by one file, so it is in exactly one report. Nothing in the file or
its manifest is a clock time: a rerun after a crash writes the same bytes. Cells are
neutralised like the CSV acknowledgment's (CSV injection) and control characters escaped.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

from gateway.ledger.licenses import LicenseChange
from gateway.outputs.ack_csv import neutralise
from gateway.outputs.manifest import Manifest, manifest_path
from gateway.storage import atomic_write
from gateway.textsafe import printable

COLUMNS = ("license_number", "partner", "ref", "change", "replaced_by", "when", "reason")
PREFIX = "CHG-"


def changes_path(folder: Path, file_id: str) -> Path:
    """Where file ``file_id``'s changes report goes: its name is fixed by the file id."""
    return folder / f"{PREFIX}{file_id}.csv"


def render_changes(made: Sequence[LicenseChange]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for c in made:
        writer.writerow(neutralise(printable(v)) if v is not None else "" for v in (
            c.license_number, c.partner, c.ref, c.change, c.replaced_by, c.change_date,
            c.reason))
    return buffer.getvalue().encode("utf-8")


def write_changes(folder: Path, file_id: str, made: Sequence[LicenseChange],
                  source: dict[str, str]) -> Manifest | None:
    """Publish file ``file_id``'s report, then its manifest; None when the file changed no
    license. Then a report an earlier attempt of the same file published before a crash is
    withdrawn: its changes were rolled back and not made again (another worker was first),
    and a change must be in no report but its own file's."""
    path = changes_path(folder, file_id)
    if not made:
        withdraw_changes(folder, file_id)
        return None
    data = render_changes(made)
    atomic_write(path, data)
    manifest = Manifest(file_name=path.name, sha256=hashlib.sha256(data).hexdigest(),
                        record_count=len(made),
                        licenses=tuple(c.license_number for c in made), source=dict(source))
    manifest.write_beside(path)
    return manifest


def withdraw_changes(folder: Path, file_id: str) -> None:
    """Take back a report whose ledger commit failed (or that a rerun no longer makes): the
    manifest first, so that a manifest never names a file that is not there."""
    path = changes_path(folder, file_id)
    manifest_path(path).unlink(missing_ok=True)
    path.unlink(missing_ok=True)
