"""Property tests (hypothesis) for the ACE writer (issue 6 point 4).

Whatever the text of an application (valid-looking or odd: lower case, accents, emoji, control
characters, any length), every record is exactly 80 ASCII upper-case characters and a newline,
and every field sits at its ``LAYOUTS`` positions: each record is parsed back by position and
compared with the value cleaned and cut independently here, so no field ever shifts. A number
that does not fit its field raises ``ValueError`` instead of writing a long record. Whole files
from ``AceFileWriter`` have matching A/Z and B/Y records and a true manifest.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import unicodedata
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from pathlib import Path

from conftest import examples
from hypothesis import given
from hypothesis import strategies as st

from gateway.countries import ISO_COUNTRIES, NOT_APPLICABLE, UNKNOWN
from gateway.model import Application, ProductLine
from gateway.outputs.ace import (
    ENTRY_SUMMARY,
    FTZ_ADMISSION,
    AceFileWriter,
    batch_header,
    batch_trailer,
    block_header,
    block_trailer,
    entry_summary_text,
    ftz_record,
)
from gateway.outputs.ace_layouts import LAYOUTS, RECORD_LENGTH
from gateway.outputs.manifest import MANIFEST_SUFFIX
from gateway.validate.hts import covered_list
from gateway.validate.rules import RuleContext, check_application

PURE = examples(200)
FILES = examples(40)

# --- an independent reading of the layout rules ----------------------------------------------

_ALLOWED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -./&,")
# spec/ACE-RECORDS.md 1.1: the 54 type 07 record only for an import date from 2023-04-10.
SMELT_CAST_FROM = date(2023, 4, 10)


class Refused(Exception):
    """The expected outcome is a ValueError from the writer."""


def cleaned(value: str) -> str:
    """Upper-case ASCII: accents dropped (Ü is U), anything else outside A-Z 0-9 -./&, a space."""
    text = "".join(c for c in unicodedata.normalize("NFKD", value) if not unicodedata.combining(c))
    return "".join(c if c in _ALLOWED else " " for c in text.upper())


def an(value: str | None, width: int) -> str:
    return " " * width if value is None else cleaned(value)[:width].ljust(width)


def n(value: int, width: int) -> str:
    if value < 0 or len(str(value)) > width:
        raise Refused(f"{value} in {width} digits")
    return str(value).zfill(width)


def scaled(text: str | None, decimals: int) -> int:
    """``text`` as an integer with ``decimals`` implied decimals, rounded half up, exactly."""
    if text is None or not text.isascii():  # Decimal reads other scripts' digits: not ACE's
        raise Refused(f"amount {text!r}")
    try:
        with localcontext(prec=len(text) + 50):
            amount = Decimal(text.strip())
            if not amount.is_finite() or amount.adjusted() > 40:  # a tiny one rounds to 0
                raise Refused(text)
            return int(amount.scaleb(decimals).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except InvalidOperation:
        raise Refused(text) from None


def smelt_cast(line: ProductLine) -> dict[str, str] | None:
    """The 54 country fields (3 wide), or None: no grounded form, no record (contract 1.1).

    A field holds a country the partner sent for it, or spaces for a second-largest smelt
    country ``NOT_APPLICABLE``; anything else (UNKNOWN, NOT_APPLICABLE elsewhere, no country)
    leaves the line without a 54 record."""
    largest, second, cast = (line.smelt_country_largest, line.smelt_country_second,
                             line.cast_country)
    if largest not in ISO_COUNTRIES or cast not in ISO_COUNTRIES or (
            second != NOT_APPLICABLE and second not in ISO_COUNTRIES):
        return None
    return {"smelt_country_largest": largest.ljust(3),
            "smelt_country_second": "   " if second == NOT_APPLICABLE else str(second).ljust(3),
            "cast_country": cast.ljust(3)}


def line_number(line: ProductLine) -> int:
    """ASCII digits only, at most 18 (the model's rule): "+7", " 7" or "٧" are refused."""
    text = line.line_no
    if not (text and len(text) <= 18 and re.fullmatch(r"[0-9]+", text)):
        raise Refused(f"line {text!r}")
    return int(text)


def mmddyy(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).strftime("%m%d%y")
    except ValueError:
        raise Refused(f"date {value!r}") from None


def expected_records(app: Application, lines: list[ProductLine], license_number: str,
                     filer_code: str) -> list[dict[str, str]]:
    """The fields of each record, as the layout says they are written."""
    records = [{"control": "10", "action": "A", "filer_code": an(filer_code, 3),
                "entry_number": an(app.entry_number[3:] if app.entry_number else None, 8),
                "port_of_entry": an(app.port_of_entry, 4), "broker_reference": an(app.ref, 9),
                "entry_type": an(app.entry_type, 2)}]
    export_date = an(mmddyy(app.expected_export_date), 6)
    if app.expected_import_date is None:
        raise Refused("no import date: whether a 54 record is due is unknown")
    try:
        smelt_cast_due = date.fromisoformat(app.expected_import_date) >= SMELT_CAST_FROM
    except ValueError:
        raise Refused(f"date {app.expected_import_date!r}") from None
    for line in lines:
        records.append({"control": "40", "line_number": n(line_number(line), 3),
                        "country_of_origin": an(app.country_of_origin, 2),
                        "country_of_export": an(app.country_of_export, 2),
                        "export_date": export_date})
        records.append({"control": "50", "hts": an((line.hts or "").replace(".", "") or None, 10),
                        "value_usd": n(scaled(line.value_usd, 0), 10),
                        "quantity": n(scaled(line.quantity_kg, 2), 12), "unit": "KG "})
        records.append({"control": "52", "license_type": "28",
                        "license_number": an(license_number, 10)})
        countries = smelt_cast(line)
        if smelt_cast_due and countries is not None:
            records.append({"control": "54", "declaration_type": "07", **countries})
    return records


def parse(record: str, kind: str) -> dict[str, str]:
    """The fields of ``record`` read at their LAYOUTS positions; filler must be spaces."""
    assert len(record) == RECORD_LENGTH, (len(record), record)
    assert record.isascii() and record == record.upper(), record
    assert set(record) <= _ALLOWED, record
    fields = {}
    used = set()
    for name, start, end in LAYOUTS[kind]:
        fields[name] = record[start - 1 : end]
        used.update(range(start - 1, end))
    filler = "".join(c for i, c in enumerate(record) if i not in used)
    assert filler == " " * len(filler), (kind, record)
    return fields


def split_records(text: str) -> list[str]:
    assert text.endswith("\n")
    records = text[:-1].split("\n")
    assert all(len(r) == RECORD_LENGTH for r in records), [len(r) for r in records]
    return records


# --- strategies -------------------------------------------------------------------------------

odd_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "ab<cd>ef_ghij", "Ünïcode-ref-0001", "ﬁne", "ß", "ǰ", "½", "😀",
                     "\t\n\r", "\x00", "x" * 200, "a\u0301", "İ"]),
)
maybe_odd = st.one_of(st.none(), odd_text)
code2 = st.one_of(st.sampled_from(sorted(ISO_COUNTRIES)), maybe_odd)
amounts = st.one_of(
    st.decimals(min_value=0, max_value=10**10, places=3).map(str),
    st.decimals(min_value=0, max_value=10**13, places=2).map(str),
    st.sampled_from(["61200.50", "0.5", "0.005", "9999999999.49", "9999999999.5",
                     "9999999999.994", "9999999999.995", "10000000000", "+5", " 5", ".5", "5.",
                     "1e2", "1.5E+3", "٥", "0", "-5", "-0.4", "NaN", "Infinity", "sNaN",
                     "1e999999", "1e-999999", "1e999999999999999999", "1" * 5000, "x", ""]),
)
line_nos = st.one_of(st.integers(-5, 1200).map(str),
                     st.sampled_from(["007", "+7", " 7", "٧", "1_0", "", "x", "9" * 30]),
                     st.none())
smelts = st.one_of(st.sampled_from(["UNKNOWN", "NOT_APPLICABLE", " unknown ", "us", "USA", "UN",
                                    "N/A"]), code2)
dates = st.one_of(st.dates(date(1990, 1, 1), date(2099, 12, 31)).map(date.isoformat),
                  st.sampled_from(["20250307", "2025-02-30", "07.03.2025", "2025-03-07T10:00"]),
                  st.none())
# Around the first day of the 54 record (2023-04-10), and anywhere after the program start.
import_dates = st.one_of(st.dates(date(2023, 3, 1), date(2023, 5, 31)),
                         st.dates(date(2021, 6, 28), date(2099, 12, 31))).map(date.isoformat)


def mostly(draw: st.DrawFn, valid: st.SearchStrategy, odd: st.SearchStrategy) -> object:
    """A valid value five times in six: one odd field at a time is what reaches the writer."""
    return draw(odd if draw(st.integers(0, 5)) == 0 else valid)


VALID_LINE = {
    "line_no": st.integers(1, 999).map(str),
    "hts": st.sampled_from(sorted(covered_list().items)),
    "smelt_country_largest": st.sampled_from(["UNKNOWN", "NOT_APPLICABLE", "CA", "RU"]),
    "smelt_country_second": st.sampled_from(["NOT_APPLICABLE", "US", "UNKNOWN"]),
    "cast_country": st.sampled_from(sorted(ISO_COUNTRIES)),
    "quantity_kg": st.decimals(min_value=1, max_value=10**9, places=3).map(str),
    "value_usd": st.decimals(min_value=1, max_value=10**9, places=2).map(str),
}
ODD_LINE = {
    "line_no": line_nos, "hts": st.one_of(st.just("7604.29.1010"), maybe_odd),
    "smelt_country_largest": smelts, "smelt_country_second": smelts, "cast_country": code2,
    "quantity_kg": st.one_of(amounts, st.none()), "value_usd": st.one_of(amounts, st.none()),
}


@st.composite
def product_lines(draw: st.DrawFn, valid: bool = False) -> ProductLine:
    values = {name: draw(strategy) if valid else mostly(draw, strategy, ODD_LINE[name])
              for name, strategy in VALID_LINE.items()}
    return ProductLine(description=draw(maybe_odd), **values)


@st.composite
def applications(draw: st.DrawFn, valid: bool = False, port: st.SearchStrategy | None = None,
                 ) -> Application:
    return Application(
        ref=draw(st.one_of(st.sampled_from(["PO-1", "ABCDEFGHIJKLMNOP_Q"]), maybe_odd)),
        entry_type=draw(st.one_of(st.sampled_from(["01", "FZ"]), maybe_odd)),
        entry_number=draw(st.one_of(st.sampled_from(["XYZ12345678"]), maybe_odd)),
        importer=draw(maybe_odd), exporter=draw(maybe_odd), manufacturer=draw(maybe_odd),
        country_of_origin=draw(code2), country_of_export=draw(code2),
        expected_export_date=mostly(draw, st.dates(date(2000, 1, 1), date(2099, 12, 31)).map(
            date.isoformat), st.none() if valid else dates),
        expected_import_date=draw(import_dates) if valid else mostly(draw, import_dates, dates),
        port_of_entry=draw(port if port is not None else st.one_of(
            st.sampled_from(["3002", "3004"]), maybe_odd)),
        lines=draw(st.lists(product_lines(valid), min_size=0 if not valid else 1, max_size=4)))


license_numbers = st.one_of(st.from_regex(r"A[0-9]{8}", fullmatch=True), odd_text)
filer_codes = st.one_of(st.sampled_from(["XYZ", "ACM"]), odd_text)

# --- entry summaries ---------------------------------------------------------------------------


def check_entry_summary(app: Application, lines: list[ProductLine], license_number: str,
                        filer_code: str) -> list[str] | None:
    """The records written, checked field by field; None when the writer (rightly) refused."""
    try:
        expected = expected_records(app, lines, license_number, filer_code)
    except Refused:
        expected = None
    try:
        text, count = entry_summary_text(app, lines, license_number, filer_code)
    except ValueError:
        assert expected is None, "refused a line that fits every field"
        return None
    assert expected is not None, "wrote a line that cannot be written"
    records = split_records(text)
    assert count == len(records)
    for record, fields in zip(records, expected, strict=True):
        assert parse(record, fields["control"]) == fields
    return records


@PURE
@given(app=applications(), license_number=license_numbers, filer_code=filer_codes)
def test_entry_summary_fields_never_shift(app: Application, license_number: str,
                                          filer_code: str) -> None:
    check_entry_summary(app, app.lines, license_number, filer_code)


@PURE
@given(app=applications(valid=True), license_number=st.from_regex(r"A[0-9]{8}", fullmatch=True),
       filer_code=filer_codes)
def test_entry_summary_of_a_valid_application_is_written(app: Application, license_number: str,
                                                         filer_code: str) -> None:
    assert check_entry_summary(app, app.lines, license_number, filer_code) is not None


@PURE
@given(quantity=amounts, value=amounts)
def test_amounts_the_rules_accept_fit_the_ace_record(quantity: str, value: str) -> None:
    """A line the rules let through is always writable: no ValueError at licensing time."""
    line = ProductLine("1", hts="7606123045", smelt_country_largest="CA",
                       smelt_country_second="US", cast_country="CA", quantity_kg=quantity,
                       value_usd=value)
    app = Application(
        ref="PO-1", entry_type="01", importer="I", exporter="E", manufacturer="M",
        country_of_origin="CA", country_of_export="CA", expected_export_date="2026-12-05",
        expected_import_date="2026-12-10", port_of_entry="3004", lines=[line])
    # XML amounts passed the XSD (xs:decimal) before the rules see them; CSV amounts did not.
    xsd_decimal = all(re.fullmatch(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)", text.strip())
                      for text in (quantity, value))
    for source_format in ("xml", "csv") if xsd_decimal else ("csv",):
        ctx = RuleContext(processing_date=date(2026, 12, 1), covered=covered_list(),
                          source_format=source_format)
        if not check_application(app, ctx).rejected:
            assert check_entry_summary(app, app.lines, "A26000001", "XYZ") is not None


@PURE
@given(app=applications(), license_number=license_numbers, filer_code=filer_codes)
def test_ftz_record_fields_never_shift(app: Application, license_number: str,
                                       filer_code: str) -> None:
    record = ftz_record(app, app.lines, license_number, filer_code)
    description = next((line.description for line in app.lines if line.description), None)
    if description is not None:
        description = cleaned(description).translate(str.maketrans("-./&,", "     "))
    assert parse(record, "FT60") == {
        "control": "60", "description": an(description, 45), "reference_qualifier": "ALU",
        "reference_id": an(license_number, 22)}


@PURE
@given(site=odd_text, sender=odd_text, day=st.dates(date(1990, 1, 1), date(2099, 12, 31)),
       file_id=odd_text, app_id=st.sampled_from([ENTRY_SUMMARY, FTZ_ADMISSION]),
       port=odd_text, filer=odd_text, submission=odd_text)
def test_envelope_fields_never_shift(site: str, sender: str, day: date, file_id: str,
                                     app_id: str, port: str, filer: str, submission: str) -> None:
    mmddyy_day = day.strftime("%m%d%y")
    assert parse(batch_header(site, sender, day, file_id, app_id), "A") == {
        "control": "A", "site_code": an(site, 4), "sender_id": an(sender, 3),
        "processing_date": mmddyy_day, "application_id": app_id, "user_data": an(file_id, 21)}
    assert parse(batch_trailer(site, sender, day), "Z") == {
        "control": "Z", "site_code": an(site, 4), "sender_id": an(sender, 3),
        "processing_date": mmddyy_day}
    assert parse(block_header(port, filer, app_id, submission), "B") == {
        "control": "B", "port": an(port, 4), "filer_code": an(filer, 3),
        "application_id": app_id, "user_data": an(submission, 21)}
    assert parse(block_trailer(port, filer, app_id), "Y") == {
        "control": "Y", "port": an(port, 4), "filer_code": an(filer, 3),
        "application_id": app_id}


# --- whole files ---------------------------------------------------------------------------------


@FILES
@given(app_id=st.sampled_from([ENTRY_SUMMARY, FTZ_ADMISSION]),
       adds=st.lists(st.tuples(applications(valid=True, port=st.sampled_from(
           ["3002", "3004", "3002 ", "30O4", "ü", None])), st.sampled_from(["XYZ", "ACM", "xyz"]),
                                st.from_regex(r"A[0-9]{8}", fullmatch=True)), max_size=12),
       site=st.sampled_from(["S123", "s1"]), submission=odd_text)
def test_ace_file_envelopes_and_manifest(app_id: str, adds: list, site: str,
                                         submission: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / f"{app_id}-20261201-000001.txt"
        source = {"file_id": "20261201-000001", "submission_id": submission}
        writer = AceFileWriter(path, app_id=app_id, site_code=site, sender_id="T45",
                               processing_date=date(2026, 12, 1), file_id="20261201-000001",
                               submission_id=submission, source=source)
        blocks: dict[tuple[str, str], list[str]] = {}  # (port, filer) as written -> records
        licenses: dict[tuple[str, str], list[str]] = {}
        for app, filer_code, license_number in adds:
            writer.add(app, app.lines, license_number, filer_code)
            key = (an(app.port_of_entry, 4), an(filer_code, 3))
            if app_id == ENTRY_SUMMARY:
                text, _ = entry_summary_text(app, app.lines, license_number, filer_code)
            else:
                text = ftz_record(app, app.lines, license_number, filer_code) + "\n"
            blocks.setdefault(key, []).extend(split_records(text))
            licenses.setdefault(key, []).append(license_number)
        manifest = writer.finish()
        if not adds:
            assert manifest is None and not path.exists()
            assert list(folder.iterdir()) == []
            return
        assert manifest is not None
        data = path.read_bytes()
        records = split_records(data.decode("ascii"))
        # A first, Z last, matching; then B ... Y blocks in first-added order, B/Y matching.
        a, z = parse(records[0], "A"), parse(records[-1], "Z")
        assert (a["control"], z["control"]) == ("A", "Z")
        assert {k: a[k] for k in ("site_code", "sender_id", "processing_date")} == {
            k: z[k] for k in ("site_code", "sender_id", "processing_date")}
        assert a["application_id"] == app_id
        position = 1
        for (port, filer), body in blocks.items():
            b = parse(records[position], "B")
            y = parse(records[position + 1 + len(body)], "Y")
            assert (b["port"], b["filer_code"], b["application_id"]) == (port, filer, app_id)
            assert {k: b[k] for k in ("port", "filer_code", "application_id")} == {
                k: y[k] for k in ("port", "filer_code", "application_id")}
            assert b["user_data"] == an(submission, 21)
            assert records[position + 1 : position + 1 + len(body)] == body
            position += len(body) + 2
        assert position == len(records) - 1
        assert manifest.record_count == len(records) == data.count(b"\n")
        assert manifest.sha256 == hashlib.sha256(data).hexdigest()
        assert list(manifest.licenses) == [n for block in licenses.values() for n in block]
        on_disk = json.loads(path.with_name(path.name + MANIFEST_SUFFIX).read_bytes())
        assert (on_disk["sha256"], on_disk["record_count"], on_disk["licenses"]) == (
            manifest.sha256, manifest.record_count, list(manifest.licenses))
        # Nothing else is left beside the file: no spool, no temp file.
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [path.name, path.name + MANIFEST_SUFFIX])


# --- issue 12 done-when: no 54 record holds NA or UN for something that is not a country -------

# Namibia (NA) is the one country whose code the old NOT_APPLICABLE form used: left out here, so
# that any NA in a record can only be a non-country written as a country.
countries_but_namibia = st.sampled_from(sorted(ISO_COUNTRIES - {"NA"}))
smelt_values = st.one_of(st.sampled_from([UNKNOWN, NOT_APPLICABLE]), countries_but_namibia,
                         st.sampled_from(["UN", "un", "unknown", "N/A", "na", " CA", "USA", ""]))


@FILES
@given(lines=st.lists(st.tuples(smelt_values, smelt_values, smelt_values), min_size=1,
                      max_size=8),
       import_date=import_dates)
def test_no_ace_file_has_na_or_un_in_a_54_record(lines: list[tuple[str, str, str]],
                                                 import_date: str) -> None:
    product_lines = [
        ProductLine(str(n), hts="7606123045", smelt_country_largest=largest,
                    smelt_country_second=second, cast_country=cast, quantity_kg="24000",
                    value_usd="61200.00")
        for n, (largest, second, cast) in enumerate(lines, start=1)]
    app = Application(
        ref="PO-1", entry_type="01", importer="I", exporter="E", manufacturer="M",
        country_of_origin="CA", country_of_export="CA", expected_export_date="2021-06-28",
        expected_import_date=import_date, port_of_entry="3004", lines=product_lines)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "AE-20261201-000001.txt"
        writer = AceFileWriter(path, app_id=ENTRY_SUMMARY, site_code="S123", sender_id="T45",
                               processing_date=date(2026, 12, 1), file_id="20261201-000001",
                               submission_id="SUB-1", source={})
        writer.add(app, product_lines, "A26000001", "XYZ")
        assert writer.finish() is not None
        records = split_records(path.read_text("ascii"))
    r54 = [parse(r, "54") for r in records if r.startswith("54")]
    for fields in r54:
        countries = [fields[k] for k in ("smelt_country_largest", "smelt_country_second",
                                         "cast_country")]
        assert {"NA", "UN"}.isdisjoint(c.strip() for c in countries), fields
    # One 54 per line with a grounded form, each holding what the partner sent, from the date.
    due = date.fromisoformat(import_date) >= SMELT_CAST_FROM
    expected = [smelt_cast(line) for line in product_lines] if due else []
    assert [{k: v for k, v in f.items() if k not in ("control", "declaration_type")}
            for f in r54] == [e for e in expected if e is not None]
