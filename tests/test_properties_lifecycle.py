"""Property (hypothesis) of the license lifecycle (issue 13, guide 5.1b): any sequence of
files of applications, corrections (naming a license that exists or a made-up number) and
cancellations, of two partners and a registered one (its own numbers, some shaped like the
gateway's), on processing dates that let licenses expire, decided on a
SQLite ledger as a run decides them (one pass, and again with the ref counts at a repeated
ref), leaves the ledger consistent:

- a partner's ref holds at most one ACTIVE license, and at most one that is not SUPERSEDED;
- every license number is issued once (no two new applications share one, and the new
  applications and the licenses name the same numbers);
- a license is SUPERSEDED or CANCELLED exactly when it has one ``license_changes`` row of
  that change; a SUPERSEDED one's ``replaced_by`` exists and replaces it;
- ``Ledger.integrity_problems()`` finds nothing.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest
from conftest import examples
from hypothesis import example, given
from hypothesis import strategies as st
from lifecycle_harness import ON, application, cancellation, decide_file, received, staged

from gateway.ledger.store import Ledger
from gateway.licensing.decide import RepeatedRef
from gateway.model import Application

REFS = ["PO-1", "PO-2", "PO-3", "PO-4"]
MADE_UP = "A26999999"
# Content variants of one ref: (quantity, value, kind)
VARIANTS = [("24000", "61200.00", None), ("25000", "63750.00", None),
            ("1000", "2600.00", "LOW_VALUE")]

# The registered partner's numbers (guide 5.1a): two of its own shape, two that look like the
# gateway's (which the gateway's counters must then skip).
BROKER = "broker"
REGISTERED = ["EXAMPLE1", "A26000001", "A26000002", "L26000001"]

# A request: (what, ref index, variant, target, registered number index). The target of a
# correction or cancellation: 0 the ref's own current license (most often), 1.. any license
# (by index, modulo the licenses there are), -1 a made-up number.
requests = st.tuples(st.sampled_from(["apply", "correct", "cancel"]),
                     st.integers(0, len(REFS) - 1), st.integers(0, len(VARIANTS) - 1),
                     st.sampled_from([0, 0, 0, 0, -1, 1, 2, 3]),
                     st.integers(0, len(REGISTERED) - 1))
# A file: (partner, days after the previous file, requests of distinct refs, and whether a
# request repeats the first one's ref: A105)
files = st.lists(st.tuples(st.sampled_from(["acme", "other", BROKER]),
                           st.sampled_from([0, 0, 1, 40, 80]),
                           st.lists(requests, min_size=1, max_size=3,
                                    unique_by=lambda r: r[1]),
                           st.integers(0, 3).map(lambda n: n == 0)),
                 min_size=1, max_size=6)
Request = tuple[str, int, int, int, int]


def build(ledger: Ledger, partner: str, request: Request, on: date) -> Application:
    what, ref_index, variant, target, number = request
    ref = REFS[ref_index]
    if target == 0:
        own = ledger.prior_license(partner, ref)
        named = own.license_number if own is not None else MADE_UP
    else:
        numbers = [n for (n,) in ledger.db.execute(
            "SELECT license_number FROM licenses ORDER BY license_number").fetchall()]
        named = numbers[target % len(numbers)] if numbers and target > 0 else MADE_UP
    if what == "cancel":
        return cancellation(ref, named)
    qty, value, kind = VARIANTS[variant]
    # Dates of ON whatever the processing date: the same variant is the same content
    # (I201) on any day (past its import date, A152 warns only).
    return application(ref, ON, qty=qty, value=value, kind=kind,
                       corrects=named if what == "correct" else None,
                       license_number=REGISTERED[number] if partner == BROKER else None)


def decide_as_a_run(ledger: Ledger, partner: str, on: date,
                    apps: list[Application]) -> None:
    """One pass; at a repeated ref the pass is rolled back and decided with the counts."""
    file_id = received(ledger, on, partner)
    registered = partner == BROKER
    try:
        with ledger.transaction():
            decide_file(ledger, file_id, staged(apps, on, registered), on, partner, registered)
    except RepeatedRef:
        with ledger.transaction():
            decide_file(ledger, file_id, staged(apps, on, registered), on, partner, registered,
                        ref_counts=True)


def problems(ledger: Ledger) -> list[str]:
    q = ledger.db.execute
    out = list(ledger.integrity_problems())
    for partner, ref, active, current in q(
            "SELECT partner, ref, SUM(CASE WHEN state = 'ACTIVE' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN state != 'SUPERSEDED' THEN 1 ELSE 0 END) FROM licenses "
            "GROUP BY partner, ref").fetchall():
        if active > 1 or current > 1:
            out.append(f"{partner}/{ref}: {active} ACTIVE, {current} not SUPERSEDED")
    new = [n for (n,) in q("SELECT license_number FROM applications WHERE reused = 0 AND "
                           "status = 'LICENSED'").fetchall()]
    out += [f"{n} issued {c} times" for n, c in Counter(new).items() if c > 1]
    licenses = dict(q("SELECT license_number, state FROM licenses").fetchall())
    if set(new) != set(licenses):
        out.append(f"new applications {sorted(new)} != licenses {sorted(licenses)}")
    changes = {n: (change, by) for n, change, by in q(
        "SELECT license_number, change, replaced_by FROM license_changes").fetchall()}
    for number, state in licenses.items():
        change = changes.get(number)
        if (state == "ACTIVE") != (change is None) or (change and change[0] != state):
            out.append(f"{number} is {state} with change {change}")
        if state == "SUPERSEDED" and change is not None:
            row = q("SELECT replaces FROM licenses WHERE license_number = ?",
                    (change[1],)).fetchone()
            if row is None or row[0] != number:
                out.append(f"{number} replaced by {change[1]}, which does not replace it")
    out += [f"change of unknown license {n}" for n in changes if n not in licenses]
    return out


@examples(150)
@given(plan=files)
# The registered partner holds A26000001 before the gateway draws its first number.
@example(plan=[(BROKER, 0, [("apply", 0, 0, 0, 1)], False),
               ("acme", 0, [("apply", 0, 0, 0, 0)], False)])
def test_any_sequence_of_requests_leaves_the_lifecycle_consistent(
        tmp_path_factory: pytest.TempPathFactory,
        plan: list[tuple[str, int, list[Request], bool]]) -> None:
    ledger = Ledger(tmp_path_factory.mktemp("lifecycle") / "ledger.sqlite")
    try:
        on = ON
        for partner, gap, asked, repeat in plan:
            on += timedelta(days=gap)
            if repeat:
                asked = [*asked, ("cancel", asked[0][1], 0, 0, 0)]
            decide_as_a_run(ledger, partner, on, [build(ledger, partner, r, on) for r in asked])
            assert problems(ledger) == []
    finally:
        ledger.close()
