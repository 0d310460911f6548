"""Mapped partners and broker-facing format details (issue 14, items 6 and 9b): canonical
files recognised by their content before any mapping, several mappings chosen by file name,
F009 that says where the bad byte is (and recognises UTF-16 without a BOM), a semicolon or
tab CSV told to add a mapping, rejected rows that each carry the reason, a mapped partner's
own date pattern in messages and its own delimiter in its ack, and the `check` / `mapping
test` hints."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from conftest import OnePartner
from test_csv import (
    AS_OF,
    Gateway,
    csv_file,
    parse_csv_ack,
    table,
    to_csv,
)
from test_mapping import HANSE_CSV, HANSE_MAPPING, NORDIC_XSL, shipped_project, write_mapping

GUIDE_XML = Path(__file__).parent / "cases" / "schemas" / "guide-example.xml"


class Partner(Gateway):
    """Partner ``acme`` with any partner settings (``Gateway`` takes a mapping only)."""

    def __init__(self, base: Path, **partner: object) -> None:
        OnePartner.__init__(self, base, **partner)


def _cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                          check=False)


# --- item 6: canonical files first, several mappings ---------------------------------------


def test_a_canonical_csv_of_a_mapped_partner_is_read_as_canonical(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, mapping=HANSE_MAPPING)
    ack = gw.check(csv_file({}))
    assert (ack.status, ack.file.codes) == ("ACCEPTED", [])
    assert [r.license for r in ack.rows] == ["PENDING"]


def test_a_canonical_xml_of_an_xslt_partner_skips_the_stylesheet(tmp_path: Path) -> None:
    gw = OnePartner(tmp_path, mapping=NORDIC_XSL)
    status, ack = gw.check_raw(GUIDE_XML.read_bytes(), "guide.xml",
                               date(2021, 7, 1))
    assert status == "ACCEPTED", ack.decode()


def test_mappings_are_chosen_by_file_name(tmp_path: Path) -> None:
    gw = Partner(tmp_path, mappings=[{"pattern": "ZAIM_*", "file": str(HANSE_MAPPING)}])
    hanse = parse_csv_ack(gw.check_raw(HANSE_CSV.read_bytes(), "ZAIM_EXPORT.csv",
                                       AS_OF)[1])
    assert hanse.status == "PARTIAL"
    assert gw.check(csv_file({}), name="acme.csv").status == "ACCEPTED"
    # A name no pattern matches: no mapping, the German header is no CSV of ours.
    status, _ = gw.check_raw(HANSE_CSV.read_bytes(), "other.csv",
                             AS_OF)
    assert status == "REJECTED"


def test_the_single_mapping_key_is_the_fallback(tmp_path: Path) -> None:
    other = write_mapping(tmp_path, '[csv]\ndelimiter = "|"\n', "pipe.toml")
    gw = Partner(tmp_path, mapping=other,
                 mappings=[{"pattern": "ZAIM_*", "file": str(HANSE_MAPPING)}])
    assert gw.check(to_csv(table({}), delimiter="|"), name="x.csv").status == "ACCEPTED"
    hanse = parse_csv_ack(gw.check_raw(HANSE_CSV.read_bytes(), "ZAIM_1.csv",
                                       AS_OF)[1])
    assert hanse.status == "PARTIAL"


def test_a_broken_mapping_of_a_pattern_stops_the_config(tmp_path: Path) -> None:
    from gateway.errors import ConfigError

    bad = write_mapping(tmp_path, "[csv]\ndelimter = ';'\n", "bad.toml")
    with pytest.raises(ConfigError, match="delimter"):
        Partner(tmp_path, mappings=[{"pattern": "*.txt", "file": str(bad)}])


# --- item 6: F009 -------------------------------------------------------------------------------


def test_f009_names_line_column_and_byte_offset(gw: Gateway) -> None:
    data = csv_file({}, {"importer": "ACME Ä"}).replace("Ä".encode(), b"\xc4")
    ack = gw.check_xml(data)
    (found,) = ack.findings
    assert (found.code, found.source_line) == ("F009", 3)
    header, first, second = data.split(b"\r\n")[:3]
    column = second.index(b"\xc4")
    offset = len(header) + 2 + len(first) + 2 + column
    message = _messages(gw, data)
    assert f"byte offset {offset}" in message
    assert f"line 3, column {column + 1}" in message


def _messages(gw: Gateway, data: bytes) -> str:
    _, raw = gw.check_raw(data, "sub.csv", AS_OF, "xml")
    return raw.decode()


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_is_f009_saying_so(gw: Gateway, codec: str) -> None:
    data = to_csv(table({})).decode().encode(codec)
    ack = gw.check_xml(data)
    assert [f.code for f in ack.findings] == ["F009"]
    message = _messages(gw, data)
    assert "UTF-16" in message and "byte-order mark" in message


@pytest.fixture
def gw(tmp_path: Path) -> Gateway:
    return Gateway(tmp_path)


# --- 9b: other delimiters, rejected rows, the partner's own formats -----------------------------


@pytest.mark.parametrize(("delimiter", "shown"), [(";", "`;`"), ("\t", "tab")])
def test_a_semicolon_or_tab_csv_is_told_to_add_a_mapping(gw: Gateway, delimiter: str,
                                                         shown: str) -> None:
    ack = gw.check(to_csv(table({}), delimiter=delimiter))  # a CSV ack, not an XML one
    assert ack.status == "REJECTED"
    assert ack.file.codes == ["F005"]
    assert f"looks like CSV with {shown}" in ack.file.messages
    assert "add a mapping" in ack.file.messages


def test_every_row_of_a_rejected_application_carries_the_reason(gw: Gateway) -> None:
    ack = gw.check(csv_file({}, {}, {"quantity_kg": "-5"}, {"application_ref": "PO-2"}))
    rows = ack.by_ref("PO-1")
    assert [r.status for r in rows] == ["REJECTED"] * 3
    # Codes stay each row's own findings (counted and bounded once per application) ...
    assert [r.codes for r in rows] == [[], [], ["A140"]]
    # ... and a row without an error of its own says what rejected its application.
    for r in rows[:2]:
        assert r.messages.startswith("Rejected with its application on row 4: A140 ")
    assert ack.by_ref("PO-2")[0].messages == ""


def test_a_mapped_partners_messages_use_its_date_pattern(tmp_path: Path) -> None:
    mapping = write_mapping(tmp_path, '[csv]\ndate_format = "MM/DD/YYYY"\n')
    gw = Gateway(tmp_path, mapping=mapping)
    ack = gw.check(csv_file({"expected_export_date": "13/45/2026",
                             "expected_import_date": "12/10/2026"}))
    (row,) = ack.rows
    assert row.codes == ["A101"]
    assert "MM/DD/YYYY" in row.messages and "YYYY-MM-DD" not in row.messages


def test_a_mapped_partners_ack_uses_its_delimiter_when_configured(tmp_path: Path) -> None:
    mapping = write_mapping(tmp_path, '[csv]\ndelimiter = ";"\nack_delimiter = ";"\n')
    gw = Gateway(tmp_path, mapping=mapping)
    data = to_csv(table({}), delimiter=";")
    _, raw = gw.check_raw(data, "sub.csv", AS_OF)
    rows = list(csv.reader(io.StringIO(raw.decode()), delimiter=";"))
    assert rows[0][:3] == ["row", "application_ref", "line_no"]
    assert rows[2][3] == "LICENSED"
    # run writes the same
    outbox = gw.run_raw("sub.csv", data, AS_OF)
    rows = list(csv.reader(io.StringIO((outbox / "sub.csv.ack.csv").read_text()),
                           delimiter=";"))
    assert rows[2][3] == "LICENSED"


def test_check_without_partner_on_a_mapped_file_says_to_add_it(tmp_path: Path) -> None:
    cfg = shipped_project(tmp_path, {})
    proc = _cli("check", str(HANSE_CSV), "--as-of", "2026-12-01", "--config", str(cfg))
    assert proc.returncode == 1
    assert b"--partner" in proc.stdout + proc.stderr
    assert b"hanse" in proc.stdout + proc.stderr


def test_mapping_test_flags_values_it_could_not_convert() -> None:
    proc = _cli("mapping", "test", str(HANSE_MAPPING), str(HANSE_CSV))
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.decode()
    assert "31.11.2026" in err and "Atlantis" in err
    assert "Deutschland" not in err  # converted values are not flagged
    assert proc.stdout.decode().splitlines()[0].startswith("row,")



def test_f009_of_an_xml_names_the_byte_offset(gw: Gateway) -> None:
    data = GUIDE_XML.read_bytes().replace(b"ACME ALUMINUM", b"ACME \xe9LUMINUM", 1)
    offset = data.index(b"\xe9")
    status, raw = gw.check_raw(data, "sub.xml", AS_OF)
    assert status == "REJECTED"
    message = raw.decode()
    assert "F009" in message and f"byte offset {offset}" in message


# --- item 7: the ack of a reprocess names the ack it replaces ---------------------------------


def test_the_xml_ack_names_the_ack_it_replaces_and_stays_valid() -> None:
    from datetime import UTC, datetime

    from lxml import etree

    from gateway.licensing.results import FileSummary
    from gateway.model import FileStatus
    from gateway.outputs.ack_xml import render_ack

    summary = FileSummary(
        file_id="F", partner="acme", file_name="x.csv", sha256="0" * 64,
        received_at=datetime(2026, 12, 1, tzinfo=UTC), processed_at=datetime(2026, 12, 1,
                                                                             tzinfo=UTC),
        rule_set_date=date(2026, 12, 1), status=FileStatus.REJECTED, replaces="x.ack.csv")
    schema = etree.XMLSchema(etree.parse(str(Path(__file__).parent.parent / "schemas" /
                                             "license-ack-1.0.xsd")))
    root = etree.fromstring(render_ack(summary, []))
    assert schema.validate(root.getroottree()), schema.error_log
    assert root.findtext("{urn:aimgw:license-ack:1}Replaces") == "x.ack.csv"
    summary.replaces = None
    assert b"Replaces" not in render_ack(summary, [])


# --- 9b: the status files' own remote folder ----------------------------------------------------


@pytest.mark.parametrize(("settings", "expected"), [
    ({"remote_ack_dir": "/acks"}, "/acks/status"),
    ({"remote_ack_dir": "/acks/", "remote_status_dir": "/health"}, "/health"),
    ({"remote_status_dir": "/health"}, "/health"),
    ({}, None),
])
def test_status_files_have_their_own_remote_folder(tmp_path: Path, settings: dict[str, str],
                                                   expected: str | None) -> None:
    from gateway.config import SftpSource

    assert SftpSource(**settings).effective_remote_status_dir == expected
