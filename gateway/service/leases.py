"""Who works where: a worker's name in leases, the data folder's process lock (a process
alone at start cleans what a crash left), and the partner's lease kept alive while a long
file is worked on. ``gateway.service.runner`` takes them; ``admin.reprocess`` too.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.config import Config
from gateway.errors import GatewayError
from gateway.inbox.liveness import process_ended
from gateway.ledger.store import Ledger, open_ledger


def worker_name() -> str:
    """This worker's name in leases: host, process, and a nonce (a pid can be reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


_PROCESS_LOCKS: dict[str, int] = {}


@contextmanager
def sole_process(data_dir: Path) -> Iterator[bool]:
    """True inside the block when no other gateway process uses the data folder, which this
    process then holds alone for the block (its start-up clean-up: every leftover is a
    crash's). Inside or out, from its first call on, the process holds the folder's lock
    SHARED for the rest of its life, so that a process starting later never believes itself
    alone while this one works (a lock held by the first process only was taken over by a
    late one, which removed a live worker's files)."""
    key = str(data_dir.resolve())
    fd = _PROCESS_LOCKS.get(key)
    if fd is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = _PROCESS_LOCKS[key] = os.open(data_dir / "gateway.lock",
                                           os.O_RDWR | os.O_CREAT, 0o600)  # kept open
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # Another process is here. Shared at once, before any work (a failed conversion may
        # have dropped a shared lock held before): it waits only for a starting process's
        # clean-up, never for a running one.
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield False
        return
    try:
        yield True
    finally:
        fcntl.flock(fd, fcntl.LOCK_SH)


def dead_local_worker(owner: str) -> bool:
    """True when ``owner`` (host:pid:nonce) is a process of this machine that has ended."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    return pid_text.isdigit() and process_ended(host, int(pid_text))


class LeaseKeeper:
    """Renews a partner's lease from its own thread and connection while the work goes on,
    so that a long file never lets the lease lapse; ``lost`` says another worker took it."""

    def __init__(self, config: Config, partner_id: str, owner: str) -> None:
        self.config = config
        self.partner_id = partner_id
        self.owner = owner
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"lease-{partner_id}")
        self._thread.start()

    def _run(self) -> None:
        seconds = self.config.gateway.lease_seconds
        ledger: Ledger | None = None
        try:
            while not self._done.wait(max(0.5, seconds / 3)):
                # Opened when the first renewal is due, not at the start: most polls end
                # before, and on PostgreSQL the connection was then a server process started
                # for nothing (8 of a serve worker's 21 in a benchmark run of 48 files).
                ledger = ledger or open_ledger(self.config, migrate=False)
                if not ledger.renew_lease(self.partner_id, self.owner, seconds, ledger.now()):
                    self.lost.set()
                    return
        except GatewayError:
            self.lost.set()
        finally:
            if ledger is not None:
                ledger.close()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
