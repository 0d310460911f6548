"""The ``Inbox`` interface and what every inbox kind shares: the listed file, the name filter,
and the capped, hashed copy.

An inbox lists complete files, fetches one to a local temp file, and disposes of it once the
gateway holds it durably. ``LocalInbox`` (inbox/local.py) and ``SftpInbox`` (inbox/sftp.py)
implement it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from gateway.errors import TransientError
from gateway.ledger.store import FileRow
from gateway.storage import in_folder

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
# From this size a copy hashes and writes in a thread of its own (``DigestWriter``); below it
# the thread's start would cost more than the overlap gives (a small file's poll).
THREADED_BYTES = 8 << 20
_AHEAD = 8  # chunks read and not yet hashed and written, at most (8 MiB of 1 MiB chunks)


class DigestWriter:
    """Hashes (SHA-256) and writes (``write``) the chunks of a copy, in order; for a copy of
    ``THREADED_BYTES`` or more, in a thread of its own while the caller reads the next chunk.

    Why: hashlib and the file write let go of the GIL for a large buffer, the download's own
    Python (paramiko's packets and prefetch buffers) does not; in one thread they take turns
    on one core. SHA-256 alone was 0.35 s of a 200 MiB SFTP download's 1.3 s (py-spy of
    bench/bench_sftp.py). ``close`` waits for the last chunk and raises what ``write``
    raised (then no chunk after the failing one is written); leaving the block by an error
    stops the thread without waiting for the chunks still queued.
    """

    def __init__(self, write: Callable[[bytes], object], size: int | None) -> None:
        self.digest = hashlib.sha256()
        self._write = write
        self._error: BaseException | None = None
        self._queue: queue.Queue[bytes | None] | None = None
        self._thread: threading.Thread | None = None
        if size is None or size >= THREADED_BYTES:
            self._queue = queue.Queue(_AHEAD)
            self._thread = threading.Thread(target=self._run, name="digest", daemon=True)
            self._thread.start()

    def put(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._queue is None:
            self.digest.update(chunk)
            self._write(chunk)
        else:
            self._queue.put(chunk)

    def _run(self) -> None:
        assert self._queue is not None
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.digest.update(chunk)
                    self._write(chunk)
                except BaseException as err:  # raised in the caller's thread (put, close)
                    self._error = err

    def close(self) -> str:
        """Every chunk hashed and written: the SHA-256 (hex)."""
        self._stop()
        if self._error is not None:
            raise self._error
        return self.digest.hexdigest()

    def _stop(self) -> None:
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def __enter__(self) -> DigestWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is not None:
            self._error = self._error or RuntimeError("the copy was given up")
        self._stop()

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
