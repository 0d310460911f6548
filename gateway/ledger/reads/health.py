"""One partner's health, as ``aim-gateway status``, the web page and the partner's own status
files say it: one ``PartnerHealth``, one state with one order of precedence (``STATES``).

Pure reads (the silence is computed now, so that a screen is right before the alert is
recorded); ``gateway.service.alerts`` raises the alerts from the same ``silence``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.config import Config, PartnerConfig
from gateway.ledger.events import ALERT_EVENTS, EventRow
from gateway.ledger.pauses import Pause, pause_of
from gateway.ledger.progress import Progress, in_progress
from gateway.ledger.reads.clock import parse_time
from gateway.ledger.reads.files import FAILED_SQL, IN_PROGRESS, day_start_utc, quarantined_count
from gateway.ledger.services import ServiceRow, config_fingerprint, running
from gateway.ledger.store import FileRow, Ledger

# A partner's state: the first of these that holds, most urgent first. "failing" (an alert is
# out) before "backing off" (waiting after failed polls, which a failing partner usually is
# too); a poll error before silence (a partner we cannot poll sends us nothing); "not polled"
# (polls stopped: no `serve`, a stuck job) and "quarantined" (a file set aside waits for an
# admin) only when nothing of the partner's own is wrong.
# "not yet served" (a running `serve` that does not poll it: added to the configuration
# since the service loaded it) comes before the partner's own states, which are history then.
# "paused" (an admin stopped its polls on purpose: item 11 of issue 14) right after
# "disabled": its polls are meant to stop, and it is no alarm.
STATES = ("disabled", "paused", "not yet served", "failing", "backing off", "error", "silent",
          "never polled", "not polled", "quarantined", "ok")
# The states shown as alarms (red) in every view: something is wrong now.
ALARMS = frozenset({"not yet served", "failing", "backing off", "error", "silent",
                    "not polled"})
# A partner whose last poll is older than two of its scheduled periods (past a back-off's
# end) and this grace is "not polled": `serve` is down, or its job stuck. The grace covers a
# poll that starts late on a busy machine; a poll under way holds the partner's lease and
# is never "not polled".
STALE_GRACE = timedelta(seconds=30)


def last_file_at(ledger: Ledger, partner_id: str) -> datetime | None:
    """When the partner's latest file arrived (reprocessing is not the partner sending)."""
    row = ledger.db.execute(
        "SELECT received_at FROM files WHERE partner = ? AND reprocess_of IS NULL "
        "ORDER BY received_at DESC LIMIT 1", (partner_id,)).fetchone()
    return datetime.fromisoformat(row[0]) if row else None


def silence(partner: PartnerConfig, last_file: datetime | None, watched_since: str | None,
            now: datetime) -> timedelta | None:
    """How long the partner has been quiet, when longer than its cadence; else None."""
    if partner.expected_cadence_hours is None or not partner.enabled:
        return None
    since = last_file or (datetime.fromisoformat(watched_since) if watched_since else now)
    quiet = now - since
    return quiet if quiet > timedelta(hours=partner.expected_cadence_hours) else None


def expected_poll(config: Config, partner: PartnerConfig, last_poll: datetime) -> datetime:
    """When the scheduler should poll next after ``last_poll`` (interval or cron)."""
    if partner.schedule:
        from apscheduler.triggers.cron import CronTrigger

        zone = partner.schedule_timezone or config.gateway.timezone
        trigger = CronTrigger.from_crontab(partner.schedule, timezone=zone)
        # Strictly after: a poll recorded on its tick (times kept to the second) is that
        # tick's, not the next one's.
        following: datetime | None = trigger.get_next_fire_time(
            None, last_poll + timedelta(microseconds=1))
        if following is not None:
            return following.astimezone(UTC)
    interval = partner.interval_seconds or config.gateway.poll_interval_seconds
    return last_poll + timedelta(seconds=interval)


def overdue_at(config: Config, partner: PartnerConfig, last_poll: datetime,
               retry_at: datetime | None) -> datetime:
    """When the partner's polls count as stopped: two scheduled polls missed after its last
    one (the first no earlier than a back-off's end), plus the grace."""
    first = expected_poll(config, partner, last_poll)
    first = max(first, retry_at or first)
    return expected_poll(config, partner, first) + STALE_GRACE


def polling_now(ledger: Ledger, partner_id: str, now: datetime) -> bool:
    """Whether a worker holds the partner's lease now: a poll (maybe a long file) under way."""
    row = ledger.db.execute("SELECT expires_at FROM partner_lease WHERE partner = ?",
                            (partner_id,)).fetchone()
    return row is not None and float(row[0]) > now.timestamp()


@dataclass(frozen=True, slots=True)
class ServiceView:
    """The running services (``serve``) as they recorded themselves, against the
    configuration file the view read (its fingerprint; None when it cannot be read)."""

    services: tuple[ServiceRow, ...]
    fingerprint: str | None
    path: Path

    def serves(self, partner_id: str) -> bool:
        """True when no service runs (nothing to compare) or one polls the partner."""
        return not self.services or any(partner_id in s.partners for s in self.services)

    @property
    def older(self) -> tuple[ServiceRow, ...]:
        return tuple(s for s in self.services if s.fingerprint != self.fingerprint)

    def note(self) -> str | None:
        """What every view says above its partners when a service needs a reload."""
        if not self.older:
            return None
        pids = ", ".join(s.pid for s in self.older)
        return (f"the running service has an older configuration than {self.path} (loaded "
                f"{min(s.loaded_at for s in self.older)}): reload it with SIGHUP (kill -HUP "
                f"{pids}, or systemctl reload aim-gateway)")


def service_view(ledger: Ledger, config: Config, now: datetime) -> ServiceView:
    try:
        fingerprint: str | None = config_fingerprint(config.path)
    except OSError:
        fingerprint = None
    return ServiceView(tuple(running(ledger, now)), fingerprint, config.path)


@dataclass(frozen=True, slots=True)
class PartnerHealth:
    """One partner at a glance. ``files`` is None before the ledger exists, and when read
    without its counts (``partner_health``)."""

    partner: PartnerConfig
    state: str  # one of STATES
    last_poll: str | None = None
    last_success: str | None = None
    failures: int = 0  # failed polls in a row
    last_error: str | None = None
    retry_at: str | None = None  # the back-off's end, while it lasts
    poll_due: datetime | None = None  # the next poll the schedule expected after last_poll
    overdue: datetime | None = None  # when its polls count as stopped ("not polled")
    failing: bool = False  # a failure alert is out
    silent_alert: bool = False  # a silence alert is out
    silent_hours: float | None = None  # quiet longer than its cadence, now
    last_file: FileRow | None = None
    files: dict[str, int] | None = None  # by status (IN PROGRESS: none yet)
    unfinished: int = 0
    quarantined: int = 0  # files set aside after 3 failures in a row, until released
    licenses: int = 0
    files_today: int = 0  # received since midnight in the gateway's zone
    failed_today: int = 0
    backlog: int | None = None  # files waiting in a local inbox; None = not known
    last_alert: EventRow | None = None
    paused: Pause | None = None  # an admin paused it: not polled until resumed
    in_progress: tuple[Progress, ...] = ()  # files being processed now, how far read

    @property
    def silent(self) -> bool:
        return self.silent_hours is not None

    @property
    def healthy(self) -> bool:
        return self.state in ("ok", "disabled")

    @property
    def alarm(self) -> bool:
        """Something is wrong now: shown in red (the dashboard's row, the CLI's line)."""
        return self.state in ALARMS


def unseen(partner: PartnerConfig) -> PartnerHealth:
    """A partner before the ledger exists: nothing known but whether it is enabled."""
    return PartnerHealth(partner, "never polled" if partner.enabled else "disabled")


def state_of(holds: dict[str, bool]) -> str:
    """The first state of STATES that ``holds``; "ok" when none does."""
    return next((state for state in STATES if holds.get(state)), "ok")


def _count(ledger: Ledger, sql: str, *params: object) -> int:
    return int(ledger.db.execute(sql, params).fetchone()[0])


def _last_alert(ledger: Ledger, partner_id: str) -> EventRow | None:
    marks = ", ".join("?" for _ in ALERT_EVENTS)
    row = ledger.db.execute(f"SELECT at, kind, data FROM events WHERE partner = ? AND kind IN "
                            f"({marks}) ORDER BY id DESC LIMIT 1",
                            (partner_id, *ALERT_EVENTS)).fetchone()
    return EventRow(row[0], row[1], json.loads(row[2])) if row else None


def partner_health(ledger: Ledger, config: Config, partner: PartnerConfig, now: datetime,
                   backlog: int | None = None, *, counts: bool = True,
                   service: ServiceView | None = None) -> PartnerHealth:
    """The health of ``partner`` at ``now``; ``backlog`` as the caller counted it. Every view
    (status, status --json, the web page, the partner's status files) reads it here.

    ``counts=False`` reads the state and what it rests on only (the status files, written
    after every poll, show no counts): its files, licenses and alerts are left out.
    ``service``: the running services, read once for several partners (else read here).
    """
    pid = partner.id
    state = ledger.partner_state(pid)
    service = service or service_view(ledger, config, now)
    retry = float(state["next_attempt_at"] or 0)
    retry_at = (datetime.fromtimestamp(retry, UTC).isoformat(timespec="seconds")
                if retry > now.timestamp() else None)
    last_poll = parse_time(state["last_poll_at"])
    due = expected_poll(config, partner, last_poll) if last_poll is not None else None
    overdue = (overdue_at(config, partner, last_poll, parse_time(retry_at))
               if last_poll is not None else None)
    quiet = silence(partner, last_file_at(ledger, pid), state["watched_since"], now)
    quarantined = quarantined_count(ledger.db, pid)
    failures = int(state["failures"] or 0)
    paused = pause_of(ledger.db, pid)
    working = tuple(p for p in in_progress(config.gateway.data_dir, now).values()
                    if p.partner == pid)
    holds = {
        "disabled": not partner.enabled, "paused": paused is not None,
        "not yet served": not service.serves(pid),
        "failing": bool(state["alerting"]),
        "backing off": retry_at is not None, "error": failures > 0,
        "silent": quiet is not None, "never polled": last_poll is None,
        # A poll busy with a long file is not a missed one: its file is seen in progress.
        "not polled": (not working and overdue is not None and now > overdue
                       and not polling_now(ledger, pid, now)),
        "quarantined": quarantined > 0}
    health = PartnerHealth(
        partner, state_of(holds), state["last_poll_at"], state["last_success_at"], failures,
        state["last_error"], retry_at, due, overdue, bool(state["alerting"]),
        bool(state["silent"]),
        round(quiet.total_seconds() / 3600, 1) if quiet is not None else None,
        quarantined=quarantined, backlog=backlog, paused=paused, in_progress=working)
    return _with_counts(ledger, config, health, now) if counts else health


def _with_counts(ledger: Ledger, config: Config, health: PartnerHealth,
                 now: datetime) -> PartnerHealth:
    """``health`` with the partner's files, licenses and last alert counted in."""
    pid = health.partner.id
    last = ledger.files("partner = ?", (pid,), limit=1)
    today = day_start_utc(config.gateway.zone, now.astimezone(config.gateway.zone).date())
    return replace(
        health, last_file=last[0] if last else None,
        files=dict(ledger.db.execute(
            f"SELECT COALESCE(status, '{IN_PROGRESS}'), COUNT(*) FROM files WHERE partner = ? "
            f"GROUP BY COALESCE(status, '{IN_PROGRESS}')", (pid,)).fetchall()),
        unfinished=_count(ledger, "SELECT COUNT(*) FROM files WHERE partner = ? AND "
                          "state != 'DONE'", pid),
        licenses=_count(ledger, "SELECT COUNT(*) FROM licenses WHERE partner = ?", pid),
        files_today=_count(ledger, "SELECT COUNT(*) FROM files WHERE partner = ? AND "
                           "received_at >= ?", pid, today),
        failed_today=_count(ledger, "SELECT COUNT(*) FROM files WHERE partner = ? AND "
                            f"received_at >= ? AND {FAILED_SQL}", pid, today),
        last_alert=_last_alert(ledger, pid))
