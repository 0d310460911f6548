"""The data model of a submission (guide section 2), as parsed and before any rule ran.

Values are kept as the partner sent them (stripped text, ``None`` when absent) so that rules
can name the offending value exactly; the rules module does all typing.
"""

from __future__ import annotations

import json
import re
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
    CANCELLED = "CANCELLED"  # a cancellation request that cancelled its license (guide 5.1b)


class LicenseKind(StrEnum):
    """What an application asks for (guide 5.1a): XML ``kind``, CSV ``license_kind``."""

    REGULAR = "REGULAR"  # absent or empty in the file
    LOW_VALUE = "LOW_VALUE"  # an ``L`` number from its own sequence, under $5,000 only (A108)


_LOW_VALUE = LicenseKind.LOW_VALUE.value


class LicenseState(StrEnum):
    """A license's state in the ledger (guide 5.1b). ``EXPIRED`` is never stored: an
    ``ACTIVE`` license is expired once its valid-through date is past (on the date asked)."""

    ACTIVE = "ACTIVE"
    EXPIRED = "EXPIRED"
    SUPERSEDED = "SUPERSEDED"  # replaced by a correction (``corrects``)
    CANCELLED = "CANCELLED"  # cancelled by a ``Cancellation`` (CSV ``action = CANCEL``)


class LicenseSource(StrEnum):
    """Who issues a partner's license numbers (its profile's ``license_source``, 5.1a)."""

    GATEWAY = "gateway"  # the gateway mints them
    COMMERCE = "commerce"  # Commerce's AIM system did: the partner sends them (I204)


# Any license number (guide 5.1, 5.1a): the gateway's (``A``/``L`` + 8 digits) and Commerce's
# alike fit the 10-character license field of the entry summary 52 record. [0-9], never \d.
LICENSE_NUMBER = re.compile(r"[A-Z0-9]{1,10}")

# The license number shown by ``check``, which issues nothing (guide 8); never a registered one.
PENDING = "PENDING"

# CSV ``action`` (guide 5.1b): empty = an application; ``CANCEL`` = a cancellation request.
ACTION_CANCEL = "CANCEL"


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


# ``line_number`` of the numbers as usually written ("1" to "999"), a dict lookup each where
# it runs for every line (the line rules): a miss ("01", "x", None) is left to it.
LINE_NUMBERS: dict[str | None, int] = {str(n): n for n in range(1, MAX_LINES + 1)}


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
    # Contract 1.1 (guide 5.1a/5.1b), kept as sent like every field:
    kind: str | None = None  # XML ``kind`` / CSV ``license_kind``; None = regular
    corrects: str | None = None  # the license this application corrects
    license_number: str | None = None  # a registered license's number; a cancellation's target
    # ``Cancellation`` element / CSV ``action = CANCEL``: a request to cancel
    # ``license_number`` (no fields, no lines), with its ``reason`` (XML only).
    cancel: bool = False
    reason: str | None = None

    @property
    def low_value(self) -> bool:
        # The text: an enum member looked up costs 4x as much (three times an application).
        return self.kind == _LOW_VALUE

    @property
    def contract_1_1(self) -> bool:
        """It uses what contract 1.1 added (guide 3): its acknowledgment is a 1.1 one."""
        return self.cancel or bool(self.corrects or self.kind or self.license_number)


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
    schema_version: str | None = None  # the XML root's schemaVersion ("1.0", "1.1")
