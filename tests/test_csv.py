"""Canonical CSV submissions (guide sections 4, 6, 7) and their CSV acknowledgments.

Each case builds a CSV from a valid default row, runs it through `check_file` (or a real
`Runner` cycle) and reads the acknowledgment back: in its CSV form (one row per input row) or,
with ``ack_format="xml"``, in its XML form (where every finding carries ``sourceLine``).
The helpers here are shared with ``test_mapping.py``.
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest
from conftest import PARTNER, OnePartner
from lxml import etree

from gateway.parse.csv_file import CsvSubmission
from gateway.schemas import ack_schema

ROOT = Path(__file__).resolve().parent.parent
# Sample files are copied into tests/cases so the suite never reads the working tree's inbox/.
CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
GOLDEN = Path(__file__).parent / "golden"
SAMPLE_CSV = CASES_INBOX / "sample" / "acme-20261202-erp.csv"
REGEN = os.environ.get("AIMGW_REGEN_GOLDEN") == "1"
AS_OF = date(2026, 12, 1)
ACK = "{urn:aimgw:license-ack:1}"

# The contract, typed from the guide (sections 2, 4 and 7), not imported from the gateway.
COLUMNS = ("submission_id", "application_ref", "entry_type", "entry_number", "importer",
           "exporter", "manufacturer", "country_of_origin", "country_of_export",
           "expected_export_date", "expected_import_date", "port_of_entry", "line_no", "hts",
           "description", "smelt_country_largest", "smelt_country_second", "cast_country",
           "quantity_kg", "value_usd")
APP_COLUMNS = COLUMNS[2:12]
ACK_COLUMNS = ("row", "application_ref", "line_no", "status", "license_number", "valid_from",
               "valid_through", "codes", "messages")
DEFAULT_ROW = {
    "submission_id": "SUB-1", "application_ref": "PO-1", "entry_type": "01", "entry_number": "",
    "importer": "ACME ALUMINUM IMPORTS LLC", "exporter": "NORTHERN ROLLING MILLS INC",
    "manufacturer": "NORTHERN ROLLING MILLS INC", "country_of_origin": "CA",
    "country_of_export": "CA", "expected_export_date": "2026-12-05",
    "expected_import_date": "2026-12-10", "port_of_entry": "3004", "line_no": None,
    "hts": "7606123045", "description": "", "smelt_country_largest": "CA",
    "smelt_country_second": "US", "cast_country": "CA", "quantity_kg": "24000",
    "value_usd": "61200.00",
}
# A different valid value for each application field (A103 cases).
OTHER_VALUE = {"entry_type": "03", "entry_number": "ABC12345678", "importer": "OTHER LLC",
               "exporter": "OTHER EXPORTER", "manufacturer": "OTHER MILL",
               "country_of_origin": "US", "country_of_export": "US",
               "expected_export_date": "2026-12-06", "expected_import_date": "2026-12-11",
               "port_of_entry": "3001"}


# --- building files ---------------------------------------------------------------------------


def table(*rows: dict[str, str | None], columns: tuple[str, ...] = COLUMNS) -> list[list[str]]:
    """Header + one row per dict (overrides of DEFAULT_ROW); line_no counts per ref."""
    out = [list(columns)]
    per_ref: dict[str, int] = {}
    for overrides in rows or ({},):
        unknown = set(overrides) - set(DEFAULT_ROW)
        assert not unknown, f"not a column: {unknown}"
        values = {**DEFAULT_ROW, **overrides}
        if values["line_no"] is None:
            ref = values["application_ref"] or ""
            per_ref[ref] = per_ref.get(ref, 0) + 1
            values["line_no"] = str(per_ref[ref])
        out.append([values.get(c) or "" for c in columns])
    return out


def to_csv(cells: list[list[str]], delimiter: str = ",", encoding: str = "utf-8",
           bom: bool = False, newline: str = "\r\n") -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator=newline).writerows(cells)
    return (b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode(encoding)


def csv_file(*rows: dict[str, str | None], **options) -> bytes:
    return to_csv(table(*rows), **options)


# --- reading acknowledgments ------------------------------------------------------------------


@dataclass
class AckRow:
    row: int | None
    ref: str
    line_no: str
    status: str
    license: str
    valid_from: str
    valid_through: str
    codes: list[str]
    messages: str


@dataclass
class CsvAck:
    file: AckRow
    rows: list[AckRow]
    raw: list[list[str]]

    @property
    def status(self) -> str:
        return self.file.status

    def row(self, number: int) -> AckRow:
        (found,) = [r for r in self.rows if r.row == number]
        return found

    def by_ref(self, ref: str) -> list[AckRow]:
        return [r for r in self.rows if r.ref == ref]


def parse_csv_ack(data: bytes) -> CsvAck:
    raw = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert tuple(raw[0]) == ACK_COLUMNS
    rows = []
    for cells in raw[1:]:
        assert len(cells) == len(ACK_COLUMNS), cells
        codes = cells[7].split()
        # every code has its message, in the same order (the file row may add its counts)
        parts = cells[8].split(" | ") if codes else []
        assert [m.split(" ", 1)[0] for m in parts[:len(codes)]] == codes, cells
        rows.append(AckRow(int(cells[0]) if cells[0] else None, cells[1], cells[2], cells[3],
                           cells[4], cells[5], cells[6], codes, cells[8]))
    assert rows[0].row is None, "the first data row is the file's own"
    assert all(r.row is not None for r in rows[1:])
    assert rows[0].messages, "the file row says what happened"
    return CsvAck(rows[0], rows[1:], raw)


@dataclass(frozen=True)
class Found:
    code: str
    field: str | None
    value: str | None
    source_line: int | None


@dataclass
class XmlApp:
    ref: str
    status: str
    license: str | None
    lines: list[str]
    findings: list[Found]

    @property
    def codes(self) -> set[str]:
        return {f.code for f in self.findings}


@dataclass
class XmlAck:
    status: str
    findings: list[Found]
    apps: list[XmlApp] = field(default_factory=list)

    @property
    def file_codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def app(self, ref: str = "PO-1") -> XmlApp:
        (found,) = [a for a in self.apps if a.ref == ref]
        return found


def _found(el: etree._Element) -> Found:
    line = el.get("sourceLine")
    assert (el.text or "").strip(), "every finding has a message"
    return Found(el.get("code"), el.get("field"), el.get("value"), int(line) if line else None)


def parse_xml_ack(data: bytes) -> XmlAck:
    root = etree.fromstring(data)
    assert ack_schema().validate(root.getroottree()), ack_schema().error_log
    ack = XmlAck(root.findtext(ACK + "Status"), [_found(f) for f in root.findall(ACK + "Finding")])
    for el in root.findall(ACK + "Application"):
        ack.apps.append(XmlApp(el.get("ref"), el.get("status"), el.findtext(ACK + "LicenseNumber"),
                               [p.get("line") for p in el.findall(ACK + "Product")],
                               [_found(f) for f in el.findall(ACK + "Finding")]))
    return ack


# --- running the gateway ----------------------------------------------------------------------


class Gateway(OnePartner):
    def __init__(self, base: Path, mapping: Path | None = None) -> None:
        super().__init__(base, mapping=mapping)

    def check(self, data: bytes, name: str = "sub.csv", as_of: date = AS_OF) -> CsvAck:
        ack: CsvAck = self.checked(parse_csv_ack, data, name, as_of)
        return ack

    def check_xml(self, data: bytes, name: str = "sub.csv", as_of: date = AS_OF) -> XmlAck:
        ack: XmlAck = self.checked(parse_xml_ack, data, name, as_of, "xml")
        return ack

    def run(self, name: str, data: bytes, as_of: date = AS_OF) -> CsvAck:
        return parse_csv_ack((self.run_raw(name, data, as_of) / f"{name}.ack.csv").read_bytes())


@pytest.fixture
def gw(tmp_path: Path) -> Gateway:
    return Gateway(tmp_path)


# --- 1. canonical CSV: applications ------------------------------------------------------------


def test_default_rows_make_one_licensed_application(gw: Gateway) -> None:
    ack = gw.check(csv_file({}, {"hts": "7606123091", "description": "Plate 6061"}))
    assert (ack.status, ack.file.codes) == ("ACCEPTED", [])
    assert [(r.row, r.ref, r.line_no, r.status, r.license, r.codes) for r in ack.rows] == [
        (2, "PO-1", "1", "LICENSED", "PENDING", []), (3, "PO-1", "2", "LICENSED", "PENDING", [])]
    assert {(r.valid_from, r.valid_through) for r in ack.rows} == {("2026-12-01", "2027-02-14")}


@pytest.mark.parametrize("refs", [
    pytest.param(["PO-1", "PO-1", "PO-2", "PO-2", "PO-2"], id="consecutive"),
    pytest.param(["PO-1", "PO-2", "PO-1", "PO-2", "PO-1"], id="non-consecutive"),
    pytest.param(["PO-2", "PO-1", "PO-1", "PO-3", "PO-2"], id="mixed"),
])
def test_rows_of_one_ref_are_one_application(gw: Gateway, refs: list[str]) -> None:
    data = csv_file(*({"application_ref": r} for r in refs))
    xml = gw.check_xml(data)
    expected = {ref: [str(n) for n in range(1, refs.count(ref) + 1)] for ref in refs}
    assert {a.ref: a.lines for a in xml.apps} == expected
    assert len(xml.apps) == len(expected)
    assert {(a.status, frozenset(a.codes)) for a in xml.apps} == {("LICENSED", frozenset())}
    ack = gw.check(data)
    assert sorted(r.row for r in ack.rows) == list(range(2, len(refs) + 2))
    for r in ack.rows:
        assert (r.ref, r.status) == (refs[r.row - 2], "LICENSED")


def test_a_ref_that_comes_back_keeps_one_license_in_a_real_run(gw: Gateway) -> None:
    ack = gw.run("a.csv", csv_file({"application_ref": "PO-1"}, {"application_ref": "PO-2"},
                                   {"application_ref": "PO-1"}))
    assert ack.status == "ACCEPTED"
    assert {r.row: r.license for r in ack.rows} == {2: "A26000001", 3: "A26000002",
                                                    4: "A26000001"}


@pytest.mark.parametrize("column", APP_COLUMNS)
@pytest.mark.parametrize("layout", ["consecutive", "non-consecutive"])
def test_rows_that_disagree_on_an_application_field_are_a103(gw: Gateway, column: str,
                                                            layout: str) -> None:
    second = {"application_ref": "PO-2"}
    rows = [{}, second, {column: OTHER_VALUE[column]}]
    if layout == "consecutive":
        rows = [second, {}, {column: OTHER_VALUE[column]}]
    xml = gw.check_xml(csv_file(*rows))
    assert xml.status == "PARTIAL"
    app = xml.app("PO-1")
    assert app.status == "REJECTED"
    assert [(f.code, f.field, f.value, f.source_line) for f in app.findings] == [
        ("A103", column, OTHER_VALUE[column], 4)]
    assert xml.app("PO-2").status == "LICENSED"
    ack = gw.check(csv_file(*rows))
    assert ack.row(4).codes == ["A103"] and column in ack.row(4).messages
    assert ack.row(4).status == "REJECTED"


def test_a_blank_ref_is_a102_and_never_joins_another_row(gw: Gateway) -> None:
    xml = gw.check_xml(csv_file({"application_ref": ""}, {"application_ref": ""}))
    assert [(a.ref, a.status, a.codes) for a in xml.apps] == [("", "REJECTED", {"A102"})] * 2
    assert [f.source_line for a in xml.apps for f in a.findings] == [2, 3]


# --- 1. canonical CSV: F-codes (the whole file) ------------------------------------------------

HEADER = ",".join(COLUMNS)
GOOD = to_csv(table({}))
GOOD_ROW = GOOD.split(b"\r\n")[1]


def _replace_column(old: str, new: str) -> bytes:
    return to_csv([[new if c == old else c for c in COLUMNS], *table({})[1:]])


F_CASES = [
    pytest.param(to_csv([[c for c in COLUMNS if c != "hts"],
                         [v for c, v in zip(COLUMNS, table({})[1], strict=True) if c != "hts"]]),
                 "F005", 1, id="F005-missing-column"),
    pytest.param(to_csv([[*COLUMNS, "colour"], [*table({})[1], "red"]]), "F005", 1,
                 id="F005-unknown-column"),
    pytest.param(_replace_column("description", "hts_code"), "F005", 1,
                 id="F005-misspelt-column"),
    pytest.param(_replace_column("description", "hts"), "F005", 1, id="F005-repeated-column"),
    pytest.param(GOOD + GOOD_ROW.replace(b"SUB-1", b"SUB-2") + b"\r\n", "F005", 3,
                 id="F005-two-submission-ids"),
    pytest.param(csv_file({"submission_id": ""}), "F005", 2, id="F005-blank-submission-id"),
    pytest.param(GOOD + GOOD_ROW.replace(b"NORTHERN", b"NORTH\xe9RN") + b"\r\n", "F009", 3,
                 id="F009-latin-1-byte"),
    pytest.param(GOOD + GOOD_ROW.replace(b"NORTHERN", b"\xc3\x28") + b"\r\n", "F009", 3,
                 id="F009-invalid-utf8-sequence"),
    pytest.param(GOOD + GOOD_ROW + b",extra\r\n", "F001", 3, id="F001-too-many-cells"),
    pytest.param(GOOD + GOOD_ROW.rsplit(b",", 1)[0] + b"\r\n", "F001", 3,
                 id="F001-too-few-cells"),
    pytest.param(GOOD + GOOD_ROW.replace(b"NORTHERN", b'"NORTHERN', 1) + b"\r\n", "F001", 3,
                 id="F001-unterminated-quote"),
    pytest.param(GOOD + (GOOD_ROW + b"\r\n") * 40 + GOOD_ROW.replace(b"NORTHERN", b"NO\x00")
                 + b"\r\n", "F001", 43, id="F001-nul-byte"),
    # Near the top too: only a NUL in the header row makes the file binary (F002).
    pytest.param(GOOD + GOOD_ROW.replace(b"NORTHERN", b"NO\x00") + b"\r\n", "F001", 3,
                 id="F001-nul-byte-near-the-top"),
    pytest.param(HEADER.encode() + b"\r\n", "F008", None, id="F008-header-only"),
    pytest.param(HEADER.encode() + b"\r\n\r\n,,,\r\n", "F008", None, id="F008-blank-rows-only"),
    pytest.param(b"name,age\r\nbob,3\r\n", "F002", None, id="F002-no-known-column"),
    pytest.param(b"Dear customs,\nplease license our aluminum.\n", "F002", None,
                 id="F002-prose"),
    pytest.param(b"\x00\x01\x02binary", "F002", None, id="F002-binary"),
]


@pytest.mark.parametrize(("data", "code", "row"), F_CASES)
def test_envelope_problems_reject_the_whole_file(gw: Gateway, data: bytes, code: str,
                                                 row: int | None) -> None:
    if code == "F002":  # neither XML nor CSV: the acknowledgment is the XML form
        status, raw = gw.check_raw(data, "sub.csv", AS_OF)
        assert (status, parse_xml_ack(raw).file_codes) == ("REJECTED", {"F002"})
    else:
        ack = gw.check(data)
        assert (ack.status, ack.file.codes, ack.rows) == ("REJECTED", [code], [])
    xml = gw.check_xml(data)
    assert (xml.status, xml.apps) == ("REJECTED", [])
    assert [(f.code, f.source_line) for f in xml.findings] == [(code, row)]


# --- 1. canonical CSV: cell values (one application) -------------------------------------------

REQUIRED = [c for c in COLUMNS if c not in ("submission_id", "entry_number", "description")]


@pytest.mark.parametrize("blank", ["", "   "], ids=["empty", "spaces"])
@pytest.mark.parametrize("column", REQUIRED)
def test_a_blank_required_cell_is_a102_on_its_row(gw: Gateway, column: str, blank: str) -> None:
    data = csv_file({"application_ref": "PO-0"}, {column: blank})
    xml = gw.check_xml(data)
    assert xml.status == "PARTIAL"
    (app,) = [a for a in xml.apps if a.status == "REJECTED"]
    expected = {"A102", "A124"} if column == "cast_country" else {"A102"}
    assert app.codes == expected
    assert {f.source_line for f in app.findings} == {3}
    assert set(gw.check(data).row(3).codes) == expected


@pytest.mark.parametrize(("column", "value"), [
    ("expected_export_date", "2026-12-3x"), ("expected_import_date", "2026-13-01"),
    ("expected_import_date", "10.12.2026"), ("expected_import_date", "2026-02-30"),
    ("expected_import_date", "20261210"), ("quantity_kg", "24 t"), ("quantity_kg", "24.000,5"),
    ("value_usd", "$61200"), ("value_usd", "61,200.00"), ("line_no", "one"), ("line_no", "0"),
    ("line_no", "1000"), ("line_no", "1.5"), ("line_no", "-1"),
])
def test_a_cell_that_is_not_of_its_type_is_a101(gw: Gateway, column: str, value: str) -> None:
    xml = gw.check_xml(csv_file({"application_ref": "PO-0"}, {column: value}))
    app = xml.app("PO-1")
    assert (app.status, app.codes) == ("REJECTED", {"A101"})
    assert [(f.field, f.value, f.source_line) for f in app.findings] == [(column, value, 3)]


@pytest.mark.parametrize(("column", "value", "codes"), [
    ("application_ref", "PO 1", {"A101"}),
    ("application_ref", "PO#1", {"A101"}),
    ("application_ref", "P" * 36, {"A101"}),
    ("application_ref", "Az09._/-" + "x" * 27, set()),
    ("importer", "I" * 101, {"A101"}),
    ("importer", "I" * 100, set()),
    ("manufacturer", "M" * 101, {"A101"}),
    ("description", "D" * 201, {"A101"}),
    ("description", "D" * 200, set()),
    ("hts", "7606.12.3045", set()),
    ("hts", "7606.12.30", {"A130"}),
])
def test_cells_follow_the_formats_of_the_data_model(gw: Gateway, column: str, value: str,
                                                    codes: set[str]) -> None:
    """Guide section 2: the same formats as the XML (whose XSD gives A101 there)."""
    xml = gw.check_xml(csv_file({"application_ref": "PO-0"}, {column: value}))
    (app,) = [a for a in xml.apps if a.ref != "PO-0"]
    assert (app.status, app.codes) == ("REJECTED" if codes else "LICENSED", codes)
    assert {f.source_line for f in app.findings} <= {3}


def test_a_submission_id_longer_than_35_is_f005(gw: Gateway) -> None:
    ack = gw.check(csv_file({"submission_id": "S" * 36}))
    assert (ack.status, ack.file.codes) == ("REJECTED", ["F005"])
    assert gw.check(csv_file({"submission_id": "S" * 35})).status == "ACCEPTED"


def test_every_finding_names_its_row(gw: Gateway) -> None:
    """Rows are records (header = row 1): a quoted line break does not shift the count."""
    data = csv_file({"description": "Plate\nsecond line of the same cell"},
                    {"application_ref": "PO-2", "quantity_kg": "-5"},
                    {"application_ref": "PO-3", "hts": "7318150000"},
                    {"application_ref": "PO-3", "line_no": "2", "value_usd": "abc"},
                    {"application_ref": "PO-4", "entry_type": "21"})
    xml = gw.check_xml(data)
    got = {(a.ref, f.code, f.source_line) for a in xml.apps for f in a.findings}
    assert got == {("PO-2", "A140", 3), ("PO-3", "A131", 4), ("PO-3", "A101", 5),
                   ("PO-4", "A170", 6)}
    ack = gw.check(data)
    assert [(r.row, r.ref, r.codes) for r in sorted(ack.rows, key=lambda r: r.row)] == [
        (2, "PO-1", []), (3, "PO-2", ["A140"]), (4, "PO-3", ["A131"]), (5, "PO-3", ["A101"]),
        (6, "PO-4", ["A170"])]
    # Row 4 has no error of its own: its messages carry the reason (issue 14, 9b).
    assert ack.row(4).messages.endswith(" | Rejected with its application on row 5: A101 "
                                        "value_usd must be a decimal number. [value: abc]")


@pytest.mark.parametrize(("options", "name"), [
    pytest.param({"bom": True}, "sub.csv", id="utf-8-bom"),
    pytest.param({"newline": "\n"}, "sub.csv", id="lf-line-ends"),
    pytest.param({}, "orders.xml", id="named-xml-but-csv"),
])
def test_accepted_variants_of_the_canonical_form(gw: Gateway, options: dict, name: str) -> None:
    ack = gw.check(csv_file({}, {"description": "Ünïcødé"}, **options), name=name)
    assert (ack.status, [r.codes for r in ack.rows]) == ("ACCEPTED", [[], []])


def test_columns_may_come_in_any_order(gw: Gateway) -> None:
    columns = tuple(reversed(COLUMNS))
    ack = gw.check(to_csv(table({}, columns=columns)))
    assert (ack.status, ack.rows[0].license) == ("ACCEPTED", "PENDING")


def test_rfc4180_quoting(tmp_path: Path, gw: Gateway) -> None:
    """A quoted cell holds the delimiter, a doubled quote and a CRLF line break."""
    cells = table({"description": "X"}, {"importer": ""})
    quoted = b'"Plate 6061-T6, 12 mm\r\n""mill finish"", 2nd line"'
    data = to_csv(cells).replace(b",X,", b"," + quoted + b",")
    path = tmp_path / "q.csv"
    path.write_bytes(data)
    (chunk,) = CsvSubmission(path).applications()
    assert [line.description for line in chunk.app.lines] == [
        'Plate 6061-T6, 12 mm\r\n"mill finish", 2nd line', None]
    assert chunk.rows == [2, 3]  # the next record is row 3, though it starts on line 4
    xml = gw.check_xml(data)
    assert [(f.code, f.field, f.source_line) for f in xml.app().findings] == [
        ("A103", "importer", 3)]


# --- 3. CSV acknowledgments ---------------------------------------------------------------------


@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
def test_formula_cells_are_neutralised(gw: Gateway, start: str) -> None:
    ref = f"{start}PO1"
    payload = f'{start}HYPERLINK("http://evil.example","x")'
    data = csv_file({"application_ref": ref, "description": payload},
                    {"application_ref": "PO-2", "line_no": payload})
    ack = gw.check(data)
    assert ack.row(2).ref == "'" + ref
    assert ack.row(3).line_no == "'" + payload
    for cells in ack.raw:
        for cell in cells:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


def test_ack_has_one_row_per_input_row_and_the_file_row_first(gw: Gateway) -> None:
    data = csv_file({}, {}, {"application_ref": "PO-2", "entry_type": "21"},
                    {"application_ref": "PO-3", "hts": "123"})
    ack = gw.check(data)
    assert ack.raw[1][:7] == ["", "", "", "PARTIAL", "", "", ""]
    assert "3 application(s): 1 licensed, 1 not required, 1 rejected" in ack.file.messages
    assert [(r.row, r.ref, r.line_no, r.status, r.license) for r in ack.rows] == [
        (2, "PO-1", "1", "LICENSED", "PENDING"), (3, "PO-1", "2", "LICENSED", "PENDING"),
        (4, "PO-2", "1", "NOT_REQUIRED", ""), (5, "PO-3", "1", "REJECTED", "")]
    assert [(r.valid_from, r.valid_through) for r in ack.rows[2:]] == [("", "")] * 2
    assert ack.row(5).codes == ["A130"] and "[value: 123]" in ack.row(5).messages


def _run_partner(tmp_path: Path, name: str, data: bytes) -> Path:
    gw = Gateway(tmp_path)
    gw.run(name, data)
    return tmp_path / "outbox" / PARTNER / f"{name}.ack.csv"


def test_golden_csv_ack_of_the_canonical_sample(tmp_path: Path) -> None:
    ack_path = _run_partner(tmp_path, SAMPLE_CSV.name, SAMPLE_CSV.read_bytes())
    actual = ack_path.read_bytes()
    golden = GOLDEN / "csv-sample.ack.csv"
    if REGEN:
        golden.write_bytes(actual)
    assert actual == golden.read_bytes()
    ack = parse_csv_ack(actual)
    assert {r.ref: (r.status, r.license) for r in ack.rows} == {
        "PO-7001": ("LICENSED", "A26000001"), "PO-7002": ("LICENSED", "A26000002"),
        "PO-7003": ("REJECTED", ""), "PO-7004": ("REJECTED", "")}


def test_xml_form_of_a_csv_ack_on_the_command_line(tmp_path: Path) -> None:
    cfg = Gateway(tmp_path).config_path
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", str(SAMPLE_CSV), "--as-of", "2026-12-01",
         "--config", str(cfg), "--ack-format", "xml"], capture_output=True, check=False)
    assert proc.returncode == 1, proc.stderr
    xml = parse_xml_ack(proc.stdout)
    assert xml.status == "PARTIAL"
    assert [(a.ref, a.status, a.license, a.lines) for a in xml.apps] == [
        ("PO-7001", "LICENSED", "PENDING", ["1", "2"]), ("PO-7002", "LICENSED", "PENDING", ["1"]),
        ("PO-7003", "REJECTED", None, ["1", "2"]), ("PO-7004", "REJECTED", None, ["1"])]
    assert [(f.code, f.field, f.source_line) for a in xml.apps for f in a.findings] == [
        ("A103", "country_of_export", 6), ("A101", "expected_import_date", 7)]


@pytest.mark.parametrize(("data", "code"), [
    pytest.param(_replace_column("description", "colour"), "F005", id="F005"),
    pytest.param(GOOD + b"\xff\r\n", "F009", id="F009"),
    pytest.param(GOOD + GOOD_ROW + b",x\r\n", "F001", id="F001"),
])
def test_a_rejected_csv_file_gets_a_csv_ack_in_a_real_run(gw: Gateway, data: bytes,
                                                          code: str) -> None:
    ack = gw.run("bad.csv", data)
    assert (ack.status, ack.file.codes, ack.rows) == ("REJECTED", [code], [])
    assert [p.name.split("__", 1)[1] for p in (gw.base / "data" / "failed" / PARTNER).iterdir()
            if not p.name.endswith(".error.txt")] == ["bad.csv"]


def test_csv_duplicate_resend(gw: Gateway) -> None:
    data = csv_file({}, {"application_ref": "PO-2", "hts": "1"})
    first = gw.run("a.csv", data)
    assert first.status == "PARTIAL"
    again = gw.run("b.csv", data)
    assert (again.status, again.file.codes) == ("DUPLICATE", ["F006"])
    assert again.rows == first.rows
    with sqlite3.connect(gw.base / "data" / "ledger.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM licenses").fetchone()[0] == 1
        assert db.execute("SELECT status FROM files WHERE remote_name = 'b.csv'").fetchone() \
            == ("DUPLICATE",)
    assert len(list((gw.base / "outbox" / "ace").glob("*.txt"))) == 1
    status, raw = gw.check_raw(data, "sub.csv", AS_OF)  # `check` says so too, from the ledger
    assert (status, parse_csv_ack(raw).file.codes) == ("DUPLICATE", ["F006"])


# --- 4. `aim-gateway check` on CSV --------------------------------------------------------------


@pytest.mark.parametrize(("data", "exit_code", "status"), [
    pytest.param(csv_file({}, {"application_ref": "PO-2"}), 0, "ACCEPTED", id="accepted"),
    pytest.param(SAMPLE_CSV.read_bytes(), 1, "PARTIAL", id="partial-sample"),
    pytest.param(csv_file({"hts": "1"}), 1, "REJECTED", id="rejected"),
])
def test_check_on_csv_exit_codes_and_changes_nothing(tmp_path: Path, data: bytes, exit_code: int,
                                                     status: str) -> None:
    gw = Gateway(tmp_path)
    gw.run("earlier.csv", csv_file({"application_ref": "PO-0", "submission_id": "SUB-0"}))
    target = tmp_path / "x.csv"
    target.write_bytes(data)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "check", str(target), "--as-of",
                           "2026-12-01", "--config", str(tmp_path / "config.toml")],
                          capture_output=True, check=False)
    assert proc.returncode == exit_code, proc.stderr
    ack = parse_csv_ack(proc.stdout)
    assert ack.status == status
    assert {r.license for r in ack.rows if r.status == "LICENSED"} <= {"PENDING"}
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
