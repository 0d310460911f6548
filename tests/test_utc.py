"""Every time the ledger stores is UTC (ISO 8601, ``+00:00``), whatever the machine's zone;
the web page's "today" (the gateway's zone) counts a file received at 00:30 New York time;
file ids and issue dates keep the New York date; a migration rewrites older local times."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import ProjectConfig

from gateway.admin import queries
from gateway.admin.web.pages import local_today
from gateway.config import load_config
from gateway.ledger import store as ledger_module
from gateway.ledger.migrations import MIGRATIONS, times_to_utc
from gateway.ledger.reads.files import FileQuery, list_files
from gateway.ledger.store import Ledger, Receipt, open_ledger
from gateway.service.runner import run_once

ROOT = Path(__file__).resolve().parent.parent
# Sample files are copied into tests/cases so the suite never reads the working tree's inbox/.
CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
GOOD = (CASES_INBOX / "sample" / "acme-20261201-good.xml").read_bytes()
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def new_york_machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's own zone is New York (what ``datetime.now().astimezone()`` uses)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def one_file_project(config: ProjectConfig) -> Path:
    """Partner ``acme`` keeping the good sample in its inbox (the zone is the default's,
    America/New_York)."""
    config.partner("acme", inbox="inbox", disposition="keep")
    config.inbox("acme").joinpath("a.xml").write_bytes(GOOD)
    return config.write()


def stored_times(cfg: Path) -> list[str]:
    ledger = open_ledger(load_config(cfg), readonly=True)
    try:
        db = ledger.db
        rows = [*db.execute("SELECT received_at, processed_at FROM files").fetchone(),
                *db.execute("SELECT last_poll_at, last_success_at FROM partner_state"
                            ).fetchone(),
                *(at for (at,) in db.execute("SELECT at FROM events"))]
    finally:
        ledger.close()
    return rows


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_every_stored_time_is_utc_on_a_new_york_machine(
        tmp_path: Path, new_york_machine: None, request: pytest.FixtureRequest,
        backend: str) -> None:
    cfg = one_file_project(ProjectConfig(tmp_path).backend(request, backend))
    before = datetime.now(UTC).replace(microsecond=0)
    run_once(load_config(cfg), date(2026, 12, 1))
    times = stored_times(cfg)
    assert times and all(t.endswith("+00:00") for t in times), times
    assert all(before <= datetime.fromisoformat(t) <= datetime.now(UTC) for t in times), times


def test_a_file_received_at_0030_new_york_counts_as_today(
        tmp_path: Path, new_york_machine: None, monkeypatch: pytest.MonkeyPatch) -> None:
    received = datetime(2026, 12, 2, 0, 30, tzinfo=NEW_YORK)
    monkeypatch.setattr(ledger_module, "utc_now", lambda: received.astimezone(UTC))
    cfg = one_file_project(ProjectConfig(tmp_path))
    config = load_config(cfg)
    run_once(config, date(2026, 12, 2))

    ledger = open_ledger(config, readonly=True)
    try:
        row = ledger.files()[0]
        # Stored in UTC; the file id and the issue date keep the New York day.
        assert row.received_at == "2026-12-02T05:30:00+00:00"
        assert row.file_id.startswith("20261202-")
        assert {d for (d,) in ledger.db.execute("SELECT issue_date FROM licenses")} == {
            "2026-12-02"}
        noon = datetime(2026, 12, 2, 12, 0, tzinfo=NEW_YORK)
        today = local_today(config, noon)
        assert today == date(2026, 12, 2)
        health = queries.health(ledger, config, noon)
        assert [h.files_today for h in health] == [1]
        listed = list_files(ledger, FileQuery(since=today), config.gateway.zone)
        assert [r.file_id for r in listed] == [row.file_id]
    finally:
        ledger.close()


def test_cli_files_since_is_the_new_york_day(
        tmp_path: Path, new_york_machine: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """`files --since`: from New York midnight, not UTC midnight (22:00 in New York is
    already the next day in UTC)."""
    monkeypatch.setattr(ledger_module, "utc_now",
                        lambda: datetime(2026, 12, 2, 22, 0, tzinfo=NEW_YORK).astimezone(UTC))
    cfg = one_file_project(ProjectConfig(tmp_path))
    config = load_config(cfg)
    run_once(config, date(2026, 12, 2))
    assert len(queries.files(config, FileQuery(since=date(2026, 12, 2)))) == 1
    assert queries.files(config, FileQuery(since=date(2026, 12, 3))) == []


# -- the migration ----------------------------------------------------------------------------

BEFORE_UTC = MIGRATIONS.index(times_to_utc)  # the schema an older gateway left

OLD_TIMES = {
    "2026-12-02T00:30:00-05:00": "2026-12-02T05:30:00+00:00",
    "2026-07-01T23:59:59-04:00": "2026-07-02T03:59:59+00:00",
    "2026-12-02T14:30:00+09:00": "2026-12-02T05:30:00+00:00",
    "2026-12-02T05:30:00+00:00": "2026-12-02T05:30:00+00:00",
}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migration_rewrites_local_times_as_utc(
        tmp_path: Path, request: pytest.FixtureRequest, backend: str) -> None:
    target: Path | str = tmp_path / "ledger.sqlite"
    if backend == "postgresql":
        target = request.getfixturevalue("pg_dsn")
    ledger = Ledger(target, migrate=False)
    try:
        upgrade_to(ledger, BEFORE_UTC)
        with ledger.transaction():
            for n, old in enumerate(OLD_TIMES):
                file_id = f"20261202-{n:06d}"
                ledger.add_file(file_id, Receipt("acme", "a.xml", 1, 0.0, "0" * 64),
                                local_name="x", received_at=old, state="DONE")
                ledger.update_file(file_id, processed_at=old)
            ledger.set_partner_state("acme", last_poll_at="2026-12-02T00:30:00-05:00",
                                     last_success_at="2026-12-02T00:30:00-05:00",
                                     watched_since=None)
        assert BEFORE_UTC + 1 in ledger.upgrade()
        rows = ledger.db.execute("SELECT received_at, processed_at FROM files "
                                 "ORDER BY file_id").fetchall()
        state = ledger.partner_state("acme")
    finally:
        ledger.close()
    assert [tuple(r) for r in rows] == [(new, new) for new in OLD_TIMES.values()]
    assert (state["last_poll_at"], state["last_success_at"], state["watched_since"]) == (
        "2026-12-02T05:30:00+00:00", "2026-12-02T05:30:00+00:00", None)


def upgrade_to(ledger: Ledger, version: int) -> None:
    """Apply the first ``version`` migrations, as an older gateway did."""
    import gateway.ledger.store

    real = gateway.ledger.store.MIGRATIONS
    gateway.ledger.store.MIGRATIONS = real[:version]  # type: ignore[misc]
    try:
        ledger.upgrade()
    finally:
        gateway.ledger.store.MIGRATIONS = real  # type: ignore[misc]
    assert ledger.schema_version() == version


def test_sqlite_ledger_of_an_older_gateway_reads_in_utc(tmp_path: Path) -> None:
    """An existing SQLite ledger, opened by the new gateway, is migrated on open."""
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path, migrate=False)
    upgrade_to(ledger, BEFORE_UTC)
    with ledger.transaction():
        ledger.add_file("20261202-000001", Receipt("acme", "a", 1, 0.0, "0" * 64),
                        local_name="x", received_at="2026-12-02T00:30:00-05:00", state="DONE")
    ledger.close()
    Ledger(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT received_at FROM files").fetchone()[0] == \
            "2026-12-02T05:30:00+00:00"
