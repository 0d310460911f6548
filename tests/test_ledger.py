"""The ledger on its own (issue 11, item 3): every case runs on SQLite (a file in tmp_path)
and on PostgreSQL (a fresh database of the test cluster), through ``Ledger`` and the
``Database`` interface each backend implements, so that the two cannot drift apart."""

from __future__ import annotations

import dataclasses
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import psycopg
import pytest
from conftest import acme_project, wait_until

from gateway.admin.web.app import create_app
from gateway.admin.web.auth import Guard
from gateway.admin.web.charts import monthly_tons
from gateway.config import load_config
from gateway.errors import FatalError, GatewayError, LedgerUnavailable
from gateway.ledger.db import Database, shown
from gateway.ledger.migrations import MIGRATIONS
from gateway.ledger.store import Ledger, Receipt, connect, ledger_location, open_ledger

BACKENDS = ["sqlite", "postgresql"]
DAY = date(2026, 12, 1)
RECEIPT = Receipt("acme", "orders.xml", 120, 1_764_547_200.0, "ab" * 32)


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a new, empty ledger lives on each backend."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_dsn"))
    return tmp_path / "ledger.sqlite"


@pytest.fixture
def ledger(target: Path | str) -> Iterator[Ledger]:
    opened = Ledger(target)
    try:
        yield opened
    finally:
        opened.close()


def backend(target: Path | str) -> str:
    return "sqlite" if isinstance(target, Path) else "postgresql"


def received(ledger: Ledger, receipt: Receipt = RECEIPT) -> str:
    """Record a receipt as ``inbox.receipt.record_receipt`` does; its file id."""
    with ledger.transaction():
        file_id = ledger.new_file_id(DAY)
        ledger.add_file(file_id, receipt, local_name=f"{file_id}__{receipt.remote_name}",
                        received_at="2026-12-01T08:00:00+00:00")
    return file_id


# -- files ----------------------------------------------------------------------------------


def test_a_received_file_reads_back_as_recorded(ledger: Ledger) -> None:
    file_id = received(ledger)
    row = ledger.known_file(file_id)
    assert file_id == "20261201-000001"
    assert (row.partner, row.remote_name, row.size, row.mtime, row.sha256, row.local_name,
            row.received_at, row.state, row.status, row.reprocess_of) == (
        "acme", "orders.xml", 120, 1_764_547_200.0, "ab" * 32,
        "20261201-000001__orders.xml", "2026-12-01T08:00:00+00:00", "RECEIVED", None, None)
    assert ledger.file(file_id) == row
    assert ledger.already_taken("acme", "orders.xml", 120, 1_764_547_200.0)


def test_file_ids_count_per_day(ledger: Ledger) -> None:
    ids = [received(ledger) for _ in range(3)]
    with ledger.transaction():
        other_day = ledger.new_file_id(date(2026, 12, 2))
    assert ids == ["20261201-000001", "20261201-000002", "20261201-000003"]
    assert other_day == "20261202-000001"


def test_a_file_moves_through_its_states(ledger: Ledger) -> None:
    file_id = received(ledger)
    seen = []
    for state, values in (("PROCESSED", {"status": "ACCEPTED", "applications": 2}),
                          ("ARCHIVED", {"archive_path": "archive/x"}), ("DONE", {})):
        with ledger.transaction():
            ledger.update_file(file_id, state=state, **values)
        seen.append((ledger.known_file(file_id).state,
                     [r.file_id for r in ledger.unfinished_files()]))
    assert seen == [("PROCESSED", [file_id]), ("ARCHIVED", [file_id]), ("DONE", [])]
    row = ledger.known_file(file_id)
    assert (row.status, row.applications, row.archive_path) == ("ACCEPTED", 2, "archive/x")


def test_a_reprocess_receipt_names_its_original(ledger: Ledger) -> None:
    original = received(ledger)
    again = received(ledger, Receipt("acme", "orders.xml", 120, 0.0, "ab" * 32,
                                      reprocess_of=original))
    assert ledger.known_file(again).reprocess_of == original
    assert not ledger.already_taken("acme", "orders.xml", 120, 0.0)


def test_an_unknown_file_is_none_or_a_lookup_error(ledger: Ledger) -> None:
    assert ledger.file("20261201-999999") is None
    with pytest.raises(LookupError, match="20261201-999999"):
        ledger.known_file("20261201-999999")


# -- license counter, leases, clock ---------------------------------------------------------


def test_license_numbers_drawn_by_many_workers_are_unique(target: Path | str) -> None:
    Ledger(target).close()  # the schema, before the workers start
    drawn: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = Ledger(target)
        try:
            numbers = [mine.next_license_sequence(2026) for _ in range(25)]
        finally:
            mine.close()
        with lock:
            drawn.extend(numbers)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(drawn) == list(range(1, 101))
    ledger = Ledger(target)
    try:
        assert (ledger.last_license_sequence(2026), ledger.next_license_sequence(2027)) == (
            100, 1)
    finally:
        ledger.close()


def test_a_lease_is_held_renewed_taken_over_and_released(ledger: Ledger) -> None:
    now = ledger.now()
    assert ledger.acquire_lease("acme", "w1", 60, now)
    assert not ledger.acquire_lease("acme", "w2", 60, now + 30)  # held and not expired
    assert ledger.renew_lease("acme", "w1", 60, now + 30)
    assert not ledger.renew_lease("acme", "w2", 60, now + 30)
    assert ledger.acquire_lease("acme", "w2", 60, now + 91)  # expired: anyone may take it
    assert not ledger.renew_lease("acme", "w1", 60, now + 92)  # w1 lost it
    assert not ledger.take_over_lease("acme", "w1", "w3", 60, now + 92)  # w1 is not owner
    assert ledger.take_over_lease("acme", "w2", "w3", 60, now + 92)
    assert ledger.lease_owner("acme") == "w3"
    ledger.release_lease("acme", "w2")  # not the owner: nothing happens
    assert ledger.lease_owner("acme") == "w3"
    ledger.release_lease("acme", "w3")
    assert ledger.lease_owner("acme") is None


def test_the_clock_is_epoch_seconds_and_moves_on(ledger: Ledger) -> None:
    first = ledger.now()
    second = ledger.now()
    assert abs(first - time.time()) < 5  # the server runs on this machine in the tests
    assert first <= second


# -- schema ---------------------------------------------------------------------------------


def test_a_new_ledger_gets_every_migration_once(target: Path | str) -> None:
    ledger = Ledger(target, migrate=False)
    try:
        before = ledger.schema_version()
        applied = ledger.upgrade()
        after = ledger.schema_version()
        again = ledger.upgrade()
    finally:
        ledger.close()
    assert (before, applied, after, again) == (
        0, list(range(1, len(MIGRATIONS) + 1)), len(MIGRATIONS), [])


def test_a_ledger_of_a_newer_gateway_is_refused(ledger: Ledger) -> None:
    with ledger.transaction():
        ledger.db.set_schema_version(len(MIGRATIONS) + 1)
    with pytest.raises(FatalError, match="Upgrade the gateway"):
        ledger.upgrade()


def test_the_refusal_never_shows_the_ledger_password(ledger: Ledger) -> None:
    """The message reaches logs and alerts: a DSN's password must not (found in review)."""
    ledger.path = "postgresql://aim:s3cret-pw@db.example:5432/aim"
    with ledger.transaction():
        ledger.db.set_schema_version(len(MIGRATIONS) + 1)
    with pytest.raises(FatalError) as refused:
        ledger.upgrade()
    assert "s3cret" not in str(refused.value)
    assert "postgresql://aim:***@db.example:5432/aim" in str(refused.value)


@pytest.mark.parametrize(("target", "expected"), [
    ("postgresql://aim:pw@h:5432/db?sslmode=require", "postgresql://aim:***@h:5432/db?sslmode=require"),
    ("postgres://:pw@h/db", "postgres://:***@h/db"),
    ("postgresql://aim@h/db", "postgresql://aim@h/db"),
    ("postgresql:///db", "postgresql:///db"),
    (Path("data/ledger.sqlite"), "data/ledger.sqlite"),
])
def test_a_location_is_shown_without_its_password(target: Path | str, expected: str) -> None:
    assert shown(target) == expected


def test_every_file_is_listed_by_default(ledger: Ledger) -> None:
    """``files()`` without a condition: PostgreSQL refused the old ``WHERE 1``."""
    file_id = received(ledger)
    assert [r.file_id for r in ledger.files()] == [file_id]


def test_a_reader_upgrades_an_older_sqlite_ledger_only(
        target: Path | str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader selects the newest columns: an older SQLite file is upgraded on open; a
    shared PostgreSQL schema is left to its writers (``db upgrade``)."""
    with monkeypatch.context() as older_gateway:
        older_gateway.setattr("gateway.ledger.store.MIGRATIONS", MIGRATIONS[:3])
        Ledger(target).close()
    reader = Ledger(target, readonly=True)
    try:
        version = reader.schema_version()
    finally:
        reader.close()
    assert version == {"sqlite": len(MIGRATIONS), "postgresql": 3}[backend(target)]


# -- integrity ------------------------------------------------------------------------------


def test_integrity_problems_name_a_license_issued_twice(ledger: Ledger) -> None:
    assert ledger.integrity_problems() == []
    file_id = received(ledger)
    with ledger.transaction():
        ledger.add_applications([(file_id, 1, "PO-1", "LICENSED", "AL2600001", 0, 1, "d"),
                                 (file_id, 2, "PO-2", "LICENSED", "AL2600001", 0, 1, "d"),
                                 (file_id, 3, "PO-1", "LICENSED", "AL2600002", 1, 1, "d")])
    assert ledger.integrity_problems() == ["license AL2600001 issued to two applications"]


# -- errors ---------------------------------------------------------------------------------


def make_unavailable(ledger: Ledger, target: Path | str) -> Database | None:
    """SQLite: another connection holds the write lock (and our wait is cut short);
    PostgreSQL: the server ended our connection. Returns what to close afterwards."""
    if isinstance(target, Path):
        ledger.db.execute("PRAGMA busy_timeout = 50")
        holder = connect(target)
        holder.begin()
        return holder
    others = ("FROM pg_stat_activity WHERE datname = current_database() "
              "AND pid != pg_backend_pid()")
    with psycopg.connect(target, autocommit=True) as admin:
        admin.execute(f"SELECT pg_terminate_backend(pid) {others}")
        assert wait_until(lambda: admin.execute(f"SELECT COUNT(*) {others}").fetchone() == (0,))
    return None


@pytest.mark.parametrize("step", ["transaction", "write", "many"])
def test_a_busy_or_unreachable_ledger_is_ledger_unavailable(
        ledger: Ledger, target: Path | str, step: str) -> None:
    holder = make_unavailable(ledger, target)
    try:
        with pytest.raises(LedgerUnavailable):
            if step == "transaction":
                with ledger.transaction():
                    pass
            elif step == "write":
                ledger.set_partner_state("acme", failures=1)
            else:
                ledger.forget_remote("acme", ["a.xml", "b.xml"])
    finally:
        if holder is not None:
            holder.close()


def test_a_ledger_server_out_of_reach_is_ledger_unavailable() -> None:
    with pytest.raises(LedgerUnavailable, match="Cannot reach the ledger database"):
        Ledger("postgresql://postgres@127.0.0.1:1/none")


@pytest.mark.parametrize("kind", BACKENDS)
def test_the_admin_page_answers_503_while_the_ledger_is_unavailable(
        tmp_path: Path, kind: str) -> None:
    """SQLite: another process holds the file in exclusive mode (the page's reader waits
    SQLite's 5 s, then is refused); PostgreSQL: no server where the DSN points."""
    config = load_config(acme_project(tmp_path, "delete"))
    holder = None
    if kind == "sqlite":
        open_ledger(config).close()
        holder = sqlite3.connect(ledger_location(config), isolation_level=None)
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("DELETE FROM file_counter")
    else:
        config = dataclasses.replace(config, gateway=dataclasses.replace(
            config.gateway, ledger="postgresql://postgres@127.0.0.1:1/none"))
    token = secrets.token_urlsafe(32)
    try:
        response = create_app(config, Guard(token)).test_client().get(
            "/", headers={"Authorization": f"Bearer {token}"})
    finally:
        if holder is not None:
            holder.close()
    assert (response.status_code, "Ledger unavailable" in response.get_data(as_text=True)) \
        == (503, True)


def test_a_gateway_bug_in_sql_keeps_the_driver_error(ledger: Ledger) -> None:
    """A wrong statement is the gateway's bug, not a busy ledger: it is not turned into a
    TransientError (which a poll would retry without a traceback)."""
    with pytest.raises(Exception) as raised:
        ledger.db.execute("SELECT no_such_column FROM files")
    assert not isinstance(raised.value, GatewayError)


# -- JSON unnesting -------------------------------------------------------------------------


def test_json_arrays_unnest_alike(ledger: Ledger) -> None:
    """Each license keeps its products as one JSON array of arrays (licensing.PRODUCT_FIELDS);
    the charts read them row by row, on either database."""
    file_id = received(ledger)
    products = [["7601100000", "primary", "CA", "NOT_APPLICABLE", "CA", 2, "2500.5", "100"],
                ["7604210000", "extrusions", "CN", "AE", "MX", 1, "1000", "50"]]
    with ledger.transaction():
        ledger.add_licenses([("AL2600001", "acme", "PO-1", "d", file_id, "2026-12-01",
                              "2026-12-01", "2027-03-01", "01", "3004", "I", "E", "M", "CA",
                              3, "3500.5", "150", json.dumps(products), "REGULAR", "gateway",
                              None)])
    db = ledger.db
    rows = db.execute(
        f"SELECT {db.json_text('p.value', 1)}, {db.json_text('p.value', 4)}, "
        f"{db.json_real('p.value', 6)} FROM licenses l, {db.json_elements('l.products', 'p')} "
        "ORDER BY 1").fetchall()
    assert [tuple(r) for r in rows] == [("extrusions", "MX", 1000.0), ("primary", "CA", 2500.5)]
    assert monthly_tons(db, "cast_country", "2026-12", "2026-12") == {
        ("2026-12", "CA"): 2.5005, ("2026-12", "MX"): 1.0}


def test_a_failed_commit_of_an_unsynced_transaction_leaves_the_next_ones_synced(
        tmp_path: Path) -> None:
    """``transaction(synced=False)`` lowers SQLite's synchronous for its own COMMIT only. A
    COMMIT that fails (a deferred foreign key stands in for any) is rolled back and its error
    raised as it is; every later transaction is synced again (review of issue 15: the
    connection stayed at NORMAL, every later receipt unsynced, and the error was masked)."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        def synchronous() -> int:
            return int(ledger.db.execute("PRAGMA synchronous").fetchone()[0])

        assert synchronous() == 2  # FULL
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"), \
                ledger.transaction(synced=False):
            ledger.db.execute("PRAGMA defer_foreign_keys=ON")
            ledger.db.execute(
                "INSERT INTO file_failures (file_id, partner) VALUES ('nope', 'acme')")
        assert not ledger.db.conn.in_transaction  # type: ignore[attr-defined]
        with ledger.transaction():
            assert synchronous() == 2
        assert ledger.db.execute("SELECT COUNT(*) FROM file_failures").fetchone() == (0,)
    finally:
        ledger.close()
