"""`aim-gateway serve` as a real process: scheduled polls, recovery at start, clean SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import ProjectConfig
from conftest import wait_until as wait_for

ROOT = Path(__file__).resolve().parent.parent
# Sample files are copied into tests/cases so the suite never reads the working tree's inbox/.
CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
SAMPLES = CASES_INBOX / "sample"


def make_config(base: Path) -> Path:
    """Partner ``acme`` reading ``inbox/``, polled every second."""
    (base / "inbox").mkdir()
    return (ProjectConfig(base).set("gateway", poll_interval_seconds=1)
            .partner("acme", inbox="inbox").write())


def gateway(*args: str) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", *args]


def test_serve_polls_then_exits_zero_on_sigterm(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    # Output to a file, not a pipe nobody reads: a full pipe would block the service.
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 (lives as long as the process)
    proc = subprocess.Popen(gateway("serve", "--config", str(cfg)), stdout=log, stderr=log)
    try:
        shutil.copy(SAMPLES / "acme-20261201-good.xml", tmp_path / "inbox" / "a.xml")
        ack = tmp_path / "outbox" / "acme" / "a.xml.ack.xml"
        assert wait_for(ack.exists), (tmp_path / "serve.log").read_text(errors="replace")
        # A second file dropped while serving is taken by a later scheduled poll.
        shutil.copy(SAMPLES / "acme-20261201-partial.xml", tmp_path / "inbox" / "b.xml")
        assert wait_for((tmp_path / "outbox" / "acme" / "b.xml.ack.xml").exists)
        # SIGUSR1 prints every thread's stack (what a stuck service waits for) and serves on.
        proc.send_signal(signal.SIGUSR1)
        assert wait_for(lambda: "most recent call first" in (
            tmp_path / "serve.log").read_text(errors="replace"))
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0
    events = (tmp_path / "data" / "events.jsonl").read_text()
    assert '"service.start"' in events and '"service.stop"' in events
    assert sorted(p.name for p in (tmp_path / "inbox" / "processed").iterdir()) == [
        "a.xml", "b.xml"]


def test_serve_finishes_half_done_work_first(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    shutil.copy(SAMPLES / "acme-20261201-good.xml", tmp_path / "inbox" / "a.xml")
    env = {**os.environ, "AIMGW_CRASH_AT": "after_receipt"}
    crashed = subprocess.run(gateway("run", "--once", "--config", str(cfg)), env=env,
                             capture_output=True, check=False)
    assert crashed.returncode == 86
    db = sqlite3.connect(tmp_path / "data" / "ledger.sqlite")
    assert db.execute("SELECT state FROM files").fetchall() == [("RECEIVED",)]
    db.close()
    # Output to a file, not a pipe nobody reads: a full pipe would block the service.
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 (lives as long as the process)
    proc = subprocess.Popen(gateway("serve", "--config", str(cfg)), stdout=log, stderr=log)
    try:
        assert wait_for((tmp_path / "outbox" / "acme" / "a.xml.ack.xml").exists)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    db = sqlite3.connect(tmp_path / "data" / "ledger.sqlite")
    assert db.execute("SELECT state, status FROM files").fetchall() == [("DONE", "ACCEPTED")]
    assert db.execute("SELECT COUNT(*) FROM licenses").fetchone()[0] == 3
