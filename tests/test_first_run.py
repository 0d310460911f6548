"""Several `aim-gateway run --once` started together on a new data folder (SQLite ledger).

Each process is real and waits on a barrier file before it runs, so that all of them open and
migrate the new ledger at the same moment; ``AIMGW_PAUSE_AT=before_migrate`` then holds each
one between seeing an old schema and migrating it, so that the race is certain, not lucky.
Measured on the gateway that migrated outside the write lock: without the pause 12 of 15
rounds failed (2 to 4 of the 6 processes exited 1, "table files already exists" or
"duplicate column name"); with it, every round.

Opening a new ledger together has a second race, rarer (about one round in 15 of the six
runs): turning the file into WAL answers "database is locked" at once to a loser. Its own
test opens new ledgers from 12 processes, 150 rounds (about 5 s): every one of 6 runs failed
on the gateway without a retry.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ProjectConfig, wait_until

from gateway.ledger.migrations import MIGRATIONS

ROOT = Path(__file__).resolve().parent.parent
# Sample files are copied into tests/cases so the suite never reads the working tree's inbox/.
CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
GOOD = CASES_INBOX / "sample" / "acme-20261201-good.xml"
PROCESSES = 6

# Imports first, then the barrier, then the CLI: the processes start their run together.
_LAUNCH = """
import os, sys, time
from pathlib import Path
import gateway.cli
barrier = Path(sys.argv[1])
while not barrier.exists():
    time.sleep(0.001)
sys.exit(gateway.cli.main(sys.argv[2:]))
"""


def first_run_project(base: Path) -> Path:
    inbox = base / "inbox"
    inbox.mkdir(parents=True)
    for n in range(3):
        (inbox / f"acme-{n}.xml").write_bytes(GOOD.read_bytes().replace(
            b"ACME-20261201-001", f"ACME-FIRST-{n}".encode()).replace(
            b'ref="PO-44', f'ref="F{n}-'.encode()).replace(b'ref="WH-', f'ref="F{n}W-'.encode()))
    return ProjectConfig(base).partner("acme", inbox="inbox", disposition="keep").write()


def run_together(cfg: Path, barrier: Path) -> list[tuple[int, str]]:
    env = {**os.environ, "AIMGW_PAUSE_AT": "before_migrate:0.3"}
    procs = [subprocess.Popen([sys.executable, "-c", _LAUNCH, str(barrier), "run", "--once",
                               "--config", str(cfg), "--as-of", "2026-12-01"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(PROCESSES)]
    barrier.touch()
    return [(proc.wait(timeout=120), proc.stderr.read().decode(errors="replace"))  # type: ignore[union-attr]
            for proc in procs]


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_first_runs_migrate_once(tmp_path: Path, round_: int) -> None:
    cfg = first_run_project(tmp_path)
    results = run_together(cfg, tmp_path / "go")
    assert [code for code, _ in results] == [0] * PROCESSES, [err for _, err in results]

    conn = sqlite3.connect(tmp_path / "data" / "ledger.sqlite")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        numbers = [n for (n,) in conn.execute("SELECT license_number FROM licenses")]
        files = conn.execute("SELECT remote_name, state FROM files").fetchall()
        events = conn.execute("SELECT at, kind, file_id, data FROM events ORDER BY id").fetchall()
    finally:
        conn.close()
    # On a failure: what each process said and what the ledger recorded, to tell a race apart.
    assert sorted(files) == [(f"acme-{n}.xml", "DONE") for n in range(3)], (
        [err for _, err in results], events)
    assert len(numbers) == 9 == len(set(numbers))


# Each child opens one new ledger per round, all of them at once (a barrier file per round),
# and reports the round it finished with a file; it prints what failed.
_OPENER = """
import sys, time
from pathlib import Path
from gateway.ledger.sqlite import SqliteDb
from gateway.errors import FatalError
base, me, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for n in range(rounds):
    while not (base / f"go-{n}").exists():
        time.sleep(0.0002)
    try:
        SqliteDb(base / f"ledger-{n}.sqlite", readonly=False).close()
    except FatalError as err:
        print(f"round {n}: {err}", flush=True)
    (base / f"done-{n}-{me}").touch()
"""
OPENERS, OPEN_ROUNDS = 12, 150


def test_processes_opening_a_new_ledger_together_all_open_it(tmp_path: Path) -> None:
    """Turning a new SQLite file into WAL makes SQLite answer "database is locked" at once,
    without waiting, to a process that loses the race (it avoids a deadlock); the gateway
    tries again (``ledger.sqlite._enable_wal``)."""
    procs = [subprocess.Popen([sys.executable, "-c", _OPENER, str(tmp_path), str(n),
                               str(OPEN_ROUNDS)], stdout=subprocess.PIPE, text=True)
             for n in range(OPENERS)]
    try:
        for n in range(OPEN_ROUNDS):
            (tmp_path / f"go-{n}").touch()
            deadline = time.monotonic() + 60
            while len(list(tmp_path.glob(f"done-{n}-*"))) < OPENERS:
                assert time.monotonic() < deadline, f"round {n} never finished"
                time.sleep(0.001)
    finally:
        outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    assert "".join(outputs) == ""


def _paused_run(cfg: Path, go_on: Path) -> subprocess.Popen[str]:
    """``run --once`` that stops after fetching its first file (a temp file in work/, not yet
    recorded) until ``go_on`` exists."""
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "--config", str(cfg), "run", "--once",
         "--as-of", "2026-12-01"], env={**os.environ, "AIMGW_PAUSE_AT": f"after_fetch:@{go_on}"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_late_start_never_cleans_the_work_of_a_run_that_started_beside_another(
        tmp_path: Path) -> None:
    """Found in a full-suite run under load (six first runs at once left one file RECEIVED,
    every process exit 0): the data folder's lock went only to the first process; one that
    started beside it worked without it, and a third process starting after the first had
    ended took the lock, believed itself alone and removed the second one's work files as a
    crash's leftovers. Now every gateway process holds the folder's lock, shared, for its life;
    one that finds no other holder (exclusive at once) alone cleans up."""
    cfg = first_run_project(tmp_path)
    # The first process works for another partner in the same data folder.
    other = ProjectConfig(tmp_path).partner("other", inbox="inbox-other")
    (other.inbox("other") / "o.xml").write_bytes(GOOD.read_bytes())
    other_cfg = other.write(tmp_path / "other.toml")
    data, work = tmp_path / "data", tmp_path / "data" / "work" / "tmp"
    leave, go_on = tmp_path / "leave", tmp_path / "go-on"
    first = _paused_run(other_cfg, leave)
    try:
        assert wait_until(lambda: work.is_dir() and any(work.iterdir()), 60)
        # The second starts beside the first and stops with acme's first file fetched.
        second = _paused_run(cfg, go_on)
        assert wait_until(lambda: any("@acme-" in p.name for p in work.iterdir()), 60)
        fetched = sorted(p.name for p in work.iterdir() if "@acme-" in p.name)
        leave.touch()  # the first ends: the second is now the only one at work
        assert first.wait(timeout=120) == 0
        # The third starts now, finds acme leased by the second, and ends.
        third = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(cfg),
                                "run", "--once", "--as-of", "2026-12-01"],
                               capture_output=True, text=True, timeout=120)
        assert third.returncode == 0, third.stderr
        assert sorted(p.name for p in work.iterdir()) == fetched  # its work left alone
        go_on.touch()
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
    finally:
        leave.touch()
        go_on.touch()
        first.wait(timeout=120)
    assert "ERROR" not in out, out
    conn = sqlite3.connect(data / "ledger.sqlite")
    try:
        files = conn.execute("SELECT remote_name, state FROM files WHERE partner = 'acme'"
                             ).fetchall()
    finally:
        conn.close()
    assert sorted(files) == [(f"acme-{n}.xml", "DONE") for n in range(3)]
