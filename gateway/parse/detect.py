"""What a received file is, by its content: XML, CSV, or neither (F002), and the size limit (F003).

The file name is never trusted: a partner's `orders.xml` may well be a CSV export.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Literal

from gateway.errors import RejectedSubmission
from gateway.findings import finding
from gateway.parse.csv_file import KNOWN_COLUMNS

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


def detect_format(path: Path, csv_headers: frozenset[str] = CANONICAL_HEADERS,
                  delimiter: str = ",") -> Format:
    """XML when the first non-blank character is '<'; CSV when the first row is a header row.

    A header row is text whose first line names at least one known column (``csv_headers``,
    lower case: the canonical columns plus a mapping's names). Any other text is F002: a
    partner's "CSV" that names none of the columns is not one of our CSV submissions.
    """
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    encoding, skip = bom_encoding(head)
    body = head[skip:]
    if not body.strip():
        raise RejectedSubmission(finding("F002", "The file is empty: send an XML or CSV "
                                         "submission."))
    if encoding is None and body.startswith(_BE_XML_STARTS):
        return "xml"  # UTF-16/32 big-endian without a BOM (XML 1.0 appendix F): legal XML
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
    raise RejectedSubmission(finding("F002", "The file is neither XML nor CSV: send the XML of "
                                     "urn:aimgw:license-submission:1 or a CSV with a header row."))


def _looks_like_csv(body: bytes, headers: frozenset[str], delimiter: str) -> bool:
    """Printable text whose first line is a header row naming a known column."""
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
    return any(n.strip().strip('"').lower() in headers for n in names)
