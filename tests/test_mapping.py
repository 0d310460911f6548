"""Partner mappings (docs/mappings.md): each CSV mapping option (a small TOML in tmp_path, read
back through `preview`, and `check_file` where the outcome matters), broken mappings, XSLT
mappings, the mapped sample partners end to end, and `check` / `mapping test` on them."""

from __future__ import annotations

import csv
import http.server
import io
import shutil
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from datetime import date
from pathlib import Path

import pytest
from conftest import ProjectConfig
from lxml import etree
from test_csv import (
    ACK,
    AS_OF,
    CASES_INBOX,
    COLUMNS,
    GOLDEN,
    REGEN,
    ROOT,
    Gateway,
    XmlAck,
    csv_file,
    parse_csv_ack,
    parse_xml_ack,
    table,
    to_csv,
)

from gateway.config import load_config
from gateway.errors import ConfigError, RejectedSubmission
from gateway.parse.mapping import CsvMapping, MappingError, XsltMapping, load_mapping, preview
from gateway.service.runner import run_once as run_cycle

HANSE_MAPPING = ROOT / "mappings" / "hanse-metall.toml"
HANSE_CSV = CASES_INBOX / "hanse" / "ZAIM_EXPORT_20261201.csv"
NORDIC_XSL = ROOT / "mappings" / "nordic-orders.xsl"
NORDIC_XML = CASES_INBOX / "nordic" / "nordic-orders-NA-2026-77.xml"
SAMPLE_CSV = CASES_INBOX / "sample" / "acme-20261202-erp.csv"


def write_mapping(tmp_path: Path, text: str, name: str = "m.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                          check=False)


def mapped_rows(tmp_path: Path, mapping_text: str, data: bytes,
                name: str = "export.csv") -> list[dict[str, str]]:
    """The canonical rows (with their `row`) that the mapping makes of ``data``."""
    mapping = load_mapping(write_mapping(tmp_path, mapping_text))
    assert isinstance(mapping, CsvMapping)
    source = tmp_path / name
    source.write_bytes(data)
    text = preview(mapping, source, rows=1000)
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == ["row", *COLUMNS]
    return list(reader)


# --- 2. CSV mapping options ----------------------------------------------------------------------


def test_an_empty_mapping_is_the_canonical_csv(tmp_path: Path) -> None:
    (row,) = mapped_rows(tmp_path, "", csv_file({}))
    assert row == {"row": "2", **dict(zip(COLUMNS, table({})[1], strict=True))}


def test_columns_are_renamed(tmp_path: Path) -> None:
    renames = {"Bestellung": "application_ref", "Menge": "quantity_kg", "Pos": "line_no",
               "Ankunft": "expected_import_date"}
    cells = table({"application_ref": "PO-9", "quantity_kg": "1234"})
    cells[0] = [next((k for k, v in renames.items() if v == c), c) for c in cells[0]]
    mapping = "[columns]\n" + "".join(f'"{k}" = "{v}"\n' for k, v in renames.items())
    (row,) = mapped_rows(tmp_path, mapping, to_csv(cells))
    assert (row["application_ref"], row["quantity_kg"], row["line_no"],
            row["expected_import_date"]) == ("PO-9", "1234", "1", "2026-12-10")
    gw = Gateway(tmp_path / "gw", mapping=write_mapping(tmp_path, mapping, "r.toml"))
    assert gw.check(to_csv(cells)).status == "ACCEPTED"
    # Without the mapping the partner's names are unknown columns.
    assert Gateway(tmp_path / "plain").check(to_csv(cells)).file.codes == ["F005"]


@pytest.mark.parametrize(("constants", "cells", "expected"), [
    pytest.param({"entry_type": "03"}, {}, {"entry_type": "03"}, id="fills-a-missing-column"),
    pytest.param({"port_of_entry": "3001"}, {"port_of_entry": ""}, {"port_of_entry": "3001"},
                 id="fills-a-blank-cell"),
    pytest.param({"port_of_entry": "3001"}, {}, {"port_of_entry": "3004"},
                 id="keeps-a-given-cell"),
    pytest.param({"submission_id": "{file_name}"}, {}, {"submission_id": "ERP-77.csv"},
                 id="file-name"),
    pytest.param({"submission_id": "X-{file_name}"}, {}, {"submission_id": "X-ERP-77.csv"},
                 id="file-name-inside-text"),
])
def test_constants(tmp_path: Path, constants: dict[str, str], cells: dict[str, str],
                   expected: dict[str, str]) -> None:
    dropped = [c for c in constants if c in ("entry_type", "submission_id")]
    columns = tuple(c for c in COLUMNS if c not in dropped)
    mapping = "[constants]\n" + "".join(f'{k} = "{v}"\n' for k, v in constants.items())
    rows = mapped_rows(tmp_path, mapping, to_csv(table(cells, {**cells, "line_no": "2"},
                                                       columns=columns)), name="ERP-77.csv")
    assert len(rows) == 2
    for row in rows:
        assert {k: row[k] for k in expected} == expected


def test_file_name_constant_in_a_real_run(tmp_path: Path) -> None:
    mapping = write_mapping(tmp_path, '[constants]\nsubmission_id = "{file_name}"\n')
    gw = Gateway(tmp_path, mapping=mapping)
    columns = tuple(c for c in COLUMNS if c != "submission_id")
    gw.run("ERP-0001.csv", to_csv(table({}, columns=columns)))
    with sqlite3.connect(tmp_path / "data" / "ledger.sqlite") as db:
        assert db.execute("SELECT submission_id, status FROM files").fetchall() == [
            ("ERP-0001.csv", "ACCEPTED")]


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_delimiter(tmp_path: Path, delimiter: str) -> None:
    key = "\\t" if delimiter == "\t" else delimiter
    data = to_csv(table({"description": "Plate, 12 mm; cut"}, {}), delimiter=delimiter)
    rows = mapped_rows(tmp_path, f'[csv]\ndelimiter = "{key}"\n', data)
    assert [(r["row"], r["description"], r["value_usd"]) for r in rows] == [
        ("2", "Plate, 12 mm; cut", "61200.00"), ("3", "", "61200.00")]
    gw = Gateway(tmp_path / "gw", mapping=tmp_path / "m.toml")
    assert gw.check(data).status == "ACCEPTED"


GERMAN = {"importer": "Müller Aluminium GmbH", "manufacturer": "Hütte Weißenfels",
          "description": "Café-Blech ä ß é", "smelt_country_second": "entfällt"}
GERMAN_MAPPING = ('[csv]\ndelimiter = ";"\nencoding = "{encoding}"\n'
                  '[columns]\n"Gießland" = "cast_country"\n'
                  '[values]\nnot_applicable = ["entfällt"]\n')


@pytest.mark.parametrize(("encoding", "bom"), [
    ("utf-8", False), ("utf-8", True), ("windows-1252", False)])
def test_encoding(tmp_path: Path, encoding: str, bom: bool) -> None:
    cells = table(GERMAN)
    cells[0] = ["Gießland" if c == "cast_country" else c for c in cells[0]]
    data = to_csv(cells, delimiter=";", encoding=encoding, bom=bom)
    assert ("ß".encode(encoding) in data) and (bom or b"\xef\xbb\xbf" not in data)
    (row,) = mapped_rows(tmp_path, GERMAN_MAPPING.format(encoding=encoding), data)
    assert {k: row[k] for k in GERMAN} == {**GERMAN, "smelt_country_second": "NOT_APPLICABLE"}
    assert (row["submission_id"], row["cast_country"]) == ("SUB-1", "CA")
    gw = Gateway(tmp_path / "gw", mapping=tmp_path / "m.toml")
    assert gw.check(data).status == "ACCEPTED"


def test_text_not_in_the_mappings_encoding_is_f009(tmp_path: Path) -> None:
    cells = table({}, GERMAN)
    data = to_csv(cells, delimiter=";", encoding="windows-1252")
    gw = Gateway(tmp_path, mapping=write_mapping(tmp_path, '[csv]\ndelimiter = ";"\n'))
    xml = gw.check_xml(data)
    assert (xml.status, [(f.code, f.source_line) for f in xml.findings]) == (
        "REJECTED", [("F009", 3)])


@pytest.mark.parametrize(("fmt", "written", "expected"), [
    ("DD.MM.YYYY", "10.12.2026", "2026-12-10"),
    ("DD.MM.YYYY", "5.1.2027", "2027-01-05"),
    ("MM/DD/YYYY", "12/10/2026", "2026-12-10"),
    ("MM/DD/YYYY", "1/5/2027", "2027-01-05"),
    ("YYYY-MM-DD", "2026-12-10", "2026-12-10"),
    ("DD.MM.YY", "10.12.26", "2026-12-10"),
    # Impossible or misshapen dates are left as written, and are A101.
    ("DD.MM.YYYY", "31.11.2026", None),
    ("DD.MM.YYYY", "12/10/2026", None),
    ("MM/DD/YYYY", "02/30/2026", None),
    ("MM/DD/YYYY", "13/01/2026", None),
    ("YYYY-MM-DD", "2026-12-3x", None),
    # Digits are ASCII only: int() would read these as 2026-12-10 (issue 10).
    ("DD.MM.YYYY", "١٠.١٢.٢٠٢٦", None),
    ("MM/DD/YYYY", "１２/１０/２０２６", None),
    ("DD.MM.YYYY", "10.12.२०२६", None),
])
def test_date_format(tmp_path: Path, fmt: str, written: str, expected: str | None) -> None:
    dates = ("expected_export_date", "expected_import_date")
    data = csv_file(dict.fromkeys(dates, written))
    (row,) = mapped_rows(tmp_path, f'[csv]\ndate_format = "{fmt}"\n', data)
    assert [row[d] for d in dates] == [expected or written] * 2
    app = Gateway(tmp_path / "gw", mapping=tmp_path / "m.toml").check_xml(data).app()
    if expected is None:
        assert sorted((f.code, f.field, f.value, f.source_line) for f in app.findings) == [
            ("A101", d, written, 2) for d in dates]
    else:
        assert (app.status, app.codes) == ("LICENSED", set())


@pytest.mark.parametrize(("decimal", "thousands", "quantity", "value", "expected"), [
    (",", ".", "24.000,5", "61.200,00", ("24000.5", "61200.00")),
    (".", ",", "24,000.5", "61,200.00", ("24000.5", "61200.00")),
    (",", " ", "24 000,5", "61 200,00", ("24000.5", "61200.00")),
    (".", "'", "24'000.5", "61'200.00", ("24000.5", "61200.00")),
    (",", "", "24000,5", "61200,00", ("24000.5", "61200.00")),
    (",", ".", "1.234.567,125", "3.000.000,5", ("1234567.125", "3000000.5")),
    (".", "", "24.000,5", "61200.00", ("24.000,5", "61200.00")),  # not a number: as written
    # Digits are ASCII only: Decimal() would read these (issue 10).
    (",", ".", "٢٤.٠٠٠,٥", "61.200,00", ("٢٤.٠٠٠,٥", "61200.00")),
    (",", "", "２４０００,５", "61200,00", ("２４０００,５", "61200.00")),
])
def test_decimal_and_thousands_separators(tmp_path: Path, decimal: str, thousands: str,
                                          quantity: str, value: str,
                                          expected: tuple[str, str]) -> None:
    data = to_csv(table({"quantity_kg": quantity, "value_usd": value}), delimiter=";")
    mapping = (f'[csv]\ndelimiter = ";"\ndecimal_separator = "{decimal}"\n'
               f'thousands_separator = "{thousands}"\n')
    (row,) = mapped_rows(tmp_path, mapping, data)
    assert (row["quantity_kg"], row["value_usd"]) == expected
    codes = Gateway(tmp_path / "gw", mapping=tmp_path / "m.toml").check_xml(data).app().codes
    assert codes == ({"A101"} if expected[0] == quantity else set())


@pytest.mark.parametrize(("written", "expected"), [
    ("Canada", "CA"), ("canada", "CA"), ("United Arab Emirates", "AE"), ("NOR", "NO"),
    ("nor", "NO"), ("CA", "CA"), ("ca", "CA"), (" Canada ", "CA"),
    ("Kanada", "CA"), ("KANADA", "CA"), ("Vereinigte Arabische Emirate", "AE"),
    ("Atlantis", "Atlantis"),  # nobody knows it: left as written, A120
])
@pytest.mark.parametrize("column", ["country_of_origin", "smelt_country_largest",
                                    "cast_country"])
def test_country_names(tmp_path: Path, column: str, written: str, expected: str) -> None:
    mapping = '[countries]\n"Kanada" = "CA"\n"Vereinigte Arabische Emirate" = "ae"\n'
    data = csv_file({column: written, "smelt_country_second": "NOT_APPLICABLE"})
    (row,) = mapped_rows(tmp_path, mapping, data)
    assert row[column] == expected
    app = Gateway(tmp_path / "gw", mapping=tmp_path / "m.toml").check_xml(data).app()
    if expected == "Atlantis":
        assert [(f.code, f.field, f.value) for f in app.findings] == [
            ("A120", column, "Atlantis")]
    else:
        assert (app.status, app.codes) == ("LICENSED", set())


@pytest.mark.parametrize(("unit", "written", "expected"), [
    ("kg", "24000.5", "24000.5"),
    ("t", "1", "1000"),
    ("t", "24", "24000"),
    ("t", "18.5", "18500"),
    ("t", "0.0000005", "0.001"),  # half up to whole grams
    ("lb", "1000", "453.592"),  # 453.59237
    ("lb", "1", "0.454"),
    ("lb", "50000", "22679.619"),  # 22679.6185: half up, not half even
])
def test_units_become_kg(tmp_path: Path, unit: str, written: str, expected: str) -> None:
    (row,) = mapped_rows(tmp_path, f'[units]\nquantity = "{unit}"\n',
                         csv_file({"quantity_kg": written}))
    assert row["quantity_kg"] == expected


SPECIAL = ('[values]\nunknown = ["unknown", "k.A."]\nnot_applicable = ["N/A", "-", "entfällt"]\n')


@pytest.mark.parametrize(("column", "written", "expected"), [
    ("smelt_country_largest", "unknown", "UNKNOWN"),
    ("smelt_country_largest", "k.A.", "UNKNOWN"),
    ("smelt_country_second", "N/A", "NOT_APPLICABLE"),
    ("smelt_country_second", "n/a", "NOT_APPLICABLE"),
    ("smelt_country_second", "-", "NOT_APPLICABLE"),
    ("smelt_country_second", " Entfällt ", "NOT_APPLICABLE"),
    ("smelt_country_second", "Unknown", "UNKNOWN"),
    ("cast_country", "N/A", "NOT_APPLICABLE"),
    ("manufacturer", "unknown", "UNKNOWN"),
    ("manufacturer", "K.A.", "UNKNOWN"),
    ("manufacturer", "N/A", "N/A"),  # only UNKNOWN is a manufacturer's special value
    ("country_of_origin", "unknown", "unknown"),  # origin must be a country: left as written
    ("country_of_export", "n/a", "n/a"),
])
def test_partner_words_for_unknown_and_not_applicable(tmp_path: Path, column: str,
                                                      written: str, expected: str) -> None:
    (row,) = mapped_rows(tmp_path, SPECIAL, csv_file({column: written}))
    assert row[column] == expected


def test_special_words_reach_the_rules(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, mapping=write_mapping(tmp_path, SPECIAL))
    data = csv_file({"application_ref": "PO-1", "manufacturer": "unknown",
                     "smelt_country_second": "N/A"},
                    {"application_ref": "PO-2", "smelt_country_largest": "unknown",
                     "smelt_country_second": "N/A"},
                    {"application_ref": "PO-3", "cast_country": "-"})
    xml = gw.check_xml(data)
    assert [(a.ref, a.status, a.codes) for a in xml.apps] == [
        ("PO-1", "LICENSED", set()), ("PO-2", "REJECTED", {"A121"}),
        ("PO-3", "REJECTED", {"A124"})]


# --- 2. broken mappings --------------------------------------------------------------------------

BROKEN = {
    "unknown-section": ('[colums]\n"A" = "importer"\n', "colums: unknown section; did you "
                        "mean 'columns'?"),
    "unknown-key": ('[csv]\ndelimter = ";"\n', "csv.delimter: unknown key; did you mean "
                    "'delimiter'?"),
    "bad-column": ('[columns]\n"Imp" = "importr"\n', "columns.Imp: 'importr' is not a column "
                   "of the CSV format; did you mean 'importer'?"),
    "bad-constant": ('[constants]\nentry_typ = "01"\n', "constants.entry_typ: not a column of "
                     "the CSV format; did you mean 'entry_type'?"),
    "bad-unit": ('[units]\nquantity = "lbs"\n', "units.quantity:"),
    "bad-alias": ('[countries]\n"Kanada" = "XX"\n', "countries.Kanada: 'XX' is not an ISO "
                  "3166-1 alpha-2 code"),
    "bad-date-format": ('[csv]\ndate_format = "DD.MM.JJJJ"\n', "csv.date_format:"),
    "delimiter-is-decimal": ('[csv]\ndecimal_separator = ","\n', "csv.decimal_separator: must "
                             "differ from the delimiter"),
    "bad-encoding": ('[csv]\nencoding = "klingon"\n', "csv.encoding:"),
    "thousands-is-decimal": ('[csv]\ndelimiter = ";"\nthousands_separator = "."\n',
                             "csv.thousands_separator: must differ from the decimal separator"),
    "not-toml": ('[csv\n', "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_mapping_names_its_problem(tmp_path: Path, case: str) -> None:
    text, problem = BROKEN[case]
    with pytest.raises(MappingError) as err:
        load_mapping(write_mapping(tmp_path, text))
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith(problem), err.value.problems


# Every problem of BROKEN but not-toml, in one file.
ALL_PROBLEMS = ('[colums]\n"A" = "importer"\n[csv]\ndelimter = ";"\ndate_format = "DD.MM.JJJJ"\n'
                'decimal_separator = ","\nthousands_separator = ","\nencoding = "klingon"\n'
                '[columns]\n"Imp" = "importr"\n'
                '[constants]\nentry_typ = "01"\n[units]\nquantity = "lbs"\n'
                '[countries]\n"Kanada" = "XX"\n')


def test_a_broken_mapping_lists_every_problem(tmp_path: Path) -> None:
    with pytest.raises(MappingError) as err:
        load_mapping(write_mapping(tmp_path, ALL_PROBLEMS))
    expected = [BROKEN[c][1] for c in sorted(BROKEN) if c != "not-toml"]
    assert len(err.value.problems) == len(expected), err.value.problems
    for problem in expected:
        assert any(p.startswith(problem) for p in err.value.problems), problem


def test_a_config_naming_a_broken_mapping_does_not_load(tmp_path: Path) -> None:
    mapping = write_mapping(tmp_path, ALL_PROBLEMS)
    cfg = ProjectConfig(tmp_path).partner("p", inbox="inbox", mapping=mapping.name).write()
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.csv").write_bytes(csv_file({}))
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert sum("m.toml" in p for p in err.value.problems) == len(BROKEN) - 1  # not-toml
    assert any("did you mean 'columns'" in p for p in err.value.problems)
    proc = _cli("run", "--once", "--config", str(cfg))
    assert proc.returncode == 2 and b"importr" in proc.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "outbox").exists()


# --- 2. XSLT mappings ----------------------------------------------------------------------------


def xslt_config(base: Path, stylesheet: Path) -> Path:
    """Two partners: one whose XML goes through ``stylesheet``, one canonical."""
    config = ProjectConfig(base).partner("nordic", mapping=stylesheet).partner("acme")
    for partner in ("nordic", "acme"):
        config.inbox(partner)
    return config.write()


def run_once(cfg: Path, as_of: date = AS_OF) -> None:
    run_cycle(load_config(cfg), as_of)


def xml_ack(base: Path, partner: str, name: str) -> XmlAck:
    return parse_xml_ack((base / "outbox" / partner / f"{name}.ack.xml").read_bytes())


def test_the_nordic_stylesheet_makes_a_licensed_submission(tmp_path: Path) -> None:
    cfg = xslt_config(tmp_path, NORDIC_XSL)
    shutil.copy(NORDIC_XML, tmp_path / "inbox" / "nordic")
    run_once(cfg)
    ack = xml_ack(tmp_path, "nordic", NORDIC_XML.name)
    assert ack.status == "ACCEPTED"
    assert [(a.ref, a.status, a.license, a.lines, a.codes) for a in ack.apps] == [
        # 7601.10.60.30 was split (contract 1.1, docs/hts-editions.md): A133, still licensed.
        ("SO-88121", "LICENSED", "A26000001", ["1", "2"], {"A133"}),
        ("SO-88122", "NOT_REQUIRED", None, ["1"], {"A170"})]
    assert (tmp_path / "outbox" / "ace" / "AE-20261201-000001.txt").is_file()
    mapped = preview(load_mapping(NORDIC_XSL), NORDIC_XML)
    assert '<Application ref="SO-88121">' in mapped and "<HTS>7601106030</HTS>" in mapped
    assert "<Manufacturer>UNKNOWN</Manufacturer>" in mapped  # their empty Mill


def _stylesheet(tmp_path: Path, body: str, name: str = "evil.xsl") -> Path:
    path = tmp_path / name
    path.write_text(
        '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">\n'
        f'<xsl:template match="/">{body}</xsl:template>\n</xsl:stylesheet>\n', "utf-8")
    return path


REQUESTS: list[str] = []  # what the local web server below was asked for


class _Recorder(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        REQUESTS.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"<s>FROM-THE-NETWORK</s>")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    REQUESTS.clear()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    no_proxy.open(f"{base}/ping", timeout=5).read()
    assert REQUESTS == ["/ping"]  # it does record what it is asked
    REQUESTS.clear()
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("target", ["file:///etc/passwd", "secret", "relative", "network"])
def test_a_stylesheet_that_reaches_out_fails_safely(tmp_path: Path, web_server: str,
                                                   target: str) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_text("<s>TOP-SECRET-42</s>", "utf-8")
    url = {"secret": secret.as_uri(), "relative": "secret.xml",
           "network": f"{web_server}/x.xml"}.get(target, target)
    stylesheet = _stylesheet(tmp_path, f"<out><xsl:copy-of select=\"document('{url}')\"/></out>")
    mapping = load_mapping(stylesheet)
    assert isinstance(mapping, XsltMapping)
    cfg = xslt_config(tmp_path, stylesheet)
    (tmp_path / "inbox" / "nordic" / "orders.xml").write_bytes(NORDIC_XML.read_bytes())
    (tmp_path / "inbox" / "acme" / "good.csv").write_bytes(csv_file({}))
    run_once(cfg)  # the gateway keeps running: the other partner's file is licensed
    ack = xml_ack(tmp_path, "nordic", "orders.xml")
    assert (ack.status, ack.file_codes, ack.apps) == ("REJECTED", {"F005"}, [])
    good = parse_csv_ack((tmp_path / "outbox" / "acme" / "good.csv.ack.csv").read_bytes())
    assert (good.status, good.rows[0].license) == ("ACCEPTED", "A26000001")
    failed = [p.name.split("__", 1)[1] for p in (tmp_path / "data" / "failed" / "nordic").iterdir()]
    assert sorted(failed) == ["orders.xml", "orders.xml.error.txt"]
    assert REQUESTS == []
    for path in (tmp_path / "outbox").rglob("*"):
        if path.is_file():
            assert b"TOP-SECRET" not in path.read_bytes() and b"root:" not in path.read_bytes()
    with pytest.raises(RejectedSubmission) as err:  # `mapping test` says the same
        preview(mapping, NORDIC_XML)
    assert err.value.finding.code == "F005"
    proc = _cli("mapping", "test", str(stylesheet), str(NORDIC_XML))
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert proc.stderr.startswith(b"F005") and b"Traceback" not in proc.stderr


def test_a_partner_file_with_a_doctype_is_f004_before_the_stylesheet_runs(
        tmp_path: Path) -> None:
    # This stylesheet stops every transform (F005): F004 proves it never ran.
    stylesheet = _stylesheet(tmp_path, '<xsl:message terminate="yes">ran</xsl:message>')
    cfg = xslt_config(tmp_path, stylesheet)
    inbox = tmp_path / "inbox" / "nordic"
    plain = NORDIC_XML.read_bytes()
    hostile = plain.replace(b"<Orders ", b'<!DOCTYPE Orders [<!ENTITY x SYSTEM '
                            b'"file:///etc/passwd">]>\n<Orders ', 1)
    (inbox / "plain.xml").write_bytes(plain)
    (inbox / "hostile.xml").write_bytes(hostile)
    run_once(cfg)
    assert xml_ack(tmp_path, "nordic", "plain.xml").file_codes == {"F005"}
    assert xml_ack(tmp_path, "nordic", "hostile.xml").file_codes == {"F004"}
    nordic = xslt_config(tmp_path / "n", NORDIC_XSL)
    (tmp_path / "n" / "inbox" / "nordic" / "hostile.xml").write_bytes(hostile)
    run_once(nordic)
    ack = xml_ack(tmp_path / "n", "nordic", "hostile.xml")
    assert (ack.status, ack.file_codes) == ("REJECTED", {"F004"})


# --- 3. the mapped sample partner end to end -----------------------------------------------------


def shipped_project(base: Path, inboxes: dict[str, list[Path]]) -> Path:
    """The project's own config.toml and mappings in ``base``, with the given inbox files."""
    shutil.copy(ROOT / "config.toml", base / "config.toml")
    shutil.copytree(ROOT / "mappings", base / "mappings")
    for partner in ("sample", "hanse", "nordic"):
        inbox = base / "inbox" / partner
        inbox.mkdir(parents=True)
        for path in inboxes.get(partner, []):
            shutil.copy(path, inbox / path.name)
    return base / "config.toml"


@pytest.mark.parametrize(("output", "golden"), [
    ("outbox/hanse/ZAIM_EXPORT_20261201.csv.ack.csv", "mapped-hanse.ack.csv"),
    ("outbox/ace/AE-20261201-000001.txt", "mapped-hanse.AE.txt"),
])
def test_golden_outputs_of_the_hanse_sample(tmp_path: Path, output: str, golden: str) -> None:
    run_once(shipped_project(tmp_path, {"hanse": [HANSE_CSV]}))
    actual = (tmp_path / output).read_bytes()
    path = GOLDEN / golden
    if REGEN:
        path.write_bytes(actual)
    assert actual == path.read_bytes()


def test_run_once_on_both_sample_csv_partners(tmp_path: Path) -> None:
    cfg = shipped_project(tmp_path, {"sample": [SAMPLE_CSV], "hanse": [HANSE_CSV]})
    proc = _cli("run", "--once", "--as-of", "2026-12-01", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    outbox = tmp_path / "outbox"
    sample = parse_csv_ack((outbox / "sample" / f"{SAMPLE_CSV.name}.ack.csv").read_bytes())
    hanse = parse_csv_ack((outbox / "hanse" / f"{HANSE_CSV.name}.ack.csv").read_bytes())
    got = {(r.ref, r.row): (r.status, r.license, r.valid_from, r.valid_through, r.codes)
           for ack in (sample, hanse) for r in ack.rows}

    def ok(number: str) -> tuple:
        return ("LICENSED", number, "2026-12-01", "2027-02-14", [])

    def no(*codes: str) -> tuple:
        return ("REJECTED", "", "", "", list(codes))

    assert got == {
        ("PO-7001", 2): ok("A26000001"), ("PO-7001", 3): ok("A26000001"),
        ("PO-7002", 4): ok("A26000002"), ("PO-7003", 5): no(), ("PO-7003", 6): no("A103"),
        ("PO-7004", 7): no("A101"), ("4500012345", 2): ok("A26000003"),
        ("4500012345", 3): ok("A26000003"), ("4500012346", 4): ok("A26000004"),
        ("4500012347", 5): no("A121"), ("4500012348", 6): no("A101", "A120")}
    assert (sample.status, hanse.status) == ("PARTIAL", "PARTIAL")
    with sqlite3.connect(tmp_path / "data" / "ledger.sqlite") as db:
        licenses = db.execute("SELECT license_number, partner, ref, valid_from, valid_through "
                              "FROM licenses ORDER BY 1").fetchall()
    assert licenses == [(n, p, r, "2026-12-01", "2027-02-14") for n, p, r in (
        ("A26000001", "sample", "PO-7001"), ("A26000002", "sample", "PO-7002"),
        ("A26000003", "hanse", "4500012345"), ("A26000004", "hanse", "4500012346"))]
    assert sorted(p.name for p in (outbox / "ace").glob("*.txt")) == [
        "AE-20261201-000001.txt", "AE-20261201-000002.txt"]


def test_hanse_sample_becomes_canonical_values() -> None:
    text = preview(load_mapping(HANSE_MAPPING), HANSE_CSV)
    rows = {r.pop("row"): r for r in csv.DictReader(io.StringIO(text))}
    assert list(rows) == ["2", "3", "4", "5", "6"]
    expected = {
        "2": {"submission_id": "HMH-2026-1201", "application_ref": "4500012345",
              "entry_type": "01", "expected_export_date": "2026-12-04", "country_of_origin": "DE",
              "smelt_country_largest": "NO", "smelt_country_second": "IS", "cast_country": "DE",
              "quantity_kg": "18500", "value_usd": "61605.00", "hts": "7606.12.3035",
              "description": "Platten 7075-T651, 25 mm"},
        "3": {"smelt_country_second": "NOT_APPLICABLE", "quantity_kg": "6250"},
        "4": {"manufacturer": "UNKNOWN", "country_of_origin": "AT", "country_of_export": "NL",
              "smelt_country_largest": "AT", "smelt_country_second": "SI", "quantity_kg": "4800"},
        "6": {"expected_export_date": "31.11.2026", "cast_country": "Atlantis"},
    }
    for row, values in expected.items():
        assert {k: rows[row][k] for k in values} == values


# --- 4. `aim-gateway check` and `aim-gateway mapping test` ---------------------------------------


@pytest.mark.parametrize(("keep_rows", "exit_code", "status"), [
    pytest.param(None, 1, "PARTIAL", id="whole-sample"),
    pytest.param(3, 0, "ACCEPTED", id="good-rows-only"),
    pytest.param(0, 1, "REJECTED", id="header-only"),
])
def test_check_a_mapped_file(tmp_path: Path, keep_rows: int | None, exit_code: int,
                             status: str) -> None:
    cfg = shipped_project(tmp_path, {})
    run_once(cfg)  # a ledger exists: check reads it, and must write nothing to it
    lines = HANSE_CSV.read_bytes().splitlines(keepends=True)
    target = tmp_path / "ZAIM_EXPORT.csv"
    target.write_bytes(b"".join(lines if keep_rows is None else lines[:1 + keep_rows]))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    proc = _cli("check", str(target), "--partner", "hanse", "--as-of", "2026-12-01",
                "--config", str(cfg))
    assert proc.returncode == exit_code, proc.stderr
    ack = parse_csv_ack(proc.stdout)
    assert ack.status == status
    assert {r.license for r in ack.rows if r.status == "LICENSED"} <= {"PENDING"}
    if keep_rows == 3:
        assert [r.row for r in ack.rows] == [2, 3, 4]
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
    proc = _cli("check", str(target), "--partner", "hanse", "--as-of", "2026-12-01",
                "--config", str(cfg), "--ack-format", "xml")
    assert proc.returncode == exit_code
    assert etree.fromstring(proc.stdout).findtext(ACK + "Status") == status


@pytest.mark.parametrize("rows", [1, 2, 5, 9])
def test_mapping_test_prints_n_rows(rows: int) -> None:
    proc = _cli("mapping", "test", str(HANSE_MAPPING), str(HANSE_CSV), "--rows", str(rows))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[0] == ",".join(["row", *COLUMNS])
    shown = min(rows, 5)  # the sample has 5 rows
    assert [line.split(",", 1)[0] for line in lines[1:]] == [str(n) for n in range(2, 2 + shown)]


def test_mapping_test_of_a_broken_mapping_exits_2(tmp_path: Path) -> None:
    proc = _cli("mapping", "test", str(write_mapping(tmp_path, ALL_PROBLEMS)), str(HANSE_CSV))
    assert (proc.returncode, proc.stdout) == (2, b"")
    assert proc.stderr.decode().count("\n  - ") == len(BROKEN) - 1


@pytest.mark.parametrize(("mapping", "data", "code"), [
    pytest.param(HANSE_MAPPING, HANSE_CSV.read_bytes().decode("cp1252").encode("utf-8"), "F005",
                 id="utf-8-file-read-as-windows-1252"),
    pytest.param(HANSE_MAPPING, HANSE_CSV.read_bytes().replace(b"Hafen;", b"Port;"), "F005",
                 id="unknown-column"),
    pytest.param(HANSE_MAPPING, HANSE_CSV.read_bytes().split(b"\r\n", 1)[0] + b"\r\n", "F008",
                 id="no-rows"),
    pytest.param(HANSE_MAPPING, b"hello world\n", "F002", id="not-csv"),
    pytest.param(NORDIC_XSL, NORDIC_XML.read_bytes()[:-30], "F001", id="xml-not-well-formed"),
    pytest.param(NORDIC_XSL, b'<!DOCTYPE x [<!ENTITY e "e">]><Orders/>', "F004", id="doctype"),
])
def test_mapping_test_of_a_file_the_mapping_cannot_read_exits_1(
        tmp_path: Path, mapping: Path, data: bytes, code: str) -> None:
    source = tmp_path / "export"
    source.write_bytes(data)
    proc = _cli("mapping", "test", str(mapping), str(source), "--rows", "3")
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert proc.stderr.decode().startswith(code), proc.stderr
