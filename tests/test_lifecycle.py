"""The license lifecycle decisions (issue 13, guide 5.1a and 5.1b) at the level of
``licensing.decide``, on a real ledger, SQLite and PostgreSQL: corrections (I202, A106, A107,
I201 on a resend), cancellations (I203, idempotent), A104 after a correction or a
cancellation, low-value numbers (series ``L``), registered numbers (I204), and ``check``'s dry
run. Every code is triggered, and near-missed where a boundary exists.

Cancellations are staged directly (no findings, no lines), independent of the value rules.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from lifecycle_harness import (
    ON,
    Decision,
    application,
    cancellation,
    change_rows,
    check_file,
    counters,
    decide_file,
    license_states,
    received,
    run_file,
    staged,
)
from test_ledger import ledger as ledger  # SQLite and PostgreSQL
from test_ledger import target as target

from gateway.admin.replay import LedgerBefore
from gateway.ledger.store import Ledger
from gateway.licensing.decide import RepeatedRef
from gateway.model import Application
from gateway.validate.staging import StagedApplication, application_digest

VALIDITY = timedelta(days=75)


def licensed(ledger: Ledger, ref: str = "PO-1", on: date = ON, **fields: object) -> str:
    """``ref`` licensed on ``on``: its new license number."""
    [d] = run_file(ledger, [application(ref, on, **fields)], on)  # type: ignore[arg-type]
    assert (d.status, d.codes) == ("LICENSED", []), d
    assert d.number is not None
    return d.number


def row_counts(ledger: Ledger) -> tuple[int, ...]:
    return tuple(ledger.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in (
        "licenses", "license_changes", "applications", "license_counter"))


# -- corrections ------------------------------------------------------------------------------


def test_a_correction_supersedes_the_license_with_a_new_one(ledger: Ledger) -> None:
    old = licensed(ledger)
    [d] = run_file(ledger, [application("PO-1", qty="25000", corrects=old)])
    assert (d.status, d.codes, d.replaces) == ("LICENSED", ["I202"], old)
    assert d.number == "A26000002"
    assert d.findings[0].value == old and d.findings[0].field == "corrects"
    assert old in d.message("I202") and "A26000002" in d.message("I202")
    assert license_states(ledger) == {old: "SUPERSEDED", "A26000002": "ACTIVE"}
    assert change_rows(ledger) == [(old, "SUPERSEDED", "A26000002", None)]
    new = ledger.license_by_number("A26000002")
    assert new is not None and new.replaces == old
    [change] = ledger.changes_of("20261204-000002")
    assert (change.partner, change.ref, change.change_date) == ("acme", "PO-1", "2026-12-04")


def test_a_failing_correction_is_rejected_and_the_license_stays_active(ledger: Ledger) -> None:
    old = licensed(ledger)
    [d] = run_file(ledger, [application("PO-1", qty="25000", port="30", corrects=old)])
    assert (d.status, d.number, d.replaces) == ("REJECTED", None, None)
    assert "A160" in d.codes and "I202" not in d.codes
    assert license_states(ledger) == {old: "ACTIVE"}
    assert change_rows(ledger) == []
    assert counters(ledger) == {("A", 2026): 1}


def test_a_correction_sent_again_returns_its_license(ledger: Ledger) -> None:
    old = licensed(ledger)
    correction = application("PO-1", qty="25000", corrects=old)
    [first] = run_file(ledger, [correction])
    [again] = run_file(ledger, [correction])
    assert (again.status, again.codes, again.number, again.reused) == (
        "LICENSED", ["I201"], first.number, True)
    assert len(change_rows(ledger)) == 1
    assert counters(ledger) == {("A", 2026): 2}


def test_a_correction_of_the_correction_supersedes_the_second_license(ledger: Ledger) -> None:
    # Near miss of A107 (SUPERSEDED): the replacement may be corrected in turn.
    old = licensed(ledger)
    [second] = run_file(ledger, [application("PO-1", qty="25000", corrects=old)])
    [third] = run_file(ledger, [application("PO-1", qty="26000", corrects=second.number)])
    assert (third.status, third.codes, third.replaces) == ("LICENSED", ["I202"], second.number)
    assert license_states(ledger) == {old: "SUPERSEDED", second.number: "SUPERSEDED",
                                      third.number: "ACTIVE"}
    assert [c.license_number for c in ledger.license_history(old)] == [old, second.number]


@pytest.mark.parametrize("whose", ["nonexistent", "another partner's", "another ref's"])
def test_a_correction_naming_a_license_not_its_own_is_a106(ledger: Ledger, whose: str) -> None:
    mine = licensed(ledger)
    other = licensed(ledger, "PO-9") if whose == "another ref's" else None
    if whose == "another partner's":
        [d] = run_file(ledger, [application("PO-1")], partner="other")
        other = d.number
    named = {"nonexistent": "A26999999"}.get(whose, other)
    [d] = run_file(ledger, [application("PO-1", qty="25000", corrects=named)])
    assert (d.status, d.codes) == ("REJECTED", ["A106"])
    assert (d.findings[0].field, d.findings[0].value) == ("corrects", named)
    if whose == "another partner's":
        assert "other" not in d.message("A106")  # whose it is stays unsaid
    assert set(license_states(ledger).values()) == {"ACTIVE"}
    assert change_rows(ledger) == []
    assert mine != named


@pytest.mark.parametrize("request_", ["correction", "cancellation"])
def test_another_partners_license_reads_as_one_that_does_not_exist(
        ledger: Ledger, request_: str) -> None:
    """A106 tells no partner whether a number was issued to someone else, even for the
    same ref: the message is the nonexistent license's, word for word."""
    [theirs] = run_file(ledger, [application("PO-1")], partner="other")
    answers = []
    for named in (theirs.number, "A26999999"):
        assert named is not None
        request = application("PO-1", qty="25000", corrects=named) \
            if request_ == "correction" else cancellation("PO-1", named)
        [d] = run_file(ledger, [request])
        assert (d.status, d.codes) == ("REJECTED", ["A106"])
        answers.append(d.message("A106"))
    assert answers[0] == answers[1]
    assert set(license_states(ledger).values()) == {"ACTIVE"}
    assert change_rows(ledger) == []


def _unusable(ledger: Ledger, state: str) -> str:
    """A license of ``PO-1`` that is ``state`` on ON."""
    if state == "EXPIRED":
        return licensed(ledger, on=ON - VALIDITY - timedelta(days=1))
    first = licensed(ledger)
    if state == "SUPERSEDED":
        run_file(ledger, [application("PO-1", qty="25000", corrects=first)])
    else:
        run_file(ledger, [cancellation("PO-1", first)])
    return first


@pytest.mark.parametrize(("request_", "state"), [
    ("correction", "SUPERSEDED"), ("correction", "EXPIRED"), ("correction", "CANCELLED"),
    ("cancellation", "SUPERSEDED"), ("cancellation", "EXPIRED")])
def test_a_request_naming_a_license_no_longer_active_is_a107(ledger: Ledger, request_: str,
                                                              state: str) -> None:
    # (Cancelling a CANCELLED license again is I203: test_a_cancellation_cancels_the_license_once.)
    named = _unusable(ledger, state)
    before = change_rows(ledger), license_states(ledger)
    app = application("PO-1", qty="26000", corrects=named) if request_ == "correction" else \
        cancellation("PO-1", named)
    [d] = run_file(ledger, [app])
    assert (d.status, d.codes) == ("REJECTED", ["A107"])
    assert state in d.message("A107")
    assert (change_rows(ledger), license_states(ledger)) == before


@pytest.mark.parametrize(("age", "code"), [(VALIDITY, "I202"),
                                           (VALIDITY + timedelta(days=1), "A107")])
def test_a_license_may_be_corrected_through_its_last_valid_day(ledger: Ledger, age: timedelta,
                                                               code: str) -> None:
    old = licensed(ledger, on=ON - age)
    assert ledger.license_by_number(old).valid_through == (ON - age + VALIDITY).isoformat()  # type: ignore[union-attr]
    [d] = run_file(ledger, [application("PO-1", qty="25000", corrects=old)])
    assert d.codes == [code]
    assert license_states(ledger)[old] == ("SUPERSEDED" if code == "I202" else "ACTIVE")


def test_a_correction_that_needs_no_license_leaves_the_license_active(ledger: Ledger) -> None:
    # The guide is silent: nothing is licensed, so nothing replaces the old license.
    old = licensed(ledger)
    [d] = run_file(ledger, [application("PO-1", hts="0101210010", corrects=old)])
    assert (d.status, d.number, d.replaces) == ("NOT_REQUIRED", None, None)
    assert "I202" not in d.codes
    assert license_states(ledger) == {old: "ACTIVE"}
    assert change_rows(ledger) == []


def test_a_correction_past_the_daily_quota_is_a109_and_the_license_stays_active(
        ledger: Ledger) -> None:
    old = licensed(ledger)
    [d] = run_file(ledger, [application("PO-1", qty="25000", corrects=old)], quota=1)
    assert (d.status, d.codes) == ("REJECTED", ["A109"])
    assert license_states(ledger) == {old: "ACTIVE"} and change_rows(ledger) == []
    # Near miss: the quota has room for it.
    [d] = run_file(ledger, [application("PO-1", qty="25000", corrects=old)], quota=2)
    assert d.codes == ["I202"]


# -- A104 after a correction or a cancellation ---------------------------------------------------


def test_the_original_sent_again_after_a_correction_is_a104(ledger: Ledger) -> None:
    original = application("PO-1")
    run_file(ledger, [original])
    [correction] = run_file(ledger, [application("PO-1", qty="25000", corrects="A26000001")])
    [again] = run_file(ledger, [original])
    assert (again.status, again.codes) == ("REJECTED", ["A104"])
    assert correction.number in again.message("A104")
    assert "cancelled" not in again.message("A104")


def test_an_identical_resend_after_a_cancellation_is_a104_saying_cancelled(ledger: Ledger) -> None:
    original = application("PO-1")
    run_file(ledger, [original])
    run_file(ledger, [cancellation("PO-1", "A26000001")])
    [again] = run_file(ledger, [original])
    assert (again.status, again.codes, again.number) == ("REJECTED", ["A104"], None)
    assert "cancelled" in again.message("A104") and "new ref" in again.message("A104")
    # Different content after a cancellation: A104 too, and the message does not send the
    # partner to `corrects` (a cancelled license cannot be corrected: A107).
    [changed] = run_file(ledger, [application("PO-1", qty="25000")])
    assert changed.codes == ["A104"] and "cancelled" in changed.message("A104")
    assert "corrects" not in changed.message("A104")
    assert license_states(ledger) == {"A26000001": "CANCELLED"}


# -- cancellations ----------------------------------------------------------------------------


def test_a_cancellation_cancels_the_license_once(ledger: Ledger) -> None:
    number = licensed(ledger)
    [d] = run_file(ledger, [cancellation("PO-1", number, "order cancelled")])
    assert (d.status, d.codes, d.number, d.reused) == ("CANCELLED", ["I203"], number, False)
    assert (d.findings[0].field, d.findings[0].value) == ("license_number", number)
    assert license_states(ledger) == {number: "CANCELLED"}
    assert change_rows(ledger) == [(number, "CANCELLED", None, "order cancelled")]
    [again] = run_file(ledger, [cancellation("PO-1", number, "sent twice")])
    assert (again.status, again.codes, again.number) == ("CANCELLED", ["I203"], number)
    assert "before" in again.message("I203") and "before" not in d.message("I203")
    assert change_rows(ledger) == [(number, "CANCELLED", None, "order cancelled")]
    assert counters(ledger) == {("A", 2026): 1}  # a cancellation draws no number


@pytest.mark.parametrize("whose", ["nonexistent", "another partner's", "another ref's"])
def test_a_cancellation_naming_a_license_not_its_own_is_a106(ledger: Ledger, whose: str) -> None:
    licensed(ledger)
    number = {"nonexistent": "A26999999", "another ref's": "A26000001"}.get(whose)
    ref = "PO-2" if whose == "another ref's" else "PO-1"
    if whose == "another partner's":
        [d] = run_file(ledger, [application("PO-1")], partner="other")
        number = d.number
    assert number is not None
    [d] = run_file(ledger, [cancellation(ref, number)])
    assert (d.status, d.codes, d.number) == ("REJECTED", ["A106"], None)
    assert set(license_states(ledger).values()) == {"ACTIVE"}
    assert change_rows(ledger) == []


@pytest.mark.parametrize(("age", "status"), [(VALIDITY, "CANCELLED"),
                                             (VALIDITY + timedelta(days=1), "REJECTED")])
def test_a_license_may_be_cancelled_through_its_last_valid_day(ledger: Ledger, age: timedelta,
                                                               status: str) -> None:
    number = licensed(ledger, on=ON - age)
    [d] = run_file(ledger, [cancellation("PO-1", number)])
    assert d.status == status
    assert len(change_rows(ledger)) == (status == "CANCELLED")


def test_the_replacement_of_a_correction_may_be_cancelled(ledger: Ledger) -> None:
    # The "Done when": apply, correct, cancel the correction.
    first = licensed(ledger)
    [second] = run_file(ledger, [application("PO-1", qty="25000", corrects=first)])
    [cancelled] = run_file(ledger, [cancellation("PO-1", second.number or "")])
    assert (cancelled.status, cancelled.codes) == ("CANCELLED", ["I203"])
    assert license_states(ledger) == {first: "SUPERSEDED", second.number: "CANCELLED"}
    assert change_rows(ledger) == [(first, "SUPERSEDED", second.number, None),
                                   (second.number, "CANCELLED", None, "order cancelled")]


@pytest.mark.parametrize("order", ["correction first", "cancellation first"])
def test_a_correction_and_a_cancellation_of_one_ref_in_one_file_are_both_a105(
        ledger: Ledger, order: str) -> None:
    number = licensed(ledger)
    pair = [application("PO-1", qty="25000", corrects=number), cancellation("PO-1", number)]
    if order == "cancellation first":
        pair.reverse()
    decisions = run_file(ledger, pair, ref_counts=True)
    assert [(d.status, d.codes) for d in decisions] == [("REJECTED", ["A105"])] * 2
    assert license_states(ledger) == {number: "ACTIVE"}
    assert change_rows(ledger) == []


def test_the_one_pass_path_gives_up_at_the_repeated_ref_and_changes_nothing(
        ledger: Ledger) -> None:
    # The first of the pair changes the license before the second is seen: the caller rolls
    # the pass back (and decides again with the counts), so that change never stays.
    number = licensed(ledger)
    file_id = received(ledger)
    items = staged([cancellation("PO-1", number), application("PO-1", corrects=number)])
    with pytest.raises(RepeatedRef), ledger.transaction():
        decide_file(ledger, file_id, items)
    assert license_states(ledger) == {number: "ACTIVE"}
    assert change_rows(ledger) == []


# -- low-value licenses -----------------------------------------------------------------------


def low(ref: str, on: date = ON, **fields: object) -> Application:
    return application(ref, on, qty="1000", value="2600.00", kind="LOW_VALUE", **fields)


def test_low_value_numbers_come_from_their_own_sequence_per_year(ledger: Ledger) -> None:
    next_year = date(2027, 1, 4)
    got = [run_file(ledger, [app], on)[0] for app, on in [
        (application("PO-1"), ON), (low("PO-2"), ON), (low("PO-3"), ON),
        (application("PO-4"), ON), (low("PO-5", next_year), next_year),
        (application("PO-6", next_year), next_year)]]
    assert [d.number for d in got] == ["A26000001", "L26000001", "L26000002", "A26000002",
                                       "L27000001", "A27000001"]
    assert all(d.status == "LICENSED" for d in got)
    assert counters(ledger) == {("A", 2026): 2, ("L", 2026): 2, ("A", 2027): 1,
                                ("L", 2027): 1}
    kinds = dict(ledger.db.execute("SELECT license_number, kind FROM licenses").fetchall())
    assert kinds["L26000001"] == "LOW_VALUE" and kinds["A26000001"] == "REGULAR"


def test_a_low_value_license_is_corrected_into_a_new_low_value_number(ledger: Ledger) -> None:
    [first] = run_file(ledger, [low("PO-1")])
    [second] = run_file(ledger, [application("PO-1", qty="900", value="2400.00",
                                             kind="LOW_VALUE", corrects=first.number)])
    # (A171 for a low-value application is the value rules' business, not asserted here.)
    assert (second.number, second.replaces) == ("L26000002", "L26000001")
    assert [c for c in second.codes if c != "A171"] == ["I202"]


# -- registered licenses (license_source = "commerce") -------------------------------------------


def registered(ledger: Ledger, ref: str, number: str, partner: str = "acme",
               **fields: object) -> list[Decision]:
    return run_file(ledger, [application(ref, license_number=number, **fields)],  # type: ignore[arg-type]
                    partner=partner, registered=True)


def test_a_registered_number_is_recorded_as_sent_and_never_minted(ledger: Ledger) -> None:
    [d] = registered(ledger, "PO-1", "AIM12345")
    assert (d.status, d.number, d.codes) == ("LICENSED", "AIM12345", ["I204"])
    assert counters(ledger) == {}
    source = ledger.db.execute("SELECT source, state FROM licenses WHERE license_number = "
                               "'AIM12345'").fetchone()
    assert tuple(source) == ("commerce", "ACTIVE")
    [again] = registered(ledger, "PO-1", "AIM12345")
    assert (again.status, again.number, again.codes) == ("LICENSED", "AIM12345", ["I201"])
    assert counters(ledger) == {}


def test_a_registered_application_without_its_number_is_never_minted_one(
        ledger: Ledger) -> None:
    """Even past the rules (whose A102 comes first), decide never mints a number for a
    partner whose licenses come from Commerce."""
    app = application("PO-1")
    item = StagedApplication(1, app, [], staged([app])[0].lines, False, application_digest(app))
    file_id = received(ledger)
    with ledger.transaction():
        [d] = decide_file(ledger, file_id, [item], registered=True)
    assert (d.status, d.number, d.codes) == ("REJECTED", None, ["A102"])
    assert counters(ledger) == {}


@pytest.mark.parametrize("holder", ["another ref", "another partner"])
def test_a_registered_number_held_by_another_application_is_a106(ledger: Ledger,
                                                                  holder: str) -> None:
    if holder == "another ref":
        registered(ledger, "PO-9", "AIM12345")
    else:
        registered(ledger, "PO-1", "AIM12345", partner="other")
    [d] = registered(ledger, "PO-1", "AIM12345")
    assert (d.status, d.codes) == ("REJECTED", ["A106"])
    assert d.findings[0].field == "license_number"


def test_a_changed_resend_of_a_registered_license_is_a104_alone(ledger: Ledger) -> None:
    """Its number is held by the ref's own license, no other application's: no A106."""
    registered(ledger, "PO-1", "AIM12345")
    [d] = registered(ledger, "PO-1", "AIM12345", qty="25000")
    assert (d.status, d.codes) == ("REJECTED", ["A104"])


def test_one_registered_number_twice_in_one_file_is_a106_for_the_second(ledger: Ledger) -> None:
    decisions = run_file(ledger, [application("PO-1", license_number="AIM1"),
                                  application("PO-2", license_number="AIM1"),
                                  application("PO-3", license_number="AIM2")], registered=True)
    assert [(d.status, d.codes) for d in decisions] == [
        ("LICENSED", ["I204"]), ("REJECTED", ["A106"]), ("LICENSED", ["I204"])]


def test_a_registered_correction_carries_its_new_number(ledger: Ledger) -> None:
    registered(ledger, "PO-1", "AIM1")
    [d] = registered(ledger, "PO-1", "AIM2", qty="25000", corrects="AIM1")
    assert (d.status, d.number, d.replaces, d.codes) == (
        "LICENSED", "AIM2", "AIM1", ["I202", "I204"])
    assert license_states(ledger) == {"AIM1": "SUPERSEDED", "AIM2": "ACTIVE"}
    assert counters(ledger) == {}
    [again] = registered(ledger, "PO-1", "AIM2", qty="25000", corrects="AIM1")
    assert (again.status, again.number, again.codes) == ("LICENSED", "AIM2", ["I201"])
    # A correction keeping the number of the license it corrects: that number is held.
    [same] = registered(ledger, "PO-1", "AIM2", qty="26000", corrects="AIM2")
    assert same.codes == ["A106"]
    assert counters(ledger) == {}


# -- check: the dry run -----------------------------------------------------------------------


def test_check_decides_the_lifecycle_writing_nothing(target: Path | str) -> None:
    writer = Ledger(target)
    try:
        first = licensed(writer)
        licensed(writer, "PO-2")
        before = row_counts(writer), license_states(writer), counters(writer)
        reader = Ledger(target, readonly=True)
        try:
            decisions = check_file(reader, [
                application("PO-1", qty="25000", corrects=first),
                cancellation("PO-2", "A26000002"),
                application("PO-3"),
                application("PO-4", qty="25000", corrects="A26999999")])
        finally:
            reader.close()
        assert [(d.status, d.number, d.codes) for d in decisions] == [
            ("LICENSED", "PENDING", ["I202"]), ("CANCELLED", "A26000002", ["I203"]),
            ("LICENSED", "PENDING", []), ("REJECTED", None, ["A106"])]
        assert decisions[0].replaces == first
        assert (row_counts(writer), license_states(writer), counters(writer)) == before
    finally:
        writer.close()


@pytest.mark.parametrize(("corrects", "cancels", "expected"), [
    pytest.param("A26999999", "A26999998", [("LICENSED", "PENDING", ["I202"]),
                                            ("CANCELLED", "A26999998", ["I203"])],
                 id="license-shaped: taken as valid"),
    pytest.param("A2600000100", "a26999998", [("REJECTED", None, ["A106"]),
                                              ("REJECTED", None, ["A106"])],
                 id="no license can be it: A106"),
])
def test_check_without_a_partner_takes_only_license_shaped_numbers_as_valid(
        target: Path | str, corrects: str, cancels: str,
        expected: list[tuple[str, str | None, list[str]]]) -> None:
    """Without the ledger's history a named license (1-10 A-Z 0-9) is taken as valid; a text
    no license number can be is A106, as a run would say."""
    Ledger(target).close()
    reader = Ledger(target, readonly=True)
    try:
        decisions = check_file(reader, [application("PO-1", corrects=corrects),
                                        cancellation("PO-2", cancels)], partner=None)
    finally:
        reader.close()
    assert [(d.status, d.number, d.codes) for d in decisions] == expected


@pytest.mark.parametrize("number", ["A26000001", "L26000001"])
def test_the_gateway_never_mints_a_number_a_registered_partner_holds(ledger: Ledger,
                                                                     number: str) -> None:
    # Commerce's production number format is unknown (docs/research): a registered number
    # may look like one of the gateway's own, which is then skipped, never issued twice.
    registered(ledger, "PO-1", number, partner="broker")
    [d] = run_file(ledger, [low("PO-1") if number.startswith("L") else application("PO-1")])
    assert d.status == "LICENSED" and d.number == number[0] + "26000002"
    assert license_states(ledger) == {number: "ACTIVE", d.number: "ACTIVE"}


# -- replay: the ledger as each file's run saw it ----------------------------------------------


def test_a_replay_sees_each_license_in_its_state_before_the_file(target: Path | str) -> None:
    # ``LedgerBefore`` (admin/replay.py) reads licenses as of the files before the one
    # replayed: a superseded or cancelled license was still ACTIVE for the file that changed it.
    writer = Ledger(target)
    story = [[application("PO-1")], [application("PO-1", qty="25000", corrects="A26000001")],
             [cancellation("PO-1", "A26000002")], [cancellation("PO-1", "A26000002")],
             [application("PO-1", qty="25000", corrects="A26000001")]]
    try:
        run = [run_file(writer, apps)[0] for apps in story]
        files = [r[0] for r in writer.db.execute(
            "SELECT file_id FROM files ORDER BY file_id").fetchall()]
    finally:
        writer.close()
    assert [(d.status, d.codes) for d in run] == [
        ("LICENSED", []), ("LICENSED", ["I202"]), ("CANCELLED", ["I203"]),
        ("CANCELLED", ["I203"]), ("REJECTED", ["A107"])]
    replay = LedgerBefore(target)
    try:
        for file_id, apps, was in zip(files, story, run, strict=True):
            row = replay.file(file_id)
            assert row is not None
            replay.at(row)
            [d] = check_file(replay, apps)
            assert (d.status, d.codes) == (was.status, was.codes), file_id
            assert d.number == (was.number if was.status == "CANCELLED" else
                                "PENDING" if was.number else None)
    finally:
        replay.close()
