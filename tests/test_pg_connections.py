"""PostgreSQL connections kept for reuse (gateway/ledger/postgres.py): a ledger closed while
another of the process is open on the same database leaves its connection to the next one
(serve's lease keepers opened a new server process every poll), never one in a transaction
or one the server ended; the last ledger closed leaves the database without sessions."""

from __future__ import annotations

import psycopg
import pytest
from conftest import wait_until

from gateway.ledger import postgres
from gateway.ledger.store import Ledger


def backend(ledger: Ledger) -> int:
    return int(ledger.db.execute("SELECT pg_backend_pid()").fetchone()[0])


def sessions(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as admin:
        return int(admin.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = "
                                 "current_database() AND pid != pg_backend_pid()").fetchone()[0])


def test_a_closed_ledgers_connection_serves_the_next_while_another_is_open(pg_dsn: str) -> None:
    main = Ledger(pg_dsn)
    keeper = Ledger(pg_dsn, migrate=False)
    pid = backend(keeper)
    keeper.close()
    again = Ledger(pg_dsn, migrate=False)
    assert backend(again) == pid
    again.db.begin()
    again.db.execute("SELECT 1")
    again.close()  # inside a transaction: closed, not kept
    fresh = Ledger(pg_dsn, migrate=False)
    assert backend(fresh) != pid
    fresh.close()
    main.close()
    # A client's close does not wait for its server session to end: a moment later it has.
    assert wait_until(lambda: sessions(pg_dsn) == 0)


def test_a_kept_connection_the_server_ended_is_not_reused(pg_dsn: str) -> None:
    main = Ledger(pg_dsn)
    keeper = Ledger(pg_dsn, migrate=False)
    pid = backend(keeper)
    keeper.close()
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert wait_until(lambda: admin.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() is None)
    again = Ledger(pg_dsn, migrate=False)
    assert backend(again) != pid
    again.close()
    main.close()


def test_a_connection_kept_too_long_is_not_reused(pg_dsn: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A firewall or NAT may have dropped a flow quiet for minutes without a word: a kept
    connection older than ``_IDLE_SECONDS`` is closed, never handed out (review of issue 15);
    a new one has TCP keepalives on."""
    main = Ledger(pg_dsn)
    keeper = Ledger(pg_dsn, migrate=False)
    pid = backend(keeper)
    keeper.close()
    monkeypatch.setattr(postgres, "_IDLE_SECONDS", 0.0)
    again = Ledger(pg_dsn, migrate=False)
    assert backend(again) != pid
    assert isinstance(again.db, postgres.PostgresDb)
    assert again.db.conn.info.get_parameters().get("keepalives_idle") == "30"
    again.close()
    main.close()


def counter_backend(ledger: Ledger) -> int:
    """The backend of the process's counter connection, after a draw on ``ledger``.

    Waits until it is the only one listed: a counter connection closed by this side (kept too
    long) has a backend that ends a moment later, listed until then with the same last
    statement."""
    ledger.next_license_sequence(2026)
    pids: list[int] = []

    def listed() -> bool:
        pids[:] = [int(row[0]) for row in ledger.db.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND "
            "query LIKE 'INSERT INTO license_counter%' AND pid != pg_backend_pid()")]
        return len(pids) == 1

    assert wait_until(listed), f"counter backends listed: {pids}"
    return pids[0]


def test_the_ledgers_of_a_process_draw_numbers_on_one_counter_connection(pg_dsn: str) -> None:
    """serve's threads each hold a ledger; their draws share one counter connection (one
    server process each was 8 of a worker's 28), numbers still unique and in order; the
    last ledger closed closes it too."""
    ledgers = [Ledger(pg_dsn, migrate=i > 0) for i in range(3)]
    pids = {counter_backend(ledger) for ledger in ledgers}
    assert len(pids) == 1
    assert sessions(pg_dsn) == 4  # three ledgers' own and the counter's
    assert [ledger.next_license_sequence(2026, count=2) for ledger in ledgers] == [5, 7, 9]
    for ledger in ledgers:
        ledger.close()
    assert wait_until(lambda: sessions(pg_dsn) == 0)


def test_a_counter_connection_the_server_ended_or_kept_too_long_is_replaced(
        pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the kept connections: the next draw connects anew, and does not fail."""
    main = Ledger(pg_dsn)
    pid = counter_backend(main)
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert wait_until(lambda: admin.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() is None)
    again = counter_backend(main)
    assert again != pid
    monkeypatch.setattr(postgres, "_IDLE_SECONDS", 0.0)
    assert counter_backend(main) != again
    assert main.last_license_sequence(2026) == 3
    main.close()
