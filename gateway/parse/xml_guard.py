"""Attribute floods are cut from the XML bytes before libxml2 builds them (issue 10, item 3).

libxml2 holds every attribute of a start tag in its tree (about 300 bytes each): one element
with 900,000 attributes costs 270 MB before any line of ours runs, and its XSD check builds
one error per attribute. So the reader's bytes pass through ``AttributeGuard``: past the first
``KEEP`` attributes of one start tag, the rest are counted and cut, and one marker attribute
(``MARK``) takes their place, holding their number. The reader turns the marker into a count
of unlisted A101 findings (``gateway.findings.bounded``). Line breaks inside a cut run are kept,
so line numbers do not move. Only start tags are looked at (``<`` and a name); a start tag
cannot hold ``<`` in a value, so the tag being read is always after the last ``<``.
"""

from __future__ import annotations

import codecs
import contextlib
import re
from pathlib import Path

from gateway.errors import RejectedSubmission
from gateway.findings import finding
from gateway.parse.detect import bom_encoding

KEEP = 128  # attributes of one start tag passed on; more than the findings listed (100)
MARK = "aimgw-cut-attributes"
_HOLD_LIMIT = 1 << 20  # bytes of one unfinished attribute held back between chunks
# Possessive (no backtracking: a name or a value has one way to match), so that the scan
# for floods costs little on ordinary XML (about 3 ns a byte).
_NAME = rb"""[^\s<>/!?="']++"""
_ATTR = rb"""\s++[^\s<>/="']++\s*+=\s*+(?:"[^"<]*+"|'[^'<]*+')"""
_ATTR_RE = re.compile(_ATTR)
_RUN = re.compile(rb"(?:%s)*" % _ATTR)
_FLOOD = re.compile(rb"<%s(?:%s){%d}" % (_NAME, _ATTR, KEEP))  # a tag with KEEP attributes
# What every flood holds: after its first "=", the rest of that attribute and KEEP - 1 more
# (at least 5 bytes each: space, name, "=", two quotes), none of them "<". Found six times
# faster than ``_FLOOD`` (an "=" is rarer than a "<"; 0.016 s against 0.095 s on 41 MB of
# ordinary XML, measured), it says where a flood can start: at the last "<" before it.
_LONG_TAG = re.compile(rb"=[^<]{%d}" % (5 * (KEEP - 1)))
_OPEN = re.compile(rb"<%s" % _NAME)  # the start of a start tag
# What an attribute cut by the end of a chunk can look like, up to the end of the data.
_PARTIAL = re.compile(rb"""\s*(?:[^\s<>/="']+\s*(?:=\s*(?:"[^"<]*|'[^'<]*)?)?)?\Z""")


def _flood(data: bytes, pos: int) -> re.Match[bytes] | None:
    """``_FLOOD.search(data, pos)``: the same match, sought only from the last "<" before the
    first ``_LONG_TAG`` (no flood can start before that "<")."""
    hint = _LONG_TAG.search(data, pos)
    if hint is None:
        return None
    start = data.rfind(b"<", pos, hint.start())
    return _FLOOD.search(data, start if start >= 0 else pos)


class AttributeGuard:
    """Pass XML bytes on, chunk by chunk, with the attributes of a start tag past ``KEEP`` cut.

    ``feed`` returns the bytes to parse (it may hold a few back); ``close`` the rest.
    """

    def __init__(self) -> None:
        self._seen: int | None = None  # attributes of the open start tag so far (None: none)
        self._cut = 0  # attributes cut from the open start tag
        self._newlines = 0  # line breaks inside the cut ones
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._held + chunk if self._held else chunk
        self._held = b""
        out: list[bytes] = []
        pos = 0
        if self._seen is not None:
            pos = self._attributes(data, 0, out)
        while pos >= 0 and (m := _flood(data, pos)) is not None:
            out.append(data[pos:m.end()])
            self._seen = KEEP
            pos = self._attributes(data, m.end(), out)
        if pos >= 0:
            self._last_tag(data, pos, out)
        return b"".join(out)

    def _last_tag(self, data: bytes, pos: int, out: list[bytes]) -> None:
        """The last start tag may go on in the next chunk: follow its attributes."""
        last = data.rfind(b"<", pos)
        if last == len(data) - 1:  # a lone "<": what follows decides
            out.append(data[pos:last])
            self._held = data[last:]
            return
        tag = _OPEN.match(data, last) if last >= 0 else None
        if tag is None or len(data) - last >= _HOLD_LIMIT:
            out.append(data[pos:])
            return
        if tag.end() == len(data):  # "<Appl": the name itself may go on
            out.append(data[pos:last])
            self._held = data[last:]
            return
        out.append(data[pos:tag.end()])
        self._seen = 0
        end = self._attributes(data, tag.end(), out)
        if end >= 0:
            out.append(data[end:])

    def _attributes(self, data: bytes, pos: int, out: list[bytes]) -> int:
        """The attributes of the open start tag from ``pos``: passed on up to ``KEEP``, cut
        past it. Returns where they end, or -1 when they may go on in the next chunk (an
        unfinished one is held back) or the rest of ``data`` was passed on."""
        assert self._seen is not None
        run = _RUN.match(data, pos)
        end = run.end() if run else pos
        if end > pos:
            room = KEEP - self._seen
            kept_end = pos
            count = 0
            for count, attr in enumerate(_ATTR_RE.finditer(data, pos, end), start=1):
                if count <= room:
                    kept_end = attr.end()
            out.append(data[pos:kept_end])
            self._seen += count
            if self._seen > KEEP:
                self._cut += self._seen - max(KEEP, self._seen - count)
                self._newlines += data.count(b"\n", kept_end, end)
        if _PARTIAL.match(data, end) is None:
            self._close_tag(out)
            return end
        if len(data) - end < _HOLD_LIMIT:
            self._held = data[end:]
        else:  # one attribute too long to hold: libxml2 judges it (10 MB at most)
            self._close_tag(out)
            out.append(data[end:])
        return -1

    def _close_tag(self, out: list[bytes]) -> None:
        if self._cut:
            out.append(b' %s="%d"%s' % (MARK.encode(), self._cut, b"\n" * self._newlines))
        self._seen = None
        self._cut = self._newlines = 0

    def close(self) -> bytes:
        out: list[bytes] = []
        if self._seen is not None:
            self._close_tag(out)
        out.append(self._held)
        self._held = b""
        return b"".join(out)


# Where the bytes of a character are not that character's ASCII byte (an attribute's "<", "="
# and quotes), the guard above sees no attribute at all: a UTF-16 root tag of 300,000
# attributes cost 117 MB to reach and 207 MB to read (a review, 2026-12-05), and a 200 MB file
# gigabytes. Such a file is read transcoded to UTF-8 (``XmlBytes``). Told by its first bytes,
# as libxml2 tells them (XML 1.0 appendix F): a byte-order mark, or "<" and "<?" in UTF-32 and
# UTF-16 without one; or declared UTF-7 (whose "<" may be "+ADw-").
# Without a byte-order mark (``detect.bom_encoding`` reads those): "<" in UTF-32, "<?" in UTF-16.
_WIDE_STARTS = (
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00?\x00", "utf-16-le"),
    (b"\x00<\x00?", "utf-16-be"),
)
_DECLARED = re.compile(rb"""<\?xml\s[^>]*?\bencoding\s*=\s*["']([A-Za-z][A-Za-z0-9._-]*)["']""")
_HEAD_BYTES = 256  # enough for a declaration


def transcoding(head: bytes) -> tuple[str, int] | None:
    """The codec a file starting with ``head`` is read through, and the bytes of its mark to
    skip; None: its bytes go to libxml2 as they are."""
    marked, skip = bom_encoding(head)
    if marked is not None:
        return None if marked == "utf-8" else (marked, skip)
    for start, codec in _WIDE_STARTS:
        if head.startswith(start):
            return codec, 0
    declared = _DECLARED.match(head)
    if declared is not None:
        with contextlib.suppress(LookupError):
            if codecs.lookup(declared.group(1).decode("ascii")).name == "utf-7":
                return "utf-7", 0
    return None


class XmlBytes:
    """A file's bytes as the parser is to read them: through ``AttributeGuard``, in UTF-8 when
    ``transcoding`` says so (then the parser is told ``encoding`` = "utf-8", which overrides
    the declaration's). Text not valid in its encoding is F009, as libxml2 reports it."""

    def __init__(self, head: bytes) -> None:
        self._guard = AttributeGuard()
        how = transcoding(head[:_HEAD_BYTES])
        self.codec = how[0] if how else None
        self._skip = how[1] if how else 0
        self._decoder = codecs.getincrementaldecoder(self.codec)() if self.codec else None
        self._read = 0  # bytes decoded so far (where an invalid one is)

    @classmethod
    def of(cls, path: Path) -> XmlBytes:
        with open(path, "rb") as fh:
            return cls(fh.read(_HEAD_BYTES))

    @property
    def encoding(self) -> str | None:
        """The parser's ``encoding``: None leaves it to the file."""
        return "utf-8" if self.codec else None

    def feed(self, chunk: bytes) -> bytes:
        return self._guard.feed(self._utf8(chunk))

    def close(self) -> bytes:
        return self._guard.feed(self._utf8(b"", final=True)) + self._guard.close()

    def _utf8(self, chunk: bytes, final: bool = False) -> bytes:
        if self._decoder is None:
            return chunk
        if self._skip:
            skipped = chunk[:self._skip]
            chunk, self._skip = chunk[self._skip:], self._skip - len(skipped)
            self._read += len(skipped)
        try:
            text = self._decoder.decode(chunk, final)
        except UnicodeDecodeError as err:
            raise self._invalid(f"{err.reason} at byte {self._read + err.start:,}") from None
        self._read += len(chunk)
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (UTF-7 can spell one): not a character
            raise self._invalid(f"a lone surrogate before byte {self._read:,}") from None

    def _invalid(self, where: str) -> RejectedSubmission:
        return RejectedSubmission(finding(
            "F009", f"The text is not valid in its encoding ({self.codec}): {where}. Save the "
            "file as UTF-8."))
