"""Admin operations of issue 14 item 11 on the command line and in the ledger: pause and resume
a partner (run --once skips it; every view says who paused it and why), send an ack again
(the same bytes, to the local outbox and a real SFTP server's ack folder), release, and the
files a download may serve (never a path from the request).

Each action is ONE ``admin.<verb>`` event with actor and reason.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from conftest import ProjectConfig
from sftp_server import SshServer

from gateway.admin import operations
from gateway.cli import main
from gateway.config import Config, load_config
from gateway.errors import FatalError
from gateway.ledger.events import EventLog
from gateway.ledger.store import FileRow, open_ledger
from gateway.service.alerts import Alerts, check_silence
from gateway.service.runner import run_once

CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox"
GOOD = CASES_INBOX / "sample" / "acme-20261201-good.xml"
DAY = date(2026, 12, 1)


def admin_events(base: Path, verb: str) -> list[dict[str, object]]:
    with sqlite3.connect(base / "data" / "ledger.sqlite") as db:
        return [{"partner": p, "file_id": f, **json.loads(d)} for p, f, d in db.execute(
            "SELECT partner, file_id, data FROM events WHERE kind = ? ORDER BY id",
            (f"admin.{verb}",))]


def two_partners(project: ProjectConfig) -> Path:
    cfg = project.partner("acme").partner("bolt").write()
    for pid in ("acme", "bolt"):
        project.inbox(pid)
    return cfg


def test_pause_stops_the_polls_of_run_once_and_resume_starts_them(
        project: ProjectConfig, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = two_partners(project)
    assert main(["--config", str(cfg), "pause", "acme", "--reason", "partner migrates its "
                 "server"]) == 0
    assert "acme: paused" in capsys.readouterr().out
    shutil.copy(GOOD, project.inbox("acme") / "a.xml")
    shutil.copy(GOOD, project.inbox("bolt") / "b.xml")
    assert main(["--config", str(cfg), "run", "--once", "--as-of", DAY.isoformat()]) == 0
    out = capsys.readouterr().out
    assert "acme: not polled, paused by cli:" in out and ": partner migrates its server" in out
    assert "bolt: 1 file(s) taken" in out
    assert main(["--config", str(cfg), "status"]) == 0
    status = capsys.readouterr().out
    assert "paused" in status and "partner migrates its server" in status
    assert main(["--config", str(cfg), "status", "--json"]) == 0
    acme = next(p for p in json.loads(capsys.readouterr().out) if p["partner"] == "acme")
    assert acme["state"] == "paused" and acme["paused"]["reason"] == "partner migrates its server"
    assert acme["last_poll"] is None  # a skipped poll is not a poll
    assert main(["--config", str(cfg), "resume", "acme", "--reason", "done"]) == 0
    assert main(["--config", str(cfg), "run", "--once", "--as-of", DAY.isoformat()]) == 0
    assert "acme: 1 file(s) taken" in capsys.readouterr().out
    pauses, resumes = admin_events(project.base, "pause"), admin_events(project.base, "resume")
    assert len(pauses) == 1 and len(resumes) == 1
    assert pauses[0]["partner"] == "acme" and pauses[0]["reason"] == "partner migrates its server"
    assert str(pauses[0]["actor"]).startswith("cli:")
    assert resumes[0]["reason"] == "done" and resumes[0]["paused_by"] == pauses[0]["actor"]


def test_pause_and_resume_refuse_what_makes_no_sense(
        project: ProjectConfig, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = two_partners(project)
    config = load_config(cfg)
    with pytest.raises(FatalError, match="not paused"):
        operations.resume(config, "acme", "why", "test")
    with pytest.raises(FatalError, match="reason is required"):
        operations.pause(config, "acme", "  \n ", "test")
    with pytest.raises(FatalError, match=r"no partner 'acmee'.*acme"):
        operations.pause(config, "acmee", "x", "test")
    operations.pause(config, "acme", "first", "test")
    assert main(["--config", str(cfg), "pause", "acme", "--reason", "second"]) == 1
    assert "already paused by test: first" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):  # --reason is required
        main(["--config", str(cfg), "pause", "acme"])
    assert len(admin_events(project.base, "pause")) == 1


def test_a_paused_partner_s_unfinished_file_waits_for_the_resume(project: ProjectConfig) -> None:
    cfg = two_partners(project)
    config = load_config(cfg)
    shutil.copy(GOOD, project.inbox("acme") / "a.xml")
    run_once(config, DAY)
    ledger = open_ledger(config)
    try:
        with ledger.transaction():  # as a crash leaves it: received, not finished
            ledger.db.execute("UPDATE files SET state = 'ARCHIVED'")
    finally:
        ledger.close()
    operations.pause(config, "acme", "hold everything", "test")
    run_once(config, DAY)
    assert _states(config) == ["ARCHIVED"]
    operations.resume(config, "acme", "go", "test")
    run_once(config, DAY)
    assert _states(config) == ["DONE"]


def _states(config: Config) -> list[str]:
    ledger = open_ledger(config, readonly=True)
    try:
        return [row.state for row in ledger.files()]
    finally:
        ledger.close()


def test_resend_puts_the_same_bytes_back_in_the_outbox(
        project: ProjectConfig, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = two_partners(project)
    config = load_config(cfg)
    shutil.copy(GOOD, project.inbox("acme") / "a.xml")
    run_once(config, DAY)
    row = _only_file(config)
    sent = config.gateway.outbox_dir / "acme" / str(row.ack_name)
    original = sent.read_bytes()
    sent.unlink()  # the partner took it and lost it
    assert main(["--config", str(cfg), "resend", row.file_id, "--reason", "partner lost "
                 "it"]) == 0
    assert f"{row.file_id}: acknowledgment {row.ack_name} sent again" in capsys.readouterr().out
    assert sent.read_bytes() == original
    events = admin_events(project.base, "resend")
    assert len(events) == 1 and events[0]["file_id"] == row.file_id
    assert events[0]["reason"] == "partner lost it" and events[0]["ack"] == row.ack_name
    assert main(["--config", str(cfg), "resend", "20261201-999999", "--reason", "x"]) == 1
    assert "no file '20261201-999999'" in capsys.readouterr().err
    assert len(admin_events(project.base, "resend")) == 1


def test_resend_uploads_the_ack_to_the_sftp_ack_folder(project: ProjectConfig,
                                                       sshd: SshServer) -> None:
    account = sshd.account("acme")
    cfg = project.sftp_partner("acme", sshd, account).write()
    config = load_config(cfg)
    shutil.copy(GOOD, Path(account.inbox) / "a.xml")
    run_once(config, DAY)
    row = _only_file(config)
    remote = Path(account.acks) / str(row.ack_name)
    original = remote.read_bytes()
    remote.unlink()
    operations.resend(config, row.file_id, "partner's ack folder was wiped", "test")
    assert remote.read_bytes() == original
    assert admin_events(project.base, "resend")[0]["actor"] == "test"


def test_release_from_the_cli_still_releases(project: ProjectConfig,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cfg = two_partners(project)
    assert main(["--config", str(cfg), "release", "20261201-000001", "--reason", "x"]) == 1
    assert "not released: no file '20261201-000001'" in capsys.readouterr().err


def _only_file(config: Config) -> FileRow:
    ledger = open_ledger(config, readonly=True)
    try:
        (row,) = ledger.files()
        return row
    finally:
        ledger.close()


# -- downloads: only what the ledger names ------------------------------------------------------


def test_artifacts_are_the_ledger_s_files_and_never_a_requested_path(
        project: ProjectConfig) -> None:
    cfg = two_partners(project)
    config = load_config(cfg)
    shutil.copy(GOOD, project.inbox("acme") / "a.xml")
    run_once(config, DAY)
    row = _only_file(config)
    ledger = open_ledger(config, readonly=True)
    try:
        original = operations.artifact(config, ledger, row.file_id, "original")
        assert original.path.read_bytes() == GOOD.read_bytes()
        assert (original.name, original.media_type) == ("a.xml", "application/xml")
        ack = operations.artifact(config, ledger, row.file_id, "ack")
        assert ack.name == row.ack_name and ack.media_type == "application/xml"
        assert ack.path.read_bytes() == (config.gateway.outbox_dir / "acme" /
                                         str(row.ack_name)).read_bytes()
        names = str(row.ace_names).split(",")
        ace = operations.artifact(config, ledger, row.file_id, "ace", names[0])
        assert ace.media_type.startswith("text/plain") and ace.path.parent.name == "ace"
        for hostile in ("../../config.toml", "/etc/passwd", "..", names[0] + "/..", "",
                        "%2e%2e%2fconfig.toml"):
            with pytest.raises(FatalError, match="made no ACE file"):
                operations.artifact(config, ledger, row.file_id, "ace", hostile)
        with pytest.raises(FatalError, match="no file"):
            operations.artifact(config, ledger, "../../etc/passwd", "original")
        with pytest.raises(FatalError, match="no download"):
            operations.artifact(config, ledger, row.file_id, "../config")
    finally:
        ledger.close()
    # A ledger row edited to point outside the gateway's folders is not followed.
    db = sqlite3.connect(project.base / "data" / "ledger.sqlite")
    with db:
        db.execute("UPDATE files SET archive_path = ?", (str(cfg),))
    db.close()
    ledger = open_ledger(config, readonly=True)
    try:
        with pytest.raises(FatalError, match="not in the gateway's folders"):
            operations.artifact(config, ledger, row.file_id, "original")
    finally:
        ledger.close()


def test_a_paused_partner_raises_no_silence_alert(project: ProjectConfig) -> None:
    """Its quiet is the pause's doing, not the partner's: no partner.silent while paused."""
    cfg = project.partner("acme", expected_cadence_hours=1).write()
    project.inbox("acme")
    config = load_config(cfg)
    run_once(config, DAY)  # starts watching it
    operations.pause(config, "acme", "maintenance", "test")
    ledger = open_ledger(config)
    events = EventLog(None)
    try:
        later = datetime.now(UTC) + timedelta(hours=5)
        assert check_silence(ledger, Alerts(config.alerts, events), config.partner("acme"),
                             later) is False
    finally:
        ledger.close()
    assert admin_events(project.base, "pause") and _kinds(project.base, "partner.silent") == 0


def _kinds(base: Path, kind: str) -> int:
    with sqlite3.connect(base / "data" / "ledger.sqlite") as db:
        return int(db.execute("SELECT COUNT(*) FROM events WHERE kind = ?",
                              (kind,)).fetchone()[0])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_pause_is_kept_in_either_ledger(request: pytest.FixtureRequest, project: ProjectConfig,
                                        backend: str) -> None:
    """The pause is the ledger's (migration at the end of MIGRATIONS): every worker of a
    PostgreSQL ledger honours it."""
    cfg = two_partners(project.backend(request, backend))
    config = load_config(cfg)
    operations.pause(config, "acme", "hold", "test")
    shutil.copy(GOOD, project.inbox("acme") / "a.xml")
    (report, _) = run_once(config, DAY)
    assert report.paused == "paused by test: hold" and report.taken == []
    operations.resume(config, "acme", "go", "test")
    (report, _) = run_once(config, DAY)
    assert report.paused is None and len(report.taken) == 1
    ledger = open_ledger(config, readonly=True)
    try:
        kinds = [kind for (kind,) in ledger.db.execute(
            "SELECT kind FROM events WHERE kind LIKE 'admin.%' ORDER BY id")]
    finally:
        ledger.close()
    assert kinds == ["admin.pause", "admin.resume"]
