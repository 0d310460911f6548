"""The outbox's sending rules against a real SMTP server on loopback (tests/smtp_server.py): a
message the server refuses for good is its own failure, an abandoned message is told, alerts
go first and a partner's flood waits, two workers never send one message twice."""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ProjectConfig, wait_until
from sftp_server import free_port
from smtp_server import PASSWORD, USER, SmtpServer
from smtp_server import fresh_backoff as fresh_backoff
from smtp_server import smtp as smtp

from gateway.admin.monitor import ConfigRef, LedgerCollector
from gateway.config import Config, load_config
from gateway.ledger.store import Ledger, open_ledger
from gateway.service import mail
from gateway.service.runner import event_log

ADMIN = "ops@gateway.example"
CASES_INBOX = Path(__file__).resolve().parent / "cases" / "inbox" / "sample"


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMGW_SMTP_USER", USER)
    monkeypatch.setenv("AIMGW_SMTP_PASSWORD", PASSWORD)


def configure(base: Path, port: int, ca_file: Path | None,
              request: pytest.FixtureRequest | None = None, backend: str = "sqlite",
              timeout: int = 5) -> Config:
    project = ProjectConfig(base).set(
        "mail", host="127.0.0.1", port=port, sender="aim-gateway@gateway.example",
        admins=[ADMIN], user_env="AIMGW_SMTP_USER", password_env="AIMGW_SMTP_PASSWORD",
        timeout_seconds=timeout, **({"ca_file": ca_file} if ca_file else {}))
    project.partner("acme", contact="edi@acme.example").partner(
        "bravo", contact="edi@bravo.example")
    project.inbox("acme")
    project.inbox("bravo")
    if request is not None:
        project.backend(request, backend)
    return load_config(project.write())


def queue(ledger: Ledger, subject: str, *, kind: str = "notice", partner: str | None = "acme",
          body: str = "hello\n") -> None:
    to = ADMIN if kind == "alert" else f"edi@{partner}.example"
    with ledger.transaction():
        mail._queue(ledger, kind, (to,), subject, body, partner, None)


def rows(ledger: Ledger) -> dict[str, tuple[object, ...]]:
    """subject -> (sent, attempts, claimed, last_error)"""
    return {r[0]: (r[1] is not None, r[2], r[3] > 0, r[4]) for r in ledger.db.execute(
        "SELECT subject, sent_at, attempts, claimed_at, last_error FROM mail_outbox")}


def mail_events(ledger: Ledger, kind: str) -> list[object]:
    return [r[0] for r in ledger.db.execute("SELECT data FROM events WHERE kind = ?", (kind,))]


@pytest.fixture
def setup(tmp_path: Path, smtp: SmtpServer) -> Iterator[tuple[Ledger, mail.Mailer]]:
    config = configure(tmp_path, smtp.port, smtp.ca_file)
    ledger, events = open_ledger(config), event_log(config)
    try:
        yield ledger, mail.Mailer(config.mail, events)
    finally:
        ledger.close()
        events.close()


def test_a_message_refused_for_good_fails_alone_and_the_next_goes(
        smtp: SmtpServer, setup: tuple[Ledger, mail.Mailer]) -> None:
    ledger, mailer = setup
    smtp.refuse["POISON"] = "554 5.6.0 message content refused"
    queue(ledger, "poisoned", body="POISON\n")
    queue(ledger, "innocent")
    assert mailer.flush(ledger) == 1
    assert [m["Subject"] for m in smtp.to("edi@acme.example")] == ["innocent"]
    found = rows(ledger)
    assert found["innocent"][:2] == (True, 1)
    sent, tries, claimed, error = found["poisoned"]
    assert (sent, tries, claimed) == (False, 1, False) and "554" in str(error)
    assert mail._BACKOFF.ready()  # the server is fine: no back-off for the others' sake


def test_a_temporary_refusal_fails_the_batch_counting_only_the_tried_message(
        smtp: SmtpServer, setup: tuple[Ledger, mail.Mailer]) -> None:
    ledger, mailer = setup
    smtp.refuse["LATER"] = "451 4.3.0 try again later"
    queue(ledger, "sent first")
    queue(ledger, "deferred", body="LATER\n")
    queue(ledger, "waiting")
    assert mailer.flush(ledger) == 1
    found = rows(ledger)
    assert found["deferred"][:3] == (False, 1, False) and "451" in str(found["deferred"][3])
    assert found["waiting"][:3] == (False, 0, False)  # never tried: no attempt counted
    # The server's trouble: backed off, though a message went before it.
    assert not mail._BACKOFF.ready()


def test_a_server_that_is_down_counts_no_attempt(tmp_path: Path) -> None:
    config = configure(tmp_path, free_port(), None)
    ledger, events = open_ledger(config), event_log(config)
    try:
        queue(ledger, "one")
        queue(ledger, "two")
        assert mail.Mailer(config.mail, events).flush(ledger) == 0
        found = rows(ledger)
        assert [found[s][:3] for s in ("one", "two")] == [(False, 0, False)] * 2
        assert "refused" in str(found["one"][3]).lower()
        assert len(mail_events(ledger, "mail.failed")) == 1
    finally:
        ledger.close()
        events.close()


def test_an_abandoned_message_is_told_once_and_counted_in_metrics(
        tmp_path: Path, smtp: SmtpServer, setup: tuple[Ledger, mail.Mailer],
        caplog: pytest.LogCaptureFixture) -> None:
    ledger, mailer = setup
    smtp.refuse["POISON"] = "554 5.6.0 message content refused"
    queue(ledger, "poisoned", body="POISON\n")
    with ledger.transaction():
        ledger.db.execute("UPDATE mail_outbox SET attempts = ?", (mail.MAX_ATTEMPTS - 1,))
    mailer.flush(ledger)
    mail._BACKOFF.succeeded()
    mailer.flush(ledger)
    assert rows(ledger)["poisoned"][:2] == (False, mail.MAX_ATTEMPTS)
    assert len(mail_events(ledger, "mail.abandoned")) == 1
    assert "abandoned" in caplog.text
    assert (mail.unsent_count(ledger), mail.abandoned_count(ledger)) == (0, 1)
    collector = LedgerCollector(ConfigRef(load_config(tmp_path / "config.toml")))
    found = {f.name: f.samples[0].value for f in collector.collect()
             if f.name.startswith("aimgw_mail")}
    assert found == {"aimgw_mail_unsent": 0, "aimgw_mail_abandoned": 1}


def test_alerts_go_first_and_a_flooding_partner_waits_its_turn(
        smtp: SmtpServer, setup: tuple[Ledger, mail.Mailer]) -> None:
    ledger, mailer = setup
    for n in range(mail.BATCH + 10):
        queue(ledger, f"acme {n}")
    queue(ledger, "bravo 0", partner="bravo")
    queue(ledger, "the alert", kind="alert", partner=None)
    mailer.flush(ledger)
    subjects = [r.message["Subject"] for r in smtp.received]
    assert subjects[0] == "the alert"
    assert "bravo 0" in subjects
    assert subjects.count("bravo 0") == 1
    assert sorted(s for s in subjects if s.startswith("acme")) == sorted(
        f"acme {n}" for n in range(mail.NOTICES_PER_PARTNER))
    while mailer.flush(ledger):  # later flushes send the rest, in order
        pass
    assert len(smtp.received) == mail.BATCH + 12


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_flushing_at_once_send_each_message_once(
        tmp_path: Path, smtp: SmtpServer, request: pytest.FixtureRequest, backend: str) -> None:
    config = configure(tmp_path, smtp.port, smtp.ca_file, request, backend)
    events = event_log(config)
    ledgers = [open_ledger(config), open_ledger(config)]
    try:
        for n in range(2 * mail.BATCH + 20):
            queue(ledgers[0], f"alert {n}", kind="alert", partner=None)
        start_line = threading.Barrier(2)
        errors: list[BaseException] = []

        def worker(ledger: Ledger) -> None:
            try:
                mailer = mail.Mailer(config.mail, events)
                start_line.wait()
                while mail.unsent_count(ledger):
                    mailer.flush(ledger)
            except BaseException as err:  # reported by the test below
                errors.append(err)

        threads = [threading.Thread(target=worker, args=(ledger,)) for ledger in ledgers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        counts = Counter(r.message["Subject"] for r in smtp.received)
        assert set(counts.values()) == {1} and len(counts) == 2 * mail.BATCH + 20
    finally:
        for ledger in ledgers:
            ledger.close()
        events.close()


def test_purge_removes_old_sent_and_abandoned_mail_and_keeps_the_waiting(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.admin import actions
    from gateway.cli import main

    config = configure(tmp_path, free_port(), None)
    ledger = open_ledger(config)
    try:
        for subject in ("old sent", "old abandoned", "old waiting", "new sent"):
            queue(ledger, subject, body="acme's findings\n")
        with ledger.transaction():
            ledger.db.execute("UPDATE mail_outbox SET sent_at = queued_at, attempts = 1 "
                              "WHERE subject LIKE '% sent'")
            ledger.db.execute("UPDATE mail_outbox SET attempts = ? WHERE subject = ?",
                              (mail.MAX_ATTEMPTS, "old abandoned"))
            ledger.db.execute("UPDATE mail_outbox SET queued_at = ? WHERE subject LIKE 'old %'",
                              ("2020-01-01T00:00:00+00:00",))
    finally:
        ledger.close()
    preview = actions.purge(config, dry_run=True)
    assert preview.mail == 2
    assert main(["--config", str(config.path), "purge", "--reason", "retention"]) == 0
    assert "2 e-mail(s)" in capsys.readouterr().out
    ledger = open_ledger(config)
    try:
        assert sorted(rows(ledger)) == ["new sent", "old waiting"]  # one waiting is never lost
        assert '"mail": 2' in str(mail_events(ledger, "purge.done")[-1]).replace("'", '"')
    finally:
        ledger.close()


def test_serve_polls_only_queue_and_one_sender_thread_sends(
        tmp_path: Path, smtp: SmtpServer) -> None:
    """A slow SMTP server (DATA held) must not stretch a poll: serve's poll queues the notice
    and its one sender thread sends it."""
    from gateway.service.metrics import REGISTRY
    from gateway.service.scheduler import serve

    def polls() -> float:
        return REGISTRY.get_sample_value("aimgw_poll_duration_seconds_count",
                                         {"partner": "acme"}) or 0.0

    smtp.hold = threading.Event()
    config = configure(tmp_path, smtp.port, smtp.ca_file, timeout=120)
    shutil.copy(CASES_INBOX / "acme-20261201-partial.xml", tmp_path / "inbox" / "acme" / "p.xml")
    before, stop = polls(), threading.Event()
    thread = threading.Thread(target=serve, args=(config, stop), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: polls() > before, 20), "the poll waited for the SMTP server"
        assert (tmp_path / "outbox" / "acme" / "p.xml.ack.xml").exists()
        assert smtp.received == []
        smtp.hold.set()
        assert wait_until(lambda: len(smtp.to("edi@acme.example")) == 1, 30)
    finally:
        smtp.hold.set()
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    assert mail.running_sender() is None  # stopped with serve: a later run sends inline
