"""Small files read ahead (issue 15: small files over SFTP).

paramiko's public calls wait for each answer before the next request, so a small file's
download is about eight round trips one after another (open, fstat, lstat, read, fstat,
lstat, close, stat), and on loopback the time goes into those waits, not into bytes: the
gateway listed and fetched 1,000 small files at 0.44x the speed of OpenSSH's ``get *``, which
keeps requests in flight. With ``gateway.inbox.sftp_requests`` (several requests in flight,
answers collected by number), ``ReadAhead`` opens and reads the next small files of the
listing while the poll processes the current one, and stores ahead (checks, writes and
fsyncs in writer threads) those whose answers are in, so that a small file's ``fetch`` waits
only for its last check, one round trip, the one change check made after its fetch began.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
from paramiko.sftp import SFTPError

from gateway.inbox.base import NotTaken
from gateway.inbox.sftp_requests import READ_SIZE, Requests

# Files whose read (their size + 1 byte, to see growth) fits in this are read with all their
# reads in flight at once; larger ones go through paramiko's prefetch, which already keeps
# reads in flight.
SMALL = 8 * READ_SIZE
# Small files of the listing opened and read ahead of their fetch: at most DEPTH * SMALL
# bytes (2 MiB) held in memory, and never more than the listing's next files.
DEPTH = 8
# Threads writing and fsyncing the small files stored ahead: fsyncs in flight together
# (the file system commits them together) while the poll goes on.
WRITERS = 4
# The small files of a listing, in the order they are taken: (name, path, bytes to read).
Planned = list[tuple[str, str, int]]
# The caller's check that an open handle and a name are the listed file (NotTaken if not):
# (path, name, the handle's stat, the name's lstat).
Check = Callable[[str, str, paramiko.SFTPAttributes, paramiko.SFTPAttributes], None]


@dataclass
class Opening:
    """One small file's download in flight: its open, then its first stats and reads."""

    path: str
    length: int  # bytes asked for: the listed size + 1, so that growth shows
    open_num: int
    handle: bytes | None = None
    stats: tuple[int, int] = (0, 0)
    reads: list[int] = field(default_factory=list)
    failure: BaseException | None = None  # the open refused: raised at the file's fetch
    # Stored ahead (``ReadAhead.store``): its bytes, checked, being written to ``temp`` and
    # fsynced in a writer thread; the future's result is those bytes.
    temp: Path | None = None
    stored: Future[bytes | bytearray] | None = None

    def answered(self, requests: Requests) -> bool:
        """Whether its stats and reads are all answered: taking them waits for nothing."""
        return self.handle is not None and all(
            requests.answered(num) for num in (*self.stats, *self.reads))


class ReadAhead:
    """The small files of a listing, opened and read ahead of their fetch, DEPTH at a time.

    Nothing is decided ahead: a file is stored ahead (``store_ahead``) only once its handle
    and its name are found to be the listed file, with the same stats its fetch would check,
    and ``fetch`` stats both again, at its turn, after the local copy is fsynced, so a file
    that changed after it was read ahead is caught there as a file that changed during its
    download."""

    def __init__(self, requests: Requests) -> None:
        self.requests = requests
        self.queue: Planned = []
        self.pending: dict[str, Opening] = {}
        self._writers: ThreadPoolExecutor | None = None

    def plan(self, files: Planned) -> None:
        """A new listing: what was read ahead for the last one is dropped."""
        self.drop()
        self.queue = [f for f in files if f[2] <= SMALL]

    def take(self, name: str, path: str, length: int) -> Opening:
        """The download of ``name``, started now if it was not ahead; the next files of
        the listing are started too."""
        at = next((i for i, f in enumerate(self.queue) if f[0] == name), -1)
        ahead = self.queue[at + 1:] if at >= 0 else []
        if at >= 0:
            # A file passed over (the poll skipped it) is never read ahead again, and what
            # was read ahead for it is closed now, not held until the connection closes.
            # Before ``name`` leaves ``pending``: a close that fails leaves it there, where
            # the connection's close removes its copy stored ahead.
            for passed, _, _ in self.queue[:at]:
                if (skipped := self.pending.pop(passed, None)) is not None:
                    self._close(skipped)
            del self.queue[:at + 1]
        opening = self.pending.pop(name, None)
        if opening is not None and (opening.path, opening.length) != (path, length):
            self._close(opening)
            opening = None
        if opening is None:
            opening = Opening(path, length, self.requests.open(path))
        for later, later_path, later_length in ahead[:DEPTH]:
            if later not in self.pending:
                self.pending[later] = Opening(later_path, later_length,
                                              self.requests.open(later_path))
        return opening

    def advance(self) -> None:
        """Send the stats and reads of every pending file whose open has been answered."""
        for opening in self.pending.values():
            if opening.handle is None and opening.failure is None and \
                    self.requests.answered(opening.open_num):
                # A refused open is that file's: kept in opening.failure and raised at its
                # own fetch, never on the file being fetched now.
                with contextlib.suppress(OSError, SFTPError):
                    self.start(opening)

    def start(self, opening: Opening) -> bytes:
        """The file's handle, with its first stats and its reads in flight."""
        if opening.failure is not None:
            raise opening.failure
        if opening.handle is None:
            try:
                opening.handle = self.requests.handle(opening.open_num)
            except (OSError, SFTPError) as err:
                opening.failure = err
                raise
            opening.stats = self.requests.stats(opening.handle, opening.path)
            opening.reads = self.requests.reads(opening.handle, opening.length)
        return opening.handle

    def checked_data(self, name: str, opening: Opening, got: bytearray, check: Check) -> None:
        """The bytes read for ``opening``, into ``got``, once ``check`` found its handle and
        its name to be the listed file ``name``."""
        assert opening.handle is not None
        opened = self.requests.attrs(opening.stats[0])
        check(opening.path, name, opened, self.requests.attrs(opening.stats[1]))
        self.requests.data_of(opening.handle, opening.reads, opening.length, got,
                              opened.st_size)

    def store_ahead(self, dest: Path, check: Check) -> None:
        """Check, write and fsync, in writer threads, the next small files whose answers
        are all in, while the poll processes this one: their fsyncs then overlap one
        another and the network instead of each waiting its turn at its fetch (about 1 ms
        each on this machine, 0.18 ms when four go together). The copies are siblings of
        ``dest``, named after it (``.ahead<n>`` before its suffix), so whatever cleans that
        folder's leftovers cleans them. Still durable before their fetch returns (it waits
        for them, ``stored``), and stat'ed again at their fetch. A file whose check or read
        fails is not stored: closed, its failure kept for its fetch."""
        for name, opening in list(self.pending.items()):
            if opening.stored is not None or opening.failure is not None or \
                    not opening.answered(self.requests):
                continue
            data = bytearray()
            try:
                self.checked_data(name, opening, data, check)
            except (NotTaken, OSError, SFTPError) as err:
                if isinstance(err, (TimeoutError, ConnectionError)):
                    raise  # the connection's, not that file's: the fetch in hand fails with it
                self.refuse(opening, err)
                continue
            temp = dest.with_name(f"{dest.stem}.ahead{opening.open_num}{dest.suffix}")
            self.store(opening, temp, bytes(data))

    def store(self, opening: Opening, temp: Path, data: bytes) -> None:
        """Write ``data``, the checked bytes of a pending file, to ``temp`` and fsync it in
        a writer thread, ahead of the file's fetch (``stored``). ``temp`` is created here,
        not in the writer: a copy stored ahead is on disk as soon as it is counted (its
        ``temp`` set), whoever looks; a failure to create it is the file's, raised at its
        fetch as a failed write would be."""
        if self._writers is None:
            self._writers = ThreadPoolExecutor(WRITERS, thread_name_prefix="sftp-store")
        opening.temp = temp
        try:
            local = LocalFile(temp)
        except LocalDiskError as err:
            failed: Future[bytes | bytearray] = Future()
            failed.set_exception(err)
            opening.stored = failed
            return
        opening.stored = self._writers.submit(fill, local, data)

    def refuse(self, opening: Opening, err: BaseException) -> None:
        """A pending file found not to be the listed one, or unreadable, before its fetch:
        closed now, ``err`` raised at its fetch (``start``)."""
        self.requests.forget([*opening.stats, *opening.reads])
        if opening.handle is not None:
            self.requests.close(opening.handle)
        opening.handle, opening.failure = None, err

    @staticmethod
    def written(opening: Opening) -> bytes | bytearray:
        """The bytes of a file stored ahead, once its copy is written and fsynced;
        LocalDiskError if that failed (its copy removed then)."""
        assert opening.stored is not None and opening.temp is not None
        try:
            return opening.stored.result()
        except BaseException:
            opening.temp.unlink(missing_ok=True)
            opening.stored = None
            raise

    @staticmethod
    def place(opening: Opening, data: bytes | bytearray, dest: Path) -> None:
        """The copy of a file stored ahead (``written``) renamed to ``dest``, or written
        there again if ``dest`` is in another folder (a rename is atomic in one only);
        LocalDiskError if that fails. No copy is left behind either way; nothing is
        removed after a rename that took it (an unlink of a missing name costs as much as
        the rename: 0.1 s per 1,000 files, cProfile of the list + fetch)."""
        assert opening.stored is not None and opening.temp is not None
        temp, opening.stored = opening.temp, None
        try:
            # Folder names compared as strings: two Path parents and their comparison cost
            # 12 us a file (cProfile of bench_sftp.py's list + fetch), these 1 us.
            if os.path.dirname(dest) != os.path.dirname(temp):
                write_durably(dest, data)
                temp.unlink()
            else:
                os.replace(temp, dest)
        except OSError as err:
            temp.unlink(missing_ok=True)
            raise LocalDiskError(err, len(data)) from err
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def forget_stored(self) -> None:
        """Remove the copies stored ahead and not fetched (the connection closes)."""
        for opening in self.pending.values():
            self.unstore(opening)
        if self._writers is not None:
            self._writers.shutdown()
            self._writers = None

    @staticmethod
    def unstore(opening: Opening) -> None:
        """Remove ``opening``'s copy stored ahead, if it has one (once its writer is done)."""
        if opening.stored is not None and opening.temp is not None:
            with contextlib.suppress(LocalDiskError):
                opening.stored.result()  # its writer done with the file
            opening.temp.unlink(missing_ok=True)
            opening.stored = None

    def fetch(self, name: str, path: str, length: int, dest: Path, got: bytearray,
              check: Check) -> paramiko.SFTPAttributes:
        """The small file ``name`` at ``path`` (``length`` bytes asked) into ``got`` and
        ``dest``, fsynced: opened and read ahead while the listing's earlier files were
        processed, or now, its stats and reads in flight together; maybe even stored ahead
        (``store_ahead``). The checks are ``SftpInbox.fetch``'s, in its order: nothing is
        written before ``check`` finds the handle and the name to be the listed file, and
        both are stat'ed again once the local copy is fsynced (that last stat of the name is
        returned: the "after" of the change check). Those last stats are the one round trip
        a file stored ahead waits for: they go out as soon as its copy is fsynced, before
        its rename, the next files' checks and writes, so those run while they travel. The
        handle is then closed with the next requests (``close_later``), and the answers a
        failure left untaken are dropped (the read-ahead's memory bound)."""
        opening = self.take(name, path, length)
        requests = self.requests
        handle = self.start(opening)
        last: tuple[int, ...] = ()
        try:
            self.advance()
            if opening.stored is not None:
                data = self.written(opening)
                last = requests.first_stats(handle, path)
                requests.flush()
                self.place(opening, data, dest)
                got += data
            else:
                self.checked_data(name, opening, got, check)
                self.advance()
                write_durably(dest, got)
                last = requests.first_stats(handle, path)
                requests.flush()
            self.store_ahead(dest, check)  # while those stats are on their way
            after = requests.attrs(last[1])
            check(path, name, requests.attrs(last[0]), after)
        finally:
            # A copy stored ahead and not used (the fetch failed before it) is removed now:
            # out of ``pending``, nothing else would, and a live process's copy in work/tmp is
            # no leftover for the clean-up.
            self.unstore(opening)
            # A lost connection is the error already being raised, not this close's.
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                requests.forget([*opening.stats, *opening.reads, *last])
                requests.close_later(handle)
        return after

    def _close(self, opening: Opening) -> None:
        self.unstore(opening)
        if opening.handle is None and opening.failure is None:
            try:  # its open is still in flight: wait for the handle, to close it
                opening.handle = self.requests.handle(opening.open_num)
            except (OSError, SFTPError):
                return
        if opening.handle is not None:
            self.requests.forget([*opening.stats, *opening.reads])
            self.requests.close(opening.handle)

    def drop(self) -> None:
        """Close what was opened ahead and not fetched (the poll ended, a new listing)."""
        pending, self.pending, self.queue = self.pending, {}, []
        for opening in pending.values():
            self._close(opening)
        # The last fetch's close, held for a next request. One that cannot be sent is moot:
        # the connection is lost, and the server closes its handles with it.
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            self.requests.release()


def write_durably(path: Path, data: bytes | bytearray) -> bytes | bytearray:
    """``data`` written to ``path`` and fsynced (LocalDiskError otherwise); returns it."""
    return fill(LocalFile(path), data)


def fill(local: LocalFile, data: bytes | bytearray) -> bytes | bytearray:
    """``data`` written to the new file ``local``, fsynced and closed (LocalDiskError
    otherwise); returns it."""
    with local as out:
        out.write(data)
        out.sync()
    return data


class LocalDiskError(Exception):
    """Writing the local copy failed (disk full, file size limit, I/O error) after
    ``written`` bytes were stored."""

    def __init__(self, err: OSError, written: int = 0) -> None:
        super().__init__(str(err))
        self.err, self.written = err, written


class LocalFile:
    """The local temp file of a download, unbuffered: every local failure (a full disk, a
    file size limit) is raised as ``LocalDiskError``, never mistaken for a network one."""

    def __init__(self, path: Path) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            try:
                self.fd = os.open(path, flags, 0o666)
            except FileNotFoundError:
                # Its folder is made only when missing: a mkdir of a folder that is there
                # costs a system call and an exception for every small file (its writer
                # thread's largest Python cost after the fsync, py-spy of bench_sftp.py).
                path.parent.mkdir(parents=True, exist_ok=True)
                self.fd = os.open(path, flags, 0o666)
        except OSError as err:
            raise LocalDiskError(err) from err
        self.written = 0

    def __enter__(self) -> LocalFile:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def write(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        try:
            while view:
                done = os.write(self.fd, view)
                self.written += done
                view = view[done:]
        except OSError as err:
            raise LocalDiskError(err, self.written) from err

    def sync(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as err:
            raise LocalDiskError(err, self.written) from err
