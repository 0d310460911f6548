"""The prolog's checks (parse.xml_file.prescan): F004 for a DOCTYPE wherever it is before the
root, and the root's tag, schemaVersion and line, from a parse fed in growing pieces that
stops at the root's start tag, wherever the piece boundaries fall."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import RejectedSubmission
from gateway.parse import xml_file
from gateway.parse.xml_file import prescan
from gateway.parse.xml_model import ROOT_TAG

NS = ROOT_TAG[1:].partition("}")[0]
# Where the root's start tag begins: before, across and after each piece's end (1 KiB, then
# 4, 16, 64 KiB), and past the byte search's first 256 KiB.
OFFSETS = [200, 1000, 1020, 1024, 1030, 5100, 5120, 21500, 87000, 300_000]


def _document(offset: int, doctype: bool = False, attributes: int = 0) -> bytes:
    declaration = b'<?xml version="1.0" encoding="UTF-8"?>\n'
    dtd = b"<!DOCTYPE LicenseSubmission>\n" if doctype else b""
    pad = offset - len(declaration) - len(dtd) - len(b"<!---->\n")
    comment = b"<!--" + b"x" * max(pad, 0) + b"-->\n"
    extra = b"".join(b' data-a%d="v"' % n for n in range(attributes))
    root = (f'<LicenseSubmission xmlns="{NS}" schemaVersion="1.1"'.encode() + extra +
            b"><Header><SubmissionId>S-1</SubmissionId></Header></LicenseSubmission>\n")
    return declaration + comment + dtd + root


@pytest.mark.parametrize("offset", OFFSETS)
def test_the_root_is_found_wherever_the_pieces_end(tmp_path: Path, offset: int) -> None:
    path = tmp_path / "f.xml"
    data = _document(offset)
    assert data.index(b"<LicenseSubmission") == offset
    path.write_bytes(data)
    assert prescan(path) == (ROOT_TAG, "1.1", 3)


@pytest.mark.parametrize("offset", OFFSETS)
def test_a_doctype_before_the_root_is_f004_wherever_it_is(tmp_path: Path, offset: int) -> None:
    path = tmp_path / "f.xml"
    path.write_bytes(_document(offset, doctype=True))
    with pytest.raises(RejectedSubmission) as raised:
        prescan(path)
    assert raised.value.finding.code == "F004"


def test_a_root_tag_longer_than_the_first_pieces(tmp_path: Path) -> None:
    path = tmp_path / "f.xml"
    data = _document(100, attributes=3000)  # a start tag of about 40 KB
    assert data.index(b">", 100) > 16 * xml_file._FIRST_PIECE
    path.write_bytes(data)
    assert prescan(path) == (ROOT_TAG, "1.1", 3)


def test_no_root_before_a_syntax_error_is_left_to_the_full_parse(tmp_path: Path) -> None:
    path = tmp_path / "f.xml"
    path.write_bytes(b'<?xml version="1.0"?>\n<<oops')
    assert prescan(path) is None


@pytest.mark.parametrize("offset", [200, 60_000])
@pytest.mark.parametrize("root, expected", [
    ("Wrong", ("{" + NS + "}Wrong", "1.1", 3)),
    ("LicenseSubmission", (ROOT_TAG, "1.1", 3)),
], ids=["wrong root", "right root"])
def test_the_root_is_read_before_a_syntax_error_in_the_same_piece(
        tmp_path: Path, offset: int, root: str, expected: tuple[str, str, int]) -> None:
    """The error is the full parse's to report (F001), but a wrong root is F005 first, as
    when the error was in a later piece (a review found the root lost to the error)."""
    path = tmp_path / "f.xml"
    data = _document(offset).replace(b"<LicenseSubmission", f"<{root}".encode(), 1)
    path.write_bytes(data + b"<" * 10_000 + b"</oops>")  # the error 10 KB after the root
    assert prescan(path) == expected


def test_a_doctype_past_the_byte_search_before_a_syntax_error_is_f004(tmp_path: Path) -> None:
    path = tmp_path / "f.xml"
    path.write_bytes(_document(300_000, doctype=True) + b"<" * 10_000)
    with pytest.raises(RejectedSubmission) as raised:
        prescan(path)
    assert raised.value.finding.code == "F004"


@pytest.mark.parametrize("offset, opens", [(200, 2), (300_000, 3)],
                         ids=["small file", "root past the first 256 KiB"])
def test_a_file_is_opened_once_for_its_prolog_and_once_for_its_reading(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offset: int, opens: int) -> None:
    """The prolog's byte search, its parse and the full read's encoding check share the bytes
    read first: a small file is opened twice in all (it was four times: three opens of a few
    microseconds each, on every file of a poll). A file whose root is past the first bytes is
    opened once more, to read on from there."""
    path = tmp_path / "f.xml"
    path.write_bytes(_document(offset))
    seen: list[str] = []
    real_open = open

    def counting_open(file: object, *args: object, **kwargs: object) -> object:
        if str(file) == str(path):
            seen.append(str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", counting_open)
    submission = xml_file.XmlSubmission(path)
    with pytest.raises(RejectedSubmission) as raised:
        list(submission.applications())
    assert raised.value.finding.code == "F008"  # read to its end: no application in it
    assert submission.header is not None and submission.header.submission_id == "S-1"
    assert len(seen) == opens
