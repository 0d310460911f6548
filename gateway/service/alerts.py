"""Alerts: one event per spell when a partner starts failing, recovers, goes silent or comes
back, each optionally POSTed as JSON to a webhook.

- ``partner.failing`` / ``partner.recovered``: decided by the runner from consecutive failed
  polls (``failure_alert_after``).
- ``partner.silent`` / ``partner.active``: a partner with ``expected_cadence_hours`` that has
  sent no file for longer than that, and the first file after it.
- ``partner.quota_reached``: the first application of the day refused for the partner's daily
  license quota (A109); ``licenses.running_low``: the first number of a year past 80 % of
  the year's 999,999 (guide 5.1a). Each fires once only (``alerts_sent``).
- ``file.quarantined``: one file failed 3 times in a row and was set aside
  (``gateway.service.quarantine``); once per quarantine.

Whether a spell is open lives in the ledger (``partner_state.alerting`` and ``.silent``), so a
restart neither repeats an alert nor forgets one. The webhook is called after the transaction
that recorded the alert, with a short timeout; a failure is logged and never reaches the poll.
The URL may carry a token, so it is never written to a log or an event.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.parse
from datetime import UTC, datetime
from typing import Any

from gateway.config import Config, PartnerConfig
from gateway.config_service import AlertSettings, MailSettings
from gateway.ledger.events import ALERT_EVENTS, EventLog
from gateway.ledger.pauses import pause_of
from gateway.ledger.reads.health import last_file_at, silence
from gateway.ledger.store import Ledger
from gateway.licensing.issuer import MAX_SEQUENCE, REGULAR_SERIES, LicenseIssuer
from gateway.service.mail import Mailer, queue_alert, send_queued
from gateway.turns import TURNS

log = logging.getLogger("gateway.alerts")

def webhook_url(settings: AlertSettings) -> str | None:
    if settings.webhook_url_env:
        return os.environ.get(settings.webhook_url_env) or None
    return settings.webhook_url


def _redacted(err: BaseException, url: str) -> str:
    """The error without the URL or any part of it that may hold a token."""
    text = f"{type(err).__name__}: {err}"
    parts = urllib.parse.urlsplit(url)
    for secret in (url, parts.path, parts.query, parts.netloc):
        if secret and secret != "/":
            text = text.replace(secret, "<webhook>")
    return text


def post_json(url: str, payload: dict[str, Any], timeout: float) -> int:
    """POST ``payload``; the HTTP status, or an exception for anything but 2xx."""
    # Imported here: urllib.request costs every run's start, and most gateways have no webhook.
    import urllib.request

    body = json.dumps(payload, default=str).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "aim-gateway"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # http(s): config checks it
        response.read(65536)
        return int(response.status)


class Alerts:
    """Emits alert events inside the caller's transaction; ``flush`` sends them on after it."""

    def __init__(self, settings: AlertSettings, events: EventLog,
                 mail: MailSettings | None = None) -> None:
        self.settings = settings
        self.events = events
        self.mail = mail or MailSettings()
        self.mailer = Mailer(self.mail, events)
        self._pending: list[dict[str, Any]] = []

    def emit(self, ledger: Ledger, kind: str, *, partner: str | None, **data: Any) -> None:
        assert kind in ALERT_EVENTS, kind
        record = self.events.emit(ledger, kind, partner=partner, **data)
        queue_alert(ledger, self.mail, record)  # the admins' e-mail, in the same transaction
        self._pending.append(record)

    def discard(self) -> None:
        """Forget the alerts emitted since the last flush (their transaction rolled back)."""
        self._pending.clear()

    def flush(self, ledger: Ledger | None) -> int:
        """POST the alerts emitted since the last flush, and send the e-mails queued (alerts,
        partners' notices; under ``serve`` its sender thread does); the number of alerts
        POSTed. Never raises. Without the pass's turn (gateway.turns): a slow hook or mail
        server holds up no other partner's pass."""
        with TURNS.released():
            send_queued(self.mailer, ledger)
            return self._post(ledger)

    def _post(self, ledger: Ledger | None) -> int:
        pending, self._pending = self._pending, []
        url = webhook_url(self.settings)
        if url is None or not pending:
            return 0
        delivered = 0
        for record in pending:
            try:
                post_json(url, record, self.settings.webhook_timeout_seconds)
                delivered += 1
            except Exception as err:  # any error: an alert channel must never fail a poll
                error = _redacted(err, url)
                log.warning("alert webhook failed for %s %s: %s", record.get("event"),
                            record.get("partner"), error)
                try:
                    self.events.emit(ledger, "alert.webhook_failed",
                                     partner=record.get("partner"), alert=record.get("event"),
                                     error=error)
                except Exception:  # the ledger busy: the log line above stays
                    log.exception("could not record the webhook failure")
        return delivered


def license_alerts(ledger: Ledger, alerts: Alerts, issuer: LicenseIssuer, partner_id: str,
                   file_id: str) -> None:
    """The once-only alerts of guide 5.1a, in the transaction that issued the file's licenses.

    Once per partner and day for the quota, once per year for the 80 % alarm, kept in the
    ledger: a later file, a restart or another worker (PostgreSQL: its insert of the same
    row waits for this transaction, then finds it) never fires one again.
    """
    at = datetime.now(UTC).isoformat(timespec="seconds")
    day = issuer.issue_date.isoformat()
    if issuer.refused and ledger.alert_once(f"quota_reached {partner_id} {day}", at):
        alerts.emit(ledger, "partner.quota_reached", partner=partner_id, file_id=file_id,
                    day=day, quota=issuer.quota, refused=issuer.refused)
    for series, last in issuer.running_low:
        # The regular series keeps the key it always had; the low-value one has its own.
        key = f"running_low {issuer.year}" if series == REGULAR_SERIES else \
            f"running_low {series} {issuer.year}"
        if ledger.alert_once(key, at):
            # Every partner's concern, not the one whose file happened to cross the line.
            alerts.emit(ledger, "licenses.running_low", partner=None, file_id=file_id,
                        year=issuer.year, series=series, last=last, capacity=MAX_SEQUENCE)


def check_silence(ledger: Ledger, alerts: Alerts, partner: PartnerConfig,
                  now: datetime | None = None) -> bool:
    """Open or close the partner's silent spell (one event each); True while it is silent."""
    if partner.expected_cadence_hours is None or not partner.enabled:
        return False
    if pause_of(ledger.db, partner.id) is not None:
        return False  # its quiet is the pause's doing (an admin's), not the partner's
    now = now or datetime.now(UTC)
    last = last_file_at(ledger, partner.id)
    with ledger.transaction():
        state = ledger.partner_state(partner.id)  # read again under the write lock
        watched = state["watched_since"]
        if watched is None:
            watched = now.astimezone(UTC).isoformat(timespec="seconds")
            ledger.set_partner_state(partner.id, watched_since=watched)
        quiet = silence(partner, last, str(watched), now)
        was_silent = bool(state["silent"])
        last_text = last.isoformat(timespec="seconds") if last else None
        if quiet is not None and not was_silent:
            ledger.set_partner_state(partner.id, silent=1)
            alerts.emit(ledger, "partner.silent", partner=partner.id, last_file_at=last_text,
                        silent_hours=round(quiet.total_seconds() / 3600, 1),
                        expected_cadence_hours=partner.expected_cadence_hours)
        elif quiet is None and was_silent:
            ledger.set_partner_state(partner.id, silent=0)
            alerts.emit(ledger, "partner.active", partner=partner.id, last_file_at=last_text)
    return quiet is not None


def check_partners(config: Config, ledger: Ledger, events: EventLog,
                   now: datetime | None = None) -> None:
    """The silence check for every watched partner (``status`` runs it too, so that a
    partner nobody polls still raises its alert), then the webhook."""
    alerts = Alerts(config.alerts, events, config.mail)
    for partner in config.partners:
        check_silence(ledger, alerts, partner, now)
    alerts.flush(ledger)
