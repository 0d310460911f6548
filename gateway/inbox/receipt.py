"""Durable receipt: a partner's file fetched to work/tmp, moved into work/received and recorded
in the ledger in one transaction; and the clean-up of what a crash left before that commit."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from gateway import crash
from gateway.errors import TransientError
from gateway.inbox.base import Inbox, RemoteFile
from gateway.inbox.liveness import process_ended, this_host
from gateway.ledger.events import EventLog
from gateway.ledger.progress import progress_dir
from gateway.ledger.store import Ledger, Receipt, utc_stamp
from gateway.storage import Layout, durable_move, safe_name

log = logging.getLogger("gateway.intake")

DISK_FULL = "data disk full"


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

    file_id = record_receipt(ledger, layout, tmp, today, Receipt(
        partner=inbox.partner_id, remote_name=remote.name, size=size, mtime=remote.mtime,
        sha256=sha256), announce)
    crash.point("after_receipt")
    return file_id


def record_receipt(ledger: Ledger, layout: Layout, tmp: Path, today: date,
                   receipt: Receipt, announce: Callable[[str], None]) -> str:
    """Move a fetched, fsynced temp file into work/received and record it, in one ledger
    transaction (file id drawn there); ``announce(file_id)`` records the event inside it.

    If the transaction fails nothing is left under the id (it will be drawn again), and the
    temp file goes too.
    """
    received: Path | None = None
    try:
        with ledger.transaction():
            file_id = ledger.new_file_id(today)
            local_name = f"{file_id}__{safe_name(receipt.remote_name)}"
            received = layout.received / local_name
            # work/tmp itself is not fsynced (one open + fsync per file saved): a crash's
            # leftover there is removed at the next start (clean_work).
            durable_move(tmp, received, from_temp=True)
            ledger.add_file(file_id, receipt, local_name=local_name, received_at=utc_stamp())
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
    # work/progress/: a killed pass's progress record, or the temp file of its last rewrite.
    records = progress_dir(layout.data_dir)
    if records.is_dir():
        for leftover in records.iterdir():
            if stale(leftover) and not leftover.is_dir():
                leftover.unlink(missing_ok=True)
                removed.append(leftover.name)
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
    paths = list(layout.received.iterdir())
    if not paths:
        return []
    recorded = ledger.local_names([path.name.split("__", 1)[0] for path in paths])
    return [path for path in paths
            if recorded.get(path.name.split("__", 1)[0]) != path.name]
