"""A reprocess that fails (issue 10, poison files): the original's acknowledgment, which carries
the licenses it issued, is never removed, replaced or delivered over by the failed reprocess;
the failure is counted like a poll's file (retried by the next polls, quarantined after 3); the
command line and the web page say what happened."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from sftp_server import SshServer
from test_poison import AS_OF, QUARANTINE_AFTER, Project, good_file
from test_poison_sftp import GOOD, project_with

from gateway.admin import actions as admin
from gateway.admin.web.app import create_app
from gateway.admin.web.auth import Guard
from gateway.cli import main
from gateway.config import Config, load_config
from gateway.errors import FatalError, RejectedSubmission, TransientError
from gateway.findings import finding
from gateway.ledger.store import FileRow
from gateway.service import process
from gateway.service.runner import run_once

ACK = "orders.xml.ack.xml"


def refuse_record(mp: pytest.MonkeyPatch) -> None:
    """The ledger refuses the reprocess's record ("disk full"), after its outputs went out."""
    real = process.FileProcessor._record

    def record(self: process.FileProcessor, row: FileRow, *args: object,
               **kwargs: object) -> None:
        if row.reprocess_of is not None:
            raise TransientError("database or disk is full")
        real(self, row, *args, **kwargs)  # type: ignore[arg-type]
    mp.setattr(process.FileProcessor, "_record", record)


def reject_then_refuse_record(mp: pytest.MonkeyPatch) -> None:
    """The reprocess is rejected (an F-code ack, published under the original's name), then
    the ledger refuses to record it."""
    refuse_record(mp)
    real = process.RunSinks.decisions

    def decisions(self: process.RunSinks, *args: object) -> object:
        if self.row.reprocess_of is not None:
            raise RejectedSubmission(finding("F002", "injected: not a valid submission"))
        return real(self, *args)  # type: ignore[arg-type]
    mp.setattr(process.RunSinks, "decisions", decisions)


FAILURES: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "record refused after licensing": refuse_record,
    "record refused after a rejection": reject_then_refuse_record,
}


def acks(folder: Path) -> list[str]:
    return sorted(f.name for f in folder.iterdir() if ".ack." in f.name)


def licensed_original(p: Project, config: Config) -> tuple[str, bytes]:
    p.drop("a", "orders.xml", good_file(1))
    run_once(config, date.fromisoformat(AS_OF))
    [(file_id, ack_name, state)] = p.rows("SELECT file_id, ack_name, state FROM files")
    assert (ack_name, state) == (ACK, "DONE")
    ack = (p.base / "outbox" / "a" / ACK).read_bytes()
    assert b"<LicenseNumber>" in ack
    return file_id, ack


@dataclass
class Refused:
    """A licensed original whose reprocess the ledger will refuse to record."""

    p: Project
    config: Config
    original: str


@pytest.fixture
def refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Refused:
    p = Project(tmp_path)
    config = load_config(p.cfg)
    original, _ = licensed_original(p, config)
    refuse_record(monkeypatch)
    return Refused(p, config, original)


@pytest.mark.parametrize("failure", FAILURES)
def test_a_failed_reprocess_keeps_the_original_ack_and_is_counted_then_quarantined(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    p = Project(tmp_path)
    config = load_config(p.cfg)
    original, ack = licensed_original(p, config)
    outbox_ack = tmp_path / "outbox" / "a" / ACK
    FAILURES[failure](monkeypatch)
    with pytest.raises(admin.ReprocessFailed) as failed:
        admin.reprocess(config, original, "customer asked", as_of=date.fromisoformat(AS_OF))
    new_id = failed.value.file_id
    assert new_id != original and "database or disk is full" in str(failed.value)
    assert "next poll" in str(failed.value)
    assert outbox_ack.read_bytes() == ack  # put back at once, never left missing
    assert p.rows("SELECT failures FROM file_failures WHERE file_id = ?", new_id) == [(1,)]
    assert p.rows("SELECT state, ack_name, reprocess_of FROM files WHERE file_id = ?",
                  new_id) == [("RECEIVED", None, original)]
    for _ in range(QUARANTINE_AFTER - 1):  # the polls retry it, as any failing file
        run_once(config, date.fromisoformat(AS_OF))
        assert outbox_ack.read_bytes() == ack
    [alert] = p.events("file.quarantined")
    assert (alert["file_id"], alert["failures"], alert["ack"]) == (new_id, QUARANTINE_AFTER,
                                                                   None)
    # The partner keeps the original's ack; no other ack was made for the failed reprocess,
    # and no row but the original's holds its name.
    assert outbox_ack.read_bytes() == ack
    assert acks(tmp_path / "outbox" / "a") == [ACK]
    assert p.rows("SELECT file_id FROM files WHERE ack_name = ?", ACK) == [(original,)]


def test_a_reprocess_in_progress_is_not_started_twice(refused: Refused) -> None:
    p, config, original = refused.p, refused.config, refused.original
    with pytest.raises(admin.ReprocessFailed) as failed:
        admin.reprocess(config, original, "first try", as_of=date.fromisoformat(AS_OF))
    with pytest.raises(FatalError, match=f"reprocess in progress.*{failed.value.file_id}"):
        admin.reprocess(config, original, "second try", as_of=date.fromisoformat(AS_OF))
    assert len(p.rows("SELECT 1 FROM files WHERE reprocess_of = ?", original)) == 1


def test_the_command_line_says_the_reprocess_failed_and_what_comes_next(
        refused: Refused, capsys: pytest.CaptureFixture[str]) -> None:
    p, original = refused.p, refused.original
    code = main(["--config", str(p.cfg), "reprocess", original, "--reason", "x",
                 "--as-of", AS_OF])
    err = capsys.readouterr().err
    [(new_id,)] = p.rows("SELECT file_id FROM files WHERE reprocess_of = ?", original)
    assert code == 1
    assert "reprocess failed" in err and "not reprocessed" not in err
    assert new_id in err and "next poll" in err


def test_the_web_page_says_the_reprocess_failed(refused: Refused) -> None:
    p, config, original = refused.p, refused.config, refused.original
    token = "k2P9xQ7vL4mZ8rT1wY6cB3nH5jD0fG2s"
    guard = Guard(token)
    client = create_app(config, guard).test_client()
    response = client.post(f"/files/{original}/reprocess",
                           data={"reason": "x", "csrf": guard.csrf_token},
                           headers={"Authorization": f"Bearer {token}"})
    body = response.get_data(as_text=True)
    [(new_id,)] = p.rows("SELECT file_id FROM files WHERE reprocess_of = ?", original)
    assert "Reprocess failed" in body and "Not reprocessed" not in body
    assert new_id in body and "next poll" in body


def test_a_quarantined_reprocess_over_sftp_sends_nothing_over_the_original_ack(
        tmp_path: Path, sshd: SshServer, monkeypatch: pytest.MonkeyPatch) -> None:
    account = sshd.account("rp")
    config = load_config(project_with(tmp_path, lambda p: p.sftp_partner("rp", sshd, account)))
    Path(account.inbox, "orders.xml").write_bytes(GOOD)
    run_once(config, date.fromisoformat(AS_OF))
    remote_ack = Path(account.acks, ACK)
    ack = remote_ack.read_bytes()
    assert b"<LicenseNumber>" in ack
    refuse_record(monkeypatch)
    with sqlite3.connect(tmp_path / "data" / "ledger.sqlite") as con:
        [(original_id,)] = con.execute("SELECT file_id FROM files").fetchall()
    with pytest.raises(admin.ReprocessFailed):
        admin.reprocess(config, original_id, "x", as_of=date.fromisoformat(AS_OF))
    for _ in range(QUARANTINE_AFTER - 1):
        run_once(config, date.fromisoformat(AS_OF))
    with sqlite3.connect(tmp_path / "data" / "ledger.sqlite") as con:
        assert con.execute("SELECT COUNT(*) FROM file_failures WHERE quarantined_at IS NOT "
                           "NULL").fetchone() == (1,)
    assert remote_ack.read_bytes() == ack
    assert acks(Path(account.acks)) == [ACK]
