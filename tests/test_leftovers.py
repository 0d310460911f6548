"""What a worker killed mid-receipt leaves in data/work is removed while the service runs,
and nothing a live worker is receiving is ever removed (SQLite and PostgreSQL ledgers).

Leftovers are made as a kill leaves them (a temp file named after a process that has ended, a
received file whose receipt transaction never committed); the in-flight receipt is a real
open transaction on a second connection that has drawn its file id and moved its file in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import psycopg
import pytest
from conftest import ProjectConfig, wait_until

from gateway.config import load_config
from gateway.inbox.liveness import this_host
from gateway.ledger.store import Receipt, connect
from gateway.service.runner import Runner

ROOT = Path(__file__).resolve().parent.parent
# Sample files are copied into tests/cases so the suite never reads the working tree's inbox/.
CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
GOOD = (CASES_INBOX / "sample" / "acme-20261201-good.xml").read_bytes()


def ended_pid() -> int:
    """The pid of a process of this machine that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid



@pytest.fixture(params=["sqlite", "postgresql"])
def runner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runner]:
    config = ProjectConfig(tmp_path).backend(request, request.param)
    config.set("log", events_file=tmp_path / "events.jsonl").partner("acme", inbox="in")
    config.inbox("acme")
    cfg = config.write()
    runner = Runner(load_config(cfg))
    runner.recover()  # the start-up clean-up is done: what follows is the running service
    runner.layout.work_tmp.mkdir(parents=True, exist_ok=True)
    runner.layout.received.mkdir(parents=True, exist_ok=True)
    try:
        yield runner
    finally:
        runner.close()


def poll(runner: Runner) -> None:
    report = runner.poll(runner.config.partner("acme"))
    assert report.error is None, report.error


@pytest.mark.parametrize(("name", "removed"), [
    pytest.param("{dead}@{host}@acme-a.xml.part", True, id="ended-process-of-this-host"),
    pytest.param("{dead}@{host}@reprocess-20261201-000001.part", True, id="ended-reprocess"),
    pytest.param("{live}@{host}@acme-a.xml.part", False, id="live-process"),
    pytest.param("{own}@{host}@acme-a.xml.part", False, id="this-process"),
    pytest.param("{dead}@other-host.example@acme-a.xml.part", False, id="other-host"),
    pytest.param("{dead}-acme-a.xml.part", False, id="name-without-owner"),
])
def test_a_poll_removes_the_temp_files_of_ended_processes_only(
        runner: Runner, name: str, removed: bool) -> None:
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)  # another worker, mid-way
    try:
        temp = runner.layout.work_tmp / name.format(dead=ended_pid(), host=this_host(),
                                                    live=live.pid, own=os.getpid())
        temp.write_bytes(b"half a file")
        poll(runner)
    finally:
        live.communicate(b"")
    assert temp.exists() is not removed


def test_a_poll_removes_a_received_file_without_a_ledger_row(runner: Runner) -> None:
    orphan = runner.layout.received / "20261201-000007__a.xml"
    orphan.write_bytes(GOOD)
    poll(runner)
    assert not orphan.exists()
    events = [json.loads(line) for line in
              (runner.config.log.events_file).read_text().splitlines()]
    assert {"event": "recovery.cleaned", "files": [orphan.name]}.items() <= next(
        e for e in events if e["event"] == "recovery.cleaned").items()


def test_a_poll_keeps_a_received_file_that_has_its_row(runner: Runner) -> None:
    with runner.ledger.transaction():
        file_id = runner.ledger.new_file_id(date(2026, 12, 1))
        runner.ledger.add_file(file_id, Receipt("other", "a.xml", 1, 0.0, "0" * 64),
                               local_name=f"{file_id}__a.xml",
                               received_at="2026-12-01T00:00:00+00:00")
    kept = runner.layout.received / f"{file_id}__a.xml"
    kept.write_bytes(GOOD)
    # The same id under another name: a rolled-back receipt whose id was drawn again.
    orphan = runner.layout.received / f"{file_id}__b.xml"
    orphan.write_bytes(GOOD)
    poll(runner)
    assert kept.exists() and not orphan.exists()


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_a_receipt_in_flight_is_never_removed(runner: Runner, outcome: str) -> None:
    """Another worker has drawn its file id and moved its file in, and not yet committed: a
    poll waits for that receipt to end; then the file is kept if it was recorded and removed
    if its transaction rolled back (the worker died)."""
    target = runner.ledger.path
    other = connect(target)
    other.begin()
    file_id = "20261201-{:06d}".format(other.execute(
        "INSERT INTO file_counter (day, last) VALUES ('20261201', 1) ON CONFLICT (day) DO "
        "UPDATE SET last = file_counter.last + 1 RETURNING last").fetchone()[0])
    received = runner.layout.received / f"{file_id}__a.xml"
    received.write_bytes(GOOD)
    polling = threading.Thread(target=poll, args=(runner,))
    polling.start()
    try:
        assert wait_until(lambda: waiting_for_lock(polling, target)), "the poll never waited"
        assert received.exists()
        if outcome == "commit":  # a partner of its own: the poll of acme leaves its file be
            other.execute(
                "INSERT INTO files (file_id, partner, remote_name, size, mtime, sha256, "
                "local_name, received_at, state) VALUES (?, 'other', 'a.xml', 1, 0, ?, ?, "
                "'2026-12-01T00:00:00+00:00', 'RECEIVED')",
                (file_id, "0" * 64, received.name))
            other.commit()
        else:
            other.rollback()
    finally:
        polling.join(timeout=60)
        other.close()
    assert not polling.is_alive()
    assert received.exists() is (outcome == "commit")


def waiting_for_lock(polling: threading.Thread, target: object) -> bool:
    """True once the poll is blocked on the receipt's lock: PostgreSQL shows the waiting
    lock on file_counter; SQLite has one write lock, on which the poll's thread waits inside
    a ledger call (gateway/ledger/sqlite.py) from its first write on."""
    if isinstance(target, str):
        with psycopg.connect(target) as conn:
            return bool(conn.execute(
                "SELECT COUNT(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'file_counter' AND NOT l.granted AND l.database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
                ).fetchone()[0])
    frame = sys._current_frames().get(polling.ident or 0)
    return frame is not None and frame.f_code.co_filename.endswith("gateway/ledger/sqlite.py")
