"""``aim-gateway serve``: APScheduler runs one poll job per partner until SIGTERM/SIGINT.

Jobs run one at a time in a single worker thread (the SQLite ledger has one writer); each job
has a stable id, ``coalesce`` and ``max_instances=1``, and a misfire grace of one interval.
On a signal no new run starts, the file in hand finishes, and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import datetime
from types import FrameType
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from gateway.config import Config
from gateway.runner import Runner, event_log

log = logging.getLogger("gateway.service")


def serve(config: Config, stop: threading.Event | None = None) -> None:
    """Recover half-done work, then poll each partner on its schedule until ``stop``."""
    stop = stop or threading.Event()
    events = event_log(config)
    # The single worker thread creates and owns the ledger connection (SQLite: one thread).
    holder: dict[str, Runner] = {}

    def job(partner_id: str) -> None:
        if "runner" not in holder:
            holder["runner"] = Runner(config)
            holder["runner"].recover()
        if stop.is_set():
            return
        report = holder["runner"].poll(config.partner(partner_id))
        if report.taken or report.error:
            log.info("poll %s: %d taken, error=%s", partner_id, len(report.taken), report.error)

    interval = config.gateway.poll_interval_seconds
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": interval},
        timezone=config.gateway.timezone,
    )

    def on_event(event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            events.emit(None, "job.missed", job=event.job_id)
        else:
            events.emit(None, "job.error", job=event.job_id, error=repr(event.exception))

    scheduler.add_listener(on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    for partner in config.partners:
        if partner.enabled:
            scheduler.add_job(job, IntervalTrigger(seconds=interval,
                                                   timezone=config.gateway.timezone),
                              args=[partner.id], id=f"poll:{partner.id}",
                              name=f"poll {partner.id}",
                              next_run_time=datetime.now(ZoneInfo(config.gateway.timezone)))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the file in hand, then exiting", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    events.emit(None, "service.start", partners=[p.id for p in config.partners])
    scheduler.start()
    try:
        stop.wait()
    finally:
        scheduler.shutdown(wait=True)  # the running job, if any, completes its file
        if "runner" in holder:
            holder["runner"].close()
        events.emit(None, "service.stop")
        events.close()

