"""Turns at the interpreter for the decision passes of one process (gateway/turns.py): in
order asked, handed on after a slice when another waits, given up around every wait, and
never kept by a pass that failed. Each test waits for conditions (events, counters), with a
bound only against a hang."""

from __future__ import annotations

import dis
import itertools
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import ProjectConfig, wait_until
from lifecycle_files import application, submission

from gateway import turns as turns_module
from gateway.config import load_config
from gateway.licensing.results import AppOutcome
from gateway.service.process import RunPass
from gateway.service.scheduler import serve
from gateway.turns import TURNS, Turns
from gateway.validate.staging import StagedApplication

HANG = 30.0  # seconds: only a broken turn waits this long


def _thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_a_long_pass_hands_the_turn_to_a_waiting_one_after_its_slice() -> None:
    """A pass that never waits (a large file) lets a second one in: the second is done
    while the first still runs, the first is not stopped either."""
    turns = Turns(slice_seconds=0.01)
    short_done = threading.Event()
    long_started, long_rounds = threading.Event(), [0]

    def long_pass() -> None:
        with turns.held():
            long_started.set()
            while not short_done.is_set() and long_rounds[0] < 10_000_000:
                long_rounds[0] += 1
                turns.share()

    def short_pass() -> None:
        with turns.held():
            short_done.set()

    first = _thread(long_pass)
    assert long_started.wait(HANG)
    second = _thread(short_pass)
    assert short_done.wait(HANG), "the waiting pass never had a turn"
    first.join(HANG)
    second.join(HANG)
    assert not first.is_alive() and long_rounds[0] < 10_000_000


def test_a_pass_alone_keeps_its_turn() -> None:
    given: list[int] = []

    class Counted(Turns):
        def _give(self) -> None:
            given.append(1)
            super()._give()

    turns = Counted(slice_seconds=0.0)
    with turns.held():
        for _ in range(1000):
            turns.share()  # nobody waits: nothing given up, however long it holds
        assert turns.holding() and given == []
    assert not turns.holding() and given == [1]  # given once, at the end


def test_a_wait_without_the_turn_lets_another_pass_run() -> None:
    turns = Turns()
    waiting, other_done = threading.Event(), threading.Event()

    def waiter() -> None:
        with turns.held():
            with turns.released():
                waiting.set()
                assert other_done.wait(HANG)
            assert turns.holding()  # taken again after the wait

    first = _thread(waiter)
    assert waiting.wait(HANG)
    with turns.held():  # the main thread's pass, while the first waits
        other_done.set()
    first.join(HANG)
    assert not first.is_alive()


def test_turns_are_given_in_the_order_asked() -> None:
    turns = Turns()
    order: list[int] = []
    threads = []
    with turns.held():
        for n in range(5):
            threads.append(_thread(lambda n=n: _take_and_note(turns, order, n)))
            # The next asks only after this one is waiting: it is behind it.
            assert wait_until(lambda n=n: len(turns._asking) == n + 1, HANG)
    for thread in threads:
        thread.join(HANG)
    assert order == [0, 1, 2, 3, 4]


def _take_and_note(turns: Turns, order: list[int], n: int) -> None:
    with turns.held():
        order.append(n)


def test_nested_blocks_take_the_turn_once_and_a_release_gives_it_whole() -> None:
    turns = Turns()
    other_ran = threading.Event()
    with turns.held():
        with turns.held():
            with turns.released():
                assert not turns.holding()
                # Another pass gets the turn now, although two blocks of ours are open.
                _thread(lambda: _run_once(turns, other_ran))
                assert other_ran.wait(HANG)
            assert turns.holding()
        assert turns.holding()
    assert not turns.holding()
    with turns.held():  # free again: taken at once
        pass


def _run_once(turns: Turns, ran: threading.Event) -> None:
    with turns.held():
        ran.set()


def test_a_pass_that_fails_gives_its_turn_back() -> None:
    turns = Turns()
    with pytest.raises(RuntimeError), turns.held():
        raise RuntimeError("the file's pass failed")
    got = threading.Event()
    thread = _thread(lambda: _run_once(turns, got))
    assert got.wait(HANG)
    thread.join(HANG)


def test_released_and_share_outside_a_turn_change_nothing() -> None:
    """Code that runs both in and out of passes (a statement of the admin commands, an
    fsync of a receipt) waits as it did when no turn is held."""
    turns = Turns()
    with turns.released():
        assert not turns.holding()
    turns.share()
    assert not turns._held and not turns._asking and not turns._back


def test_a_pass_that_only_computes_lets_another_partners_file_through_on_postgresql(
        tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve`` on PostgreSQL, one process: partner ``big``'s pass computes without ever
    waiting (held in its first decision, giving the turn up only by ``share``), and partner
    ``small``'s file is decided and done meanwhile; then ``big``'s goes on and is done."""
    config = ProjectConfig(tmp_path).ledger(pg_dsn).set("gateway", poll_interval_seconds=1)
    for partner in ("big", "small"):
        config.partner(partner, filer_code=partner[:3].upper(), filer=True)
    path = config.write()
    (config.inbox("big") / "big.xml").write_bytes(submission("BIG-1", application("B-1")))
    small_done = threading.Event()
    real_add = RunPass.add

    def add(self: RunPass, item: StagedApplication, outcome: AppOutcome) -> None:
        real_add(self, item, outcome)
        if self.row.partner == "big":
            (config.inbox("small") / "small.xml").write_bytes(
                submission("SMALL-1", application("S-1")))
            while not small_done.is_set():  # computing: no wait, no statement, no fsync
                TURNS.share()

    monkeypatch.setattr(RunPass, "add", add)
    cfg = load_config(path)
    stop = threading.Event()
    service = threading.Thread(target=serve, args=(cfg, stop), daemon=True)
    service.start()
    try:
        assert wait_until(lambda: _state(pg_dsn, "small.xml") == "DONE", 60), \
            "the other partner's file waited for the pass that computes"
        assert _state(pg_dsn, "big.xml") == "RECEIVED"  # still in its pass
        small_done.set()
        assert wait_until(lambda: _state(pg_dsn, "big.xml") == "DONE", 60)
    finally:
        small_done.set()
        stop.set()
        service.join(60)
    assert not service.is_alive()


def _state(dsn: str, name: str) -> str | None:
    with psycopg.connect(dsn) as conn:
        try:
            row = conn.execute("SELECT state FROM files WHERE remote_name = %s",
                               (name,)).fetchone()
        except psycopg.errors.UndefinedTable:  # serve has not made the ledger yet
            return None
    return None if row is None else str(row[0])


def _asks_once(turns: Turns, failures: list[BaseException]) -> Callable[[], None]:
    """A pass that takes its turn and gives it at once, noting what interrupted it."""

    def run() -> None:
        try:
            with turns.held():
                pass
        except BaseException as err:
            failures.append(err)

    return run


class _InterruptedWaiter(turns_module._Waiter):
    """A waiter whose wait is interrupted (a KeyboardInterrupt, any error) in the thread
    named ``VICTIM``."""

    VICTIM = "interrupted"

    def wait(self) -> None:
        if threading.current_thread().name == self.VICTIM:
            raise KeyboardInterrupt
        super().wait()


@pytest.fixture
def interrupting(monkeypatch: pytest.MonkeyPatch) -> Turns:
    monkeypatch.setattr(turns_module, "_Waiter", _InterruptedWaiter)
    return Turns()


def test_a_wait_interrupted_never_keeps_the_turns_behind_it(interrupting: Turns) -> None:
    """A thread interrupted while it waits for its turn leaves no place in the queue: the
    turns after it are still given."""
    turns = interrupting
    interrupted: list[BaseException] = []
    after = threading.Event()

    victim = _asks_once(turns, interrupted)
    with turns.held():
        thread = threading.Thread(target=victim, name="interrupted", daemon=True)
        thread.start()
        thread.join(HANG)
        assert [type(e) for e in interrupted] == [KeyboardInterrupt]
        assert not turns._asking  # its place is gone
        later = _thread(lambda: _run_once(turns, after))
        assert wait_until(lambda: len(turns._asking) == 1, HANG)
    assert after.wait(HANG), "the turn after an interrupted wait was never given"
    later.join(HANG)
    assert not turns.holding() and not turns._held and not turns._asking


def test_a_pass_interrupted_while_it_takes_its_turn_back_holds_nothing(
        interrupting: Turns) -> None:
    turns = interrupting
    other_got = threading.Event()
    failures: list[BaseException] = []

    def a_pass() -> None:
        try:
            with turns.held(), turns.released():
                # Another holds the turn now: taking it back waits, and is interrupted.
                _thread(lambda: _hold_until(turns, other_got, failures))
                assert other_got.wait(HANG)
        except BaseException as err:
            failures.append(err)
        assert not turns.holding()  # nothing held, nothing given twice

    thread = threading.Thread(target=a_pass, name="interrupted", daemon=True)
    thread.start()
    thread.join(HANG)
    assert [type(e) for e in failures] == [KeyboardInterrupt]
    assert wait_until(lambda: not turns._held, HANG)  # the other gave it: free
    with turns.held():
        assert turns.holding()


def _hold_until(turns: Turns, got: threading.Event, failures: list[BaseException]) -> None:
    with turns.held():
        got.set()
        assert wait_until(lambda: bool(failures), HANG)  # the interrupted take is over


def test_a_pass_back_from_a_wait_goes_before_the_passes_that_compute() -> None:
    """A small file's pass is mostly round trips: back from each, it gets the turn at the
    next ``share`` of whoever computes, not after their slices. With slices of 10 s, a pass
    whose returns waited behind three that compute would need minutes for 20 round trips."""
    turns = Turns(slice_seconds=10.0)
    started, done = threading.Event(), threading.Event()

    def compute() -> None:
        with turns.held():
            while not done.is_set():
                turns.share()

    def round_trips() -> None:
        with turns.held():
            started.set()
            # The three that compute have all asked, behind this pass, before its first wait.
            assert wait_until(lambda: len(turns._asking) == 3, HANG)
            for _ in range(20):
                with turns.released():
                    pass  # a statement to the server
        done.set()

    small = _thread(round_trips)
    assert started.wait(HANG)
    computing = [_thread(compute) for _ in range(3)]
    assert done.wait(HANG), "the pass back from its waits waited for the slices"
    for thread in (small, *computing):
        thread.join(HANG)
        assert not thread.is_alive()


class _InterruptedMine(turns_module._Mine):
    """The thread named ``_InterruptedWaiter.VICTIM`` is interrupted once, right as it notes
    that it holds the turn (an interrupt arriving between its wait's end and that note)."""

    interrupted = False

    def __setattr__(self, name: str, value: object) -> None:
        if name == "has" and value is True and not _InterruptedMine.interrupted and \
                threading.current_thread().name == _InterruptedWaiter.VICTIM:
            _InterruptedMine.interrupted = True
            raise KeyboardInterrupt
        super().__setattr__(name, value)


@pytest.mark.parametrize("waits", [True, False], ids=["handed on", "free"])
def test_a_pass_interrupted_as_it_gets_its_turn_gives_it_on(
        monkeypatch: pytest.MonkeyPatch, waits: bool) -> None:
    monkeypatch.setattr(turns_module, "_Mine", _InterruptedMine)
    monkeypatch.setattr(_InterruptedMine, "interrupted", False)
    turns = Turns()
    failures: list[BaseException] = []

    victim = _asks_once(turns, failures)
    thread = threading.Thread(target=victim, name=_InterruptedWaiter.VICTIM, daemon=True)
    if waits:
        with turns.held():
            thread.start()
            assert wait_until(lambda: len(turns._asking) == 1, HANG)
    else:
        thread.start()
    thread.join(HANG)
    assert [type(e) for e in failures] == [KeyboardInterrupt]
    assert not turns._held, "the turn stayed taken by a pass that does not know it holds it"
    taken = threading.Event()
    _thread(lambda: _run_once(turns, taken))
    assert taken.wait(HANG)


# -- an interrupt wherever one can land --------------------------------------------------------

_TURNS_FILE = turns_module.__file__


def _interruptible(code: types.CodeType) -> set[int]:
    """The offsets in ``code`` where CPython runs a signal handler, which may raise: after a
    call returns, at a function's start, at a ``with`` (a lock's acquire)."""
    found = set()
    instructions = list(dis.get_instructions(code))
    for before, after in itertools.pairwise(instructions):
        if before.opname.startswith("CALL"):
            found.add(after.offset)
    found.update(i.offset for i in instructions if i.opname in ("RESUME", "BEFORE_WITH"))
    return found


class _Interrupt:
    """A trace of this thread that raises KeyboardInterrupt at the ``at``-th point where a
    signal handler could run in gateway/turns.py, or on entering a function it calls."""

    def __init__(self, at: int) -> None:
        self.at, self.seen, self.fired = at, 0, False

    def _count(self) -> None:
        self.seen += 1
        if self.seen == self.at:
            self.fired = True
            raise KeyboardInterrupt

    def calls(self, frame: types.FrameType, event: str, arg: object) -> Any:
        if frame.f_code.co_filename != _TURNS_FILE:
            caller = frame.f_back
            if event == "call" and not self.fired and caller is not None and \
                    caller.f_code.co_filename == _TURNS_FILE:
                self._count()
            return None
        frame.f_trace_opcodes = True
        return self.opcodes

    def opcodes(self, frame: types.FrameType, event: str, arg: object) -> Any:
        if event == "opcode" and not self.fired and \
                frame.f_lasti in _interruptible(frame.f_code):
            self._count()
        return self.opcodes


def _one_interrupt(scenario: str, at: int) -> tuple[bool, Turns]:
    """Run ``scenario`` in this thread with the ``at``-th interrupt; whether it fired."""
    turns = Turns()
    interrupt = _Interrupt(at)
    other_holds, other_done = threading.Event(), threading.Event()

    def holder() -> None:  # holds until this thread has asked, then gives
        with turns.held():
            other_holds.set()
            wait_until(lambda: bool(turns._asking) or interrupt.fired, HANG)
        other_done.set()

    def asker() -> None:  # asks while this thread holds
        with turns.held():
            pass
        other_done.set()

    if scenario == "handed on":
        _thread(holder)
        assert other_holds.wait(HANG)
    try:
        if scenario in ("free", "handed on"):
            sys.settrace(interrupt.calls)
            with turns.held():
                sys.settrace(None)
                assert turns.holding()
                sys.settrace(interrupt.calls)
        else:
            with turns.held():
                _thread(asker)
                assert wait_until(lambda: bool(turns._asking), HANG)
                sys.settrace(interrupt.calls)
                if scenario == "released":
                    with turns.released():
                        sys.settrace(None)
                        assert other_done.wait(HANG)
                        sys.settrace(interrupt.calls)
    except KeyboardInterrupt:
        pass
    finally:
        sys.settrace(None)
    return interrupt.fired, turns


@pytest.mark.parametrize("scenario", ["free", "handed on", "given to a waiter", "released"])
def test_an_interrupt_anywhere_leaves_the_turn_to_others(scenario: str) -> None:
    """Ctrl-C lands in the main thread wherever Python can run a signal handler: in every
    case the turn ends free, no one is left queued, this thread does not think it holds it,
    and another thread gets it (a review's injection found the turn held by no one after an
    interrupt in the lock's acquire of ``_give``, and between a waiter's removal from its
    queue and its wake-up)."""
    fired, at, bad = True, 0, []
    while fired:
        at += 1
        fired, turns = _one_interrupt(scenario, at)
        got = threading.Event()
        _thread(lambda: _run_once(turns, got))  # noqa: B023 (run and waited for here)
        if not got.wait(5.0) or turns.holding() or not wait_until(
                lambda: not (turns._held or turns._back or turns._asking), 5.0):  # noqa: B023
            bad.append(at)
    assert at > 5  # the points were reached
    assert bad == [], f"interrupts at points {bad} of {at - 1} kept the turn from others"
