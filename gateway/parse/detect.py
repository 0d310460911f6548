"""What a received file is, by its content: XML, CSV, or neither (F002), and the size limit (F003).

The file name is never trusted: a partner's `orders.xml` may well be a CSV export.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Literal

from gateway.errors import RejectedSubmission
from gateway.findings import finding
from gateway.parse.csv_file import KNOWN_COLUMNS, other_delimiter

Format = Literal["xml", "csv"]

_SNIFF_BYTES = 64 * 1024
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


# "<?" in UTF-16BE and "<" in UTF-32BE, without a byte-order mark (XML 1.0 appendix F).
_BE_XML_STARTS = (b"\x00<\x00?", b"\x00\x00\x00<")


def bom_encoding(head: bytes) -> tuple[str | None, int]:
    """The encoding a byte-order mark announces, and the mark's length."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name, len(bom)
    return None, 0


def check_size(path: Path, limit: int, listed: int | None = None) -> int:
    """The file's size; F003 when it is over ``limit`` bytes.

    Intake copies at most ``limit`` + 1 bytes of a larger file (``inbox.base.read_cap``), so the
    size the partner's inbox ``listed`` is the one reported when it is larger.
    """
    size = path.stat().st_size
    if size > limit:
        size = max(size, listed or 0)
        raise RejectedSubmission(
            finding("F003", f"The file is {size:,} bytes; the limit is {limit:,} bytes. "
                    "Split it into several files.", value=str(size))
        )
    return size


CANONICAL_HEADERS = frozenset(KNOWN_COLUMNS)


def _head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(_SNIFF_BYTES)


def detect_format(path: Path, csv_headers: frozenset[str] = CANONICAL_HEADERS,
                  delimiter: str = ",", declared: str = "utf-8") -> Format:
    """XML when the first non-blank character is '<'; CSV when the first row is a header row.

    A header row is text whose first line names at least one known column (``csv_headers``,
    lower case: the canonical columns plus a mapping's names), split by ``delimiter`` or by
    one a partner's export often uses instead (``csv_file.OTHER_DELIMITERS``: the CSV reader
    then says to add a mapping). Any other text is F002: a partner's "CSV" that names none of
    the columns is not one of our CSV submissions. UTF-16 text without a byte-order mark is
    F009 unless the partner's mapping ``declared`` a UTF-16 encoding.
    """
    head = _head(path)
    encoding, skip = bom_encoding(head)
    body = head[skip:]
    if not body.strip():
        raise RejectedSubmission(finding("F002", "The file is empty: send an XML or CSV "
                                         "submission."))
    if encoding is None and body.startswith(_BE_XML_STARTS):
        return "xml"  # UTF-16/32 big-endian without a BOM (XML 1.0 appendix F): legal XML
    if encoding is None and declared.lower().replace("_", "-").startswith(("utf-16", "utf-32")):
        encoding = declared  # the mapping says so: decoded below like a marked file
    elif encoding is None and not body.startswith(b"<\x00"):  # "<" in UTF-16LE: XML
        _refuse_utf16(body)
    if encoding in (None, "utf-8"):
        first = body.lstrip()[:1]
        if first == b"<":
            return "xml"
    else:
        # UTF-16/32 XML is legal XML; the XML parser decides whether it is well formed.
        try:
            text = body.decode(encoding, errors="ignore")
        except LookupError:
            text = ""
        if text.lstrip().startswith("<"):
            return "xml"
        # A UTF-16/32 CSV is a CSV: its reader decides (F009 unless the mapping reads it).
        body = text.encode("utf-8")
    if _looks_like_csv(body, csv_headers, delimiter):
        return "csv"
    if _looks_like_csv(body, CANONICAL_HEADERS, delimiter, other=True):
        return "csv"  # our columns with another delimiter: F005 says to add a mapping
    raise RejectedSubmission(finding("F002", "The file is neither XML nor CSV: send the XML of "
                                     "urn:aimgw:license-submission:1 or a CSV with a header row."))


def _refuse_utf16(body: bytes) -> None:
    """F009 for UTF-16 text without a byte-order mark: NUL in every other byte (a text in
    UTF-8 or a single-byte code page has none), which the CSV reader would otherwise call
    binary or not text in its encoding without saying why."""
    sample = body[:512 - len(body[:512]) % 2]
    pairs = len(sample) // 2
    if pairs < 4:
        return
    even = sum(1 for b in sample[0::2] if b == 0)
    odd = sum(1 for b in sample[1::2] if b == 0)
    if max(even, odd) < pairs * 0.6 or min(even, odd) > pairs * 0.1:
        return
    order = "little" if odd > even else "big"
    raise RejectedSubmission(finding(
        "F009", f"The file looks like UTF-16 text ({order}-endian) without a byte-order mark "
        "(a NUL byte in every other position): save it as UTF-8, or as UTF-16 with a "
        "byte-order mark (BOM).", value=f"UTF-16{order[0].upper()}E"))


def canonical_content(path: Path) -> Format | None:
    """``xml`` for a document of our namespace, ``csv`` for a header row of the canonical
    columns (comma-separated, with ``application_ref``), else None. Issue 14 item 6: these are
    read as they are, whatever mapping the partner has for its own exports."""
    head = _head(path)
    encoding, skip = bom_encoding(head)
    text = head[skip:].decode(encoding or "utf-8", errors="ignore")
    if text.lstrip().startswith("<"):
        root = _ROOT_TAG.search(_XML_PROLOG.sub("", text.lstrip()))
        return "xml" if root and _NAMESPACE in root.group(0) else None
    names = [n.strip().strip('"').lower() for n in text.split("\n", 1)[0].split(",")]
    if "application_ref" in names and all(n in CANONICAL_HEADERS for n in names):
        return "csv"
    return None


_NAMESPACE = "urn:aimgw:license-submission:1"
# Declarations, processing instructions, comments and a DOCTYPE before the root element.
_XML_PROLOG = re.compile(r"<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>", re.S)
_ROOT_TAG = re.compile(r"<[^!?][^>]*>", re.S)


def _looks_like_csv(body: bytes, headers: frozenset[str], delimiter: str,
                    other: bool = False) -> bool:
    """Printable text whose first line is a header row naming a known column (``other``:
    when split by one of ``OTHER_DELIMITERS`` instead of ``delimiter``)."""
    first_line = body.split(b"\n", 1)[0]
    # A NUL in the header row: binary. One further down is the CSV reader's F001 (NUL bytes
    # are rejected wherever they are), not F002 for the first 4 KB only.
    if not first_line.strip() or b"\x00" in first_line:
        return False
    sample = body[:4096]
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 13))
    if controls > len(sample) // 100:
        return False
    names = first_line.decode("latin-1").strip("\r\n\ufeff").split(delimiter)
    if other:
        return other_delimiter(names, delimiter) is not None
    return any(n.strip().strip('"').lower() in headers for n in names)
