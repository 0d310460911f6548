"""Statements nobody reads the result of (``Database.execute_later``): PostgreSQL sends them
with the transaction's next statement or its COMMIT. Their rows are there for the statements
after them, a failing one fails its transaction, a rollback drops them, and outside a
transaction they run at once."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import psycopg
import pytest

from gateway.ledger.store import Event, Ledger, Receipt

DAY = date(2026, 12, 1)
RECEIPT = Receipt("acme", "orders.xml", 120, 1_764_547_200.0, "ab" * 32)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    target = (str(request.getfixturevalue("pg_dsn")) if request.param == "postgresql"
              else tmp_path / "ledger.sqlite")
    opened = Ledger(target)
    yield opened
    opened.close()


def event(file_id: str | None = None) -> Event:
    return Event("2026-12-01T00:00:00.000+00:00", "test.event", "acme", file_id, {"n": 1})


def events(ledger: Ledger) -> int:
    return int(ledger.db.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def test_a_kept_statement_is_seen_by_the_next_and_committed(ledger: Ledger) -> None:
    with ledger.transaction():
        file_id = ledger.new_file_id(DAY)
        ledger.add_file(file_id, RECEIPT, local_name="x", received_at="2026-12-01T00:00:00")
        ledger.add_event(event(file_id))
        assert ledger.known_file(file_id).local_name == "x"
        ledger.add_event(event(file_id))  # kept until the COMMIT
    assert events(ledger) == 2
    assert ledger.local_names([file_id, "20261201-999999"]) == {file_id: "x"}


def test_a_failing_kept_statement_fails_its_transaction(ledger: Ledger) -> None:
    with ledger.transaction():
        file_id = ledger.new_file_id(DAY)
        ledger.add_file(file_id, RECEIPT, local_name="x", received_at="2026-12-01T00:00:00")
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)), \
            ledger.transaction():
        ledger.add_event(event())
        ledger.add_file(file_id, RECEIPT, local_name="y", received_at="2026-12-01")
    assert events(ledger) == 0  # the event before it went with the rollback
    assert ledger.known_file(file_id).local_name == "x"
    with ledger.transaction():  # the connection is fit for the next transaction
        ledger.add_event(event())
    assert events(ledger) == 1


def test_a_rollback_drops_the_kept_statements(ledger: Ledger) -> None:
    with pytest.raises(RuntimeError), ledger.transaction():
        ledger.add_event(event())
        raise RuntimeError("the file failed")
    assert events(ledger) == 0
    ledger.add_event(event())  # outside a transaction: at once
    assert events(ledger) == 1
