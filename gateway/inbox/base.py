"""The ``Inbox`` interface and what every inbox kind shares: the listed file, the name filter,
and the capped, hashed copy.

An inbox lists complete files, fetches one to a local temp file, and disposes of it once the
gateway holds it durably. ``LocalInbox`` (inbox/local.py) and ``SftpInbox`` (inbox/sftp.py)
implement it.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from gateway.errors import TransientError
from gateway.ledger.store import FileRow
from gateway.storage import DigestWriter, in_folder

# Names a sender uses while a file is still being written: never taken.
IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".filepart", ".partial", ".writing")


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """A file offered by a partner. ``name`` is data, never a local path."""

    name: str
    size: int
    mtime: float


class NotTaken(Exception):
    """This file is not taken at this poll, for a reason that is the file's, not the poll's:
    its name was swapped (a link, another owner's file) when it was opened. The next poll
    looks at it again; the other files of the poll go on."""


class Inbox(Protocol):
    partner_id: str

    def list(self) -> list[RemoteFile]:
        """Complete files waiting, oldest first."""
        ...

    def fetch(self, remote: RemoteFile, dest: Path, limit: int | None = None,
              ) -> tuple[int, str]:
        """Copy ``remote`` to ``dest`` (fsynced); return (bytes, SHA-256 hex). Past ``limit``
        bytes the copy stops at ``limit`` + 1 (the file is F003, never read whole)."""
        ...

    def dispose(self, taken: FileRow) -> str | None:
        """Move, delete or keep the partner's file after the gateway holds it durably: only
        the exact file that was taken (its identity compared first). A file renamed over it
        meanwhile stays, for the next poll to take as a new file: then the reason, else None.
        """
        ...

    def deliver(self, local: Path, name: str, status: bool = False) -> None:
        """Put an acknowledgment where the partner reads it (``status``: a status file, in
        its own folder)."""
        ...

    def close(self) -> None: ...


def text_name(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (held as surrogate escapes by the OS
    layer) written as ``\\xNN``, so that the name can be stored, logged and acknowledged."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    return name


def wanted(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether a listed name is one to take: it matches a pattern, is not hidden and is not a
    name a sender writes under (``IN_PROGRESS_SUFFIXES``). Both inbox kinds filter with it."""
    if name.startswith(".") or name.lower().endswith(IN_PROGRESS_SUFFIXES):
        return False
    if "\x00" in name or "/" in name:  # no file system holds it: a hostile server's name
        return False
    return any(fnmatch.fnmatch(name, p) for p in patterns)


_COPY_CHUNK = 1024 * 1024


class FileChanged(TransientError):
    """The file's size is not the one listed: it is left for a later poll, listed anew."""


class FileRefused(TransientError):
    """The partner's server refused an operation on ONE file while its folder takes other files
    (a folder holds the name of its ack, the file cannot be moved): that file's failure,
    counted and quarantined after 3 like any poison file (``Runner._attempt``), never the
    partner's poll failure, which would leave every later file waiting behind it."""


def read_cap(expected: int | None, limit: int | None) -> int | None:
    """Bytes to read at most: one more than listed (a file that grew is seen, never read on)
    and one more than ``limit`` (an over-limit file is F003 without being copied whole)."""
    caps = [n + 1 for n in (expected, limit) if n is not None]
    return min(caps) if caps else None


def copy_with_digest(src_fh: BinaryIO, dest: Path, expected: int | None = None,
                     limit: int | None = None) -> tuple[int, str]:
    """Stream ``src_fh`` into ``dest``, fsync it, and return (bytes, SHA-256).

    At most ``read_cap`` bytes are read. More than ``limit`` bytes: returned as they are (the
    caller's size check makes it F003). Not ``expected`` bytes: ``FileChanged``. On any
    failure ``dest`` is removed: no partial copy is left behind.
    """
    cap = read_cap(expected, limit)
    total = 0
    try:
        with in_folder(lambda: open(dest, "wb"), dest.parent) as out, \
                DigestWriter(out.write, expected) as sink:
            while cap is None or total < cap:
                chunk = src_fh.read(_COPY_CHUNK if cap is None else min(_COPY_CHUNK, cap - total))
                if not chunk:
                    break
                sink.put(chunk)
                total += len(chunk)
            sha256 = sink.close()
            out.flush()
            os.fsync(out.fileno())
        if limit is not None and total > limit:
            return total, sha256
        if expected is not None and total != expected:
            raise FileChanged(f"the file is not {expected:,} bytes as listed ({total:,} read or "
                              "more): it is still being written or was replaced; it is taken "
                              "at a later poll, with its new size")
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return total, sha256
