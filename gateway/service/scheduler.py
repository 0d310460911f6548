"""``aim-gateway serve``: APScheduler runs one poll job per partner until SIGTERM/SIGINT.

- One job per enabled partner, stable id ``poll:<partner>``, built from the config at start:
  an interval trigger (the partner's ``interval_seconds`` or the gateway's) or a cron trigger
  (``schedule``), with an explicit time zone; ``coalesce``, ``max_instances=1`` and a misfire
  grace of about one interval.
- Jobs run in a pool of threads, so a slow or hanging partner (bounded by its own timeouts)
  does not delay the others; each thread has its own ledger connection.
- Errors and missed runs are events in the processing log, never silent.
- At start, work left half-done by a crash is finished before any poll.
- On SIGTERM/SIGINT no new run starts, the file in hand finishes, and ``serve`` returns.
- Its log: a start banner (version, config, ledger, each partner's schedule) and one line per
  file at INFO; APScheduler's own loggers only at -vv (``gateway.cli.setup_logging``).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from datetime import datetime
from types import FrameType
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from gateway import __version__
from gateway.config import Config, PartnerConfig
from gateway.ledger.store import ledger_location
from gateway.service.runner import Runner, event_log

log = logging.getLogger("gateway.service")
MAX_WORKERS = 8


def trigger_for(partner: PartnerConfig, config: Config) -> tuple[BaseTrigger, int]:
    """The partner's trigger and its misfire grace (about one interval), in seconds."""
    zone = ZoneInfo(partner.schedule_timezone or config.gateway.timezone)
    if partner.schedule:
        return CronTrigger.from_crontab(partner.schedule, timezone=zone), 60
    seconds = partner.interval_seconds or config.gateway.poll_interval_seconds
    return IntervalTrigger(seconds=seconds, timezone=zone), seconds


def schedule_text(partner: PartnerConfig, config: Config) -> str:
    """``every 300 s`` or ``cron "0 6 * * 1-5" America/New_York``."""
    if not partner.enabled:
        return "disabled"
    zone = partner.schedule_timezone or config.gateway.timezone
    if partner.schedule:
        return f'cron "{partner.schedule}" {zone}'
    return f"every {partner.interval_seconds or config.gateway.poll_interval_seconds} s"


def ledger_text(config: Config) -> str:
    """The ledger, named without its credentials: ``sqlite data/ledger.sqlite`` or
    ``postgresql db.example:5432/aim``."""
    target = ledger_location(config)
    if not isinstance(target, str):
        return f"sqlite {target}"
    parts = urlsplit(target)
    where = f"{parts.hostname or 'localhost'}{f':{parts.port}' if parts.port else ''}" \
        f"{parts.path}" if parts.scheme.startswith("postgres") else "(connection string)"
    return f"postgresql {where}"


def banner(config: Config, listening: Sequence[str] = ()) -> list[str]:
    """What ``serve`` says when it starts, so that its log shows what it runs with;
    ``listening``: the ports it serves (``web http://127.0.0.1:8080/``), if any."""
    lines = [f"aim-gateway {__version__} serve: config {config.path}, ledger "
             f"{ledger_text(config)}, time zone {config.gateway.timezone}"]
    lines += [f"partner {p.id} ({p.kind}): {schedule_text(p, config)}" for p in config.partners]
    lines += list(listening) or ["no web or metrics port (the web page is `aim-gateway web`)"]
    return lines


def serve(config: Config, stop: threading.Event | None = None) -> None:
    """Recover half-done work, then poll each partner on its schedule until ``stop``."""
    stop = stop or threading.Event()
    events = event_log(config)
    local = threading.local()
    runners: list[Runner] = []
    runners_lock = threading.Lock()

    def runner() -> Runner:
        mine: Runner | None = getattr(local, "runner", None)
        if mine is None:
            mine = local.runner = Runner(config, stop=stop, events=events)
            with runners_lock:
                runners.append(mine)
        return mine

    def job(partner_id: str) -> None:
        if stop.is_set():
            return
        report = runner().poll(config.partner(partner_id))
        if report.error:  # each file taken has its own line (runner)
            log.warning("poll %s: %s", partner_id, report.error)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the file in hand, then exiting", signum)
        stop.set()

    # Installed before the recovery: a signal during it ends serve cleanly after the file in
    # hand (recovery checks ``stop`` between files), never with Python's KeyboardInterrupt.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # Finish what a crash left half-done before the first poll (guide: OPERATIONS.md).
    recovery = Runner(config, stop=stop, events=events)
    try:
        recovery.recover()
    finally:
        recovery.close()

    partners = [p for p in config.partners if p.enabled]
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=max(1, min(MAX_WORKERS,
                                                                        len(partners))))},
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone=config.gateway.timezone,
    )

    def on_event(event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            events.emit(None, "job.missed", job=event.job_id,
                        scheduled=str(event.scheduled_run_time))
        else:
            events.emit(None, "job.error", job=event.job_id, error=repr(event.exception))

    scheduler.add_listener(on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    now = datetime.now(ZoneInfo(config.gateway.timezone))
    for partner in partners:
        trigger, grace = trigger_for(partner, config)
        scheduler.add_job(job, trigger, args=[partner.id], id=f"poll:{partner.id}",
                          name=f"poll {partner.id}", misfire_grace_time=grace,
                          next_run_time=now)

    for line in banner(config):
        log.info("%s", line)
    events.emit(None, "service.start", partners=[p.id for p in partners])
    scheduler.start()
    try:
        stop.wait()
    finally:
        scheduler.shutdown(wait=True)  # running jobs finish their file; no new run starts
        for r in runners:
            r.close()
        events.emit(None, "service.stop")
        events.close()
