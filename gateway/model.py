"""The data model of a submission (guide section 2), as parsed and before any rule ran.

Values are kept as the partner sent them (stripped text, ``None`` when absent) so that rules
can name the offending value exactly; the rules module does all typing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum

# The fields of an application, in XML element order, with their CSV names.
APPLICATION_FIELDS: tuple[tuple[str, str], ...] = (
    ("entry_type", "EntryType"),
    ("entry_number", "EntryNumber"),
    ("importer", "Importer"),
    ("exporter", "Exporter"),
    ("manufacturer", "Manufacturer"),
    ("country_of_origin", "CountryOfOrigin"),
    ("country_of_export", "CountryOfExport"),
    ("expected_export_date", "ExpectedExportDate"),
    ("expected_import_date", "ExpectedImportDate"),
    ("port_of_entry", "PortOfEntry"),
)

LINE_FIELDS: tuple[tuple[str, str], ...] = (
    ("hts", "HTS"),
    ("description", "Description"),
    ("smelt_country_largest", "SmeltCountryLargest"),
    ("smelt_country_second", "SmeltCountrySecond"),
    ("cast_country", "CastCountry"),
    ("quantity_kg", "QuantityKg"),
    ("value_usd", "ValueUSD"),
)

# Product lines in one application (guide section 2: 1..999; more is A190), for every format.
MAX_LINES = 999

REQUIRED_APPLICATION_FIELDS = frozenset(
    {
        "entry_type",
        "importer",
        "exporter",
        "manufacturer",
        "country_of_origin",
        "country_of_export",
        "expected_export_date",
        "expected_import_date",
        "port_of_entry",
    }
)
REQUIRED_LINE_FIELDS = frozenset(
    {
        "hts",
        "smelt_country_largest",
        "smelt_country_second",
        "cast_country",
        "quantity_kg",
        "value_usd",
    }
)


class AppStatus(StrEnum):
    LICENSED = "LICENSED"
    NOT_REQUIRED = "NOT_REQUIRED"
    REJECTED = "REJECTED"


class FileStatus(StrEnum):
    ACCEPTED = "ACCEPTED"
    PARTIAL = "PARTIAL"
    REJECTED = "REJECTED"
    DUPLICATE = "DUPLICATE"


def line_number(text: str | None) -> int | None:
    """A line number written in ASCII digits as an int (for findings), else None.

    At most 18 digits: a longer one is no line number, and it would not fit the ledger's
    INTEGER column (nor int() past 4300 digits).
    """
    if text and len(text) <= 18 and text.isascii() and text.isdigit():
        return int(text)
    return None


@dataclass(slots=True)
class ProductLine:
    """One product line of an application (guide 2.2)."""

    line_no: str | None
    hts: str | None = None
    description: str | None = None
    smelt_country_largest: str | None = None
    smelt_country_second: str | None = None
    cast_country: str | None = None
    quantity_kg: str | None = None
    value_usd: str | None = None
    source_line: int | None = None  # provenance: XML line or CSV row

    @property
    def number(self) -> int | None:
        """The line number as an integer, or None when it is not one (ASCII digits only)."""
        return line_number(self.line_no)


@dataclass(slots=True)
class Application:
    """One license request (guide 2.1): a header block plus 1..999 product lines."""

    ref: str | None
    entry_type: str | None = None
    entry_number: str | None = None
    importer: str | None = None
    exporter: str | None = None
    manufacturer: str | None = None
    country_of_origin: str | None = None
    country_of_export: str | None = None
    expected_export_date: str | None = None
    expected_import_date: str | None = None
    port_of_entry: str | None = None
    lines: list[ProductLine] = field(default_factory=list)
    source_line: int | None = None  # provenance: XML line or first CSV row


@dataclass(frozen=True, slots=True)
class Filer:
    """The applicant (19 CFR 361.103(c)(1)(i)-(ii)): from the partner profile or the header."""

    name: str = ""
    street: str = ""
    city: str = ""
    state: str = ""
    postal_code: str = ""
    contact_name: str = ""
    phone: str = ""
    email: str = ""

    def to_json(self) -> str:
        """As the ledger keeps it (files.filer)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Filer:
        return cls(**json.loads(text))


@dataclass(frozen=True, slots=True)
class SubmissionHeader:
    submission_id: str | None
    created: str | None = None
    filer: Filer | None = None
