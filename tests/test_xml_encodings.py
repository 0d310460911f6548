"""A submission in UTF-16, UTF-32 or UTF-7 is read transcoded to UTF-8 (parse.xml_guard.XmlBytes),
so that the attribute guard sees its attributes: a review found a UTF-16 root tag of 300,000
attributes cost 117 MB to reach and 207 MB to read, uncut (the guard looks for ASCII bytes).
Read so, a file gives what the same file in UTF-8 gives, floods cut alike; text not valid in
its encoding is F009."""

from __future__ import annotations

import base64
import codecs
from pathlib import Path

import pytest

from gateway.errors import RejectedSubmission
from gateway.parse.xml_file import XmlSubmission
from gateway.parse.xml_guard import KEEP, MARK, XmlBytes

CASES = Path(__file__).parent / "cases" / "inbox" / "sample"
GOOD = (CASES / "acme-20261201-good.xml").read_text("utf-8")


def _utf7_hidden(text: str) -> bytes:
    """UTF-7 with every character after the declaration in base64 (no "<" or "=" byte)."""
    end = text.index("?>") + 2
    hidden = base64.b64encode(text[end:].encode("utf-16-be")).rstrip(b"=")
    return text[:end].encode("ascii") + b"+" + hidden + b"-"


# (id, how the text becomes bytes)
ENCODINGS = [
    ("utf-16 with a mark", lambda text: codecs.BOM_UTF16_LE + text.encode("utf-16-le")),
    ("utf-16-be with a mark", lambda text: codecs.BOM_UTF16_BE + text.encode("utf-16-be")),
    ("utf-16-le without a mark", lambda text: text.encode("utf-16-le")),
    ("utf-16-be without a mark", lambda text: text.encode("utf-16-be")),
    ("utf-32 with a mark", lambda text: text.encode("utf-32")),
    ("utf-32-be without a mark", lambda text: text.encode("utf-32-be")),
    ("utf-7 declared", lambda text: text.encode("utf-7")),
    ("utf-7 every character encoded", _utf7_hidden),
]


def _declared(text: str, encoding: str) -> str:
    return text.replace('encoding="UTF-8"', f'encoding="{encoding}"', 1)


def _read(path: Path) -> list[object]:
    submission = XmlSubmission(path)
    return [*submission.applications(), submission.header]


def _flooded(text: str, extra: int) -> str:
    """The first Application with ``extra`` attributes more than the XSD allows."""
    flood = "".join(f' x{n}="{n}"' for n in range(extra))
    return text.replace("<Application ", f"<Application{flood} ", 1)


@pytest.mark.parametrize("extra", [0, 3 * KEEP], ids=["as is", "an attribute flood"])
@pytest.mark.parametrize("name, encode", ENCODINGS, ids=[e[0] for e in ENCODINGS])
def test_a_file_in_another_encoding_reads_as_in_utf8(
        tmp_path: Path, name: str, encode: object, extra: int) -> None:
    text = _flooded(GOOD, extra)
    plain, other = tmp_path / "plain.xml", tmp_path / "other.xml"
    plain.write_text(text, "utf-8")
    codec = name.split()[0].upper().replace("-LE", "").replace("-BE", "")
    other.write_bytes(encode(_declared(text, codec)))  # type: ignore[operator]
    assert _read(other) == _read(plain)


@pytest.mark.parametrize("name, encode", ENCODINGS, ids=[e[0] for e in ENCODINGS])
def test_a_flood_is_cut_before_the_parser_in_every_encoding(name: str, encode: object) -> None:
    tag = "<r" + "".join(f' a{n}="v"' for n in range(10 * KEEP)) + "/>"
    codec = name.split()[0].upper()
    data = encode(f'<?xml version="1.0" encoding="{codec}"?>\n{tag}')  # type: ignore[operator]
    stream = XmlBytes(data[:256])
    out = b"".join(stream.feed(data[n:n + 1000]) for n in range(0, len(data), 1000))
    out += stream.close()
    assert stream.encoding == "utf-8"
    assert out.count(b'="v"') == KEEP
    assert f'{MARK}="{9 * KEEP}"'.encode() in out


@pytest.mark.parametrize("data, where", [
    (codecs.BOM_UTF16_LE + "<?xml version='1.0'?><r>".encode("utf-16-le") + b"\x00\xd8a\x00",
     "byte 50"),
    (b'<?xml version="1.0" encoding="UTF-7"?><r>+2AA-</r>', "lone surrogate"),
], ids=["utf-16 lone surrogate", "utf-7 lone surrogate"])
def test_text_not_valid_in_its_encoding_is_f009(tmp_path: Path, data: bytes, where: str) -> None:
    path = tmp_path / "f.xml"
    path.write_bytes(data)
    with pytest.raises(RejectedSubmission) as raised:
        _read(path)
    assert raised.value.finding.code == "F009"
    assert where in raised.value.finding.message


def test_a_utf8_file_goes_to_the_parser_as_it_is() -> None:
    data = GOOD.encode("utf-8")
    stream = XmlBytes(data[:256])
    assert stream.encoding is None
    assert stream.feed(data) + stream.close() == data
