"""Several `aim-gateway serve` workers sharing one PostgreSQL ledger and shared folders.

A real PostgreSQL (tests/pg_server.py) and a real sshd (tests/sftp_server.py). Workers are
real processes; one is killed with SIGKILL in the middle of the run. Then: every file taken
exactly once, every application licensed once, no license number repeated, each license in
exactly one ACE file, and no partner ever polled by two workers at once.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from conftest import ProjectConfig, wait_until
from sftp_server import SshServer

from gateway.ledger.migrations import MIGRATIONS

ROOT = Path(__file__).resolve().parent.parent
# Sample files are copied into tests/cases so the suite never reads the working tree's inbox/.
CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
GOOD = (CASES_INBOX / "sample" / "acme-20261201-good.xml").read_bytes()
LOCAL_PARTNERS = ("alpha", "bravo", "charlie", "delta")
FILES_PER_PARTNER = 6
LICENSES_PER_FILE = 3  # the good sample licenses PO-4411, PO-4412 (FTZ) and PO-4413


def submission(partner: str, n: int) -> bytes:
    tag = f"{partner[:3].upper()}{n:03d}"
    return (GOOD.replace(b"ACME-20261201-001", f"SUB-{tag}".encode())
            .replace(b'ref="PO-44', f'ref="{tag}-'.encode())
            .replace(b'ref="WH-', f'ref="{tag}W-'.encode()))


def build(base: Path, dsn: str, sshd: SshServer) -> tuple[Path, dict[str, Path]]:
    shared = base / "shared"
    config = (ProjectConfig(base).ledger(dsn)
              .set("gateway", data_dir=shared / "data", outbox_dir=shared / "outbox",
                   poll_interval_seconds=1, lease_seconds=3)
              .set("log", events_file=shared / "events.jsonl"))
    inboxes: dict[str, Path] = {}
    for partner in LOCAL_PARTNERS:
        inboxes[partner] = base / "in" / partner
        inboxes[partner].mkdir(parents=True)
        config.partner(partner, name=partner, inbox=inboxes[partner],
                       processed_dir=base / "done" / partner)
    account = sshd.account("echo")
    inboxes["echo"] = Path(account.inbox)
    config.sftp_partner("echo", sshd, account, timeout=5.0)
    for partner, inbox in inboxes.items():
        for n in range(FILES_PER_PARTNER):
            (inbox / f"{partner}-{n:02d}.xml").write_bytes(submission(partner, n))
    return config.write(), inboxes


def start_worker(cfg: Path, trace: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AIMGW_POLL_TRACE": str(trace)}
    # stderr to a file, not a pipe nobody reads: a full pipe would block the worker.
    with open(log, "ab") as err:
        return subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config",
                                 str(cfg)], env=env, stdout=subprocess.DEVNULL, stderr=err)


def stopped(proc: subprocess.Popen[bytes], log: Path) -> int:
    """The worker's exit code once it has stopped after SIGTERM. One that does not stop within
    60 s prints its threads' stacks (SIGUSR1), is killed, and fails the test with them."""
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: "most recent call first" in log.read_text(errors="replace"), 10)
        proc.kill()
        proc.wait(timeout=10)
        pytest.fail(f"a worker did not stop within 60 s of SIGTERM; its log and stacks:\n"
                    f"{log.read_text(errors='replace')[-8000:]}")


def done_count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        try:
            return int(conn.execute("SELECT COUNT(*) FROM files WHERE state = 'DONE'")
                       .fetchone()[0])
        except psycopg.errors.UndefinedTable:
            return 0



def work_is_empty(work: Path) -> bool:
    return not any(p.is_file() for p in work.rglob("*")) if work.exists() else True


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_share_partners_and_survive_a_killed_worker(
        tmp_path: Path, pg_dsn: str, sshd: SshServer, workers: int) -> None:
    cfg, inboxes = build(tmp_path, pg_dsn, sshd)
    total_files = len(inboxes) * FILES_PER_PARTNER
    trace = tmp_path / "polls.tsv"
    logs = [tmp_path / f"worker{n}.log" for n in range(workers)]
    procs = [start_worker(cfg, trace, log) for log in logs]
    try:
        # Kill one worker as soon as work is under way (some files done, most not).
        assert wait_until(lambda: done_count(pg_dsn) >= 3, 60), (
            f"{done_count(pg_dsn)} files done; "
            + " | ".join(log.read_text(errors="replace")[-2000:] for log in logs))
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(timeout=10)
        assert wait_until(lambda: done_count(pg_dsn) == total_files, 120), (
            f"{done_count(pg_dsn)} of {total_files} files done; "
            + " | ".join(log.read_text(errors="replace")[-2000:] for log in logs))
        # The kill may have landed mid-receipt (a temp file, or a received file whose row
        # never committed): a live worker's next poll removes it.
        work = tmp_path / "shared" / "data" / "work"
        assert wait_until(lambda: work_is_empty(work), 60), sorted(
            p.name for p in work.rglob("*"))
    finally:
        if procs[0].poll() is None:  # the test failed before its kill: no worker outlives it
            procs[0].kill()
            procs[0].wait(timeout=10)
        for proc in procs[1:]:
            proc.send_signal(signal.SIGTERM)
        codes = [stopped(proc, log) for proc, log in zip(procs[1:], logs[1:], strict=True)]
    assert codes == [0] * (workers - 1), [log.read_text(errors="replace") for log in logs]

    with psycopg.connect(pg_dsn) as conn:
        files = conn.execute("SELECT partner, remote_name, state, status FROM files").fetchall()
        numbers = [r[0] for r in conn.execute("SELECT license_number FROM licenses")]
        refs = conn.execute("SELECT partner, ref, COUNT(*) FROM licenses "
                            "GROUP BY partner, ref HAVING COUNT(*) > 1").fetchall()
        issued = conn.execute("SELECT license_number FROM applications WHERE reused = 0 "
                              "AND license_number IS NOT NULL").fetchall()
    # Every file taken exactly once and finished.
    assert len(files) == total_files
    assert len({(p, n) for p, n, _, _ in files}) == total_files
    assert {(s, st) for _, _, s, st in files} == {("DONE", "ACCEPTED")}
    # Every application licensed once, no number twice.
    assert len(numbers) == total_files * LICENSES_PER_FILE == len(set(numbers))
    assert refs == []
    assert sorted(n for (n,) in issued) == sorted(numbers)
    # Each license in exactly one ACE file (52 records, one per covered line, and FT60s).
    files_of: dict[str, set[str]] = {}
    for ace in (tmp_path / "shared" / "outbox" / "ace").glob("*.txt"):
        for record in ace.read_text().splitlines():
            number = None
            if record.startswith("52"):
                number = record[4:14].strip()
            elif record.startswith("60"):
                number = record[50:72].strip()
            if number:
                files_of.setdefault(number, set()).add(ace.name)
    assert sorted(files_of) == sorted(numbers)
    assert all(len(names) == 1 for names in files_of.values())
    # Inboxes emptied, nothing left in the shared work folders.
    assert all(not any(p.iterdir()) for p in inboxes.values())
    assert not any((work / "received").iterdir()) if (work / "received").exists() else True
    # No partner was ever polled by two workers at once.
    intervals: dict[str, list[tuple[float, float, str]]] = {}
    for line in trace.read_text().splitlines():
        partner, worker, start, end = line.split("\t")
        intervals.setdefault(partner, []).append((float(start), float(end), worker))
    assert set(intervals) == set(inboxes)
    for partner, spans in intervals.items():
        spans.sort()
        for (_s1, e1, w1), (s2, _e2, w2) in itertools.pairwise(spans):
            assert s2 >= e1 or w1 == w2, f"{partner}: {w1} and {w2} overlapped"
    # Work was really shared: more than one worker took part.
    assert len({w for spans in intervals.values() for *_, w in spans}) >= 2


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_db_upgrade_then_the_admin_commands_read_the_same_ledger(
        project: ProjectConfig, pg_dsn: str, backend: str) -> None:
    project.partner("acme", inbox="in")
    if backend == "postgresql":
        project.ledger(pg_dsn)
    cfg = project.write()
    project.inbox("acme").joinpath("a.xml").write_bytes(GOOD)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway.cli", *args, "--config",
                               str(cfg)], capture_output=True, text=True, check=False)

    first, again = cli("db", "upgrade"), cli("db", "upgrade")
    assert first.returncode == again.returncode == 0, first.stderr
    # Every migration, to the newest (a new migration must not need this test edited).
    assert f"-> {len(MIGRATIONS)}" in first.stdout and "up to date" in again.stdout
    assert cli("run", "--once", "--as-of", "2026-12-01").returncode == 0
    status = cli("status", "--json")
    assert status.returncode == 0, status.stderr
    assert '"acme"' in status.stdout
    files = cli("files", "--json")
    assert files.returncode == 0 and "a.xml" in files.stdout, files.stderr
    file_id = json.loads(files.stdout)[0]["file_id"]
    show = cli("show", file_id)
    assert show.returncode == 0 and "ACCEPTED" in show.stdout, show.stderr
    licenses = cli("licenses", "--json")
    assert licenses.returncode == 0 and len(json.loads(licenses.stdout)) == 3
