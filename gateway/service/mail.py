"""E-mail: every alert to the admins (``[mail] admins``), and to a partner's ``contact`` a short
notice for each file of theirs that was rejected or partly rejected.

A message is queued in the ledger (``mail_outbox``) inside the transaction that decided it (the
alert, the file's status), and sent over SMTP after the commit (``Mailer.flush``). So a
rolled-back pass sends nothing, and a crash or an SMTP server that is down delays a message,
never loses it: it is sent at the next flush (up to ``MAX_ATTEMPTS`` tries). It is sent at least
once: a crash between the server's acceptance and the ledger's "sent" sends it again.
Under ``serve`` one sender thread (``MailSender``) flushes and a poll only wakes it
(``send_queued``), so the SMTP server never lengthens a poll; elsewhere a flush is inline.

- STARTTLS (or implicit TLS) with the server's certificate and name verified; "none" only to a
  server on this machine (config check). The user and password come from environment
  variables named in the config, never from the file, and are never logged.
- A worker claims the messages it sends (``claimed_at``), so two workers of one ledger do not
  send one message twice.
- A failure never fails a poll: it is logged and recorded as a ``mail.failed`` event. A
  message the server refuses for good (5xx) fails alone and the batch goes on; a failure of
  the server (connection, TLS, login, 4xx) stops the batch and the server is left alone for a
  while (``_BACKOFF``), so an SMTP server that hangs costs at most one timeout per back-off,
  not one per file. Only a message that was tried counts a try; at ``MAX_ATTEMPTS`` it is
  given up with one ``mail.abandoned`` event.
- A batch takes the admins' alerts first and at most ``NOTICES_PER_PARTNER`` notices of one
  partner, so that one partner's flood of notices holds back nobody else's mail.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Any

from gateway.config import Config, PartnerConfig
from gateway.config_service import MailSettings
from gateway.ledger.events import EventLog
from gateway.ledger.store import Ledger
from gateway.textsafe import printable

# smtplib and ssl are imported where a message is sent, not here: every run and check imports
# this module (a rejected file queues its notice) and most never send; the two cost about
# 3 ms of CPU at each start (measured).
if TYPE_CHECKING:
    import smtplib

log = logging.getLogger("gateway.mail")

MAX_ATTEMPTS = 10
CLAIM_SECONDS = 300.0  # a claim older than this was a worker that died while sending
BATCH = 50  # messages sent in one SMTP session
NOTICES_PER_PARTNER = 10  # a partner's notices in one batch: a flood of them waits its turn
NOTICE_REASONS = 5  # first error findings told in a partner's notice
_BACKOFF_FIRST, _BACKOFF_MAX = 30.0, 900.0


class _Backoff:
    """When this process may try the SMTP server again, shared by its threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0
        self._wait = 0.0

    def ready(self) -> bool:
        with self._lock:
            return time.monotonic() >= self._until

    def failed(self) -> None:
        with self._lock:
            self._wait = min(_BACKOFF_MAX, self._wait * 2 or _BACKOFF_FIRST)
            self._until = time.monotonic() + self._wait

    def succeeded(self) -> None:
        with self._lock:
            self._wait, self._until = 0.0, 0.0


_BACKOFF = _Backoff()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def mail_on(settings: MailSettings) -> bool:
    return settings.host is not None


def _queue(ledger: Ledger, kind: str, recipients: tuple[str, ...], subject: str, body: str,
           partner: str | None, file_id: str | None) -> None:
    ledger.db.execute(
        "INSERT INTO mail_outbox (queued_at, kind, partner, file_id, recipients, subject, body) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (_now(), kind, partner, file_id,
         ",".join(recipients), subject, body))


def queue_alert(ledger: Ledger, settings: MailSettings, record: Mapping[str, Any]) -> None:
    """An alert event for the admins, in the transaction that recorded the alert."""
    if not mail_on(settings) or not settings.admins:
        return
    event, partner = str(record.get("event")), record.get("partner")
    subject = f"[aim-gateway] {event}" + (f": partner {partner}" if partner else "")
    lines = [f"The AIM gateway raised the alert {event}.", ""]
    lines += [f"{key}: {printable(json.dumps(value, default=str))}"
              for key, value in record.items()]
    _queue(ledger, "alert", settings.admins, subject, "\n".join(lines) + "\n",
           str(partner) if partner else None, record.get("file_id"))


def queue_notice(ledger: Ledger, config: Config, partner: PartnerConfig, file_id: str,
                 name: str, status: str, counts: Mapping[str, int]) -> None:
    """A rejected or partly rejected file's notice to the partner's contact, in the file's
    own transaction (its findings are already recorded)."""
    if not mail_on(config.mail) or partner.contact is None or not partner.contact:
        return
    reasons = ledger.db.execute(
        "SELECT ref, code, message FROM findings WHERE file_id = ? AND severity = 'ERROR' "
        "ORDER BY line, code LIMIT ?", (file_id, NOTICE_REASONS + 1)).fetchall()
    words = "was rejected" if status == "REJECTED" else "was partly rejected"
    lines = [f"Your file {printable(name)} {words} by the AIM license gateway.", "",
             f"File id: {file_id}",
             "Applications: " + ", ".join(f"{n} {what}" for what, n in counts.items()), "",
             "First reasons:" if reasons else "See the acknowledgment for the reasons."]
    lines += [f"- {printable(ref or '(file)')}: {code} {printable(message)}"
              for ref, code, message in reasons[:NOTICE_REASONS]]
    if len(reasons) > NOTICE_REASONS:
        lines.append("- ... and more: the acknowledgment lists every one.")
    lines += ["", "The acknowledgment in your ack folder has every application's result."]
    _queue(ledger, "notice", (partner.contact,),
           f"[aim-gateway] {printable(name)}: {status.lower()}", "\n".join(lines) + "\n",
           partner.id, file_id)


def unsent_count(ledger: Ledger) -> int:
    row = ledger.db.execute("SELECT COUNT(*) FROM mail_outbox WHERE sent_at IS NULL AND "
                            "attempts < ?", (MAX_ATTEMPTS,)).fetchone()
    return int(row[0])


def abandoned_count(ledger: Ledger) -> int:
    """Messages given up after MAX_ATTEMPTS tries (each raised ``mail.abandoned``)."""
    row = ledger.db.execute("SELECT COUNT(*) FROM mail_outbox WHERE sent_at IS NULL AND "
                            "attempts >= ?", (MAX_ATTEMPTS,)).fetchone()
    return int(row[0])


def purge_outbox(ledger: Ledger, before: str, dry_run: bool) -> int:
    """Remove the messages sent or given up that were queued before ``before`` (their
    bodies carry partners' findings: they go with the files' details); the number (to go)."""
    where = "queued_at < ? AND (sent_at IS NOT NULL OR attempts >= ?)"
    if dry_run:
        row = ledger.db.execute(f"SELECT COUNT(*) FROM mail_outbox WHERE {where}",
                                (before, MAX_ATTEMPTS)).fetchone()
        return int(row[0])
    with ledger.transaction():
        return ledger.db.execute(f"DELETE FROM mail_outbox WHERE {where}",
                                 (before, MAX_ATTEMPTS)).rowcount


def connect(settings: MailSettings, environ: Mapping[str, str]) -> smtplib.SMTP:
    """An SMTP session, encrypted as configured and logged in; raises on any failure."""
    import smtplib
    import ssl

    assert settings.host is not None
    context = ssl.create_default_context(
        cafile=str(settings.ca_file) if settings.ca_file is not None else None)
    smtp: smtplib.SMTP
    if settings.security == "tls":
        smtp = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout_seconds,
                                context=context)
    else:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_seconds)
    try:
        if settings.security == "starttls":
            smtp.starttls(context=context)  # no STARTTLS offered: an error, never clear text
        if settings.user_env is not None and settings.password_env is not None:
            user, password = environ.get(settings.user_env), environ.get(settings.password_env)
            if not user or not password:
                raise smtplib.SMTPException(
                    f"the environment variables {settings.user_env} and "
                    f"{settings.password_env} must hold the SMTP user and password")
            smtp.login(user, password)
    except BaseException:
        smtp.close()
        raise
    return smtp


def send_test(settings: MailSettings, recipients: tuple[str, ...],
              environ: Mapping[str, str] | None = None) -> None:
    """Send one message now, not queued (``aim-gateway mail-test``); raises what failed."""
    import smtplib

    if not mail_on(settings):
        raise smtplib.SMTPException("no [mail] host in the configuration")
    if not recipients:
        raise smtplib.SMTPException("no recipient: set [mail] admins or give --to")
    body = ("This is a test message from the AIM license gateway: its e-mail settings work.\n"
            "Alerts go to the admins; partners' contacts get a notice per rejected file.\n")
    smtp = connect(settings, os.environ if environ is None else environ)
    try:
        smtp.send_message(_message(settings, (0, ",".join(recipients),
                                              "[aim-gateway] test message", body)))
    finally:
        smtp.quit()


def _message(settings: MailSettings, row: tuple[Any, ...]) -> EmailMessage:
    _, recipients, subject, body = row
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = ", ".join(str(recipients).split(","))
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=settings.sender.rpartition("@")[2] or None)
    message.set_content(body)
    return message


def _error_text(err: BaseException) -> str:
    return printable(f"{type(err).__name__}: {err}")[:300]


class Mailer:
    """Sends what the outbox holds; ``flush`` never raises."""

    def __init__(self, settings: MailSettings, events: EventLog,
                 environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.events = events
        self.environ = os.environ if environ is None else environ

    def flush(self, ledger: Ledger | None) -> int:
        """Send the queued messages (after the commit that queued them); the number sent."""
        if ledger is None or not mail_on(self.settings) or not _BACKOFF.ready():
            return 0
        try:
            rows = self._claim(ledger)
        except Exception:  # the ledger busy: the next flush sends them
            log.exception("claiming e-mails to send")
            return 0
        if not rows:
            return 0
        import smtplib

        try:
            smtp = connect(self.settings, self.environ)
        except Exception as err:  # the server's failure: no message was tried
            self._failed(ledger, None, [r[0] for r in rows], err, server=True)
            return 0
        sent, broken = 0, False
        try:
            for n, row in enumerate(rows):
                try:
                    smtp.send_message(_message(self.settings, row))
                except Exception as err:
                    if _refused_for_good(err):  # this message's own: the batch goes on
                        self._failed(ledger, row[0], [], err, server=False)
                        continue
                    # The server's (4xx, the session lost): the rest waits for the back-off;
                    # a session already gone never saw this message, so it is not counted.
                    tried = None if isinstance(err, smtplib.SMTPServerDisconnected) else row[0]
                    rest = [r[0] for r in rows[n + 1:]] + ([row[0]] if tried is None else [])
                    self._failed(ledger, tried, rest, err, server=True)
                    broken = True
                    break
                self._sent(ledger, row[0])
                sent += 1
        finally:
            try:
                smtp.quit()
            except Exception:  # the session is over either way
                smtp.close()
        if sent and not broken:  # a batch that ended in the server's failure keeps its back-off
            _BACKOFF.succeeded()
        return sent

    def _claim(self, ledger: Ledger) -> list[tuple[Any, ...]]:
        """Up to BATCH messages: the admins' alerts first, then notices in order, at most
        NOTICES_PER_PARTNER of each partner (a partner's flood waits, the others go)."""
        now = time.time()
        with ledger.transaction():
            rows = ledger.db.execute(
                "SELECT id, recipients, subject, body FROM (SELECT id, kind, recipients, "
                "subject, body, ROW_NUMBER() OVER (PARTITION BY kind, partner ORDER BY id) AS n "
                "FROM mail_outbox WHERE sent_at IS NULL AND attempts < ? AND claimed_at < ?) "
                "AS waiting WHERE kind = 'alert' OR n <= ? "
                "ORDER BY kind = 'alert' DESC, id LIMIT ?",
                (MAX_ATTEMPTS, now - CLAIM_SECONDS, NOTICES_PER_PARTNER, BATCH)).fetchall()
            claimed = []
            for row in rows:
                # Claimed only if no other worker claimed it since the read.
                cursor = ledger.db.execute(
                    "UPDATE mail_outbox SET claimed_at = ? WHERE id = ? AND claimed_at < ?",
                    (now, row[0], now - CLAIM_SECONDS))
                if cursor.rowcount == 1:
                    claimed.append(tuple(row))
        return claimed

    def _sent(self, ledger: Ledger, mail_id: int) -> None:
        try:
            with ledger.transaction():
                ledger.db.execute("UPDATE mail_outbox SET sent_at = ?, attempts = attempts + 1, "
                                  "last_error = NULL WHERE id = ?",
                                  (_now(), mail_id))
        except Exception:  # its claim runs out and it is sent again: at least once
            log.exception("recording e-mail %s as sent", mail_id)

    def _failed(self, ledger: Ledger, tried: int | None, waiting: list[int],
                err: BaseException, *, server: bool) -> None:
        """``tried``: the message the error answered (an attempt counted, abandoned at
        MAX_ATTEMPTS); ``waiting``: messages not tried, only released; ``server``: the
        server failed (not one message), so it is backed off."""
        error = _error_text(err)
        count = len(waiting) + (tried is not None)
        log.warning("e-mail to %s:%s failed (%d message(s) wait): %s", self.settings.host,
                    self.settings.port, count, error)
        if server:
            _BACKOFF.failed()
        try:
            with ledger.transaction():
                # The claim is dropped: the next flush (after any back-off) tries again.
                for mail_id in waiting:
                    ledger.db.execute("UPDATE mail_outbox SET claimed_at = 0, last_error = ? "
                                      "WHERE id = ?", (error, mail_id))
                if tried is not None:
                    self._count_attempt(ledger, tried, error)
                self.events.emit(ledger, "mail.failed", partner=None, messages=count,
                                 server=f"{self.settings.host}:{self.settings.port}",
                                 error=error)
        except Exception:  # the ledger busy: the log line above stays
            log.exception("recording the e-mail failure")

    def _count_attempt(self, ledger: Ledger, mail_id: int, error: str) -> None:
        ledger.db.execute("UPDATE mail_outbox SET attempts = attempts + 1, claimed_at = 0, "
                          "last_error = ? WHERE id = ?", (error, mail_id))
        attempts, kind, partner, file_id = ledger.db.execute(
            "SELECT attempts, kind, partner, file_id FROM mail_outbox WHERE id = ?",
            (mail_id,)).fetchone()
        if attempts >= MAX_ATTEMPTS:  # reached once: the message is never claimed again
            log.warning("e-mail %s (%s) abandoned after %d tries: %s", mail_id, kind,
                        attempts, error)
            self.events.emit(ledger, "mail.abandoned", partner=partner, file_id=file_id,
                             mail_id=mail_id, message=kind, attempts=attempts, error=error)


def _refused_for_good(err: BaseException) -> bool:
    """The server refused this message permanently (5xx), not the session: every recipient,
    the sender, or the content at DATA."""
    import smtplib

    if isinstance(err, smtplib.SMTPRecipientsRefused):
        return True
    return isinstance(err, smtplib.SMTPSenderRefused | smtplib.SMTPDataError) and \
        err.smtp_code >= 500


SENDER_SECONDS = 5.0  # serve's sender looks at the outbox this often, and when woken
_SENDER: MailSender | None = None  # serve's one sender thread, while it runs


def running_sender() -> MailSender | None:
    return _SENDER


def send_queued(mailer: Mailer, ledger: Ledger | None) -> None:
    """After a commit that may have queued mail: under ``serve``, wake its sender thread (a
    poll never waits for the SMTP server); else (``run --once``, a CLI command) send now."""
    sender = _SENDER
    if sender is not None:
        sender.wake()
    else:
        mailer.flush(ledger)


class MailSender:
    """``serve``'s one sender: a thread with its own ledger connection that sends the outbox
    every SENDER_SECONDS and when a poll queued something; on stop, what the last polls
    queued is tried once more. ``settings`` is read at each flush (a reload's ``[mail]``)."""

    def __init__(self, settings: Callable[[], MailSettings], open_ledger: Callable[[], Ledger],
                 events: EventLog) -> None:
        self._settings, self._open, self._events = settings, open_ledger, events
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="mail-sender", daemon=True)

    def start(self) -> None:
        global _SENDER
        _SENDER = self
        self._thread.start()

    def stop(self) -> None:
        global _SENDER
        _SENDER = None  # a flush from now on sends inline
        self._stop.set()
        self._wake.set()
        self._thread.join()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        ledger: Ledger | None = None
        try:
            while True:
                self._wake.wait(SENDER_SECONDS)
                self._wake.clear()
                stopping, settings = self._stop.is_set(), self._settings()
                try:
                    # No connection of its own while [mail] is off (a reload may turn it on).
                    ledger = ledger or (self._open() if mail_on(settings) else None)
                except Exception:  # the ledger unreachable: the next round tries again
                    log.exception("the mail sender could not open the ledger")
                mailer = Mailer(settings, self._events)
                while mailer.flush(ledger) and not self._stop.is_set():
                    pass  # a batch went: more may wait
                if stopping:
                    return
        finally:
            if ledger is not None:
                ledger.close()
