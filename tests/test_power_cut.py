"""A file's ARCHIVED and DONE records are committed without a sync of the ledger's log
(``Ledger.transaction(synced=False)``): a power cut may take them back. What it can leave is
the ledger of before those commits with every step on disk already done (the input archived
and disposed of, the ack delivered). The recovery must finish such files to exactly the
result of a run without the cut (tests/test_crash.py's reference), and the next synced
commit must make them durable again (the connection goes back to ``synchronous=FULL``).
"""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path

import pytest
from conftest import ProjectConfig
from test_crash import (
    assert_matches_reference,
    copy_project,
    make_project,
    query,
    rerun_until_done,
    run_gateway,
)

from gateway.config import load_config
from gateway.ledger.store import open_ledger

# The records of the two unsynced commits, as a power cut takes them back.
TAKEN_BACK = {
    "ARCHIVED and DONE": ("UPDATE files SET state = 'PROCESSED', archive_path = NULL",
                          "file.archived", "file.failed", "file.not_disposed", "file.done"),
    "DONE": ("UPDATE files SET state = 'ARCHIVED'", "file.not_disposed", "file.done"),
}


@pytest.mark.parametrize("lost", sorted(TAKEN_BACK))
def test_a_power_cut_taking_back_the_unsynced_records_is_finished_as_before(
        tmp_path: Path, lost: str) -> None:
    reference = tmp_path / "reference"
    config = make_project(reference, "good_first")
    assert run_gateway(config).returncode == 0
    cut = copy_project(reference, tmp_path / "cut")
    update, *events = TAKEN_BACK[lost]
    db = sqlite3.connect(cut / "data" / "ledger.sqlite")
    try:
        with db:
            db.execute(update)
            db.execute(f"DELETE FROM events WHERE kind IN ({', '.join('?' for _ in events)})",
                       events)
    finally:
        db.close()
    rerun_until_done(cut / "config.toml")
    assert_matches_reference(cut, reference)
    # Each file's steps recorded once again, not twice.
    for kind in events:
        if kind in ("file.archived", "file.done"):
            assert query(cut, "SELECT COUNT(*) FROM events WHERE kind = ?", (kind,)) == \
                [(query(reference, "SELECT COUNT(*) FROM events WHERE kind = ?",
                        (kind,))[0][0],)]


def test_an_unsynced_transaction_leaves_the_connection_synced(tmp_path: Path) -> None:
    config = load_config(ProjectConfig(tmp_path).partner("acme").write())
    ledger = open_ledger(config)
    try:
        synchronous = "PRAGMA synchronous"
        with ledger.transaction(synced=False):
            assert ledger.db.execute(synchronous).fetchone()[0] == 1  # NORMAL
            ledger.new_file_id(date(2026, 12, 1))
        assert ledger.db.execute(synchronous).fetchone()[0] == 2  # FULL
        with pytest.raises(RuntimeError), ledger.transaction(synced=False):
            raise RuntimeError("rolled back")
        assert ledger.db.execute(synchronous).fetchone()[0] == 2
        with ledger.transaction():
            assert ledger.db.execute(synchronous).fetchone()[0] == 2
    finally:
        ledger.close()
