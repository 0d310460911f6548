"""Two workers cannot both change one license (issue 13, item 7), on PostgreSQL.

Two ``Ledger`` connections to one database, each in its own thread, each deciding a file
that supersedes or cancels the same ACTIVE license inside its own transaction, as
``RunSinks.decisions`` does. Worker A changes the license and holds its transaction open
until worker B is seen waiting on the row lock (``pg_stat_activity``), then commits. B's
``UPDATE ... WHERE state = 'ACTIVE'`` then finds the license changed: ``TransientError``, B's
transaction rolled back, and B's file decided again answers from the license's new state.

(Two worker processes never decide two files of one partner at once: the partner's lease
serialises them, tests/test_workers.py. The race below is what the lease does not have to
guarantee: the ledger holds on its own.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from conftest import wait_until
from lifecycle_harness import (
    Decision,
    application,
    cancellation,
    change_rows,
    decide_file,
    license_states,
    received,
    run_file,
    staged,
)

from gateway.errors import TransientError
from gateway.ledger.store import Ledger
from gateway.model import Application

OLD = "A26000001"
CORRECTION = application("PO-1", qty="25000", corrects=OLD)
CANCELLATION = cancellation("PO-1", OLD)


@pytest.fixture
def ledgers(pg_dsn: str) -> Iterator[tuple[Ledger, Ledger, Ledger]]:
    """The setup/observer connection and the two workers', on one fresh database."""
    opened = [Ledger(pg_dsn) for _ in range(3)]
    try:
        yield opened[0], opened[1], opened[2]
    finally:
        for ledger in opened:
            ledger.close()


def waiting_on_a_lock(observer: Ledger, pid: int) -> Callable[[], bool]:
    def check() -> bool:
        row = observer.db.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = ?",
                                  (pid,)).fetchone()
        return row is not None and row[0] == "Lock"
    return check


def race(observer: Ledger, a: Ledger, b: Ledger, first: Application,
         second: Application) -> tuple[list[Decision], BaseException | list[Decision], str]:
    """A decides ``first`` and holds its transaction until B, deciding ``second``, waits on
    the license's row lock; then A commits. A's decisions, B's outcome, B's file id."""
    file_a, file_b = received(a), received(b)
    changed, release = threading.Event(), threading.Event()
    got: dict[str, BaseException | list[Decision]] = {}

    def worker_a() -> None:
        try:
            with a.transaction():
                got["a"] = decide_file(a, file_a, staged([first]))
                changed.set()
                assert release.wait(60), "never released"
        except BaseException as err:  # reported by the main thread
            got["a"] = err
            changed.set()

    def worker_b() -> None:
        try:
            with b.transaction():
                got["b"] = decide_file(b, file_b, staged([second]))
        except BaseException as err:
            got["b"] = err

    b_pid = b.db.execute("SELECT pg_backend_pid()").fetchone()[0]
    thread_a = threading.Thread(target=worker_a)
    thread_b = threading.Thread(target=worker_b)
    thread_a.start()
    assert changed.wait(60)
    thread_b.start()
    try:
        assert wait_until(waiting_on_a_lock(observer, b_pid)), "B never waited on the row lock"
        assert "b" not in got
    finally:
        release.set()
        thread_a.join(60)
        thread_b.join(60)
    assert isinstance(got["a"], list), got["a"]
    return got["a"], got["b"], file_b


# (A's request, B's request, B's file decided again: status and codes)
CASES = {
    "two corrections": (CORRECTION, CORRECTION, ("LICENSED", ["I201"])),
    "two cancellations": (CANCELLATION, CANCELLATION, ("CANCELLED", ["I203"])),
    "correction, then cancellation": (CORRECTION, CANCELLATION, ("REJECTED", ["A107"])),
    "cancellation, then correction": (CANCELLATION, CORRECTION, ("REJECTED", ["A107"])),
}


@pytest.mark.parametrize("case", list(CASES))
def test_two_workers_cannot_both_change_one_license(
        ledgers: tuple[Ledger, Ledger, Ledger], case: str) -> None:
    observer, a, b = ledgers
    first, second, retried = CASES[case]
    [licensed] = run_file(observer, [application("PO-1")])
    assert licensed.number == OLD

    [won], lost, file_b = race(observer, a, b, first, second)
    assert isinstance(lost, TransientError), lost
    assert OLD in str(lost)
    new = won.number if first is CORRECTION else None
    expected_states = {OLD: "SUPERSEDED", new: "ACTIVE"} if new else {OLD: "CANCELLED"}
    assert license_states(observer) == expected_states
    [row] = change_rows(observer)
    assert row[:3] == ((OLD, "SUPERSEDED", new) if new else (OLD, "CANCELLED", None))
    # B's transaction left nothing: no application, no license, no change of its file.
    assert observer.db.execute("SELECT COUNT(*) FROM applications WHERE file_id = ?",
                               (file_b,)).fetchone()[0] == 0
    assert observer.changes_of(file_b) == []

    # The file is decided again (the next poll): it answers from the license's new state.
    with b.transaction():
        [again] = decide_file(b, file_b, staged([second]))
    assert (again.status, again.codes) == retried
    if retried[1] == ["I201"]:
        assert again.number == new and again.reused
    assert license_states(observer) == expected_states
    assert len(change_rows(observer)) == 1
    assert observer.integrity_problems() == []
