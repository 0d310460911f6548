"""The CATAIR record layouts of the ACE files and the formatters built from them.

``LAYOUTS`` is the one table of every record's fields and positions (``spec/ACE-RECORDS.md``,
``docs/ace-records.md``). From it come the field functions (``alpha``, ``numeric``), the
checking builder of any record (``build_record``) and, compiled once at import, the f-strings
of the records written per application and per product line (10; 40, 50, 52), which
``gateway.outputs.ace`` feeds with fields that are of their width by construction.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import cache, lru_cache

RECORD_LENGTH = 80

# Every layout in one place: (field, first position, last position), 1-based and inclusive as in
# the CATAIR. Positions not listed are filler and written as spaces. A field given an int is
# numeric (right-justified, zero-filled); anything else is alphanumeric (left-justified, cut).
Layout = tuple[tuple[str, int, int], ...]
# fmt: off
LAYOUTS: dict[str, Layout] = {
    # ABI Batch & Block Control V23 (research/ace-formats.md 1.4). A 9-14 is the communication
    # password: left blank because the transmitter adds it and it must never sit in a file.
    "A": (("control", 1, 1), ("site_code", 2, 5), ("sender_id", 6, 8),
          ("processing_date", 15, 20), ("application_id", 26, 27), ("user_data", 60, 80)),
    "B": (("control", 1, 1), ("port", 4, 7), ("filer_code", 8, 10),
          ("application_id", 11, 12), ("user_data", 60, 80)),
    "Y": (("control", 1, 1), ("port", 4, 7), ("filer_code", 8, 10),
          ("application_id", 11, 12)),
    "Z": (("control", 1, 1), ("site_code", 2, 5), ("sender_id", 6, 8),
          ("processing_date", 15, 20)),
    # Entry Summary Create/Update (research/ace-formats.md 2.2-2.5).
    "10": (("control", 1, 2), ("action", 3, 3), ("filer_code", 4, 6), ("entry_number", 9, 16),
           ("port_of_entry", 18, 21), ("broker_reference", 22, 30), ("entry_type", 34, 35)),
    "40": (("control", 1, 2), ("line_number", 5, 7), ("country_of_origin", 9, 10),
           ("country_of_export", 11, 12), ("export_date", 13, 18)),
    "50": (("control", 1, 2), ("hts", 3, 12), ("value_usd", 25, 34), ("quantity", 36, 47),
           ("unit", 48, 50)),
    "52": (("control", 1, 2), ("license_type", 3, 4), ("license_number", 5, 14)),
    # Type 07, contract 1.1 (spec/ACE-RECORDS.md, "a public transcription of CATAIR ESF-111-112"):
    # 3-character country fields, ISO alpha-2 left-justified. CBP's July 2026 page has Y/N
    # applicability codes in 5 and 10 and the countries in 8-9, 13-14, 15-16 instead: see
    # docs/ace-records.md, "What stays uncertain". Values: gateway/validate/smelt_cast.py.
    "54": (("control", 1, 2), ("declaration_type", 3, 4), ("smelt_country_largest", 5, 7),
           ("smelt_country_second", 10, 12), ("cast_country", 15, 17)),
    # FTZ Admission (e214) v3.1.3 FT60 Line Reference, as transcribed in Vgroup2023/CATAIR-FTZ
    # ftz/catair.py: the control identifier is "60" (CBP's own example starts "60BULK LOT").
    "FT60": (("control", 1, 2), ("description", 3, 47), ("reference_qualifier", 48, 50),
             ("reference_id", 51, 72)),
}
# fmt: on

# CATAIR Entry Summary 52 record, "28 = Aluminum Import License" (revision 69, 2020-12-23).
LICENSE_TYPE_ALUMINUM = "28"
# FTZ e214 FT60 "Line Reference": the qualifier of a reference that is an aluminum license.
FTZ_LICENSE_QUALIFIER = "ALU"
QUANTITY_UNIT = "KG"

_DISALLOWED = re.compile(r"[^A-Z0-9 \-./&,]")


def clean_text(value: str) -> str:
    """Upper case ASCII; anything outside A-Z 0-9 space ``- . / & ,`` becomes a space."""
    if value.isalnum() and value.isascii():  # a license number, a code: nothing to replace
        return value.upper()
    if not value.isascii():
        # Decompose first so that accented letters keep their base letter (Ü -> U).
        decomposed = unicodedata.normalize("NFKD", value)
        value = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _DISALLOWED.sub(" ", value.upper())


def alpha(value: str | None, length: int) -> str:
    """Alphanumeric field: cleaned, left-justified, space-filled, cut to ``length``."""
    if value is None:
        return " " * length
    return clean_text(value)[:length].ljust(length)


def numeric(value: int, length: int) -> str:
    """Numeric field: right-justified, zero-filled; a value that does not fit is an error."""
    digits = str(value)
    if value < 0 or len(digits) > length:
        raise ValueError(f"{value} does not fit a {length}-digit numeric field")
    return digits.zfill(length)


# Most field values repeat from line to line (codes, dates, the application's license), and a
# million-line submission formats a few million fields: remember the recent ones.
cached_alpha = lru_cache(maxsize=8192)(alpha)


@cache
def _slots(kind: str) -> tuple[tuple[int, str, int], ...]:
    """(filler before, field name, width) of each field of record ``kind``, from LAYOUTS."""
    slots = []
    position = 1
    for name, start, end in LAYOUTS[kind]:
        slots.append((start - position, name, end - start + 1))
        position = end + 1
    return tuple(slots)


def build_record(kind: str, **values: str | int | None) -> str:
    """Build one record of type ``kind`` from ``LAYOUTS``; unknown field names are an error."""
    # The control identifier is the record type; FTZ records drop the prefix (FT60 is "60").
    values.setdefault("control", kind.removeprefix("FT"))
    parts: list[str] = []
    for gap, name, width in _slots(kind):
        if gap:
            parts.append(" " * gap)
        value = values.pop(name, None)
        parts.append(numeric(value, width) if isinstance(value, int)
                     else cached_alpha(value, width))
    if values:
        raise KeyError(f"record {kind} has no field(s) {sorted(values)}")
    record = "".join(parts).ljust(RECORD_LENGTH)
    # A short, non-ASCII or lower-case record is rejected by CBP (X42, X40): never write one.
    if len(record) != RECORD_LENGTH or not record.isascii() or record != record.upper():
        raise AssertionError(f"malformed {kind} record: {record!r}")
    return record


# Fields written from an int: right-justified, zero-filled (the rest are alphanumeric).
_NUMERIC_FIELDS = frozenset({"line_number", "value_usd", "quantity"})


# The fixed fields of the compiled records (the rest are their callers' arguments).
_CONSTANTS = {
    "10": {"control": "10", "action": "A"},
    "40": {"control": "40"},
    "50": {"control": "50", "unit": QUANTITY_UNIT},
    "52": {"control": "52", "license_type": LICENSE_TYPE_ALUMINUM},
    "FT60": {"control": "60", "reference_qualifier": FTZ_LICENSE_QUALIFIER},
}
LINE_BLOCK_LENGTH = 3 * (RECORD_LENGTH + 1)
LINE_FIELDS = ("line_number", "country_of_origin", "country_of_export", "export_date", "hts",
                "value_usd", "quantity")
HEAD_FIELDS = ("filer_code", "entry_number", "port_of_entry", "broker_reference", "entry_type")


def _record_source(kind: str) -> tuple[str, list[str]]:
    """Record ``kind`` and its newline as the body of an f-string built from ``LAYOUTS``: its
    ``_CONSTANTS`` written in, every other field a replacement field (a number zero-filled to
    its width, text as given: already ``alpha``, of its width), with the field names in layout
    order. A value that does not fit makes the record longer than ``RECORD_LENGTH``."""
    params: list[str] = []
    pieces: list[str] = []
    position = 1
    for name, start, end in LAYOUTS[kind]:
        width = end - start + 1
        pieces.append(" " * (start - position))
        constant = _CONSTANTS[kind].get(name)
        if constant is not None:
            pieces.append(constant.ljust(width)[:width].replace("{", "{{"))
        else:
            # No format spec: "{x}" of a str is a third of the time of "{x:<8.8}", and
            # str(n).zfill(w) half that of "{n:0wd}" (the same text, "-01" for -1 too); the
            # 10 and 40/50/52 records were 1.2 of the 6.5 us one ACE application took.
            pieces.append("{str(" + name + f").zfill({width})" + "}"
                          if name in _NUMERIC_FIELDS else "{" + name + "}")
            params.append(name)
        position = end + 1
    pieces.append(" " * (RECORD_LENGTH + 1 - position) + "\n")
    return "".join(pieces), params


def _compile(args: str, body: str) -> Callable[..., str]:
    # Built from the constant LAYOUTS: no outside input reaches the source.
    formatter: Callable[..., str] = eval(f"lambda {args}: f{body!r}", {})
    return formatter


def _line_block() -> Callable[..., str]:
    """One product line's 40, 50 and 52 records as one compiled f-string from ``LAYOUTS``.

    Arguments are positional: the whole 52 record and its newline (the same for every line of
    an application, ``LICENSE_RECORD``), then the variable fields in layout order
    (``LINE_FIELDS``). A value that does not fit makes the block longer than three records,
    which ``entry_summary_text`` catches and ``build_record`` then names.
    """
    r40, p40 = _record_source("40")
    r50, p50 = _record_source("50")
    if tuple(p40 + p50) != LINE_FIELDS:
        raise AssertionError(f"LAYOUTS changed: the line fields are now {p40 + p50}")
    return _compile(f"r52, {', '.join(LINE_FIELDS)}", r40 + r50 + "{r52}")


def _head_record() -> Callable[..., str]:
    """The 10 record and its newline, compiled from ``LAYOUTS``; its arguments (positional,
    ``HEAD_FIELDS``) are already ``alpha``: cleaned and of their width."""
    body, params = _record_source("10")
    if tuple(params) != HEAD_FIELDS:
        raise AssertionError(f"LAYOUTS changed: the 10 record's fields are now {params}")
    return _compile(", ".join(params), body)


def _license_record() -> Callable[[str], str]:
    """The 52 record and its newline from the license number (already ``alpha``)."""
    body, params = _record_source("52")
    if params != ["license_number"]:
        raise AssertionError(f"LAYOUTS changed: the 52 record's fields are now {params}")
    return _compile("license_number", body)


def _ftz_line_reference() -> Callable[[str, str], str]:
    """The FT60 record and its newline from its description and license number (already
    ``alpha``): ``build_record`` took 4-5 us a licensed FZ application."""
    body, params = _record_source("FT60")
    if params != ["description", "reference_id"]:
        raise AssertionError(f"LAYOUTS changed: the FT60 record's fields are now {params}")
    return _compile(", ".join(params), body)


# Compiled at import (four small evals), not on first use: each application would otherwise
# pay cache look-ups to reach them.
LINE_BLOCK = _line_block()
HEAD_RECORD = _head_record()
LICENSE_RECORD = _license_record()
FTZ_RECORD = _ftz_line_reference()
