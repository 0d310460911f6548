"""Detection (gateway/parse/detect.py), imported directly: what a file is by its content (XML,
CSV or F002, never by its name), the byte-order marks, and the size limit (F003). Real files on
tmp_path."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from gateway.errors import RejectedSubmission
from gateway.parse.detect import CANONICAL_HEADERS, bom_encoding, check_size, detect_format

XML = b'<?xml version="1.0" encoding="UTF-8"?>\n<LicenseSubmission/>\n'
CSV = b"submission_id,application_ref,hts\r\nS-1,PO-1,7606123045\r\n"


def detected(tmp_path: Path, data: bytes, name: str = "orders.dat", **options: object) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return detect_format(path, **options)  # type: ignore[arg-type]


def f_code(tmp_path: Path, data: bytes, **options: object) -> str:
    with pytest.raises(RejectedSubmission) as err:
        detected(tmp_path, data, **options)
    return err.value.finding.code


@pytest.mark.parametrize(("data", "expected"), [
    pytest.param(XML, "xml", id="xml-declaration"),
    pytest.param(b"<LicenseSubmission/>", "xml", id="xml-no-declaration"),
    pytest.param(b" \r\n\t" + XML, "xml", id="xml-after-blanks"),
    pytest.param(codecs.BOM_UTF8 + XML, "xml", id="xml-utf8-bom"),
    pytest.param(codecs.BOM_UTF16_LE + XML.decode().encode("utf-16-le"), "xml",
                 id="xml-utf16le-bom"),
    pytest.param(XML.decode().encode("utf-16-be"), "xml", id="xml-utf16be-no-bom"),
    pytest.param(XML.decode().encode("utf-32-be"), "xml", id="xml-utf32be-no-bom"),
    pytest.param(codecs.BOM_UTF32_LE + XML.decode().encode("utf-32-le"), "xml",
                 id="xml-utf32le-bom"),
    pytest.param(CSV, "csv", id="csv-canonical"),
    pytest.param(codecs.BOM_UTF8 + CSV, "csv", id="csv-utf8-bom"),
    pytest.param(b'"Submission_ID","colour"\r\nS-1,red\r\n', "csv", id="csv-quoted-upper-case"),
    pytest.param(b"colour,hts\n", "csv", id="csv-one-known-column-is-enough"),
    pytest.param(codecs.BOM_UTF16_LE + CSV.decode().encode("utf-16-le"), "csv",
                 id="csv-utf16-is-the-readers-to-judge"),
    # One control byte in more than 100 of the head is the CSV reader's to reject (F001).
    pytest.param(CSV * 3 + b"S-1,PO-2,\x00\r\n", "csv", id="nul-below-the-header-is-the-readers"),
])
def test_the_format_comes_from_the_content(tmp_path: Path, data: bytes, expected: str) -> None:
    assert detected(tmp_path, data) == expected


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("orders.xml", CSV, "csv"),
    ("orders.csv", XML, "xml"),
    ("orders", CSV, "csv"),
])
def test_the_file_name_is_never_trusted(tmp_path: Path, name: str, data: bytes,
                                        expected: str) -> None:
    assert detected(tmp_path, data, name) == expected


@pytest.mark.parametrize("data", [
    pytest.param(b"", id="empty"),
    pytest.param(b" \r\n\t\n", id="blanks-only"),
    pytest.param(codecs.BOM_UTF8, id="bom-only"),
    pytest.param(b"name,age\r\nbob,3\r\n", id="no-known-column"),
    pytest.param(b"\r\nsubmission_id,hts\r\n", id="blank-first-line"),
    pytest.param(b"submission_id\x00,hts\r\nS-1,1\r\n", id="nul-in-the-header"),
    pytest.param(b"submission_id,hts\n" + bytes(range(1, 9)) * 20, id="control-bytes"),
    pytest.param(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", id="pdf"),
    pytest.param(b"PK\x03\x04\x14\x00\x00\x00", id="zip"),
    pytest.param(codecs.BOM_UTF16_LE + b"n\x00a\x00m\x00e\x00", id="utf16-unknown-text"),
])
def test_anything_else_is_f002(tmp_path: Path, data: bytes) -> None:
    assert f_code(tmp_path, data) == "F002"


def test_a_mappings_header_names_and_delimiter_make_its_csv(tmp_path: Path) -> None:
    data = b"Bestellung;Menge (t)\r\nPO-1;12\r\n"
    assert f_code(tmp_path, data) == "F002"  # not ours without the mapping
    headers = CANONICAL_HEADERS | {"bestellung", "menge (t)"}
    assert detected(tmp_path, data, csv_headers=headers, delimiter=";") == "csv"
    assert f_code(tmp_path, data, csv_headers=headers) == "F002"  # wrong delimiter: one name


def test_only_the_head_of_the_file_is_read(tmp_path: Path) -> None:
    # Whatever follows the first 64 KB does not change what the file is.
    assert detected(tmp_path, CSV + b"x" * 70_000 + b"\x00" * 1000) == "csv"


@pytest.mark.parametrize(("head", "expected"), [
    (codecs.BOM_UTF8 + b"<a/>", ("utf-8", 3)),
    (codecs.BOM_UTF16_LE + b"<\x00", ("utf-16-le", 2)),
    (codecs.BOM_UTF16_BE + b"\x00<", ("utf-16-be", 2)),
    # The UTF-32 LE mark starts with the UTF-16 LE one: the longer mark wins.
    (codecs.BOM_UTF32_LE + b"<\x00\x00\x00", ("utf-32-le", 4)),
    (codecs.BOM_UTF32_BE + b"\x00\x00\x00<", ("utf-32-be", 4)),
    (b"<a/>", (None, 0)),
    (b"", (None, 0)),
])
def test_bom_encoding(head: bytes, expected: tuple[str | None, int]) -> None:
    assert bom_encoding(head) == expected


@pytest.mark.parametrize(("size", "limit"), [(0, 1), (99, 100), (100, 100)])
def test_a_file_within_the_limit_gives_its_size(tmp_path: Path, size: int, limit: int) -> None:
    path = tmp_path / "a.xml"
    path.write_bytes(b"x" * size)
    assert check_size(path, limit) == size


@pytest.mark.parametrize(("listed", "reported"), [(None, 101), (50, 101), (5_000, 5_000)])
def test_a_file_over_the_limit_is_f003_with_its_listed_size(
        tmp_path: Path, listed: int | None, reported: int) -> None:
    """Intake copies at most limit + 1 bytes: the partner's listed size is the one reported
    when it is larger."""
    path = tmp_path / "a.xml"
    path.write_bytes(b"x" * 101)
    with pytest.raises(RejectedSubmission) as err:
        check_size(path, 100, listed)
    found = err.value.finding
    assert (found.code, found.value) == ("F003", str(reported))
    assert f"{reported:,} bytes; the limit is 100 bytes" in found.message
