"""Where the gateway keeps files (``Layout``, ``safe_name``) and durable file operations:
write to a temp name, fsync, rename; fsync the folder.

Nothing is ever written through a symbolic link (OPERATIONS, partner isolation): a temp name
is unlinked, then created exclusively without following a link (``open_new``); a rename
replaces a link at the final name, never its target.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import queue
import re
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from gateway.config import Config
from gateway.turns import TURNS

# O_EXCL already refuses an existing link; O_NOFOLLOW says so again where it exists.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | \
    getattr(os, "O_CLOEXEC", 0)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_NAME_LIMIT = 120
_T = TypeVar("_T")


# .folders: dir_syncs_deferred's; .files: files_synced_together's; .pool: syncs_overlapped's
_deferred = threading.local()

_SYNC_THREADS = 3  # fsyncs in flight at once besides the calling thread (syncs_overlapped)


def fsync_dir(path: Path) -> None:
    """Make a rename or create inside ``path`` durable (at the end of ``dir_syncs_deferred``
    when one is open in this thread)."""
    fsync_dirs((path,))


def fsync_dirs(paths: Sequence[Path]) -> None:
    """``fsync_dir`` of each folder: noted for the end of ``dir_syncs_deferred`` when one is
    open in this thread, else fsynced now (all at once within ``syncs_overlapped``)."""
    folders: dict[Path, None] | None = getattr(_deferred, "folders", None)
    if folders is not None:
        folders.update(dict.fromkeys(paths))
        return
    together([functools.partial(_fsync_path, path) for path in paths])


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def together(syncs: Sequence[Callable[[], None]]) -> None:
    """Run independent fsyncs (each a call); return when all are done, or raise the first
    one's error once all have ended (no call is left running, no descriptor open).

    Within ``syncs_overlapped`` they are in flight at once: the first in this thread, the
    others on the block's pool. Why: each fsync here waits for its writes and a cache flush
    of the disk, and the disk serves several at once (bench/bench_poll.py); outside the
    block (admin commands, tests) one after the other, as before."""
    if not syncs:
        return
    with TURNS.released():  # a pass waits for the disk without its turn (gateway.turns)
        _together(syncs)


def _together(syncs: Sequence[Callable[[], None]]) -> None:
    pool: ThreadPoolExecutor | None = getattr(_deferred, "pool", None)
    if pool is None or len(syncs) < 2:
        for sync in syncs:
            sync()
        return
    futures: list[Future[None]] = [pool.submit(sync) for sync in syncs[1:]]
    error: BaseException | None = None
    try:
        syncs[0]()
    except BaseException as err:
        error = err
    for future in futures:
        try:
            future.result()
        except BaseException as err:
            error = error or err
    if error is not None:
        raise error


@contextlib.contextmanager
def syncs_overlapped() -> Iterator[None]:
    """Within the block (in this thread), ``together`` issues its fsyncs at once from a pool
    of ``_SYNC_THREADS`` threads, shut down (threads joined) when the block ends, whatever
    ends it. Each thread that opens one has its own (``serve`` polls partners in threads)."""
    outer = getattr(_deferred, "pool", None)
    with ThreadPoolExecutor(max_workers=_SYNC_THREADS, thread_name_prefix="fsync") as pool:
        _deferred.pool = pool
        try:
            yield
        finally:
            _deferred.pool = outer


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
    fsync_dirs(list(folders))  # into the outer block's list, when there is one


def sync_file(fh: IO[Any]) -> None:
    """Flush ``fh`` and fsync it; within ``files_synced_together`` the fsync waits for the
    block's end (the file is published only then, after it)."""
    fh.flush()
    if getattr(_deferred, "files", None) is None:
        with TURNS.released():
            os.fsync(fh.fileno())


@contextlib.contextmanager
def files_synced_together() -> Iterator[None]:
    """Within the block, each output written with ``sync_file`` then ``publish`` is only
    noted; when the block ends normally every noted temp file is fsynced (``together``), then
    renamed into place in the order noted, its folder fsynced as ``publish`` does. Each file
    is still durable before its name appears. A failure removes the temp files not renamed.

    Why: a file's outputs (stored ack, ACE file, manifest, changes report) each waited for
    their own fsync in turn; on a busy disk, issued at once they overlap (3 files and their
    folders: 4.1-6.4 ms one after the other, 2.3-3.0 ms at once, bench/README.md)."""
    if getattr(_deferred, "files", None) is not None:
        yield  # in an outer block already: its end publishes
        return
    files: list[tuple[Path, Path]] = []
    _deferred.files = files
    try:
        yield
    except BaseException:
        _deferred.files = None
        for tmp, _ in files:
            tmp.unlink(missing_ok=True)
        raise
    _deferred.files = None
    done = 0
    try:
        together([functools.partial(_fsync_path, tmp) for tmp, _ in files])
        for tmp, path in files:
            publish(tmp, path)
            done += 1
    except BaseException:
        for tmp, _ in files[done:]:
            tmp.unlink(missing_ok=True)
        raise


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
        sync_file(fh)
    publish(tmp, path)


def publish(tmp: Path, path: Path) -> None:
    """Rename a finished, fsynced temp file into place durably (at the end of
    ``files_synced_together`` when one is open in this thread: ``sync_file`` left it
    unsynced)."""
    files: list[tuple[Path, Path]] | None = getattr(_deferred, "files", None)
    if files is not None:
        files.append((tmp, path))
        return
    in_folder(lambda: os.replace(tmp, path), path.parent)
    fsync_dir(path.parent)


def durable_move(src: Path, dst: Path, *, from_temp: bool = False) -> None:
    """Atomic rename on one file system, made durable in both folders (``from_temp``: in the
    destination only; the source is a temp folder whose leftovers are removed at start, so
    a name that comes back there after a power cut does no harm)."""
    in_folder(lambda: os.replace(src, dst), dst.parent)
    fsync_dirs([dst.parent] if src.parent == dst.parent or from_temp
               else [dst.parent, src.parent])


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
            sync_file(out)
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


# From this size a copy hashes and writes in a thread of its own (``DigestWriter``); below it
# the thread's start would cost more than the overlap gives (a small file's poll).
THREADED_BYTES = 8 << 20
_AHEAD = 8  # chunks read and not yet hashed and written, at most (8 MiB of 1 MiB chunks)


class DigestWriter:
    """Hashes (SHA-256) and writes (``write``) the chunks of a copy, in order; for a copy of
    ``THREADED_BYTES`` or more, in a thread of its own while the caller reads the next chunk.

    Used for every hashed copy: a file coming in (``inbox.base.copy_with_digest``, SFTP's
    ``SftpInbox.fetch``) and an ACE file going out (its manifest's SHA-256). Why: hashlib
    and the file write let go of the GIL for a large buffer, the code that reads (paramiko's
    packets and prefetch buffers over SFTP) does not; in one thread they take turns on one
    core. SHA-256 alone was 0.35 s of a 200 MiB SFTP download's 1.3 s (py-spy of
    bench/bench_sftp.py: 1.29-1.37 s before, 1.04-1.08 s after, same run).

    ``close`` waits for the last chunk and raises what ``write`` raised (then no chunk after
    the failing one is written); leaving the block by an error stops the thread without
    waiting for the chunks still queued. Leaving it by another error (the server's, while
    reading) after a write failed raises the write's error, the first cause (the local disk,
    not the partner's server), with the other as its context. The thread has always ended
    when the block is left, even by an interrupt (Ctrl-C) while waiting for it: the caller
    closes the file it writes to right after.
    """

    def __init__(self, write: Callable[[bytes], object], size: int | None) -> None:
        self.digest = hashlib.sha256()
        self._write = write
        self._error: BaseException | None = None  # what the thread's ``write`` raised
        self._given_up = False  # the block was left by an error: nothing more is written
        self._queue: queue.Queue[bytes | None] | None = None
        self._thread: threading.Thread | None = None
        if size is None or size >= THREADED_BYTES:
            self._queue = queue.Queue(_AHEAD)

    def put(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._queue is None:
            self.digest.update(chunk)
            self._write(chunk)
            return
        if self._thread is None:
            # Started with the first chunk, inside the caller's block: an interrupt between
            # this writer's making and its block would otherwise leave a thread waiting for
            # chunks for good.
            self._thread = threading.Thread(target=self._run, name="digest", daemon=True)
            self._thread.start()
        self._queue.put(chunk)

    def _run(self) -> None:
        assert self._queue is not None
        while (chunk := self._queue.get()) is not None:
            if self._error is None and not self._given_up:
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
        thread, chunks = self._thread, self._queue
        if thread is None or chunks is None:
            return
        interrupted: BaseException | None = None
        sent = False
        while True:
            try:
                if not sent and thread.is_alive():
                    chunks.put(None)
                sent = True
                thread.join()
                break
            except BaseException as err:  # an interrupt: raised once the thread has ended
                interrupted = interrupted or err
                self._given_up = True  # what is still queued is not written
        self._thread = None
        if interrupted is not None:
            raise interrupted

    def __enter__(self) -> DigestWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 *rest: object) -> None:
        if kind is not None:
            self._given_up = True
        self._stop()
        if isinstance(value, Exception) and self._error is not None and value is not self._error:
            raise self._error
