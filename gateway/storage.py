"""Where the gateway keeps files (``Layout``, ``safe_name``) and durable file operations:
write to a temp name, fsync, rename; fsync the folder.

Nothing is ever written through a symbolic link (OPERATIONS, partner isolation): a temp name
is unlinked, then created exclusively without following a link (``open_new``); a rename
replaces a link at the final name, never its target.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from gateway.config import Config

# O_EXCL already refuses an existing link; O_NOFOLLOW says so again where it exists.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | \
    getattr(os, "O_CLOEXEC", 0)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_NAME_LIMIT = 120
_T = TypeVar("_T")


_deferred = threading.local()  # .folders: the folders whose fsync waits (dir_syncs_deferred)


def fsync_dir(path: Path) -> None:
    """Make a rename or create inside ``path`` durable (at the end of ``dir_syncs_deferred``
    when one is open in this thread)."""
    folders: dict[Path, None] | None = getattr(_deferred, "folders", None)
    if folders is not None:
        folders[path] = None
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def dir_syncs_deferred() -> Iterator[None]:
    """Within the block, ``fsync_dir`` only notes its folder; each folder noted is fsynced
    once when the block ends normally, before the caller goes on (an exception skips them:
    whatever failed is taken back, not made durable).

    Why: a file's outputs (its stored ack, its ACE file and manifest, its changes report) are
    renamed into place one after the other, and each folder fsync waits for a journal commit
    of its own; fsynced together at the end, the first commits every rename and the rest find
    nothing left to do. With 1,000 small files on a busy disk that is 2 journal commits fewer
    per file (bench/bench_poll.py). Every output is still durable before the caller's next
    step (the partner's ack link, then the ledger commit), as before.
    """
    outer = getattr(_deferred, "folders", None)
    folders: dict[Path, None] = {}
    _deferred.folders = folders
    try:
        yield
    finally:
        _deferred.folders = outer
    for folder in folders:
        fsync_dir(folder)  # into the outer block's list, when there is one


def in_folder(action: Callable[[], _T], folder: Path) -> _T:
    """``action()`` (a create or rename in ``folder``), made again once ``folder`` is made
    when it said a path was missing.

    Why not make the folder first: it almost always exists, and ``mkdir(exist_ok=True)`` is a
    mkdir and a stat each time, 7 of them a file in a poll of small files (bench/bench_poll.py).
    An action that fails for another missing path fails again, with its own error."""
    try:
        return action()
    except FileNotFoundError:
        folder.mkdir(parents=True, exist_ok=True)
    return action()


def temp_name(path: Path) -> Path:
    # Dot-prefixed and pid-tagged: never mistaken for a finished output, never shared.
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def open_new(path: Path, mode: str = "wb", **kwargs: Any) -> IO[Any]:
    """Open a temp name for writing as a new file: whatever is there (a leftover, or a link
    someone planted at the predictable name) is removed first (unlink never follows a link),
    and a link planted again in between makes the open fail rather than write through it."""
    path.unlink(missing_ok=True)
    fd = os.open(path, _NEW_FILE, 0o666)
    try:
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def atomic_write(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    tmp = temp_name(path)
    with in_folder(lambda: open_new(tmp), path.parent) as fh:
        if isinstance(data, bytes | bytearray):
            fh.write(data)
        else:
            for chunk in data:
                fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def publish(tmp: Path, path: Path) -> None:
    """Rename a finished, fsynced temp file into place durably."""
    in_folder(lambda: os.replace(tmp, path), path.parent)
    fsync_dir(path.parent)


def durable_move(src: Path, dst: Path, *, from_temp: bool = False) -> None:
    """Atomic rename on one file system, made durable in both folders (``from_temp``: in the
    destination only; the source is a temp folder whose leftovers are removed at start, so
    a name that comes back there after a power cut does no harm)."""
    in_folder(lambda: os.replace(src, dst), dst.parent)
    fsync_dir(dst.parent)
    if src.parent != dst.parent and not from_temp:
        fsync_dir(src.parent)


class SpooledOutput:
    """An output whose head is known only at the end (counts, status): the body is spooled as
    it streams (``body.write``), and ``publish`` writes head + body + tail to a temp name,
    fsyncs it and renames it into place.

    The body stays in memory up to ``_SPOOL_IN_MEMORY`` bytes and goes to a dot-named temp
    file beyond: a small file's ack never creates, reopens and removes a spool file (three
    file system operations per file saved, measured with bench/bench_poll.py), and a large
    one's memory stays flat.
    """

    def __init__(self, path: Path, newline: str | None = "\n") -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.body = _SpoolBody(path.with_name(f".{path.name}.{os.getpid()}.body"), newline)

    def publish(self, head: str, tail: str = "") -> None:
        self.body.close()
        tmp = temp_name(self.path)
        with open_new(tmp) as out:
            out.write(head.encode("utf-8"))
            self.body.copy_to(out)
            out.write(tail.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        publish(tmp, self.path)
        self.body.remove()

    def discard(self) -> None:
        self.body.close()
        self.body.remove()


_SPOOL_IN_MEMORY = 1 << 20  # bytes of a spooled body kept in memory


class _SpoolBody:
    """The text stream ``SpooledOutput.body``: UTF-8 bytes in memory, in a file past the limit;
    newlines written as a text file opened with ``newline`` would write them."""

    def __init__(self, spool: Path, newline: str | None) -> None:
        self.spool = spool
        ending = os.linesep if newline is None else newline
        self._ending = ending if ending not in ("", "\n") else None  # None: as written
        self._chunks: list[bytes] = []
        self._size = 0
        self._file: IO[bytes] | None = None

    def write(self, text: str) -> int:
        data = (text if self._ending is None else text.replace("\n", self._ending)
                ).encode("utf-8")  # an unencodable text fails here, as a file write would
        if self._file is not None:
            self._file.write(data)
            return len(text)
        self._chunks.append(data)
        self._size += len(data)
        if self._size > _SPOOL_IN_MEMORY:
            self._file = open_new(self.spool, "wb", buffering=1 << 20)
            self._file.writelines(self._chunks)
            self._chunks.clear()
        return len(text)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def copy_to(self, out: IO[bytes]) -> None:
        if self._file is None:
            out.write(b"".join(self._chunks))
            return
        with open(self.spool, "rb") as body:
            shutil.copyfileobj(body, out, 1024 * 1024)

    def remove(self) -> None:
        self._chunks.clear()
        if self._file is not None:
            self.spool.unlink(missing_ok=True)


def safe_name(remote_name: str) -> str:
    """A local file name derived from a partner's name: never a path, never hidden, and never
    the same for two names.

    A name that cleaning changed (``a b.xml``, ``a:b.xml``, ``x\\evil.xml``) gets ``~`` and a
    hash of the exact name, ``a_b.xml~1c3f09e2``: cleaning never yields a ``~``, so it can never
    meet a name that was already clean (``a_b.xml``). A long name keeps its start and end (the
    extension) around that hash.
    """
    base = remote_name.replace("\\", "/").rsplit("/", 1)[-1]
    clean = _UNSAFE_NAME.sub("_", base).lstrip(".") or "unnamed"
    if clean == remote_name and len(clean) <= _NAME_LIMIT:
        return clean
    digest = hashlib.sha256(remote_name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    if len(clean) + 9 <= _NAME_LIMIT:
        return f"{clean}~{digest}"
    return f"{clean[:100]}~{digest}~{clean[-10:]}"


@dataclass(frozen=True)
class Layout:
    """Where the gateway keeps files (all under one file system, so renames are atomic)."""

    data_dir: Path
    outbox_dir: Path

    @property
    def work_tmp(self) -> Path:
        return self.data_dir / "work" / "tmp"

    @property
    def received(self) -> Path:
        return self.data_dir / "work" / "received"

    def archive(self, partner: str, received_at: str) -> Path:
        return self.data_dir / "archive" / partner / received_at[:7]

    def failed(self, partner: str) -> Path:
        return self.data_dir / "failed" / partner

    def ack_store(self, partner: str) -> Path:
        return self.data_dir / "acks" / partner

    def partner_outbox(self, partner: str) -> Path:
        return self.outbox_dir / partner

    @property
    def ace_outbox(self) -> Path:
        return self.outbox_dir / "ace"

    @property
    def changes_outbox(self) -> Path:
        """The changes reports (guide 5.1b): CHG-<file id>.csv and their manifests."""
        return self.outbox_dir / "changes"

    @classmethod
    def of(cls, config: Config) -> Layout:
        return cls(config.gateway.data_dir, config.gateway.outbox_dir)
