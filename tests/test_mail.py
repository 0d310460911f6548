"""E-mail notifications against a real SMTP server on loopback (tests/smtp_server.py: aiosmtpd,
STARTTLS with a throwaway CA, AUTH): alerts to the admins, notices to a partner's contact, and
a server that is down, refuses or lacks STARTTLS never failing a poll nor losing a message."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import ProjectConfig
from sftp_server import free_port
from smtp_server import PASSWORD, USER, SmtpServer, start
from smtp_server import fresh_backoff as fresh_backoff
from smtp_server import smtp as smtp

from gateway.cli import main
from gateway.errors import ConfigError
from gateway.service import mail

CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox" / "sample"
ADMIN, CONTACT = "ops@gateway.example", "edi@acme.example"


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMGW_SMTP_USER", USER)
    monkeypatch.setenv("AIMGW_SMTP_PASSWORD", PASSWORD)


def project(base: Path, host: str, port: int, ca_file: Path | None, **mail_settings: object
            ) -> ProjectConfig:
    """Partner acme (contact CONTACT) with a local inbox, partner flaky whose SFTP server
    refuses every connection (one failed poll raises partner.failing), mail to ADMIN."""
    keys = base / "keys"
    keys.mkdir()
    (keys / "known_hosts").write_text("")
    (keys / "id").write_text("not a key")
    settings: dict[str, object] = {
        "host": host, "port": port, "sender": "aim-gateway@gateway.example",
        "admins": [ADMIN], "user_env": "AIMGW_SMTP_USER", "password_env": "AIMGW_SMTP_PASSWORD",
        "timeout_seconds": 5, **({"ca_file": ca_file} if ca_file else {}), **mail_settings}
    config = (ProjectConfig(base).set("mail", **settings)
              .partner("acme", contact=CONTACT)
              .partner("flaky", inbox=None, kind="sftp", host="127.0.0.1", port=free_port(),
                       user="u", key_file=keys / "id", known_hosts=keys / "known_hosts",
                       failure_alert_after=1, connect_timeout=2))
    config.inbox("acme")
    return config


def run_once(config: ProjectConfig) -> int:
    return main(["--config", str(config.write()), "run", "--once"])


def outbox_rows(base: Path) -> list[tuple[str, str | None, int, str | None]]:
    with sqlite3.connect(base / "data" / "ledger.sqlite") as con:
        return con.execute("SELECT kind, sent_at, attempts, last_error FROM mail_outbox "
                           "ORDER BY id").fetchall()


def events(base: Path, kind: str) -> list[dict[str, object]]:
    lines = (base / "data" / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def test_an_alert_reaches_the_admins_and_a_notice_the_partners_contact(
        tmp_path: Path, smtp: SmtpServer, credentials: None) -> None:
    config = project(tmp_path, smtp.host, smtp.port, smtp.ca_file)
    shutil.copy(CASES_INBOX / "acme-20261201-partial.xml", config.inbox("acme") / "p.xml")
    shutil.copy(CASES_INBOX / "acme-20261201-good.xml", config.inbox("acme") / "g.xml")
    assert run_once(config) == 0
    # Over STARTTLS, logged in, and one message each: the good file sends nothing.
    assert all(r.encrypted and r.authenticated for r in smtp.received)
    alerts, notices = smtp.to(ADMIN), smtp.to(CONTACT)
    assert [m["Subject"] for m in alerts] == ["[aim-gateway] partner.failing: partner flaky"]
    assert 'partner: "flaky"' in alerts[0].get_content()
    assert [m["Subject"] for m in notices] == ["[aim-gateway] p.xml: partial"]
    body = notices[0].get_content()
    assert "Your file p.xml was partly rejected" in body
    assert "rejected" in body and "First reasons:" in body
    assert notices[0]["From"] == "aim-gateway@gateway.example"
    assert sorted((kind, sent is not None, tries) for kind, sent, tries, _ in
                  outbox_rows(tmp_path)) == [("alert", True, 1), ("notice", True, 1)]


def test_a_rejected_file_names_its_first_reasons(tmp_path: Path, smtp: SmtpServer,
                                                 credentials: None) -> None:
    config = project(tmp_path, smtp.host, smtp.port, smtp.ca_file)
    config.update("flaky", enabled=False)
    (config.inbox("acme") / "bad.xml").write_bytes(b"<not xml")
    assert run_once(config) == 0
    (notice,) = smtp.to(CONTACT)
    assert notice["Subject"] == "[aim-gateway] bad.xml: rejected"
    body = notice.get_content()
    assert "Your file bad.xml was rejected" in body
    assert "- (file): F00" in body  # the file-level finding's code
    assert smtp.to(ADMIN) == []


def test_a_server_that_is_down_fails_no_poll_and_loses_no_message(
        tmp_path: Path, credentials: None) -> None:
    port = free_port()
    config = project(tmp_path, "127.0.0.1", port, None)
    config.update("flaky", enabled=False)
    shutil.copy(CASES_INBOX / "acme-20261201-partial.xml", config.inbox("acme") / "p.xml")
    assert run_once(config) == 0
    assert (tmp_path / "outbox" / "acme" / "p.xml.ack.xml").exists()  # the file went on
    ((kind, sent, tries, error),) = outbox_rows(tmp_path)
    # Nothing reached the server: no attempt counted (MAX_ATTEMPTS counts tries of a message).
    assert (kind, sent, tries) == ("notice", None, 0) and error and "refused" in error.lower()
    assert events(tmp_path, "mail.failed")[0]["messages"] == 1
    # The server comes up: the queued notice goes at the next flush, once.
    server, controller = start(tmp_path, tls=True)
    try:
        config.set("mail", port=server.port, ca_file=server.ca_file)
        mail._BACKOFF.succeeded()  # the back-off's wait has passed
        assert run_once(config) == 0
        assert [m["Subject"] for m in server.to(CONTACT)] == ["[aim-gateway] p.xml: partial"]
        assert run_once(config) == 0
        assert len(server.to(CONTACT)) == 1
    finally:
        controller.stop()


def test_a_server_without_starttls_gets_nothing_in_clear_text(tmp_path: Path,
                                                              credentials: None) -> None:
    server, controller = start(tmp_path, tls=False)
    try:
        config = project(tmp_path, server.host, server.port, None)
        config.update("flaky", enabled=False)
        shutil.copy(CASES_INBOX / "acme-20261201-partial.xml", config.inbox("acme") / "p.xml")
        assert run_once(config) == 0
        assert server.received == []
        ((_, sent, _, error),) = outbox_rows(tmp_path)
        assert sent is None and error is not None and "STARTTLS" in error
    finally:
        controller.stop()


def test_a_wrong_password_is_reported_without_the_password(
        tmp_path: Path, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AIMGW_SMTP_USER", USER)
    monkeypatch.setenv("AIMGW_SMTP_PASSWORD", "wrong-password-xyz")
    config = project(tmp_path, smtp.host, smtp.port, smtp.ca_file)
    config.update("flaky", enabled=False)
    shutil.copy(CASES_INBOX / "acme-20261201-partial.xml", config.inbox("acme") / "p.xml")
    assert run_once(config) == 0
    assert smtp.received == []
    ((_, sent, _, error),) = outbox_rows(tmp_path)
    assert sent is None and error is not None and "535" in error
    everything = caplog.text + (tmp_path / "data" / "events.jsonl").read_text()
    assert "wrong-password-xyz" not in everything


@pytest.mark.parametrize(("settings", "key"), [
    ({"host": "smtp.example.com", "security": "none"}, "security"),
    ({"host": "127.0.0.1", "user_env": "AIMGW_SMTP_USER"}, "password_env"),
    ({"host": "127.0.0.1", "sender": ""}, "sender"),
    ({"host": "127.0.0.1", "admins": ["not an address"]}, "admins"),
])
def test_mail_settings_that_would_leak_or_bounce_are_refused(
        tmp_path: Path, settings: dict[str, object], key: str) -> None:
    from gateway.config import load_config

    base = {"sender": "gw@gateway.example", **settings}
    path = ProjectConfig(tmp_path).set("mail", **base).write()
    with pytest.raises(ConfigError, match=key):
        load_config(path)


def test_mail_test_sends_one_message_now_or_says_why_not(
        tmp_path: Path, smtp: SmtpServer, credentials: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = project(tmp_path, smtp.host, smtp.port, smtp.ca_file)
    cfg = str(config.write())
    assert main(["--config", cfg, "mail-test"]) == 0
    assert [m["Subject"] for m in smtp.to(ADMIN)] == ["[aim-gateway] test message"]
    assert main(["--config", cfg, "mail-test", "--to", "someone@partner.example"]) == 0
    assert len(smtp.to("someone@partner.example")) == 1
    assert "sent a test message to someone@partner.example" in capsys.readouterr().out
    config.set("mail", port=free_port())  # nobody listens there
    assert main(["--config", str(config.write()), "mail-test"]) == 1
    assert "no e-mail sent via 127.0.0.1" in capsys.readouterr().err
