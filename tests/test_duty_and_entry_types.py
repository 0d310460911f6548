"""Contract 1.1, issue 12 items 3 and 4: the duty-risk warnings A126/A127 and the entry types.

- A126 (WARNING): a smelt or cast country is RU, from 2023-03-10 (guide section 6;
  Proclamation 10522). A127 (WARNING): country of origin MX with a smelt or cast country in
  CN, RU, BY, IR, from 2024-07-10 (Proclamation 10782). They never reject: AIM monitors, it
  does not set duties. Each is shown on the day before its effective date (absent) and on it.
- Entry types (guide 2.1 and section 6): 01 02 03 07 31 32 34 38 52 FZ need a license; 06
  is NOT_REQUIRED with A111 as INFO; 11 21 22 23 61 62 63 are NOT_REQUIRED with A170;
  anything else is A110.

Every case runs in XML and in CSV (CSV acknowledgment, and its XML form for the severities).
The contract is typed here from the guide, not imported from the gateway.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest
import test_csv
import test_rules
from test_csv import csv_file
from test_rules import application, submission

ROOT = Path(__file__).resolve().parent.parent
AS_OF = date(2026, 12, 1)
OK, NO, REJ = "LICENSED", "NOT_REQUIRED", "REJECTED"

# The guide's entry types (2.1) and what each one gets (section 6).
LICENSED_TYPES = ("01", "02", "03", "07", "31", "32", "34", "38", "52", "FZ")
EXEMPT_TYPES = ("11", "21", "22", "23", "61", "62", "63")
GUIDE_TYPES = {*LICENSED_TYPES, "06", *EXEMPT_TYPES}
ENTRY_TYPE_CASES = [
    *[(t, OK, set()) for t in LICENSED_TYPES],
    ("06", NO, {"A111"}),
    *[(t, NO, {"A170"}) for t in EXEMPT_TYPES],
    # near misses: real CBP types the guide does not name, and a one-digit 6
    ("12", REJ, {"A110"}), ("51", REJ, {"A110"}), ("6", REJ, {"A110"}), ("99", REJ, {"A110"}),
]
SEVERITY = {"A110": "ERROR", "A111": "INFO", "A170": "INFO", "A126": "WARNING",
            "A127": "WARNING", "A140": "ERROR"}

A126_FROM, A127_FROM = date(2023, 3, 10), date(2024, 7, 10)
DAY = timedelta(days=1)
FIELDS = {"largest": ("SmeltCountryLargest", "smelt_country_largest"),
          "second": ("SmeltCountrySecond", "smelt_country_second"),
          "cast": ("CastCountry", "cast_country")}


def _line(**countries: str) -> dict[str, str]:
    """The default line (CA, US, CA) with some smelt/cast countries replaced (by FIELDS key);
    a second-largest equal to the largest is stated NOT_APPLICABLE (else A123)."""
    line = {"SmeltCountryLargest": "CA", "SmeltCountrySecond": "US", "CastCountry": "CA"}
    for key, country in countries.items():
        line[FIELDS[key][0]] = country
    if line["SmeltCountrySecond"] == line["SmeltCountryLargest"]:
        line["SmeltCountrySecond"] = "NOT_APPLICABLE"
    return line


def _xml(as_of: date, line: dict[str, str], **app: str) -> bytes:
    return submission(application(as_of=as_of, lines=[line], **app))


def _csv(as_of: date, line: dict[str, str], **app: str) -> bytes:
    row = {column: line[element] for element, column in FIELDS.values() if element in line}
    columns = {"EntryType": "entry_type", "CountryOfOrigin": "country_of_origin"}
    row.update({columns[name]: value for name, value in app.items()})
    row["expected_export_date"] = (as_of + 5 * DAY).isoformat()
    row["expected_import_date"] = (as_of + 10 * DAY).isoformat()
    return csv_file(row)


def _outcomes(tmp_path: Path, as_of: date, line: dict[str, str],
              **app: str) -> dict[str, tuple[str, set[tuple[str, str]], str]]:
    """Per input form (xml, csv-xml = the XML form of a CSV ack, csv): the application's
    status, its (code, severity) pairs, and the file status."""
    xml_gw, csv_gw = test_rules.Gateway(tmp_path / "x"), test_csv.Gateway(tmp_path / "c")
    out = {}
    for form, ack in (("xml", xml_gw.check(_xml(as_of, line, **app), as_of)),
                      ("csv-xml", csv_gw.checked(test_rules.parse_ack, _csv(as_of, line, **app),
                                                 "sub.csv", as_of, "xml"))):
        (got,) = ack.apps
        out[form] = (got.status, {(f.code, f.severity) for f in got.findings}, ack.status)
    ack_csv = csv_gw.check(_csv(as_of, line, **app), as_of=as_of)
    (row,) = ack_csv.rows
    out["csv"] = (row.status, {(c, SEVERITY[c]) for c in row.codes}, ack_csv.status)
    return out


def _expect(status: str, codes: set[str]) -> tuple[str, set[tuple[str, str]], str]:
    file_status = {OK: "ACCEPTED", NO: "ACCEPTED", REJ: "REJECTED"}[status]
    return status, {(c, SEVERITY[c]) for c in codes}, file_status


# --- entry types -------------------------------------------------------------------------------


@pytest.mark.parametrize("as_of", [date(2021, 7, 1), AS_OF], ids=str)
@pytest.mark.parametrize(("entry_type", "status", "codes"), ENTRY_TYPE_CASES,
                         ids=[c[0] for c in ENTRY_TYPE_CASES])
def test_every_entry_type_of_the_guide(tmp_path: Path, entry_type: str, status: str,
                                       codes: set[str], as_of: date) -> None:
    got = _outcomes(tmp_path, as_of, _line(), EntryType=entry_type)
    assert got == dict.fromkeys(("xml", "csv-xml", "csv"), _expect(status, codes))


def test_type_06_is_not_required_in_a_real_run_and_gets_no_license(tmp_path: Path) -> None:
    gw = test_rules.Gateway(tmp_path)
    ack = gw.run("ftz.xml", submission(application("PO-06", EntryType="06"),
                                       application("PO-01", EntryType="01")))
    assert ack.status == "ACCEPTED"
    assert (ack.app("PO-06").status, ack.app("PO-06").license) == (NO, None)
    assert [(f.code, f.severity) for f in ack.app("PO-06").findings] == [("A111", "INFO")]
    assert ack.app("PO-01").status == OK


def test_the_entry_type_list_is_one_list() -> None:
    """The rules, the submission XSD's documentation and the partner guide name the same
    entry types, which are the guide's."""
    from gateway.validate.entry_types import ENTRY_TYPES

    assert set(ENTRY_TYPES) == GUIDE_TYPES
    xsd = (ROOT / "schemas" / "license-submission-1.0.xsd").read_text("utf-8")
    doc = xsd[xsd.index('<xs:element name="EntryType"'):xsd.index('name="EntryNumber"')]
    named = re.search(r"One of ((?:[0-9A-Z]{2} )+)", " ".join(doc.split()))
    assert named and set(named.group(1).split()) == GUIDE_TYPES
    guide = (ROOT / "docs" / "partner-guide.md").read_text("utf-8")
    section = guide[guide.index("## Entry types"):]
    section = section[:section.index("\n## ")]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    named = {code for row in rows for code in re.findall(r"`([0-9A-Z]{2})`", row.split(" | ")[0])}
    assert named == GUIDE_TYPES


# --- A126 / A127 -------------------------------------------------------------------------------

DUTY_CASES = [
    # A126: RU in each smelt/cast field, on and after 2023-03-10; the day before, nothing.
    *[pytest.param(A126_FROM - DAY, {key: "RU"}, {}, set(), id=f"A126-{key}-day-before")
      for key in FIELDS],
    *[pytest.param(A126_FROM, {key: "RU"}, {}, {"A126"}, id=f"A126-{key}-from")
      for key in FIELDS],
    pytest.param(AS_OF, {"largest": "RU", "cast": "RU"}, {}, {"A126"}, id="A126-now"),
    pytest.param(AS_OF, {}, {"CountryOfOrigin": "RU"}, set(), id="A126-near-miss-origin-only"),
    pytest.param(AS_OF, {"largest": "BY"}, {}, set(), id="A126-near-miss-belarus-not-mexico"),
    # A127: origin MX with CN, RU, BY or IR in each field, on and after 2024-07-10.
    *[pytest.param(A127_FROM, {key: country}, {"CountryOfOrigin": "MX"},
                   {"A127"} | ({"A126"} if country == "RU" else set()),
                   id=f"A127-{country}-{key}-from")
      for country in ("CN", "RU", "BY", "IR") for key in FIELDS],
    *[pytest.param(A127_FROM - DAY, {key: "CN"}, {"CountryOfOrigin": "MX"}, set(),
                   id=f"A127-CN-{key}-day-before") for key in FIELDS],
    pytest.param(A127_FROM - DAY, {"cast": "RU"}, {"CountryOfOrigin": "MX"}, {"A126"},
                 id="A127-RU-day-before-only-A126"),
    pytest.param(AS_OF, {"second": "IR"}, {"CountryOfOrigin": "MX"}, {"A127"}, id="A127-now"),
    pytest.param(AS_OF, {"largest": "MX", "cast": "MX"}, {"CountryOfOrigin": "MX"}, set(),
                 id="A127-near-miss-mexican-smelt"),
    pytest.param(AS_OF, {"largest": "CN", "cast": "CN"}, {"CountryOfOrigin": "CN"}, set(),
                 id="A127-near-miss-origin-not-mexico"),
    pytest.param(AS_OF, {"largest": "KP"}, {"CountryOfOrigin": "MX"}, set(),
                 id="A127-near-miss-other-country"),
]


@pytest.mark.parametrize(("as_of", "countries", "app", "codes"), DUTY_CASES)
def test_duty_risk_warnings(tmp_path: Path, as_of: date, countries: dict[str, str],
                            app: dict[str, str], codes: set[str]) -> None:
    got = _outcomes(tmp_path, as_of, _line(**countries), **app)
    assert got == dict.fromkeys(("xml", "csv-xml", "csv"), _expect(OK, codes))


@pytest.mark.parametrize(("app", "line", "status", "codes"), [
    pytest.param({"EntryType": "21"}, {}, NO, {"A170", "A126"}, id="exempt-stays-not-required"),
    pytest.param({"EntryType": "06"}, {}, NO, {"A111", "A126"}, id="type-06-stays-not-required"),
    pytest.param({}, {"QuantityKg": "-1"}, REJ, {"A140", "A126"}, id="rejected-stays-rejected"),
])
def test_warnings_never_change_a_status(tmp_path: Path, app: dict[str, str],
                                        line: dict[str, str], status: str,
                                        codes: set[str]) -> None:
    gw = test_rules.Gateway(tmp_path)
    ack = gw.check(submission(application(lines=[{**_line(cast="RU"), **line}], **app)))
    got = ack.app()
    assert (got.status, got.codes) == (status, codes)


def test_the_messages_name_the_duty_measure_and_its_source(tmp_path: Path) -> None:
    gw = test_rules.Gateway(tmp_path)
    line = _line(largest="CN", second="RU", cast="MX")
    got = gw.check(submission(application(CountryOfOrigin="MX", lines=[line]))).app()
    by_code = {f.code: f for f in got.findings}
    assert set(by_code) == {"A126", "A127"}
    assert (by_code["A126"].line, by_code["A126"].field, by_code["A126"].value) == (
        1, "smelt_country_second", "RU")
    assert (by_code["A127"].line, by_code["A127"].field, by_code["A127"].value) == (
        1, "smelt_country_largest", "CN")
    raw = gw.check_raw(submission(application(CountryOfOrigin="MX", lines=[line])), "m.xml",
                       AS_OF)[1].decode()
    a126 = re.search(r'code="A126"[^>]*>([^<]+)<', raw)
    a127 = re.search(r'code="A127"[^>]*>([^<]+)<', raw)
    assert a126 and a127
    for needle in ("Proclamation 10522", "88 FR 13267", "200%", "Section 232", "license"):
        assert needle in a126.group(1), a126.group(1)
    for needle in ("Proclamation 10782", "89 FR 57339", "Section 232", "Mexico"):
        assert needle in a127.group(1), a127.group(1)


def test_a_warned_application_is_licensed_in_a_real_run(tmp_path: Path) -> None:
    gw = test_rules.Gateway(tmp_path)
    ack = gw.run("ru.xml", submission(application(lines=[_line(largest="RU")])))
    got = ack.app()
    assert (ack.status, got.status, got.codes) == ("ACCEPTED", OK, {"A126"})
    assert got.license and got.license.startswith("A26")


def test_types_02_07_52_reach_the_ace_file_with_their_type(tmp_path: Path) -> None:
    """A licensed consumption entry of a new type is written like 01: its 10 record carries
    the entry type in positions 34-35 (ACE-RECORDS.md); type 06 writes nothing."""
    gw = test_rules.Gateway(tmp_path)
    types = ("02", "07", "52", "06")
    ack = gw.run("types.xml", submission(*(application(f"PO-{t}", EntryType=t) for t in types)))
    assert [a.status for a in ack.apps] == [OK, OK, OK, NO]
    (ace,) = (tmp_path / "outbox" / "ace").glob("AE-*.txt")
    records = [r for r in ace.read_text("ascii").splitlines() if r.startswith("10")]
    assert [r[33:35] for r in records] == ["02", "07", "52"]
