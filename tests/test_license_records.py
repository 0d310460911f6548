"""The ledger's license records (gateway/ledger/licenses.py) on SQLite and PostgreSQL: a license
changes state once, the ref's current license, the state as ``replay`` reads it (changes of
later files not made yet), a license's history along its corrections, and the integrity check
that holds state and changes together."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from lifecycle_harness import ON, application, run_file, staged

from gateway.errors import TransientError
from gateway.ledger.licenses import LicenseChange
from gateway.ledger.store import Ledger, Receipt
from gateway.licensing.issuer import LicenseIssuer
from gateway.model import LicenseState

DAY = date(2026, 12, 1)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    target: Path | str = tmp_path / "ledger.sqlite"
    if request.param == "postgresql":
        target = str(request.getfixturevalue("pg_dsn"))
    opened = Ledger(target)
    try:
        yield opened
    finally:
        opened.close()


def a_file(ledger: Ledger, n: int) -> str:
    with ledger.transaction():
        file_id = ledger.new_file_id(DAY)
        ledger.add_file(file_id, Receipt("acme", f"f{n}.xml", 1, 0.0, f"{n:064d}"),
                        local_name=f"{file_id}__f{n}.xml",
                        received_at="2026-12-01T08:00:00+00:00")
    return file_id


def licensed(ledger: Ledger, file_id: str, number: str, ref: str,
             replaces: str | None = None, partner: str = "acme") -> None:
    with ledger.transaction():
        ledger.add_licenses([(number, partner, ref, f"digest-{number}", file_id, "2026-12-01",
                              "2026-12-01", "2027-02-14", "01", "3004", "I", "E", "M", "CA", 1,
                              "24000", "61200", "[]", "REGULAR", "gateway", replaces)])


def change(number: str, kind: LicenseState, file_id: str, replaced_by: str | None = None,
           reason: str | None = None, ref: str = "PO-1") -> LicenseChange:
    return LicenseChange(number, "acme", ref, kind, replaced_by, "2026-12-01",
                         "2026-12-01T09:00:00+00:00", file_id, reason)


@pytest.fixture
def corrected(ledger: Ledger) -> tuple[str, str, str]:
    """A21000001 issued by file 1, corrected by file 2 (A21000002), cancelled by file 3."""
    f1, f2, f3 = (a_file(ledger, n) for n in (1, 2, 3))
    licensed(ledger, f1, "A21000001", "PO-1")
    with ledger.transaction():
        assert ledger.change_license(change("A21000001", LicenseState.SUPERSEDED, f2,
                                            replaced_by="A21000002"))
    licensed(ledger, f2, "A21000002", "PO-1", replaces="A21000001")
    with ledger.transaction():
        assert ledger.change_license(change("A21000002", LicenseState.CANCELLED, f3,
                                            reason="order cancelled"))
    return f1, f2, f3


def test_a_license_changes_state_once(ledger: Ledger, corrected: tuple[str, str, str]) -> None:
    f3 = corrected[2]
    for number in ("A21000001", "A21000002"):
        with ledger.transaction():
            assert not ledger.change_license(change(number, LicenseState.CANCELLED, f3))
    rows = ledger.db.execute("SELECT license_number, change FROM license_changes ORDER BY "
                             "license_number").fetchall()
    assert [tuple(r) for r in rows] == [("A21000001", "SUPERSEDED"), ("A21000002", "CANCELLED")]
    assert ledger.integrity_problems() == []


def test_the_current_license_of_a_ref_is_the_one_not_superseded(
        ledger: Ledger, corrected: tuple[str, str, str]) -> None:
    current = ledger.prior_license("acme", "PO-1")
    assert current is not None
    assert (current.license_number, current.state, current.replaces) == (
        "A21000002", "CANCELLED", "A21000001")
    assert ledger.prior_license("other", "PO-1") is None


@pytest.mark.parametrize(("before", "current", "state"), [
    ("second", "A21000001", "ACTIVE"),  # file 2's correction not made yet
    ("third", "A21000002", "ACTIVE"),  # corrected, not yet cancelled
    ("", "A21000002", "CANCELLED"),  # every file
])
def test_replay_reads_the_states_as_they_were_before_a_file(
        ledger: Ledger, corrected: tuple[str, str, str], before: str, current: str,
        state: str) -> None:
    bound = {"second": corrected[1], "third": corrected[2], "": ""}[before]
    prior = ledger.prior_license("acme", "PO-1", bound)
    assert prior is not None and (prior.license_number, prior.state) == (current, state)
    named = ledger.license_by_number(current, bound)
    assert named is not None and named.state == state


def test_a_license_not_yet_issued_before_a_file_is_unknown(
        ledger: Ledger, corrected: tuple[str, str, str]) -> None:
    assert ledger.license_by_number("A21000002", corrected[1]) is None
    assert ledger.license_by_number("A21000002") is not None
    assert ledger.license_by_number("A29999999") is None


def test_expired_is_an_active_license_past_its_valid_through(ledger: Ledger) -> None:
    licensed(ledger, a_file(ledger, 1), "A21000001", "PO-1")
    license = ledger.license_by_number("A21000001")
    assert license is not None
    assert license.state_on(date(2027, 2, 14)) is LicenseState.ACTIVE  # the last valid day
    assert license.state_on(date(2027, 2, 15)) is LicenseState.EXPIRED


@pytest.mark.parametrize("asked", ["A21000001", "A21000002"])
def test_a_license_history_runs_along_its_corrections(
        ledger: Ledger, corrected: tuple[str, str, str], asked: str) -> None:
    history = ledger.license_history(asked)
    assert [(c.license_number, c.change, c.replaced_by, c.reason) for c in history] == [
        ("A21000001", "SUPERSEDED", "A21000002", None),
        ("A21000002", "CANCELLED", None, "order cancelled")]


def test_changes_of_a_file_are_its_own(ledger: Ledger, corrected: tuple[str, str, str]) -> None:
    f1, f2, f3 = corrected
    assert ledger.changes_of(f1) == []
    assert [c.license_number for c in ledger.changes_of(f2)] == ["A21000001"]
    assert [(c.license_number, c.reason) for c in ledger.changes_of(f3)] == [
        ("A21000002", "order cancelled")]


def test_a_ref_holds_one_license_that_is_not_superseded(ledger: Ledger) -> None:
    f1 = a_file(ledger, 1)
    licensed(ledger, f1, "A21000001", "PO-1")
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        licensed(ledger, f1, "A21000002", "PO-1")
    licensed(ledger, f1, "A21000003", "PO-1", partner="other")  # another partner's ref


@pytest.mark.parametrize("tamper", [
    "UPDATE licenses SET state = 'CANCELLED' WHERE license_number = 'A21000003'",
    "UPDATE licenses SET state = 'ACTIVE' WHERE license_number = 'A21000002'",
    "UPDATE license_changes SET change = 'CANCELLED' WHERE license_number = 'A21000001'",
])
def test_the_integrity_check_finds_a_state_without_its_change(
        ledger: Ledger, corrected: tuple[str, str, str], tamper: str) -> None:
    licensed(ledger, corrected[0], "A21000003", "PO-2")
    assert ledger.integrity_problems() == []
    with ledger.transaction():
        ledger.db.execute(tamper)
    assert any("state and its recorded change disagree" in p
               for p in ledger.integrity_problems())


# -- looked up and drawn a group at a time (issue 15) -------------------------------------------


@pytest.mark.parametrize("before", ["second", "third", ""])
def test_the_prior_licenses_of_several_refs_are_those_of_each_ref(
        ledger: Ledger, corrected: tuple[str, str, str], before: str) -> None:
    f1 = corrected[0]
    licensed(ledger, f1, "A21000003", "PO-2")
    bound = {"second": corrected[1], "third": corrected[2], "": ""}[before]
    refs = ["PO-1", "PO-2", "PO-9"]
    found = ledger.prior_licenses("acme", refs, bound)
    assert found == {ref: prior for ref in refs
                     if (prior := ledger.prior_license("acme", ref, bound)) is not None}
    assert set(found) == {"PO-1", "PO-2"} and ledger.prior_licenses("acme", []) == {}


def test_the_numbers_held_in_a_block_are_those_asked_only(ledger: Ledger) -> None:
    f1 = a_file(ledger, 1)
    for n, number in enumerate(("A26000002", "A260000025", "A26000009")):
        licensed(ledger, f1, number, f"PO-{n}")
    block = [f"A26{n:06d}" for n in range(1, 6)]  # A26000001 .. A26000005
    assert ledger.licenses_held(block) == {"A26000002"}  # not the registered A260000025
    assert ledger.licenses_held([]) == set()


def test_a_block_drawn_is_given_back_only_when_nobody_drew_after(ledger: Ledger) -> None:
    assert ledger.next_license_sequence(2026, "A", 5) == 5
    assert ledger.return_license_sequences(2026, "A", 3, 5)  # 3..5 unused: given back
    assert ledger.next_license_sequence(2026) == 3
    assert ledger.next_license_sequence(2026, "A", 4) == 7
    assert ledger.next_license_sequence(2026) == 8
    assert not ledger.return_license_sequences(2026, "A", 5, 7)  # 8 was drawn after: a gap
    assert ledger.last_license_sequence(2026) == 8


def test_one_worker_issues_its_numbers_one_after_the_other(ledger: Ledger) -> None:
    """Numbers drawn ahead and not issued (a resend, a rejection, the quota) are given back:
    one worker's numbers follow on without a gap on both databases, as when drawn one by
    one."""
    run_file(ledger, [application(f"PO-{n}") for n in range(1, 4)])
    again = run_file(ledger, [application("PO-1"), application("PO-2", qty="1"),
                              application("PO-4"), application("PO-5", hts="76061230"),
                              application("PO-6"), application("PO-7")], quota=5)
    assert [d.status for d in again] == ["LICENSED", "REJECTED", "LICENSED", "REJECTED",
                                         "LICENSED", "REJECTED"]  # I201, A104, A130, A109
    assert again[0].reused and again[-1].codes == ["A109"]
    numbers = [r[0] for r in ledger.db.execute("SELECT license_number FROM licenses")]
    assert sorted(numbers) == [f"A26{n:06d}" for n in range(1, 6)]
    assert ledger.last_license_sequence(2026) == 5


def test_workers_drawing_blocks_at_once_never_issue_a_number_twice(pg_dsn: str) -> None:
    """Two PostgreSQL workers, each holding a block: what one gives back is never what the
    other holds; a block another worker drew after stays a gap."""
    first, second = Ledger(pg_dsn), Ledger(pg_dsn)
    try:
        one = LicenseIssuer(first, ON, 75)
        two = LicenseIssuer(second, ON, 75)
        assert len(list(one.ahead(staged([application(f"PO-{n}") for n in (1, 2, 3)]),
                                  None))) == 3
        list(two.ahead(staged([application(f"PO-{n}") for n in (4, 5, 6)]), None))
        assert (one.next_number(), two.next_number()) == ("A26000001", "A26000004")
        one.release()  # A26000002-3: a gap, two drew after them
        two.release()  # A26000005-6: given back
        three = LicenseIssuer(first, ON, 75)
        assert [three.next_number() for _ in range(2)] == ["A26000005", "A26000006"]
        three.release()
        assert first.last_license_sequence(2026) == 6
    finally:
        first.close()
        second.close()


def test_a_number_registered_by_another_worker_after_the_draw_is_skipped(pg_dsn: str) -> None:
    """A block is drawn; another worker's partner registers its own number (guide 5.1a) that
    falls inside the block and commits; the file then issues the next free number and its
    licenses are written (the number was checked when drawn only: the primary key failed
    the file)."""
    first, second = Ledger(pg_dsn), Ledger(pg_dsn)
    try:
        issuer = LicenseIssuer(first, ON, 75)
        assert len(list(issuer.ahead(staged([application(f"PO-{n}") for n in (1, 2, 3)]),
                                     None))) == 3
        licensed(second, a_file(second, 1), "A26000002", "REG-1", partner="commerce")
        numbers = [issuer.next_number() for _ in range(3)]
        assert numbers == ["A26000001", "A26000003", "A26000004"]
        file_id = a_file(first, 2)
        for n, number in enumerate(numbers):
            licensed(first, file_id, number, f"PO-{n}")
        issuer.release()
    finally:
        first.close()
        second.close()


def test_a_number_recorded_by_another_worker_meanwhile_retries_the_file(pg_dsn: str) -> None:
    """Registered between the check and the file's insert: the file is decided again at the
    next poll (a TransientError, the file's rows rolled back), never failed."""
    first, second = Ledger(pg_dsn), Ledger(pg_dsn)
    try:
        mine = a_file(first, 1)
        licensed(second, a_file(second, 2), "A26000001", "REG-1", partner="commerce")
        with pytest.raises(TransientError, match="decided again"):
            licensed(first, mine, "A26000001", "PO-1")
        assert first.db.execute("SELECT COUNT(*) FROM licenses").fetchone()[0] == 1
    finally:
        first.close()
        second.close()
