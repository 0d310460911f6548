"""Turns at the interpreter for the decision passes of one process (on PostgreSQL).

On a PostgreSQL ledger a ``serve`` process decides the files of several partners at once,
one thread each (on SQLite the one write transaction already lets one pass run at a time).
Python runs one thread at a time anyway, and the passes handed the interpreter to each other
at every short release of it: each lxml call, file write, stat or round trip of a pass let
another thread in, and the first one then waited for it to be handed back. Measured with 48
files of 24 partners in one worker (bench/bench_workers.py, 2026-12-05): about 210,000
context switches against 10,000 on SQLite, 1.7-2.4 s of system time against 0.5, and 40 %
more CPU in the worker for the same work.

So a pass takes a turn (``held``) and keeps it while it computes, and gives it up around
every wait that is not its own work: a statement to the server, an fsync, the reading
process's next batch, a web hook (``released``). Who gets it next:

- a pass coming back from a wait first (in the order they came back): a small file's pass
  is mostly round trips, and each must not cost it a slice of every pass that computes (a
  first version served it in the order asked: 49 round trips behind 7 large files took 18 s,
  against 2.6 s with the interpreter's own switching, a review measured). It gets the turn
  at the holder's next ``share`` (between two applications), whatever the holder's slice;
- else the pass that asked first: a pass that computed for ``SLICE`` seconds while another
  waits goes behind it (``share``).

A pass back from a wait that then computes for a whole slice goes behind the others like
any, so passes that wait cannot keep one that computes from its turns either. A pass never
waits for the server, a lock of the server, the disk or the network while it holds the
turn, so a turn can never be part of a deadlock with the server's row and table locks.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator

# Seconds a pass computes before a pass that asked gets the turn. Only passes that compute
# wait for slices (one back from a wait gets the turn at the holder's next ``share``). 5 ms,
# the interpreter's own switch interval, was tried: one PostgreSQL worker used 5.8-6.5 s of
# CPU in bench/bench_workers.py (24 x 2 files) against 5.0-5.9 s with 50 ms (runs 20 minutes
# apart), for nothing a pass that waits would gain.
SLICE = 0.05


class _Waiter:
    """One thread waiting for the turn. Signalled by releasing a lock made taken: a C call,
    which an interrupt (a signal handler raising) cannot stop half-way, where
    ``threading.Event.set`` is Python code that it can."""

    __slots__ = ("given", "signal")

    def __init__(self) -> None:
        self.signal = threading.Lock()
        self.signal.acquire()
        self.given = False  # the turn was handed to this waiter

    def wait(self) -> None:
        self.signal.acquire()

    def wake(self) -> None:
        self.given = True
        self.signal.release()


class _Mine(threading.local):
    """A thread's own: whether it holds the turn, and when its slice began. Set for every
    thread on its first look (``threading.local`` runs ``__init__`` per thread), so that
    ``holding`` reads an attribute: ``getattr(local, "has", False)`` raised and swallowed an
    AttributeError in every thread that never held a turn (0.5 us against 0.07 us a call,
    measured; one call an application, on SQLite too)."""

    def __init__(self) -> None:
        self.has = False
        self.since = 0.0


class Turns:
    """Who holds the turn, and who waits for it: passes back from a wait first, then the
    others in the order they asked (see the module)."""

    def __init__(self, slice_seconds: float = SLICE) -> None:
        self.slice = slice_seconds
        self._lock = threading.Lock()  # guards the fields below; never held while waiting
        self._held = False
        self._back: deque[_Waiter] = deque()  # back from a wait: served first
        self._asking: deque[_Waiter] = deque()  # a pass's start, or after its slice
        self._mine = _Mine()

    def _take(self, back: bool = False, front: bool = False) -> None:
        # Interrupts (Ctrl-C in the main thread of ``run --once``; ``serve`` handles signals
        # with flags): wherever one lands here, the turn is held by the thread that knows it
        # or handed on, and no waiter stays queued that no thread waits on. (Inside
        # threading.Event itself, Python code, this cannot be promised.)
        waiter = _Waiter()
        try:
            with self._lock:
                if not self._held and not self._back and not self._asking:
                    # Known to this thread first: held by no one that knows it, the turn
                    # would be kept from everyone for good.
                    self._mine.has = True
                    self._held = True
                    self._mine.since = time.monotonic()
                    return
                if back:
                    self._back.append(waiter)
                elif front:
                    self._asking.appendleft(waiter)
                else:
                    self._asking.append(waiter)
            waiter.wait()
            self._mine.has = True  # in the block: an interrupt right after the wait is seen
            self._mine.since = time.monotonic()
        except BaseException:  # interrupted: never left holding the turn, nor queued for it
            with self._lock:
                if waiter.given:
                    self._mine.has = False
                    self._hand_on()
                elif waiter in self._back:
                    self._back.remove(waiter)
                elif waiter in self._asking:
                    self._asking.remove(waiter)
                elif self._mine.has:  # it took the free turn: given back
                    self._mine.has = False
                    self._hand_on()
            raise

    def _give(self) -> None:
        interrupted: BaseException | None = None
        while True:
            try:
                with self._lock:
                    if self._mine.has:  # else taking it again failed: nothing to give
                        self._mine.has = False
                        self._hand_on()
                break
            except BaseException as err:  # an interrupt: the turn is given all the same
                interrupted = interrupted or err
        if interrupted is not None:
            raise interrupted

    def _hand_on(self) -> None:
        """The turn to the next waiter, or free (called with ``_lock`` held). Idempotent: a
        waiter woken stays first in its queue until the ``popleft`` after its ``wake``
        (an interrupt between the two leaves it there), and is skipped as given."""
        for waiting in (self._back, self._asking):
            while waiting and waiting[0].given:
                waiting.popleft()
        queue = self._back or self._asking
        if not queue:
            self._held = False
            return
        queue[0].wake()
        queue.popleft()

    def holding(self) -> bool:
        return self._mine.has

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """The block runs with this thread's turn (taken by the outermost block only)."""
        took = not self.holding()
        try:  # taken in the block: an interrupt right after the take still gives it back
            if took:
                self._take()
            yield
        finally:
            if took:
                self._give()

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """The block waits without the turn (when this thread holds it), and takes it again
        after, before the passes that compute (see the module)."""
        if not self.holding():
            yield
            return
        self._give()
        try:
            yield
        finally:
            self._take(back=True)

    def share(self) -> None:
        """Hand the turn on to a pass back from a wait, or, after a slice, to one that asked:
        called by a pass between two applications."""
        if not self.holding():
            return
        with self._lock:
            back, asking = bool(self._back), bool(self._asking)
        if not back and not asking:
            self._mine.since = time.monotonic()
            return
        spent = time.monotonic() - self._mine.since >= self.slice
        if back or spent:
            self._give()
            # Preempted inside its slice: first of those that asked, not behind them all.
            self._take(front=not spent)


TURNS = Turns()  # the process's one
