"""The hash-chained audit trail (issue 14 item 12): every admin.<verb> event is an entry, and
`aim-gateway audit verify` names the first edited, removed, reordered or inserted one. Both
ledgers: SQLite and PostgreSQL (tests/pg_server.py)."""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import psycopg
import pytest
from pg_server import PgServer
from project_config import ProjectConfig

from gateway.cli import main
from gateway.config import load_config
from gateway.ledger import audit
from gateway.ledger.events import EventLog
from gateway.ledger.store import Ledger, ledger_location, open_ledger

BACKENDS = ["sqlite", "postgresql"]
PASSWORD = "correct horse battery staple"
COPIES = itertools.count(1)


class Done(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def cli(cfg: Path, *args: str, stdin: str = "") -> Done:
    """``aim-gateway --config cfg args`` run in this process (the command's code, what it
    printed): the commands here are about the audit trail, not the process; one test runs the
    real command (``subprocess_cli``)."""
    with pytest.MonkeyPatch.context() as patch:
        # pytest sets COLUMNS=80, to which tables are cut: a wide terminal shows whole cells.
        patch.setenv("COLUMNS", "250")
        patch.setattr(sys, "stdin", io.StringIO(stdin))
        out, err = io.StringIO(), io.StringIO()
        patch.setattr(sys, "stdout", out)
        patch.setattr(sys, "stderr", err)
        code = main(["--config", str(cfg), *args])
    return Done(code, out.getvalue(), err.getvalue())


def subprocess_cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(cfg), *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "250"})


def emit(cfg: Path, kind: str, **data: object) -> None:
    ledger = open_ledger(load_config(cfg))
    try:
        with ledger.transaction():
            EventLog(None).emit(ledger, kind, **data)  # type: ignore[arg-type]
    finally:
        ledger.close()


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def cfg(request: pytest.FixtureRequest, backend: str, project: ProjectConfig) -> Path:
    """An empty ledger on ``backend``."""
    return project.backend(request, backend).write()


@pytest.fixture(scope="module")
def template(request: pytest.FixtureRequest, backend: str,
             tmp_path_factory: pytest.TempPathFactory) -> Path | str:
    """The three-entry ledger, built once per backend (each test gets its own copy, see
    ``three``): the SQLite data folder, or the PostgreSQL database's name. The second entry
    has every column filled."""
    project = ProjectConfig(tmp_path_factory.mktemp("audit-template"))
    if backend == "postgresql":
        server: PgServer = request.getfixturevalue("pg_cluster")
        project.ledger(server.create(f"aimgw_audit_template_{os.getpid()}"))
    built = project.write()
    assert cli(built, "user", "add", "ann", "--role", "viewer", "--reason", "new",
               stdin=PASSWORD + "\n").returncode == 0
    emit(built, "admin.release", partner="acme", file_id="20261204-000001", actor="cli:kim",
         reason="disk was full", failures=3)
    assert cli(built, "user", "role", "ann", "operator", "--reason", "on call").returncode == 0
    location = ledger_location(load_config(built))
    return location.rsplit("/", 1)[1] if isinstance(location, str) else location.parent


@pytest.fixture
def three(request: pytest.FixtureRequest, backend: str, template: Path | str,
          project: ProjectConfig) -> Path:
    """A fresh copy of the three-entry ledger: the template's data folder copied, or a
    PostgreSQL database created from the template database."""
    if isinstance(template, str):
        server: PgServer = request.getfixturevalue("pg_cluster")
        copy = f"{template}_{next(COPIES)}"
        with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{template}"')
        return project.ledger(server.dsn(copy)).write()
    built = project.write()
    shutil.copytree(template, load_config(built).gateway.data_dir)
    return built


@pytest.fixture
def db(three: Path) -> Iterator[Ledger]:
    ledger = open_ledger(load_config(three))
    yield ledger
    ledger.close()


def verify(cfg: Path, *more: str) -> tuple[int, str]:
    done = cli(cfg, "audit", "verify", *more)
    return done.returncode, done.stdout + done.stderr


def test_an_intact_chain_verifies_and_lists_who_what_why(three: Path) -> None:
    done = subprocess_cli(three, "audit", "verify")  # the real command, its exit code
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("3 entries, chain intact; head #3 ")
    listed = subprocess_cli(three, "audit", "list").stdout
    assert "cli:kim" in listed and "release" in listed and "disk was full" in listed
    assert "user_role" in listed and "was=viewer" in listed and "on call" in listed
    assert PASSWORD not in listed and "argon2" not in listed


def _flip(value: object) -> object:
    """``value`` with one byte changed."""
    if isinstance(value, int):
        return 0 if value else 9  # entry 2 numbered 0: out of order
    text = str(value)
    return ("x" if text[0] != "x" else "y") + text[1:]


@pytest.mark.parametrize("column", ["seq", "at", "actor", "action", "reason", "partner",
                                    "file_id", "details", "prev_hash", "hash"])
def test_one_changed_byte_in_any_column_is_named(three: Path, db: Ledger, column: str) -> None:
    value = db.db.execute(f"SELECT {column} FROM audit_log WHERE seq = 2").fetchone()[0]
    with db.transaction():
        db.db.execute(f"UPDATE audit_log SET {column} = ? WHERE seq = 2", (_flip(value),))
    code, out = verify(three)
    named = 0 if column == "seq" else 2
    assert code == 1 and f"entry #{named}:" in out, out


def test_a_removed_entry_is_named(three: Path, db: Ledger) -> None:
    with db.transaction():
        db.db.execute("DELETE FROM audit_log WHERE seq = 2")
    code, out = verify(three)
    assert code == 1 and "entry #3: sequence 3 follows 1" in out, out


def test_swapped_entries_are_named(three: Path, db: Ledger) -> None:
    rows = {r[0]: r[1:] for r in db.db.execute("SELECT * FROM audit_log WHERE seq IN (2, 3)")}
    columns = ["at", "actor", "action", "reason", "partner", "file_id", "details",
               "prev_hash", "hash"]
    sets = ", ".join(f"{c} = ?" for c in columns)
    with db.transaction():
        db.db.execute("UPDATE audit_log SET prev_hash = 'moving' WHERE seq = 2")  # UNIQUE
        db.db.execute(f"UPDATE audit_log SET {sets} WHERE seq = 3", rows[2])
        db.db.execute(f"UPDATE audit_log SET {sets} WHERE seq = 2", rows[3])
    code, out = verify(three)
    assert code == 1 and "entry #2:" in out, out


def test_an_inserted_entry_is_named_even_with_its_hash_right(three: Path, db: Ledger) -> None:
    first = db.db.execute("SELECT hash FROM audit_log WHERE seq = 1").fetchone()[0]
    forged = audit.AuditEntry(2, "2026-12-04T00:00:00.000+00:00", "cli:mallory", "purge",
                              "cover tracks", None, None, "{}", first, "")
    digest = audit.entry_hash(first, forged.fields())
    with db.transaction():
        for seq in (3, 2):  # renumber the later entries to make room
            db.db.execute("UPDATE audit_log SET seq = seq + 1 WHERE seq = ?", (seq,))
        db.db.execute("UPDATE audit_log SET prev_hash = 'x' || prev_hash WHERE seq = 3")
        db.db.execute("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (*forged.fields().values(), first, digest))
    code, out = verify(three)
    assert code == 1 and "entry #3:" in out, out


def test_a_cut_tail_is_caught_with_the_head_kept_elsewhere(three: Path, db: Ledger) -> None:
    head = verify(three)[1].split()[-1]
    with db.transaction():  # the newest entry, and its event too (else verify names it)
        db.db.execute("DELETE FROM audit_log WHERE seq = 3")
        db.db.execute("DELETE FROM events WHERE kind = 'admin.user_role'")
    assert verify(three)[0] == 0  # what nobody can tell without a copy of the head
    code, out = verify(three, "--expect-head", head)
    assert code == 1 and "entry #3:" in out and "removed from its end" in out, out
    assert verify(three, "--expect-head", verify(three)[1].split()[-1])[0] == 0


APPENDER = """
import sys
from gateway.config import load_config
from gateway.ledger.events import EventLog
from gateway.ledger.store import open_ledger
ledger = open_ledger(load_config(sys.argv[1]))
events = EventLog(None)
for n in range(int(sys.argv[3])):
    with ledger.transaction():
        events.emit(ledger, "admin.test", actor=sys.argv[2], reason=str(n))
ledger.close()
"""


def test_two_processes_appending_at_once_keep_one_chain(cfg: Path) -> None:
    open_ledger(load_config(cfg)).close()  # migrated before the race
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(cfg), who, "25"],
                              stderr=subprocess.PIPE, text=True) for who in ("one", "two")]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    code, out = verify(cfg)
    assert code == 0 and out.startswith("50 entries, chain intact"), out


def test_an_admin_event_without_a_writable_ledger_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="writable ledger"):
        EventLog(None).emit(None, "admin.pause", actor="x")


def test_an_append_outside_a_transaction_is_refused(cfg: Path) -> None:
    ledger = open_ledger(load_config(cfg))
    try:
        with pytest.raises(Exception, match=r"(?i)transaction"):
            EventLog(None).emit(ledger, "admin.pause", actor="x")
    finally:
        ledger.close()
    assert main(["--config", str(cfg), "audit", "verify"]) == 0


def test_admin_events_from_before_the_audit_log_are_chained_in_order(cfg: Path) -> None:
    """The migration's backfill: admin events recorded by an older gateway (events table
    only) become the first entries, in the order they were recorded, their time kept."""
    ledger = open_ledger(load_config(cfg))
    try:
        with ledger.transaction():
            for at, kind in (("2026-01-02T00:00:00.000+00:00", "admin.reprocess"),
                             ("2026-01-01T00:00:00.000+00:00", "admin.purge")):
                ledger.db.execute("INSERT INTO events (at, kind, partner, file_id, data) "
                                  "VALUES (?, ?, NULL, NULL, ?)",
                                  (at, kind, '{"actor": "cli:old", "reason": "then"}'))
            ledger.db.execute("INSERT INTO events (at, kind, partner, file_id, data) VALUES "
                              "('2026-01-03', 'file.received', NULL, NULL, '{}')")
            audit.backfill(ledger.db)
        found = audit.entries(ledger.db)
    finally:
        ledger.close()
    assert [(e.seq, e.action, e.actor, e.at[:10]) for e in reversed(found)] == [
        (1, "reprocess", "cli:old", "2026-01-02"), (2, "purge", "cli:old", "2026-01-01")]
    assert verify(cfg)[0] == 0


def test_a_purge_is_audited_and_never_purges_the_trail(three: Path) -> None:
    """Any action that emits admin.<verb> is audited with no code of its own: purge here."""
    assert cli(three, "purge", "--as-of", "2099-01-01", "--reason", "yearly").returncode == 0
    code, out = verify(three)
    assert code == 0 and out.startswith("4 entries, chain intact"), out
    listed = json.loads(cli(three, "audit", "list", "--json").stdout)
    assert listed[0]["action"] == "purge" and listed[0]["actor"].startswith("cli:")
    assert [e["seq"] for e in listed] == [4, 3, 2, 1]
