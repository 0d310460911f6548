"""Every XML rule code of guide section 6: a case that triggers it and a near miss that does not.

Each case builds one submission from a valid default (dates relative to a fixed processing date),
runs it through `check_file` (or a real `Runner` cycle when the code needs history) and reads the
acknowledgment back: the exact codes of the application, its status and the file status.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import PARTNER, OnePartner
from lxml import etree

from gateway.admin.check import check_file

AS_OF = date(2026, 12, 1)
SAMPLE_HOSTILE = Path(__file__).parent / "cases" / "inbox" / "sample" / "acme-20261201-hostile.xml"
NS = "urn:aimgw:license-submission:1"
ACK = "{urn:aimgw:license-ack:1}"

# Severities as the guide's table fixes them (typed from the guide, not imported).
SEVERITY = {
    **dict.fromkeys(["F001", "F002", "F003", "F004", "F005", "F007", "F008", "F009"], "ERROR"),
    **dict.fromkeys(["A106", "A107", "A108"], "ERROR"),  # contract 1.1
    **dict.fromkeys(["I202", "I203", "I204"], "INFO"),
    **dict.fromkeys(["A101", "A102", "A104", "A105", "A109", "A110", "A120", "A121",
                     "A122", "A123", "A124", "A125", "A130", "A140", "A141", "A150", "A151",
                     "A160", "A190", "A191"], "ERROR"),
    **dict.fromkeys(["A126", "A127", "A128", "A132", "A133", "A152", "A180"], "WARNING"),
    **dict.fromkeys(["F006", "A111", "A131", "A153", "A170", "A171", "I201"], "INFO"),
}

# --- building submissions ---------------------------------------------------------------------

# XML element -> default value, in XSD order. None = element left out; an int for a date is a
# number of days from the processing date.
APP_DEFAULTS: dict[str, str | int | None] = {
    "EntryType": "01", "EntryNumber": None, "Importer": "ACME ALUMINUM IMPORTS LLC",
    "Exporter": "NORTHERN ROLLING MILLS INC", "Manufacturer": "NORTHERN ROLLING MILLS INC",
    "CountryOfOrigin": "CA", "CountryOfExport": "CA", "ExpectedExportDate": 5,
    "ExpectedImportDate": 10, "PortOfEntry": "3004",
}
LINE_DEFAULTS: dict[str, str | None] = {
    "HTS": "7606123045", "Description": None, "SmeltCountryLargest": "CA",
    "SmeltCountrySecond": "US", "CastCountry": "CA", "QuantityKg": "24000", "ValueUSD": "61200.00",
}


def _elements(defaults: dict, overrides: dict, as_of: date, indent: str) -> str:
    unknown = set(overrides) - set(defaults)
    assert not unknown, f"not a field: {unknown}"
    out = []
    for name, default in defaults.items():
        value = overrides.get(name, default)
        if value is None:
            continue
        if isinstance(value, int):
            value = (as_of + timedelta(days=value)).isoformat()
        out.append(f"{indent}<{name}>{value}</{name}>\n")
    return "".join(out)


def product(line: str | None = "1", *, as_of: date = AS_OF, extra: str = "", **fields) -> str:
    attr = "" if line is None else f' line="{line}"'
    body = _elements(LINE_DEFAULTS, fields, as_of, "      ")
    return f"    <Product{attr}>\n{body}{extra}    </Product>\n"


def application(ref: str | None = "PO-1", *, as_of: date = AS_OF,
                lines: list[dict] | None = None, extra: str = "", **fields) -> str:
    attr = "" if ref is None else f' ref="{ref}"'
    body = _elements(APP_DEFAULTS, fields, as_of, "    ")
    products = "".join(product(**{"line": str(i), "as_of": as_of, **ln})
                       for i, ln in enumerate(lines or [{}], start=1))
    return f"  <Application{attr}>\n{body}{extra}{products}  </Application>\n"


def header(sid: str = "SUB-1", extra: str = "") -> str:
    return f"  <Header>\n    <SubmissionId>{sid}</SubmissionId>\n{extra}  </Header>\n"


def submission(*apps: str, sid: str = "SUB-1", head: str | None = None,
               root: str = f'<LicenseSubmission xmlns="{NS}" schemaVersion="1.0">') -> bytes:
    text = ('<?xml version="1.0" encoding="UTF-8"?>\n' + root + "\n"
            + (header(sid) if head is None else head) + "".join(apps) + "</LicenseSubmission>\n")
    return text.encode("utf-8")


# --- reading acknowledgments ------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    code: str
    severity: str
    ref: str | None
    line: int | None
    field: str | None
    value: str | None


@dataclass
class AckApp:
    ref: str
    status: str
    license: str | None
    findings: list[Found]

    @property
    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    @property
    def errors(self) -> set[str]:
        return {f.code for f in self.findings if f.severity == "ERROR"}


@dataclass
class Ack:
    status: str
    findings: list[Found]
    apps: list[AckApp] = field(default_factory=list)

    @property
    def file_codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def app(self, ref: str = "PO-1") -> AckApp:
        (found,) = [a for a in self.apps if a.ref == ref]
        return found


def _found(el: etree._Element, ref: str | None) -> Found:
    line = el.get("line")
    found = Found(el.get("code"), el.get("severity"), ref, int(line) if line else None,
                  el.get("field"), el.get("value"))
    assert SEVERITY[found.code] == found.severity, found
    assert (el.text or "").strip(), f"{found.code} has no message"
    return found


def parse_ack(data: bytes) -> Ack:
    root = etree.fromstring(data)
    assert root.tag == ACK + "LicenseAck"
    ack = Ack(root.findtext(ACK + "Status"),
              [_found(f, None) for f in root.findall(ACK + "Finding")])
    for el in root.findall(ACK + "Application"):
        ref = el.get("ref")
        ack.apps.append(AckApp(ref, el.get("status"), el.findtext(ACK + "LicenseNumber"),
                               [_found(f, ref) for f in el.findall(ACK + "Finding")]))
    counts = root.find(ACK + "Counts")
    assert int(counts.findtext(ACK + "Applications")) == len(ack.apps)
    for tag, status in (("Licensed", "LICENSED"), ("NotRequired", "NOT_REQUIRED"),
                        ("Rejected", "REJECTED")):
        assert int(counts.findtext(ACK + tag)) == sum(a.status == status for a in ack.apps)
    return ack


# --- running the gateway ----------------------------------------------------------------------


class Gateway(OnePartner):
    """Partner ``acme`` with its filer block; ``gateway`` settings as given."""

    def __init__(self, base: Path, **gateway: object) -> None:
        super().__init__(base, gateway=gateway, filer=True)

    def check(self, data: bytes, as_of: date = AS_OF, name: str = "sub.xml") -> Ack:
        ack: Ack = self.checked(parse_ack, data, name, as_of)
        return ack

    def run(self, name: str, data: bytes, as_of: date = AS_OF) -> Ack:
        """Drop one file in the partner's inbox, run one real cycle, read its ack."""
        return parse_ack((self.run_raw(name, data, as_of) / f"{name}.ack.xml").read_bytes())


@pytest.fixture
def gw(tmp_path: Path) -> Gateway:
    return Gateway(tmp_path)


def test_the_default_application_is_valid_and_licensed(gw: Gateway) -> None:
    ack = gw.check(submission(application()))
    assert (ack.status, ack.file_codes) == ("ACCEPTED", set())
    app = ack.app()
    assert (app.status, app.codes, app.license) == ("LICENSED", set(), "PENDING")


# --- A-codes: one application, trigger and near miss -------------------------------------------


def case(id_: str, codes: set[str], status: str, *, as_of: date = AS_OF,
         lines: list[dict] | None = None, extra: str = "", ref: str | None = "PO-1", **app):
    return pytest.param(ref, app, lines, extra, as_of, codes, status, id=id_)


OK, NO, REJ = "LICENSED", "NOT_REQUIRED", "REJECTED"
D0628, D0629 = date(2022, 6, 28), date(2022, 6, 29)
UNK = {"SmeltCountryLargest": "UNKNOWN", "SmeltCountrySecond": "UNKNOWN"}
HUNDRED_TONNES, ONE_TONNE = {"QuantityKg": "100000"}, {"QuantityKg": "1000"}

APPLICATION_CASES = [
    # A101: an XSD violation no other code names (and never alongside a precise code).
    case("A101-quantity-not-a-number", {"A101"}, REJ, lines=[{"QuantityKg": "abc"}]),
    case("A101-value-not-a-number", {"A101"}, REJ, lines=[{"ValueUSD": "12,00"}]),
    case("A101-date-that-does-not-exist", {"A101"}, REJ, ExpectedImportDate="2026-12-32"),
    case("A101-unexpected-element-in-product", {"A101"}, REJ,
         lines=[{"extra": "      <Color>red</Color>\n"}]),
    case("A101-unexpected-element-in-application", {"A101"}, REJ,
         extra="    <Incoterms>FOB</Incoterms>\n"),
    case("A101-ref-of-wrong-shape", {"A101"}, REJ, ref="PO 1"),
    case("A101-line-number-zero", {"A101"}, REJ, lines=[{"line": "0"}]),
    case("A101-near-miss-description", set(), OK, lines=[{"Description": "Coils, 3104"}]),
    # A102: absent or empty required element, never A101.
    case("A102-no-importer", {"A102"}, REJ, Importer=None),
    case("A102-empty-importer", {"A102"}, REJ, Importer=""),
    case("A102-blank-importer", {"A102"}, REJ, Importer="   "),
    case("A102-no-entry-type", {"A102"}, REJ, EntryType=None),
    case("A102-empty-import-date", {"A102"}, REJ, ExpectedImportDate=""),
    case("A102-no-port", {"A102"}, REJ, PortOfEntry=None),
    case("A102-no-quantity", {"A102"}, REJ, lines=[{"QuantityKg": None}]),
    case("A102-empty-value", {"A102"}, REJ, lines=[{"ValueUSD": ""}]),
    case("A102-no-hts", {"A102"}, REJ, lines=[{"HTS": None}]),
    case("A102-no-ref", {"A102"}, REJ, ref=None),
    case("A102-empty-ref", {"A102"}, REJ, ref=""),
    case("A102-no-line-number", {"A102"}, REJ, lines=[{"line": None}]),
    case("A102-near-miss-optional-entry-number-absent", set(), OK, EntryNumber=None),
    # A110 / A111 / A170: entry types.
    case("A110-type-99", {"A110"}, REJ, EntryType="99"),
    case("A110-type-1-not-01", {"A110"}, REJ, EntryType="1"),
    case("A111-type-06", {"A111"}, NO, EntryType="06"),
    *[case(f"A170-type-{t}", {"A170"}, NO, EntryType=t)
      for t in ("11", "21", "22", "23", "61", "62", "63")],
    *[case(f"near-miss-type-{t}-needs-license", set(), OK, EntryType=t)
      for t in ("01", "02", "03", "07", "31", "32", "34", "38", "52", "FZ")],
    # A120: ISO alpha-2 countries.
    case("A120-origin", {"A120"}, REJ, CountryOfOrigin="ZZ"),
    case("A120-export-alpha3", {"A120"}, REJ, CountryOfExport="CAN"),
    case("A120-smelt-largest", {"A120"}, REJ, lines=[{"SmeltCountryLargest": "QQ"}]),
    case("A120-smelt-second", {"A120"}, REJ, lines=[{"SmeltCountrySecond": "XX"}]),
    case("A120-cast", {"A120"}, REJ, lines=[{"CastCountry": "QZ"}]),
    case("A120-near-miss", set(), OK, CountryOfOrigin="AE", CountryOfExport="NL"),
    # A121: UNKNOWN smelt accepted on or before 2022-06-28 only.
    case("A121-near-miss-2022-06-28", set(), OK, as_of=D0628, lines=[UNK]),
    case("A121-2022-06-29", {"A121"}, REJ, as_of=D0629, lines=[UNK]),
    case("A121-second-only", {"A121"}, REJ, lines=[{"SmeltCountrySecond": "UNKNOWN"}]),
    # A122 / A123 / A125: smelt pairs.
    case("A122", {"A122"}, REJ,
         lines=[{"SmeltCountryLargest": "NOT_APPLICABLE", "SmeltCountrySecond": "CA"}]),
    # Licensed; no grounded ACE 54 form for secondary aluminum only: A128 (contract 1.1).
    case("A122-near-miss", {"A128"}, OK,
         lines=[{"SmeltCountryLargest": "NOT_APPLICABLE", "SmeltCountrySecond": "NOT_APPLICABLE"}]),
    case("A123", {"A123"}, REJ, lines=[{"SmeltCountrySecond": "CA"}]),
    case("A123-near-miss-single-source", set(), OK,
         lines=[{"SmeltCountrySecond": "NOT_APPLICABLE"}]),
    case("A125", {"A125"}, REJ, as_of=D0628,
         lines=[{"SmeltCountryLargest": "UNKNOWN", "SmeltCountrySecond": "CA"}]),
    case("A125-near-miss", set(), OK, as_of=D0628,
         lines=[{"SmeltCountryLargest": "UNKNOWN", "SmeltCountrySecond": "NOT_APPLICABLE"}]),
    # A124: cast country.
    case("A124-unknown", {"A124"}, REJ, lines=[{"CastCountry": "UNKNOWN"}]),
    case("A124-not-applicable", {"A124"}, REJ, lines=[{"CastCountry": "NOT_APPLICABLE"}]),
    case("A124-near-miss", set(), OK, lines=[{"CastCountry": "DE"}]),
    # A130 / A131 / A132: HTS.
    case("A130-8-digits", {"A130"}, REJ, lines=[{"HTS": "76061230"}]),
    case("A130-11-digits", {"A130"}, REJ, lines=[{"HTS": "76061230451"}]),
    case("A130-dots-in-xml", {"A130"}, REJ, lines=[{"HTS": "7606.12.3045"}]),
    case("A131-not-aluminum", {"A131"}, NO, lines=[{"HTS": "7318150000"}]),
    case("A131-uncovered-line-left-out", {"A131"}, OK,
         lines=[{}, {"HTS": "7318150000", "QuantityKg": "100", "ValueUSD": "300.00"}]),
    case("A131-before-program-start", {"A131"}, NO, as_of=date(2021, 6, 27)),
    case("A132-heading-7606-not-listed", {"A131", "A132"}, NO, lines=[{"HTS": "7606129999"}]),
    case("A132-7616.99.51-not-listed", {"A131", "A132"}, NO, lines=[{"HTS": "7616995190"}]),
    case("A132-near-miss-7616.99.50", {"A131"}, NO, lines=[{"HTS": "7616995090"}]),
    case("A132-near-miss-heading-7602", {"A131"}, NO, lines=[{"HTS": "7602000030"}]),
    # A140 / A141: amounts.
    case("A140-zero", {"A140"}, REJ, lines=[{"QuantityKg": "0"}]),
    case("A140-negative", {"A140"}, REJ, lines=[{"QuantityKg": "-24000"}]),
    case("A140-4-decimals", {"A140"}, REJ, lines=[{"QuantityKg": "24000.1234"}]),
    case("A140-near-miss-3-decimals", set(), OK, lines=[{"QuantityKg": "24000.123"}]),
    case("A141-zero", {"A141"}, REJ, lines=[{"ValueUSD": "0.00"}]),
    case("A141-negative", {"A141"}, REJ, lines=[{"ValueUSD": "-61200.00"}]),
    case("A141-3-decimals", {"A141"}, REJ, lines=[{"ValueUSD": "61200.001"}]),
    case("A141-near-miss-2-decimals", set(), OK, lines=[{"ValueUSD": "61200.99"}]),
    # A150 - A153: dates.
    case("A150", {"A150"}, REJ, ExpectedExportDate=11, ExpectedImportDate=10),
    case("A150-near-miss-same-day", set(), OK, ExpectedExportDate=10, ExpectedImportDate=10),
    case("A151-plus-61", {"A151"}, REJ, ExpectedImportDate=61),
    case("A151-near-miss-plus-60", set(), OK, ExpectedImportDate=60),
    case("A152-minus-16", {"A152"}, OK, ExpectedExportDate=-20, ExpectedImportDate=-16),
    case("A152-near-miss-minus-15", set(), OK, ExpectedExportDate=-20, ExpectedImportDate=-15),
    case("A153-2021-06-27", {"A153"}, NO, as_of=date(2021, 7, 1),
         ExpectedExportDate="2021-06-20", ExpectedImportDate="2021-06-27"),
    case("A153-near-miss-2021-06-28", set(), OK, as_of=date(2021, 7, 1),
         ExpectedExportDate="2021-06-20", ExpectedImportDate="2021-06-28"),
    # A160: port.
    case("A160-3-digits", {"A160"}, REJ, PortOfEntry="300"),
    case("A160-5-digits", {"A160"}, REJ, PortOfEntry="30041"),
    case("A160-letters", {"A160"}, REJ, PortOfEntry="NYCX"),
    case("A160-near-miss", set(), OK, PortOfEntry="0101"),
    # A171: covered value under $5,000.
    case("A171-4999.99", {"A171"}, OK, lines=[{"QuantityKg": "2000", "ValueUSD": "4999.99"}]),
    case("A171-near-miss-5000.00", set(), OK,
         lines=[{"QuantityKg": "2000", "ValueUSD": "5000.00"}]),
    case("A171-near-miss-two-lines-sum", set(), OK,
         lines=[{"QuantityKg": "1000", "ValueUSD": "2500.00"},
                {"QuantityKg": "1000", "ValueUSD": "2500.00"}]),
    case("A171-uncovered-lines-not-counted", {"A131", "A171"}, OK,
         lines=[{"QuantityKg": "1000", "ValueUSD": "4000.00"},
                {"HTS": "7318150000", "QuantityKg": "1000", "ValueUSD": "4000.00"}]),
    case("A171-not-on-exempt-entry", {"A170"}, NO, EntryType="21",
         lines=[{"QuantityKg": "100", "ValueUSD": "300.00"}]),
    # A180: unit value per metric ton, 500-60,000.
    case("A180-499.99", {"A180"}, OK, lines=[{**HUNDRED_TONNES, "ValueUSD": "49999.00"}]),
    case("A180-near-miss-500.00", set(), OK, lines=[{**HUNDRED_TONNES, "ValueUSD": "50000.00"}]),
    case("A180-near-miss-60000.00", set(), OK, lines=[{**ONE_TONNE, "ValueUSD": "60000.00"}]),
    case("A180-60000.01", {"A180"}, OK, lines=[{**ONE_TONNE, "ValueUSD": "60000.01"}]),
    # A190: line numbers.
    case("A190-repeated-line", {"A190"}, REJ, lines=[{}, {"line": "1"}]),
    case("A190-near-miss-out-of-order", set(), OK, lines=[{"line": "2"}, {"line": "1"}]),
    # A191: entry number shape.
    case("A191-5-chars", {"A191"}, REJ, EntryNumber="SMP12"),
    case("A191-letter-check-digit", {"A191"}, REJ, EntryNumber="SMP1234567X"),
    case("A191-12-chars", {"A191"}, REJ, EntryNumber="SMP123456750"),
    case("A191-near-miss-11-chars", set(), OK, EntryNumber="SMP12345675"),
]


@pytest.mark.parametrize(("ref", "app", "lines", "extra", "as_of", "codes", "status"),
                         APPLICATION_CASES)
def test_application_rule(gw: Gateway, ref, app, lines, extra, as_of, codes, status) -> None:
    ack = gw.check(submission(application(ref, as_of=as_of, lines=lines, extra=extra, **app)),
                   as_of=as_of)
    (got,) = ack.apps
    assert got.codes == codes, got.findings
    assert got.status == status
    assert ack.status == ("REJECTED" if status == REJ else "ACCEPTED")
    assert ack.file_codes == set()
    assert (got.license == "PENDING") == (status == OK)


PRECISE = [  # guide section 6: "... gives <code>, never A101"
    ("A130", {}, [{"HTS": "76061230"}]),
    ("A110", {"EntryType": "99"}, None),
    ("A124", {}, [{"CastCountry": "UNKNOWN"}]),
    ("A140", {}, [{"QuantityKg": "-5"}]),
    ("A160", {"PortOfEntry": "300"}, None),
    ("A191", {"EntryNumber": "SMP12"}, None),
    ("A102", {"Importer": None}, None),
    ("A102", {"Importer": ""}, None),
]


@pytest.mark.parametrize(("code", "app", "lines"), PRECISE)
def test_precise_code_never_a101(gw: Gateway, code, app, lines) -> None:
    got = gw.check(submission(application(lines=lines, **app))).app()
    assert got.errors == {code}
    assert "A101" not in got.codes


def test_quantity_abc_is_a101_not_a140(gw: Gateway) -> None:
    got = gw.check(submission(application(lines=[{"QuantityKg": "abc"}]))).app()
    assert [(f.code, f.line, f.field) for f in got.findings] == [("A101", 1, "quantity_kg")]


def test_missing_cast_country_is_a102_and_a124_not_a101(gw: Gateway) -> None:
    got = gw.check(submission(application(lines=[{"CastCountry": None}]))).app()
    assert got.codes == {"A102", "A124"}
    assert {f.field for f in got.findings} == {"cast_country"}


# Where a finding points: line 1 is good, line 2 is bad; (code, line, field, value).
LOCATIONS = [
    ({"HTS": "76061230"}, ("A130", 2, "hts", "76061230")),
    ({"QuantityKg": "-5"}, ("A140", 2, "quantity_kg", "-5")),
    ({"ValueUSD": "1.005"}, ("A141", 2, "value_usd", "1.005")),
    ({"CastCountry": "UNKNOWN"}, ("A124", 2, "cast_country", "UNKNOWN")),
    ({"SmeltCountrySecond": "CA"}, ("A123", 2, "smelt_country_second", "CA")),
    ({"SmeltCountryLargest": "ZZ"}, ("A120", 2, "smelt_country_largest", "ZZ")),
]


@pytest.mark.parametrize(("bad", "expected"), LOCATIONS)
def test_line_finding_location(gw: Gateway, bad, expected) -> None:
    got = gw.check(submission(application(lines=[{}, bad]))).app()
    assert [(f.code, f.line, f.field, f.value) for f in got.findings] == [expected]
    assert got.status == REJ


@pytest.mark.parametrize(("as_of", "expected"), [(D0628, []), (D0629, [
    ("A121", 1, "smelt_country_largest"), ("A121", 1, "smelt_country_second")])])
def test_a121_cutoff(gw: Gateway, as_of, expected) -> None:
    got = gw.check(submission(application(as_of=as_of, lines=[UNK])), as_of=as_of).app()
    assert sorted((f.code, f.line, f.field) for f in got.findings) == expected


def _many(count: int, numbers: list[str] | None = None) -> bytes:
    line = {"QuantityKg": "1000", "ValueUSD": "2550.00"}
    numbers = numbers or [str(i) for i in range(1, count + 1)]
    return submission(application(lines=[{**line, "line": n} for n in numbers]))


@pytest.mark.parametrize(("numbers", "expected"), [
    (range(1, 1000), []),
    # line="1000" is also outside the XSD's 1..999: A101 there (the schema's documentation).
    (range(1, 1001), [("A190", None), ("A101", 1000)]),
    ([*range(1, 1000), 7], [("A190", 7), ("A190", None)]),
], ids=["999-lines-ok", "1000-lines", "1000-lines-one-repeated"])
def test_a190_line_count(gw: Gateway, numbers, expected) -> None:
    line = {"QuantityKg": "1000", "ValueUSD": "2550.00"}
    got = gw.check(submission(application(lines=[{**line, "line": str(n)} for n in numbers])))
    assert [(f.code, f.line) for f in got.app().findings] == expected
    assert got.app().status == (REJ if expected else OK)


# --- A105 and the file status -----------------------------------------------------------------


def test_a105_same_ref_twice_rejects_both(gw: Gateway) -> None:
    ack = gw.check(submission(application("PO-1"), application("PO-2"),
                              application("PO-1", Exporter="OTHER MILL")))
    assert [(a.ref, a.status, a.codes) for a in ack.apps] == [
        ("PO-1", REJ, {"A105"}), ("PO-2", OK, set()), ("PO-1", REJ, {"A105"})]
    assert ack.status == "PARTIAL"


def test_a105_near_miss_distinct_refs(gw: Gateway) -> None:
    ack = gw.check(submission(application("PO-1"), application("PO-1A")))
    assert [(a.status, a.codes) for a in ack.apps] == [(OK, set()), (OK, set())]
    assert ack.status == "ACCEPTED"


@pytest.mark.parametrize(("apps", "file_status"), [
    ([application("A"), application("B", EntryType="21")], "ACCEPTED"),
    ([application("A", EntryType="21")], "ACCEPTED"),
    ([application("A"), application("B", EntryType="99")], "PARTIAL"),
    ([application("A", EntryType="21"), application("B", PortOfEntry="1")], "PARTIAL"),
    ([application("A", EntryType="99"), application("B", PortOfEntry="1")], "REJECTED"),
])
def test_file_status(gw: Gateway, apps, file_status) -> None:
    assert gw.check(submission(*apps)).status == file_status


# --- F-codes: the whole file ------------------------------------------------------------------

GOOD = submission(application())
PROLOG = b'<?xml version="1.0" encoding="UTF-8"?>\n'
XI = b'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd"/>'
FILER = ("    <Filer><Name>ACME</Name><Street>1 MAIN ST</Street><City>NEWARK</City><State>NJ"
         "</State><PostalCode>07114</PostalCode><ContactName>JANE DOE</ContactName><Phone>555"
         "</Phone><Email>a@b.example</Email></Filer>\n")


def _with(old: bytes, new: bytes, data: bytes = GOOD) -> bytes:
    assert old in data
    return data.replace(old, new, 1)


FILE_CASES = [
    ("F001-truncated", GOOD[: len(GOOD) // 2], "F001"),
    ("F001-mismatched-tag", _with(b"</Importer>", b"</Exporter>"), "F001"),
    ("F001-near-miss-comment-after-root", GOOD + b"<!-- end -->\n", None),
    ("F002-plain-text", b"hello world, this is not a submission\n", "F002"),
    ("F002-binary", bytes(range(256)) * 4, "F002"),
    ("F002-empty", b"", "F002"),
    ("F002-near-miss-xml-named-csv", GOOD, None),  # name below: by content, not by name
    ("F004-doctype", _with(PROLOG, PROLOG + b"<!DOCTYPE LicenseSubmission>\n"), "F004"),
    ("F004-entity", _with(PROLOG, PROLOG + b'<!DOCTYPE x [<!ENTITY e "x">]>\n'), "F004"),
    ("F004-external-dtd", _with(PROLOG, PROLOG + b'<!DOCTYPE LicenseSubmission SYSTEM '
                                b'"http://example.com/x.dtd">\n'), "F004"),
    ("F004-doctype-after-300k-comment",
     _with(PROLOG, PROLOG + b"<!--" + b"x" * 300_000 + b"-->\n<!DOCTYPE LicenseSubmission>\n"),
     "F004"),
    ("F004-xinclude", _with(b"<PortOfEntry>", XI + b"<PortOfEntry>"), "F004"),
    ("F004-xinclude-after-300k", _with(b"<PortOfEntry>", b"<!--" + b"x" * 300_000 + b"-->"
                                       + XI + b"<PortOfEntry>"), "F004"),
    ("F004-utf16-doctype", _with(b"UTF-8", b"UTF-16", _with(
        PROLOG, PROLOG + b"<!DOCTYPE LicenseSubmission>\n")).decode().encode("utf-16"), "F004"),
    ("F004-near-miss-escaped-text", _with(b"ACME ALUMINUM", b"&lt;!DOCTYPE&gt; ALUMINUM"), None),
    ("F005-wrong-root", submission(application(), root=f'<Submission xmlns="{NS}" '
                                   'schemaVersion="1.0">').replace(b"</LicenseSubmission>",
                                                                  b"</Submission>"), "F005"),
    ("F005-wrong-namespace", _with(NS.encode(), b"urn:aimgw:license-submission:2"), "F005"),
    ("F005-no-namespace", _with(f' xmlns="{NS}"'.encode(), b""), "F005"),
    ("F005-schema-version-2", _with(b'schemaVersion="1.0"', b'schemaVersion="2.0"'), "F005"),
    ("F005-no-schema-version", _with(b' schemaVersion="1.0"', b""), "F005"),
    ("F005-bad-submission-id", submission(application(), sid="SUB 1"), "F005"),
    ("F005-bad-created", submission(application(), head=header(
        extra="    <Created>yesterday</Created>\n")), "F005"),
    ("F005-no-header", submission(application(), head=""), "F005"),
    ("F005-stray-element", _with(b"</LicenseSubmission>", b"<Trailer/></LicenseSubmission>"),
     "F005"),
    ("F005-near-miss-full-header", submission(application(), head=header(
        extra="    <Created>2026-12-01T09:30:00-05:00</Created>\n" + FILER)), None),
    ("F008-no-application", submission(), "F008"),
    ("F009-invalid-utf8", _with(b"ACME ALUMINUM", b"ACME \xff\xfe ALUMINUM"), "F009"),
    ("F009-latin1-in-utf8-file", _with(b"ACME ALUMINUM", "MÜLLER".encode("latin-1")), "F009"),
    ("F009-near-miss-utf8", _with(b"ACME ALUMINUM", "MÜLLER ALUMİNYUM".encode()), None),
    ("F009-near-miss-declared-latin1",
     _with(b'encoding="UTF-8"', b'encoding="ISO-8859-1"',
           _with(b"ACME ALUMINUM", "MÜLLER".encode("latin-1"))), None),
]


@pytest.mark.parametrize(("data", "code"), [pytest.param(d, c, id=i) for i, d, c in FILE_CASES])
def test_file_rule(gw: Gateway, request, data, code) -> None:
    name = "orders.csv" if "named-csv" in request.node.name else "sub.xml"
    ack = gw.check(data, name=name)
    if code is None:
        assert (ack.status, ack.file_codes) == ("ACCEPTED", set())
        assert [(a.status, a.codes) for a in ack.apps] == [(OK, set())]
    else:
        assert (ack.status, ack.file_codes, ack.apps) == ("REJECTED", {code}, [])


def test_f004_hostile_sample_never_expands_or_fetches(gw: Gateway) -> None:
    path = gw.base / "hostile.xml"
    path.write_bytes(SAMPLE_HOSTILE.read_bytes())
    result = check_file(gw.config, path, PARTNER, AS_OF)
    ack = parse_ack(result.ack)
    assert (ack.status, ack.file_codes, ack.apps) == ("REJECTED", {"F004"}, [])
    assert b"root:" not in result.ack and b"lollol" not in result.ack


@pytest.mark.parametrize("size_delta", [0, -1])
def test_f003_size_limit(tmp_path: Path, size_delta: int) -> None:
    gw = Gateway(tmp_path, max_file_bytes=len(GOOD) + size_delta)
    ack = gw.check(GOOD)
    if size_delta == 0:
        assert (ack.status, ack.file_codes) == ("ACCEPTED", set())
    else:
        assert (ack.status, ack.file_codes, ack.apps) == ("REJECTED", {"F003"}, [])


# --- codes that need history: real runs -------------------------------------------------------


def test_a104_same_ref_different_content(gw: Gateway) -> None:
    first = gw.run("a.xml", submission(application(), sid="S1"))
    assert (first.status, first.app().status, first.app().license) == ("ACCEPTED", OK, "A26000001")
    changed = submission(application(lines=[{"QuantityKg": "25000"}]), sid="S2")
    second = gw.run("b.xml", changed)
    assert (second.status, second.app().status, second.app().codes) == ("REJECTED", REJ, {"A104"})
    assert second.app().license is None
    # `check` reads the same history from the ledger.
    assert gw.check(changed).app().codes == {"A104"}


def test_i201_identical_request_gets_its_license_again(gw: Gateway) -> None:
    gw.run("a.xml", submission(application(), sid="S1"))
    again = gw.run("b.xml", submission(application(lines=[{"QuantityKg": "24000.000"}]),
                                       sid="S2"))
    assert (again.status, again.app().status, again.app().license) == ("ACCEPTED", OK, "A26000001")
    assert again.app().codes == {"I201"}


def test_i201_and_f007_near_miss_new_ref_and_submission_id(gw: Gateway) -> None:
    gw.run("a.xml", submission(application(), sid="S1"))
    other = gw.run("b.xml", submission(application("PO-2"), sid="S2"))
    assert (other.status, other.file_codes) == ("ACCEPTED", set())
    assert (other.app("PO-2").license, other.app("PO-2").codes) == ("A26000002", set())


def test_f006_same_bytes_again_is_duplicate(gw: Gateway) -> None:
    data = submission(application(), sid="S1")
    gw.run("a.xml", data)
    dup = gw.run("a-copy.xml", data)
    assert (dup.status, dup.file_codes) == ("DUPLICATE", {"F006"})
    assert (dup.app().license, dup.app().codes) == ("A26000001", set())
    assert gw.check(data).status == "DUPLICATE"


def test_f006_near_miss_one_byte_differs(gw: Gateway) -> None:
    gw.run("a.xml", submission(application(), sid="S1"))
    near = gw.run("a-copy.xml", submission(application(), sid="S2"))
    assert (near.status, near.file_codes, near.app().codes) == ("ACCEPTED", set(), {"I201"})


def test_f007_submission_id_reused_with_other_content(gw: Gateway) -> None:
    gw.run("a.xml", submission(application(), sid="S1"))
    reused = gw.run("b.xml", submission(application("PO-2"), sid="S1"))
    assert (reused.status, reused.file_codes, reused.apps) == ("REJECTED", {"F007"}, [])
    # Nothing was issued for PO-2: the next license is still number 2.
    later = gw.run("c.xml", submission(application("PO-3"), sid="S3"))
    assert later.app("PO-3").license == "A26000002"


# --- the command line -------------------------------------------------------------------------


def cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "AIMGW_CONFIG"}
    return subprocess.run([sys.executable, "-m", "gateway.cli", "check", *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, timeout=120, check=False)


def test_cli_check_exit_codes(gw: Gateway) -> None:
    files = {
        "good.xml": GOOD,
        "partial.xml": submission(application("A"), application("B", PortOfEntry="300")),
        "bad.xml": submission(application(EntryType="99")),
        "hostile.xml": SAMPLE_HOSTILE.read_bytes(),
    }
    for name, data in files.items():
        (gw.base / name).write_bytes(data)
    opts = ("--as-of", AS_OF.isoformat(), "--config", gw.config_path)
    for name, code, status in (("good.xml", 0, "ACCEPTED"), ("partial.xml", 1, "PARTIAL"),
                               ("bad.xml", 1, "REJECTED"), ("hostile.xml", 1, "REJECTED")):
        done = cli(gw.base / name, *opts, cwd=gw.base)
        assert done.returncode == code, (name, done.stderr)
        assert parse_ack(done.stdout).status == status
    missing = cli(gw.base / "good.xml", "--config", gw.base / "nope.toml", cwd=gw.base)
    assert missing.returncode == 2
    unknown = cli(gw.base / "good.xml", *opts, "--partner", "nobody", cwd=gw.base)
    assert unknown.returncode == 2
    # check changes nothing: no data folder, no outbox, the inputs are where they were.
    assert not (gw.base / "data").exists() and not (gw.base / "outbox").exists()
    assert sorted(p.name for p in gw.base.iterdir()) == sorted([*files, "config.toml"])
