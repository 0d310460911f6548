"""Intake: the ``Inbox`` interface, the local-folder inbox, and durable receipt.

An inbox lists complete files, fetches one to a local temp file, and disposes of it once the
gateway holds it durably. ``SftpInbox`` (paramiko) implements the same interface.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import BinaryIO, Protocol

from gateway import crash
from gateway.config import PartnerConfig
from gateway.errors import FatalError, TransientError
from gateway.events import EventLog
from gateway.ledger import FileRow, Ledger, utc_stamp
from gateway.liveness import process_ended, this_host
from gateway.process import Layout, safe_name
from gateway.storage import durable_move, fsync_dir

log = logging.getLogger("gateway.intake")

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

    def deliver(self, local: Path, name: str) -> None:
        """Put an acknowledgment where the partner reads it."""
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
    """Whether a listed name is a file to take (local and SFTP alike): never hidden, never
    in progress, never a name no file system can hold (a hostile server's NUL or ``/``)."""
    if name.startswith(".") or name.lower().endswith(IN_PROGRESS_SUFFIXES):
        return False
    if "\x00" in name or "/" in name:
        return False
    return any(fnmatch.fnmatch(name, p) for p in patterns)


_COPY_CHUNK = 1024 * 1024
DISK_FULL = "data disk full"


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
    digest = hashlib.sha256()
    total = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(dest, "wb") as out:
            while cap is None or total < cap:
                chunk = src_fh.read(_COPY_CHUNK if cap is None else min(_COPY_CHUNK, cap - total))
                if not chunk:
                    break
                digest.update(chunk)
                out.write(chunk)
                total += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        if limit is not None and total > limit:
            return total, digest.hexdigest()
        if expected is not None and total != expected:
            raise FileChanged(f"the file is not {expected:,} bytes as listed ({total:,} read or "
                              "more): it is still being written or was replaced; it is taken "
                              "at a later poll, with its new size")
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return total, digest.hexdigest()


def disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) is the local data disk being full."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return True
        cause = cause.__cause__
    return False


def failure_reason(err: BaseException) -> str:
    """A poll's failure in words: a full local disk is named as such (issue 10, item 4)."""
    return f"{DISK_FULL}: {err}" if disk_full(err) else str(err)


class LocalInbox:
    """A folder on this machine (the sample partner, or a share mounted by a broker)."""

    def __init__(self, partner: PartnerConfig) -> None:
        self.partner = partner
        self.partner_id = partner.id
        self.root = partner.inbox
        self._on_disk: dict[str, str] = {}  # text name -> name on disk, where they differ
        self._fetched: dict[str, tuple[int, int]] = {}  # name -> (device, inode) at fetch

    def list(self) -> list[RemoteFile]:
        if not self.root.is_dir():
            return []
        now = time.time()
        found = []
        with os.scandir(self.root) as entries:
            for entry in entries:
                # lstat: a symlink is never followed out of the inbox.
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode) or not wanted(entry.name, self.partner.patterns):
                    continue
                if now - st.st_mtime < self.partner.effective_min_age:
                    continue
                name = text_name(entry.name)
                if name != entry.name:
                    self._on_disk[name] = entry.name
                found.append(RemoteFile(name, st.st_size, st.st_mtime))
        found.sort(key=lambda f: (f.mtime, f.name))
        return found

    def _disk_name(self, name: str) -> str:
        """The name on disk of a file listed as ``name`` (they differ for non-UTF-8 names)."""
        if name not in self._on_disk and "\\x" in name and self.root.is_dir():
            for entry in os.listdir(self.root):  # after a restart: list() not called yet
                if text_name(entry) == name:
                    self._on_disk[name] = entry
        return self._on_disk.get(name, name)

    def fetch(self, remote: RemoteFile, dest: Path, limit: int | None = None,
              ) -> tuple[int, str]:
        # O_NONBLOCK: a FIFO swapped in after the listing must not hang the poll (an open for
        # reading blocks until a writer comes); O_NOFOLLOW: nor a link be followed out.
        try:
            fd = os.open(self.root / self._disk_name(remote.name),
                         os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOENT):  # swapped for a link, or gone
                raise NotTaken(f"{remote.name} was replaced or removed after the listing "
                               f"({err.strerror})") from None
            raise
        with os.fdopen(fd, "rb") as src:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                raise NotTaken(f"{remote.name} was no longer a regular file when it was opened")
            os.set_blocking(fd, True)
            self._fetched[remote.name] = (opened.st_dev, opened.st_ino)
            try:
                return copy_with_digest(src, dest, remote.size, limit)
            except FileChanged as err:
                raise FileChanged(f"partner {self.partner_id}: {remote.name}: {err}") from None

    def dispose(self, taken: FileRow) -> str | None:
        remote_name = self._disk_name(taken.remote_name)
        src = self.root / remote_name
        if self.partner.disposition == "keep":
            return None
        try:
            now = src.lstat()
        except FileNotFoundError:
            return None  # disposed of already (a rerun after a crash)
        # The inode is known when the file was fetched by this process (the usual case); after
        # a restart, size and mtime as taken.
        inode = self._fetched.get(taken.remote_name, (now.st_dev, now.st_ino))
        if not stat.S_ISREG(now.st_mode) or (now.st_size, now.st_mtime) != (
                taken.size, taken.mtime) or (now.st_dev, now.st_ino) != inode:
            return (f"{taken.remote_name} in the inbox is not the file that was taken (another "
                    "file renamed over it); it stays for the next poll")
        if self.partner.disposition == "delete":
            src.unlink()
            fsync_dir(self.root)
            return None
        self._move_to_processed(remote_name, taken.file_id)
        return None

    def _move_to_processed(self, name: str, file_id: str) -> None:
        """Rename the taken file into the processed folder, never through a link: the folder
        is opened component by component with O_NOFOLLOW and the rename is made relative to
        the two folder handles, so a partner who makes ``processed`` (or a folder above it
        inside its inbox) a link to another partner's inbox gets an error, not a move there.
        A name already in the processed folder: this copy gets its file id."""
        root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            folder_fd = _real_folder(root_fd, self.root, self.partner.effective_processed_dir,
                                     self.partner_id)
            try:
                target = name
                try:
                    os.stat(target, dir_fd=folder_fd, follow_symlinks=False)
                    target = f"{name}.{file_id}"
                except FileNotFoundError:
                    pass
                os.rename(name, target, src_dir_fd=root_fd, dst_dir_fd=folder_fd)
                os.fsync(folder_fd)
                os.fsync(root_fd)
            finally:
                os.close(folder_fd)
        finally:
            os.close(root_fd)

    def deliver(self, local: Path, name: str) -> None:
        # The outbox folder is where a local partner reads its acknowledgments.
        return None

    def close(self) -> None:
        return None


def _real_folder(root_fd: int, root: Path, folder: Path, partner_id: str) -> int:
    """A handle on ``folder``, created if missing. Inside the partner's inbox (which the
    partner writes) every component is opened with O_NOFOLLOW: a link there is refused. A
    folder outside it is the admin's, opened as configured."""
    flags = os.O_RDONLY | os.O_DIRECTORY
    try:
        parts = folder.relative_to(root).parts
    except ValueError:
        folder.mkdir(parents=True, exist_ok=True)
        return os.open(folder, flags)
    fd = os.dup(root_fd)
    for part in parts:
        try:
            next_fd = os.open(part, flags | os.O_NOFOLLOW, dir_fd=fd)
        except FileNotFoundError:
            os.mkdir(part, 0o750, dir_fd=fd)
            next_fd = os.open(part, flags | os.O_NOFOLLOW, dir_fd=fd)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                raise FatalError(
                    f"partner {partner_id}: its processed folder {folder} is a symbolic link "
                    "or not a folder; the gateway never moves a file through a link: make it "
                    "a real folder (or set processed_dir)") from None
            raise
        os.close(fd)
        fd = next_fd
    return fd


def open_inbox(partner: PartnerConfig, ledger: Ledger | None = None) -> Inbox:
    """The partner's inbox: a local folder, or its SFTP server (connected on first use)."""
    if partner.kind == "local":
        return LocalInbox(partner)
    if partner.kind == "sftp":
        from gateway.sftp import SftpInbox

        return SftpInbox(partner, ledger)
    raise FatalError(f"Partner {partner.id}: unknown inbox kind {partner.kind!r}.")


def work_temp(layout: Layout, label: str) -> Path:
    """A fetch's temp file in work/tmp, named after the process that owns it
    (``<pid>@<host>@<label>.part``), so that a running worker can tell a dead one's leftover
    from a live one's file in progress (``clean_leftovers``)."""
    return layout.work_tmp / f"{os.getpid()}@{this_host()}@{label}.part"


def _owner_ended(temp: Path) -> bool:
    """True when ``temp`` is a ``work_temp`` of a process of this machine that has ended."""
    pid, _, rest = temp.name.partition("@")
    host = rest.partition("@")[0]
    return temp.suffix == ".part" and pid.isdigit() and process_ended(host, int(pid))


def receive(inbox: Inbox, remote: RemoteFile, ledger: Ledger, layout: Layout,
            events: EventLog, today: date, limit: int | None = None) -> str:
    """Copy one file in durably and commit its receipt; return its file id.

    Fetch to work/tmp, fsync, check size and hash, rename into work/received, then commit.
    A crash before the commit leaves a file the ledger does not know: ``recover`` deletes it
    and the partner's file, still in place, is taken again. The file id is drawn inside the
    transaction that records the receipt, so such a crash uses up no id and the rerun gives
    the file (and its ACE files and acknowledgment) the same id as a run without the crash.
    """
    tmp = work_temp(layout, f"{inbox.partner_id}-{safe_name(remote.name)}")
    try:
        size, sha256 = inbox.fetch(remote, tmp, limit)
    except BaseException:
        tmp.unlink(missing_ok=True)  # whatever failed, no partial copy stays in work/tmp
        raise
    crash.point("after_fetch")
    if limit is not None and size > limit:
        size = remote.size  # only limit + 1 bytes were copied (F003): keep the listed size

    def announce(file_id: str) -> None:
        events.emit(ledger, "file.received", partner=inbox.partner_id, file_id=file_id,
                    name=remote.name, size=size, sha256=sha256)

    file_id = record_receipt(ledger, layout, tmp, today, {
        "partner": inbox.partner_id, "remote_name": remote.name, "size": size,
        "mtime": remote.mtime, "sha256": sha256}, announce)
    crash.point("after_receipt")
    return file_id


def record_receipt(ledger: Ledger, layout: Layout, tmp: Path, today: date,
                   row: dict[str, object], announce: Callable[[str], None]) -> str:
    """Move a fetched, fsynced temp file into work/received and record it, in one ledger
    transaction (file id drawn there); ``announce(file_id)`` records the event inside it.

    If the transaction fails nothing is left under the id (it will be drawn again), and the
    temp file goes too.
    """
    received: Path | None = None
    try:
        with ledger.transaction():
            file_id = ledger.new_file_id(today)
            local_name = f"{file_id}__{safe_name(str(row['remote_name']))}"
            received = layout.received / local_name
            durable_move(tmp, received)
            ledger.add_file({
                "file_id": file_id, **row, "local_name": local_name,
                "received_at": utc_stamp(),
                "state": "RECEIVED",
            })
            announce(file_id)
    except BaseException:
        tmp.unlink(missing_ok=True)
        if received is not None:
            received.unlink(missing_ok=True)
        raise
    return file_id


def clean_work(ledger: Ledger, layout: Layout, stale_after: float = 0.0) -> list[str]:
    """Remove what a crash left before a receipt commit; return the names removed.

    ``stale_after`` seconds: with several workers on shared folders, only what is older than
    any live worker's step can be a crash's leftover (0: this process is the only one).
    """
    removed = []
    cutoff = time.time() - stale_after

    def stale(path: Path) -> bool:
        try:
            return path.lstat().st_mtime <= cutoff
        except FileNotFoundError:
            return False

    if layout.work_tmp.is_dir():
        for leftover in layout.work_tmp.iterdir():
            if not stale(leftover):
                continue
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover)
            else:
                leftover.unlink(missing_ok=True)
            removed.append(leftover.name)
    for path in _unrecorded(ledger, layout):
        if stale(path):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    # failed/: a kill while writing a rejected file's <name>.error.txt leaves its temp there.
    # A local partner can write its own outbox folder: only our kind of leftover (a file or
    # a link) is removed, and nothing there can fail the start of the gateway.
    for folder in (layout.outbox_dir, layout.data_dir / "acks", layout.data_dir / "failed"):
        if folder.is_dir():
            for pattern in (".*.tmp", ".*.body", ".*.spool"):
                for leftover in folder.rglob(pattern):
                    _remove_leftover(leftover, stale)
    return removed


def _remove_leftover(path: Path, stale: Callable[[Path], bool]) -> None:
    try:
        if stat.S_ISDIR(path.lstat().st_mode) or not stale(path):
            return
        path.unlink(missing_ok=True)
    except OSError as err:
        log.warning("leftover %s not removed: %s", path, err)


def clean_leftovers(ledger: Ledger, layout: Layout) -> list[str]:
    """While the service runs, remove what a killed worker left before its receipt commit;
    return the names removed. Safe beside live workers on the same folders:

    - work/tmp: only temp files of a process of this machine that has ended (``work_temp``);
    - work/received: only files no ledger row names, checked again while no receipt can be in
      flight (``Ledger.receipts_paused``: a receipt moves its file in and records it in one
      transaction, so a file without a row then is a dead transaction's).

    Anything else (another machine's temp files, older temp names) waits for ``clean_work``
    at a start.
    """
    removed = []
    if layout.work_tmp.is_dir():
        for temp in layout.work_tmp.iterdir():
            if _owner_ended(temp):
                temp.unlink(missing_ok=True)
                removed.append(temp.name)
    if not _unrecorded(ledger, layout):
        return removed  # the usual case: no lock taken
    try:
        with ledger.receipts_paused():
            for path in _unrecorded(ledger, layout):
                path.unlink(missing_ok=True)
                removed.append(path.name)
    except TransientError:
        pass  # receipts kept the lock: the next poll looks again
    return removed


def _unrecorded(ledger: Ledger, layout: Layout) -> list[Path]:
    """Files in work/received that no ledger row names."""
    if not layout.received.is_dir():
        return []
    found = []
    for path in layout.received.iterdir():
        row = ledger.file(path.name.split("__", 1)[0])
        if row is None or row.local_name != path.name:
            found.append(path)
    return found
