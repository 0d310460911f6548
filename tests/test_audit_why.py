"""The audit trail's gaps found in review (issue 14 item 12): every admin action says why,
a purge is audited before it deletes anything, `audit verify` cross-checks the events table,
an admin event has an actor, and a reason that is not UTF-8 is a clear error."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from project_config import ProjectConfig

from gateway.admin import actions
from gateway.config import Config, load_config
from gateway.ledger.events import EventLog
from gateway.ledger.store import FileRow, open_ledger
from gateway.storage import Layout

PASSWORD = "correct horse battery staple"


@pytest.fixture
def cfg(project: ProjectConfig) -> Path:
    return project.write()


def cli(cfg: Path, *args: str | bytes, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(cfg), *args],
                          input=stdin, capture_output=True, text=True, timeout=120)


def _sql(cfg: Path, query: str) -> list[tuple[object, ...]]:
    ledger = open_ledger(load_config(cfg))
    try:
        with ledger.transaction():
            return list(ledger.db.execute(query).fetchall())
    finally:
        ledger.close()


@pytest.mark.parametrize("args", [
    ("purge",), ("release", "20261201-000001"), ("user", "add", "ann", "--role", "viewer"),
    ("user", "passwd", "ann"), ("user", "role", "ann", "operator"),
    ("user", "remove", "ann")])
def test_every_changing_command_needs_a_reason(cfg: Path, args: tuple[str, ...]) -> None:
    done = cli(cfg, *args, stdin=PASSWORD + "\n")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--reason" in done.stderr
    blank = cli(cfg, *args, "--reason", "  ", stdin=PASSWORD + "\n")
    assert blank.returncode != 0 and "reason" in blank.stderr, blank.stderr


def test_a_dry_run_purge_needs_no_reason_and_a_purge_records_it(cfg: Path) -> None:
    open_ledger(load_config(cfg)).close()
    assert cli(cfg, "purge", "--dry-run").returncode == 0
    assert cli(cfg, "purge", "--reason", "yearly clean-up").returncode == 0
    [(reason,)] = _sql(cfg, "SELECT reason FROM audit_log WHERE action = 'purge'")
    assert reason == "yearly clean-up"


def test_one_reason_cleaner() -> None:
    """Command line and web page clean a reason in one place (gateway/admin/reasons.py)."""
    from gateway.admin import reasons

    gateway = Path(reasons.__file__).parent.parent
    copies = [path.name for path in gateway.rglob("*.py") if path != Path(reasons.__file__)
              and ("MAX_REASON =" in (text := path.read_text()) or
                   '" ".join(reason.split())' in text)]
    assert copies == []
    assert reasons.clean_reason("  a\n b ", "purge") == "a b"


def test_a_purge_that_fails_half_way_is_audited_already(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """admin.purge is committed before anything is deleted: a purge that dies after its
    first deletions (here: removing the originals fails) has its audit entry already."""
    from test_admin import Project

    project = Project(tmp_path)
    project.run()

    def boom(*_: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(actions, "_purge_archive", boom)
    later = datetime.now(UTC) + timedelta(days=400)
    with pytest.raises(OSError):
        actions.purge(project.config, now=later, actor="cli:test", reason="yearly")
    assert project.one("SELECT COUNT(*) FROM findings") == 0  # deleted before the failure
    assert project.one("SELECT COUNT(*) FROM audit_log WHERE action = 'purge' "
                       "AND actor = 'cli:test' AND reason = 'yearly'") == 1


@pytest.mark.parametrize("gone", ["last", "all"])
def test_verify_names_an_admin_event_whose_entry_is_gone(cfg: Path, gone: str) -> None:
    assert cli(cfg, "user", "add", "ann", "--role", "viewer", "--reason", "new",
               stdin=PASSWORD + "\n").returncode == 0
    assert cli(cfg, "user", "role", "ann", "operator", "--reason", "on call").returncode == 0
    ledger = open_ledger(load_config(cfg))
    try:
        with ledger.transaction():
            ledger.db.execute("DELETE FROM audit_log" + (
                " WHERE seq = (SELECT MAX(seq) FROM audit_log)" if gone == "last" else ""))
    finally:
        ledger.close()
    done = cli(cfg, "audit", "verify")
    assert done.returncode == 1, done.stdout
    named = "admin.user_role" if gone == "last" else "admin.user_add"  # the first missing
    assert named in done.stdout and "no audit entry" in done.stdout


def test_an_admin_event_without_an_actor_is_refused(cfg: Path) -> None:
    ledger = open_ledger(load_config(cfg))
    try:
        with pytest.raises(ValueError, match="actor"), ledger.transaction():
            EventLog(None).emit(ledger, "admin.pause", reason="x")
    finally:
        ledger.close()
    assert _sql(cfg, "SELECT COUNT(*) FROM audit_log") == [(0,)]


def test_a_reason_that_is_not_utf8_is_a_clear_error(cfg: Path) -> None:
    done = subprocess.run([sys.executable.encode(), b"-m", b"gateway.cli", b"--config",
                           str(cfg).encode(), b"pause", b"acme", b"--reason", b"bad\xff"],
                          capture_output=True, timeout=120, env={"LC_ALL": "C.UTF-8",
                          "PATH": "/usr/bin:/bin"})
    err = done.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err
    assert done.returncode == 2 and "UTF-8" in err, err


def test_a_resend_that_waited_for_a_reprocess_never_sends_the_replaced_ack(
        project: ProjectConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The resend decides what to send under the partner's lease: one that waited for a
    reprocess of the same file is refused (the reprocess's ack holds the name now) and is
    not audited as sent; the partner keeps the new ack."""
    from test_operations import DAY, GOOD

    from gateway.admin import operations
    from gateway.errors import FatalError
    from gateway.service.acks import stored_ack
    from gateway.service.runner import run_once

    config = load_config(project.partner("acme").write())
    shutil.copy(GOOD, project.inbox("acme") / "a.xml")
    run_once(config, DAY)
    [row] = _files(config)
    waiting, refused = threading.Event(), []
    real_leased = operations.leased

    @contextmanager
    def leased(*args: Any, **kwargs: Any) -> Iterator[None]:
        waiting.set()  # the resend has decided what it could and now waits for the lease
        with real_leased(*args, **kwargs):
            yield

    def resend() -> None:
        try:
            operations.resend(config, row.file_id, "partner lost it", "cli:test")
        except FatalError as err:
            refused.append(str(err))

    sender = threading.Thread(target=resend)

    @contextmanager
    def watch(_: Path) -> Iterator[None]:  # the reprocess holds the lease in here
        sender.start()
        assert waiting.wait(60)
        yield

    monkeypatch.setattr(operations, "leased", leased)
    new_id = actions.reprocess(config, row.file_id, "rules fixed", actor="cli:test",
                               as_of=DAY, watch=watch)
    sender.join(120)
    assert refused and "replaced" in refused[0], refused
    new = {r.file_id: r for r in _files(config)}[new_id]
    sent = config.gateway.outbox_dir / "acme" / str(new.ack_name)
    assert sent.read_bytes() == stored_ack(Layout.of(config), new).read_bytes()
    assert _sql(project.path, "SELECT COUNT(*) FROM audit_log WHERE action = 'resend'") == \
        [(0,)]


def _files(config: Config) -> list[FileRow]:
    ledger = open_ledger(config, readonly=True)
    try:
        return ledger.files()
    finally:
        ledger.close()
