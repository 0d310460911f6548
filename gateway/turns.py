"""Turns at the interpreter for the decision passes of one process (on PostgreSQL).

On a PostgreSQL ledger a ``serve`` process decides the files of several partners at once,
one thread each (on SQLite the one write transaction already lets one pass run at a time).
Python runs one thread at a time anyway, and the passes handed the interpreter to each other
at every short release of it: each lxml call, file write, stat or round trip of a pass let
another thread in, and the first one then waited for it to be handed back. Measured with 48
files of 24 partners in one worker (bench/bench_workers.py, 2026-12-05): about 210,000
context switches against 10,000 on SQLite, 1.7-2.4 s of system time against 0.5, and 40 %
more CPU in the worker for the same work.

So a pass takes a turn (``held``) and keeps it while it computes, handing it on at most
every ``SLICE`` seconds when another pass waits (``share``, called between applications)
and around every wait that is not its own work: a statement to the server, an fsync, the
reading process's next batch (``released``). Turns are given in the order asked (a ticket
each), so no pass waits for more than one slice of each pass ahead of it: a large file of
one partner slows another partner's small file as little as it did (they still alternate),
only in slices of 50 ms instead of microseconds. A pass never waits for the server, a lock
of the server or the disk while it holds the turn, so a turn can never be part of a
deadlock with the server's row and table locks.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

SLICE = 0.05  # seconds a pass computes before it lets a waiting one in


class Turns:
    """A fair lock (tickets served in order) with the holder's slice and depth per thread."""

    def __init__(self, slice_seconds: float = SLICE) -> None:
        self.slice = slice_seconds
        self._changed = threading.Condition(threading.Lock())
        self._next = 0  # the next ticket to give
        self._serving = 0  # the ticket whose turn it is
        self._abandoned: set[int] = set()  # tickets whose thread stopped waiting (an error)
        # Per thread: has (it holds the turn), since (when its slice began).
        self._mine = threading.local()

    def _take(self) -> None:
        with self._changed:
            ticket = self._next
            self._next += 1
            try:
                while self._serving != ticket:
                    self._changed.wait()
            except BaseException:  # interrupted while waiting: the ticket is never used
                if self._serving == ticket:
                    self._pass_on()
                else:
                    self._abandoned.add(ticket)
                raise
        self._mine.has = True
        self._mine.since = time.monotonic()

    def _give(self) -> None:
        if not self.holding():
            return  # taken again failed (an interrupt): nothing held to give
        self._mine.has = False
        with self._changed:
            self._pass_on()

    def _pass_on(self) -> None:
        """The next ticket's turn, past those abandoned (called with ``_changed`` held)."""
        self._serving += 1
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1
        self._changed.notify_all()

    def holding(self) -> bool:
        return bool(getattr(self._mine, "has", False))

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """The block runs with this thread's turn (taken by the outermost block only)."""
        took = not self.holding()
        if took:
            self._take()
        try:
            yield
        finally:
            if took:
                self._give()

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """The block waits without the turn (when this thread holds it), and takes it again
        after, behind whoever asked meanwhile."""
        if not self.holding():
            yield
            return
        self._give()
        try:
            yield
        finally:
            self._take()

    def share(self) -> None:
        """Hand the turn on when this thread has held it for a slice and another waits."""
        if not self.holding() or time.monotonic() - self._mine.since < self.slice:
            return
        with self._changed:
            waiting = self._next - self._serving > 1
        if waiting:
            with self.released():
                pass
        else:
            self._mine.since = time.monotonic()


TURNS = Turns()  # the process's one
