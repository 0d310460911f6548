"""Where a file stops being valid text in its encoding (F009, issue 14 item 6).

A partner fixing an F009 needs the place of the bad byte in terms its editor shows: the line
and column (in bytes, from 1) and the byte offset from the start of the file (from 0, as a hex
editor counts). Decoded line by line, on the error path only.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BadByte:
    offset: int  # from the start of the file, 0-based
    line: int  # 1-based physical line
    column: int  # 1-based byte column in that line
    byte: int
    reason: str

    def where(self) -> str:
        return (f"line {self.line}, column {self.column} (byte offset {self.offset}, "
                f"byte 0x{self.byte:02X})")


def find_bad_byte(path: Path, encoding: str) -> BadByte | None:
    """The first byte of ``path`` not valid in ``encoding`` (an ASCII-compatible one: no
    character spans a line feed), None when the whole file decodes."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    with open(path, "rb") as fh:
        raw = fh.readline()
        line = 1
        while raw:
            following = fh.readline()
            try:
                decoder.decode(raw, final=not following)
            except UnicodeDecodeError as err:
                # err.object may start with bytes the decoder held back from the line before.
                start = max(0, err.start - (len(err.object) - len(raw)))
                byte = raw[start] if start < len(raw) else 0
                return BadByte(offset + start, line, start + 1, byte, err.reason)
            except (UnicodeError, ValueError):  # a codec that names no position (punycode)
                return None
            offset += len(raw)
            line += 1
            raw = following
    return None
