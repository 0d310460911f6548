"""A license lifecycle's partner files in contract 1.1's own syntax (guide 3, 4, 5.1a, 5.1b):
XML with ``schemaVersion="1.1"``, ``<Application corrects=.. kind=..>``, ``<LicenseNumber>`` and
``<Cancellation>``; canonical CSV with the columns ``action``, ``license_number``, ``corrects``
and ``license_kind``. The tests that run a lifecycle through ``run --once`` (and ``check``)
build their files here, so that what they prove is what a partner's real file gets.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

# The good sample's first application with its first product line only and no entry number.
GOOD = (Path(__file__).parent / "cases" / "inbox" / "sample" / "acme-20261201-good.xml"
        ).read_text(encoding="utf-8")
HEAD = GOOD[:GOOD.index("  <Application ")]
ONE_LINE = re.sub(r'    <Product line="2">.*?</Product>\n', "", GOOD[
    GOOD.index('  <Application ref="PO-4411">'):GOOD.index('  <Application ref="PO-4412">')],
    flags=re.DOTALL).replace("    <EntryNumber>SMP12345675</EntryNumber>\n", "")


def _replaced(text: str, *edits: tuple[str, str]) -> str:
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def application(ref: str, *, quantity: str = "24000", value: str = "61200.00",
                corrects: str | None = None, kind: str | None = None,
                license_number: str | None = None) -> str:
    """One ``<Application>``: a correction of license ``corrects``, of ``kind``, carrying a
    registered ``license_number`` (after ``PortOfEntry``) when given."""
    start = f'<Application ref="{ref}"'
    if corrects is not None:
        start += f' corrects="{corrects}"'
    if kind is not None:
        start += f' kind="{kind}"'
    number = ("" if license_number is None
              else f"\n    <LicenseNumber>{license_number}</LicenseNumber>")
    return _replaced(ONE_LINE, ('<Application ref="PO-4411"', start),
                     ("</PortOfEntry>", "</PortOfEntry>" + number),
                     (">24000<", f">{quantity}<"), (">61200.00<", f">{value}<"))


def cancellation(ref: str, number: str, reason: str | None = None) -> str:
    """One ``<Cancellation>`` of license ``number`` (``reason`` as XML text: escape it)."""
    body = "" if reason is None else f"\n    <Reason>{reason}</Reason>\n  "
    return f'  <Cancellation ref="{ref}" licenseNumber="{number}">{body}</Cancellation>\n'


def submission(sid: str, *units: str) -> bytes:
    """A 1.1 submission of ``units`` (applications and cancellations, in this order)."""
    head = _replaced(HEAD, ("ACME-20261201-001", sid),
                     ('schemaVersion="1.0"', 'schemaVersion="1.1"'))
    return (head + "".join(units) + "</LicenseSubmission>\n").encode()


# -- canonical CSV ----------------------------------------------------------------------------

CSV_COLUMNS = ("submission_id", "application_ref", "entry_type", "entry_number", "importer",
               "exporter", "manufacturer", "country_of_origin", "country_of_export",
               "expected_export_date", "expected_import_date", "port_of_entry", "line_no",
               "hts", "description", "smelt_country_largest", "smelt_country_second",
               "cast_country", "quantity_kg", "value_usd",
               "action", "license_number", "corrects", "license_kind")


def csv_application(ref: str, *, quantity: str = "24000", value: str = "61200.00",
                    corrects: str = "", kind: str = "", license_number: str = "",
                    ) -> dict[str, str]:
    """One application's row (one product line)."""
    return {"application_ref": ref, "entry_type": "01",
            "importer": "ACME ALUMINUM IMPORTS LLC", "exporter": "NORTHERN ROLLING MILLS INC",
            "manufacturer": "NORTHERN ROLLING MILLS INC", "country_of_origin": "CA",
            "country_of_export": "CA", "expected_export_date": "2026-12-10",
            "expected_import_date": "2026-12-15", "port_of_entry": "3004", "line_no": "1",
            "hts": "7606123045", "description": "coils", "smelt_country_largest": "CA",
            "smelt_country_second": "US", "cast_country": "CA", "quantity_kg": quantity,
            "value_usd": value, "corrects": corrects, "license_kind": kind,
            "license_number": license_number}


def csv_cancellation(ref: str, number: str) -> dict[str, str]:
    """A cancellation row: ``action`` CANCEL, the ref and the license, nothing else."""
    return {"application_ref": ref, "action": "CANCEL", "license_number": number}


def csv_submission(sid: str, *rows: dict[str, str],
                   columns: tuple[str, ...] = CSV_COLUMNS) -> bytes:
    """Canonical CSV of ``rows`` (every row of submission ``sid``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([{"submission_id": sid, **row}.get(c, "") for c in columns])
    return out.getvalue().encode()
