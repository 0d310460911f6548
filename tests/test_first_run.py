"""Several `aim-gateway run --once` started together on a new data folder (SQLite ledger).

Each process is real and waits on a barrier file before it runs, so that all of them open and
migrate the new ledger at the same moment; ``AIMGW_PAUSE_AT=before_migrate`` then holds each
one between seeing an old schema and migrating it, so that the race is certain, not lucky.
Measured on the gateway that migrated outside the write lock: without the pause 12 of 15
rounds failed (2 to 4 of the 6 processes exited 1, "table files already exists" or
"duplicate column name"); with it, every round.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.migrations import MIGRATIONS

ROOT = Path(__file__).resolve().parent.parent
GOOD = ROOT / "inbox" / "sample" / "acme-20261201-good.xml"
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


def project(base: Path) -> Path:
    inbox = base / "inbox"
    inbox.mkdir(parents=True)
    for n in range(3):
        (inbox / f"acme-{n}.xml").write_bytes(GOOD.read_bytes().replace(
            b"ACME-20261201-001", f"ACME-FIRST-{n}".encode()).replace(
            b'ref="PO-44', f'ref="F{n}-'.encode()).replace(b'ref="WH-', f'ref="F{n}W-'.encode()))
    cfg = base / "config.toml"
    cfg.write_text(f"""
[gateway]
data_dir = "{base / 'data'}"
outbox_dir = "{base / 'outbox'}"

[partners.acme]
name = "Acme"
inbox = "{inbox}"
disposition = "keep"
""")
    return cfg


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
    cfg = project(tmp_path)
    results = run_together(cfg, tmp_path / "go")
    assert [code for code, _ in results] == [0] * PROCESSES, [err for _, err in results]

    conn = sqlite3.connect(tmp_path / "data" / "ledger.sqlite")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        numbers = [n for (n,) in conn.execute("SELECT license_number FROM licenses")]
        files = conn.execute("SELECT remote_name, state FROM files").fetchall()
    finally:
        conn.close()
    assert sorted(files) == [(f"acme-{n}.xml", "DONE") for n in range(3)]
    assert len(numbers) == 9 == len(set(numbers))
