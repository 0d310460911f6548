"""The values a CSV mapping could not convert, for ``aim-gateway mapping test`` (issue 14, 9b).

A mapping leaves a value it cannot convert as the partner wrote it, so that the rules report
it with the partner's own value (``gateway.parse.mapping``). A broker testing a mapping wants
to see those before going live: this reads the canonical rows ``preview`` made and names every
date, country or number that is still not in the canonical form.
"""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal, InvalidOperation

from gateway.countries import ISO_COUNTRIES, NOT_APPLICABLE, UNKNOWN

# The country columns a mapping converts (``gateway.parse.mapping`` reads them from here).
COUNTRY_APP_FIELDS = ("country_of_origin", "country_of_export")
COUNTRY_LINE_FIELDS = ("smelt_country_largest", "smelt_country_second", "cast_country")

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DATE_COLUMNS = ("expected_export_date", "expected_import_date")
NUMBER_COLUMNS = ("quantity_kg", "value_usd")


def _is_number(text: str) -> bool:
    try:
        return text.isascii() and Decimal(text).is_finite()
    except InvalidOperation:
        return False


def unconverted(canonical: str, date_format: str, decimal: str, thousands: str) -> list[str]:
    """One line per value of ``canonical`` (``preview``'s rows) left as the partner wrote it:
    its row, column and value, and what the mapping (its formats given) expected."""
    notes = []
    for row in csv.DictReader(io.StringIO(canonical)):
        def note(column: str, expected: str, row: dict[str, str] = row) -> None:
            notes.append(f"row {row['row']}: {column} {row[column]!r} is not {expected}")

        for column in DATE_COLUMNS:
            if row.get(column) and not _ISO_DATE.fullmatch(row[column]):
                note(column, f"a date {date_format}")
        for column in (*COUNTRY_APP_FIELDS, *COUNTRY_LINE_FIELDS):
            special = (UNKNOWN, NOT_APPLICABLE) if column in COUNTRY_LINE_FIELDS else ()
            value = row.get(column)
            if value and value not in ISO_COUNTRIES and value not in special:
                note(column, "a country the mapping knows (add it under [countries])")
        for column in NUMBER_COLUMNS:
            if row.get(column) and not _is_number(row[column]):
                note(column, f"a number (decimal {decimal!r}, thousands {thousands!r})")
    return notes
