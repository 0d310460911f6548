"""The smelt and cast countries of a product line as the ACE 54 record type 07 carries them.

Contract 1.1 (``spec/ACE-RECORDS.md``): the record is written only for an expected import date
on or after 2023-04-10, and a field never carries a country code for something that is not a
country (1.0 wrote ``NA``, Namibia, for ``NOT_APPLICABLE`` and ``UN`` for ``UNKNOWN``). Where a
line's values have no grounded form, the line gets no 54 record and the warning A128, so that
the filer completes that detail by hand. The record's positions are ``LAYOUTS["54"]`` in
``gateway.outputs.ace``; which values fill it, and when, is decided here, once, for the writer
and for the finding alike. Sources: ``docs/ace-records.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from functools import lru_cache

from gateway.caching import short_cache
from gateway.countries import ISO_COUNTRIES, NOT_APPLICABLE
from gateway.findings import MAX_FINDINGS, Finding, finding
from gateway.model import Application, ProductLine, line_number
from gateway.validate.rules import Rule

# CATAIR Entry Summary Create/Update, revision 84 (2023-02-23): "A Type=07 54-Record will not be
# required/allowed on an ES line for an article with an applicable entry date prior to
# 4/10/2023." CBP keys it on the entry date; the gateway knows only the expected import date,
# so this rule, unlike the others, is dated by that date, not by the processing date.
SMELT_CAST_RECORD = Rule("A128", valid_from=date(2023, 4, 10))

# (largest smelt, second-largest smelt, cast) as written: a country code, or None for spaces.
SmeltCastFields = tuple[str, str | None, str]


# The same few import dates on every application of a file: asked once per date, for the
# ACE writer and A128 alike (an absent or bad date raises, and an exception is never cached).
@lru_cache(maxsize=1024)
def record_due(expected_import_date: str | None) -> bool:
    """Whether a line imported on this date gets a 54 type 07 record; an absent or malformed
    date is an error (the rules reject such an application: it is never licensed)."""
    if expected_import_date is None:
        raise ValueError("no expected import date: cannot tell whether a 54 record is due")
    return SMELT_CAST_RECORD.applies(date.fromisoformat(expected_import_date))


def smelt_cast_fields(largest: str | None, second: str | None,
                      cast: str | None) -> SmeltCastFields | None:
    """The three fields of the 54 record, or None when the values have no grounded form.

    Grounded (contract 1.1): a country in each field, or a country as largest smelt with the
    second-largest ``NOT_APPLICABLE`` (written as spaces). Everything else (``UNKNOWN``
    anywhere, ``NOT_APPLICABLE`` as largest smelt or cast, anything not an ISO country) has
    none: the rules reject most of it, and what they let through is A128.
    """
    if largest not in ISO_COUNTRIES or cast not in ISO_COUNTRIES:
        return None
    if second == NOT_APPLICABLE:
        return largest, None, cast
    if second not in ISO_COUNTRIES:
        return None
    return largest, second, cast


@short_cache(maxsize=1024)
def _grounded(largest: str | None, second: str | None, cast: str | None) -> bool:
    """``smelt_cast_fields`` is not None: asked per licensed line, of a few combinations."""
    return smelt_cast_fields(largest, second, cast) is not None


def _first_ungrounded(line: ProductLine) -> tuple[str, str | None]:
    """The field (and value) that keeps a line's detail out of the 54 record."""
    if line.smelt_country_largest not in ISO_COUNTRIES:
        return "smelt_country_largest", line.smelt_country_largest
    if line.smelt_country_second != NOT_APPLICABLE and \
            line.smelt_country_second not in ISO_COUNTRIES:
        return "smelt_country_second", line.smelt_country_second
    return "cast_country", line.cast_country


def a128_findings(app: Application, lines: Iterable[ProductLine], listed: int) -> list[Finding]:
    """A128 for each line of a licensed entry summary application whose smelt and cast detail
    cannot be written to its 54 record. ``listed`` findings are there already: together at most
    ``MAX_FINDINGS``, the rest counted in the last (as ``findings.bounded`` does)."""
    if app.entry_type == "FZ" or not record_due(app.expected_import_date):
        return []  # FZ licenses go to the FT file, which has no 54 record
    found = []
    for line in lines:
        if _grounded(line.smelt_country_largest, line.smelt_country_second, line.cast_country):
            continue
        name, value = _first_ungrounded(line)
        found.append(finding(
            "A128", f"The smelt and cast countries of this line ({line.smelt_country_largest}, "
            f"{line.smelt_country_second}, {line.cast_country}) have no grounded form in the ACE "
            "54 record (type 07): no 54 record was written for this line; the filer completes "
            "the smelt and cast detail by hand.", ref=app.ref, line=line_number(line.line_no),
            field=name, value=value, source_line=line.source_line))
    room = max(MAX_FINDINGS - listed, 1)
    if len(found) <= room:
        return found
    rest = len(found) - room + 1
    # "... and " opens every finding that counts others (findings.bounded): it is counted so.
    return [*found[:room - 1], finding(
        "A128", f"... and {rest:,} more lines of this application have no grounded form in the "
        "ACE 54 record (type 07): no 54 record was written for them; the filer completes the "
        "smelt and cast detail by hand.", ref=app.ref, value=str(rest),
        source_line=app.source_line)]
