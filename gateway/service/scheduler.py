"""``aim-gateway serve``: APScheduler runs one poll job per partner until SIGTERM/SIGINT.

- One job per enabled partner, stable id ``poll:<partner>``, built from the config at start:
  an interval trigger (the partner's ``interval_seconds`` or the gateway's) or a cron trigger
  (``schedule``), with an explicit time zone; ``coalesce``, ``max_instances=1`` and a misfire
  grace of about one interval.
- Jobs run in a pool of threads, so a slow or hanging partner (bounded by its own timeouts)
  does not delay the others; each thread has its own ledger connection.
- Errors and missed runs are events in the processing log, never silent.
- At start, work left half-done by a crash is finished before any poll.
- E-mail is sent by one thread of its own (``gateway.service.mail.MailSender``): a poll only
  queues it, so a slow SMTP server never lengthens a poll.
- On SIGTERM/SIGINT no new run starts, the file in hand finishes, and ``serve`` returns.
- On SIGHUP ``config.toml`` is read again: the jobs are rebuilt (partners added, removed, or
  with a new schedule) while the files in hand finish with the configuration they started
  with; a configuration that does not load is refused (an event and a log line) and the
  running one kept.
- The configuration it runs with (fingerprint, partners) is in the ledger
  (``gateway.ledger.services``), beaten every few seconds, so that every view can tell a
  partner it does not poll yet, or a configuration it has not reloaded; written by a thread of
  its own, so that the main loop (signals, reloads) never waits for the ledger.
- Its log: a start banner (version, config, ledger, each partner's schedule) and one line per
  file at INFO; APScheduler's own loggers only at -vv (``gateway.cli.setup_logging``).
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
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
from gateway.config import Config, PartnerConfig, load_config
from gateway.errors import GatewayError, reload_refusal
from gateway.ledger import services
from gateway.ledger.events import EventLog
from gateway.ledger.store import Ledger, ledger_location, open_ledger
from gateway.service.leases import worker_name
from gateway.service.mail import MailSender
from gateway.service.metrics import POLL_SECONDS
from gateway.service.runner import Runner, event_log

log = logging.getLogger("gateway.service")
MAX_WORKERS = 8
Job = Callable[[str], None]  # a poll job, called with the partner id
TICK = 0.2  # seconds between the main loop's looks at signals, the heartbeat and stop


def trigger_for(partner: PartnerConfig, config: Config) -> tuple[BaseTrigger, int]:
    """The partner's trigger and its misfire grace (about one interval), in seconds."""
    zone = ZoneInfo(partner.schedule_timezone or config.gateway.timezone)
    if partner.schedule:
        return CronTrigger.from_crontab(partner.schedule, timezone=zone), 60
    seconds = partner.interval_seconds or config.gateway.poll_interval_seconds
    return IntervalTrigger(seconds=seconds, timezone=zone), seconds


def _schedule_of(partner: PartnerConfig, config: Config) -> tuple[object, ...]:
    """What the partner's job is built from: a job is rebuilt only when this changes."""
    return (partner.schedule, partner.schedule_timezone, config.gateway.timezone,
            partner.interval_seconds or config.gateway.poll_interval_seconds)


# Settings a running service cannot take over (its ledger, its folders, its log are open):
# a reload that changes one is refused, with the restart it needs.
RESTART_ONLY = (("gateway", "data_dir"), ("gateway", "ledger"), ("log", "events_file"))
# The HTTP servers beside serve are bound, and the page's token read, at start: while serve
# runs one (or the new file asks for one), its settings need a restart too.
WEB_IN_SERVE = (("web", "in_serve"), ("web", "host"), ("web", "port"), ("web", "token_env"),
                ("web", "allow_remote"))
METRICS = (("metrics", "host"), ("metrics", "port"))


def restart_needed(old: Config, new: Config) -> list[str]:
    keys = [*RESTART_ONLY,
            *(WEB_IN_SERVE if old.web.in_serve or new.web.in_serve else ()),
            *(METRICS if old.metrics.port is not None or new.metrics.port is not None else ())]
    return [f"[{section}] {key}" for section, key in keys
            if getattr(getattr(old, section), key) != getattr(getattr(new, section), key)]


def load_fingerprinted(file: Path) -> tuple[Config, str]:
    """The configuration and the fingerprint of the very bytes it was loaded from (read
    again when the file changed while it was loaded)."""
    for _ in range(3):
        before = services.config_fingerprint(file)
        config = load_config(file)
        if services.config_fingerprint(file) == before:
            return config, before
    raise GatewayError(f"{file} kept changing while it was read; try again")


@dataclass
class _State:
    """What the jobs read: swapped whole on a reload (a reference swap is atomic)."""

    config: Config
    fingerprint: str
    runners: list[Runner] = field(default_factory=list)


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


def serve(config: Config, stop: threading.Event | None = None,
          listening: Sequence[str] = (),
          on_reload: Callable[[Config], None] | None = None) -> None:
    """Recover half-done work, then poll each partner on its schedule until ``stop``;
    ``listening``: the HTTP servers beside it (metrics, the admin page), for the banner;
    ``on_reload``: told each configuration a SIGHUP took over."""
    stop = stop or threading.Event()
    events = event_log(config)
    local = threading.local()
    runners_lock = threading.Lock()
    config, fingerprint = load_fingerprinted(config.path)
    state = _State(config, fingerprint)
    hups: list[int] = []  # one entry per SIGHUP: the handler takes no lock (see on_signal)

    def runner() -> Runner:
        """This thread's Runner for the configuration now in force (a reload makes the
        next run of each thread build a new one; the one in hand finishes its file)."""
        mine: Runner | None = getattr(local, "runner", None)
        if mine is not None and mine.config is not state.config:
            with runners_lock:
                state.runners.remove(mine)
            mine.close()
            mine = None
        if mine is None:
            mine = local.runner = Runner(state.config, stop=stop, events=events)
            with runners_lock:
                state.runners.append(mine)
        return mine

    def job(partner_id: str) -> None:
        if stop.is_set():
            return
        partner = next((p for p in state.config.partners if p.id == partner_id), None)
        if partner is None:  # removed by a reload after this run was due
            return
        with POLL_SECONDS.labels(partner_id).time():
            report = runner().poll(partner)
        if report.error:  # each file taken has its own line (runner)
            log.warning("poll %s: %s", partner_id, report.error)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes: it must take no lock the main
        # thread may hold. stop.set() takes stop's lock, which the main thread never holds
        # (its loop reads stop.is_set(), which takes none).
        if signum == signal.SIGHUP:
            hups.append(signum)
            return
        log.info("signal %d: finishing the file in hand, then exiting", signum)
        stop.set()

    # Installed before the recovery: a signal during it ends serve cleanly after the file in
    # hand (recovery checks ``stop`` between files), never with Python's KeyboardInterrupt.
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, on_signal)
        # `kill -USR1 <pid>` prints every thread's stack to stderr: what a service that does
        # not stop, or seems stuck, is waiting for (docs/operations.md).
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)

    # E-mail goes from one thread of its own: a poll only queues it (gateway.service.mail).
    sender = MailSender(lambda: state.config.mail, lambda: open_ledger(config), events)
    sender.start()
    # Finish what a crash left half-done before the first poll (guide: OPERATIONS.md).
    recovery = Runner(config, stop=stop, events=events)
    try:
        recovery.recover()
    except BaseException:
        sender.stop()
        raise
    finally:
        recovery.close()

    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=MAX_WORKERS)},
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
    _build_jobs(scheduler, job, None, config)
    ledger = open_ledger(config)
    worker = worker_name()
    partners = _enabled(config)
    _record(lambda: services.record_load(ledger, worker, fingerprint, partners,
                                         datetime.now(UTC), start=True))
    for line in banner(config, listening):
        log.info("%s", line)
    events.emit(None, "service.start", partners=partners, config=str(config.path),
                fingerprint=fingerprint)
    row = _ServiceRow(config, worker)
    row.start()
    scheduler.start()
    try:
        # Short sleeps, never one endless wait: a signal the kernel hands to another thread
        # does not interrupt the main thread's lock wait, and Python runs its handler only
        # when the main thread wakes (a SIGTERM was once ignored for good that way).
        # The main loop never waits for the ledger (see _ServiceRow).
        while not stop.is_set():
            time.sleep(TICK)
            if hups:
                hups.clear()  # list.clear takes no lock: a SIGHUP meanwhile is one reload
                _reload(scheduler, job, state, row, events, on_reload)
    finally:
        scheduler.shutdown(wait=True)  # running jobs finish their file; no new run starts
        sender.stop()  # after the last poll: what it queued is tried once more
        for r in state.runners:
            r.close()
        row.stop()
        _record(lambda: services.record_stop(ledger, worker))
        ledger.close()
        events.emit(None, "service.stop")
        events.close()


class _ServiceRow:
    """Writes the service's own row in the ledger (its reloads and heartbeats) from a thread of
    its own, with its own connection.

    Why not from the main loop: on SQLite a file's pass holds the ledger's one write
    transaction from its first decision to its commit, so this write waits for it (up to the
    ledger's busy timeout, 300 s). The main loop is where Python runs the signal handlers: a
    SIGTERM or SIGHUP arriving meanwhile would wait for another partner's file in hand. Here
    only the row waits, and a newer load replaces one not yet written (the row says what the
    service runs with now)."""

    def __init__(self, config: Config, worker: str) -> None:
        self.config, self.worker = config, worker
        self._changed = threading.Condition()
        self._load: tuple[str, list[str]] | None = None  # (fingerprint, partners) to write
        self._stopping = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="service-row")

    def start(self) -> None:
        self._thread.start()

    def loaded(self, fingerprint: str, partners: list[str]) -> None:
        """A reload took over ``fingerprint``: written as soon as the ledger lets it."""
        with self._changed:
            self._load = (fingerprint, partners)
            self._changed.notify()

    def stop(self) -> None:
        """Writes what is pending, then returns (the caller then records the stop)."""
        with self._changed:
            self._stopping = True
            self._changed.notify()
        self._thread.join()

    def _run(self) -> None:
        ledger: Ledger | None = None
        beaten = time.monotonic()
        while True:
            with self._changed:
                while (self._load is None and not self._stopping
                       and time.monotonic() - beaten < services.HEARTBEAT_SECONDS):
                    self._changed.wait(services.HEARTBEAT_SECONDS
                                       - (time.monotonic() - beaten))
                load, self._load, stopping = self._load, None, self._stopping
            if load is None and stopping:
                break
            try:
                ledger = ledger or open_ledger(self.config)
                now = datetime.now(UTC)
                if load is not None:
                    services.record_load(ledger, self.worker, load[0], load[1], now)
                else:
                    services.beat(ledger, self.worker, now)
            except GatewayError as err:  # the next heartbeat writes again
                log.warning("recording the service in the ledger: %s", err)
                if ledger is not None:  # on a new connection: this one may be dead
                    with contextlib.suppress(Exception):
                        ledger.close()
                    ledger = None
            except Exception:  # never ends the thread: the views would call the service gone
                log.exception("recording the service in the ledger")
            beaten = time.monotonic()
        if ledger is not None:
            ledger.close()


def _enabled(config: Config) -> list[str]:
    return [p.id for p in config.partners if p.enabled]


def _record(write: Callable[[], None]) -> None:
    """A write of the service's own row: a busy or unreachable ledger delays it (the next
    heartbeat writes again), it never stops the service."""
    try:
        write()
    except GatewayError as err:
        log.warning("recording the service in the ledger: %s", err)


def _build_jobs(scheduler: BackgroundScheduler, job: Job, old: Config | None,
                new: Config) -> dict[str, list[str]]:
    """Make the scheduler's jobs those of ``new``: added, removed, rescheduled; a partner
    whose schedule did not change keeps its job (and its next run time)."""
    before = {p.id: p for p in old.partners if p.enabled} if old else {}
    after = {p.id: p for p in new.partners if p.enabled}
    now = datetime.now(ZoneInfo(new.gateway.timezone))
    changes: dict[str, list[str]] = {"added": [], "removed": [], "rescheduled": []}
    for pid in before.keys() - after.keys():
        scheduler.remove_job(f"poll:{pid}")  # a run under way finishes its file
        changes["removed"].append(pid)
    for pid, partner in after.items():
        if old is not None and pid in before:
            if _schedule_of(before[pid], old) == _schedule_of(partner, new):
                continue
            scheduler.remove_job(f"poll:{pid}")
            changes["rescheduled"].append(pid)
        else:
            changes["added"].append(pid)
        trigger, grace = trigger_for(partner, new)
        scheduler.add_job(job, trigger, args=[pid], id=f"poll:{pid}", name=f"poll {pid}",
                          misfire_grace_time=grace, next_run_time=now)
    return {k: sorted(v) for k, v in changes.items()}


def _reload(scheduler: BackgroundScheduler, job: Job, state: _State, row: _ServiceRow,
            events: EventLog,
            on_reload: Callable[[Config], None] | None = None) -> None:
    """SIGHUP: take the configuration file as it is now, or refuse it and keep the old."""
    old = state.config
    try:
        new, fingerprint = load_fingerprinted(old.path)
        blocked = restart_needed(old, new)
        if blocked:
            raise GatewayError(f"{', '.join(blocked)} changed: a running service cannot take "
                               "that over; restart it (systemctl restart aim-gateway)")
    except (GatewayError, OSError) as err:
        reason = reload_refusal(err)
        log.error("reload refused, still running with the configuration loaded before "
                  "(fix the file, then send SIGHUP again): %s", reason)
        events.emit(None, "service.reload_refused", config=str(old.path), error=reason)
        return
    changes = _build_jobs(scheduler, job, old, new)
    state.config, state.fingerprint = new, fingerprint
    if on_reload is not None:
        try:  # the HTTP servers beside serve (metrics, the admin page) read it too
            on_reload(new)
        except Exception:  # they keep the configuration before; the polls have the new
            log.exception("handing the reloaded configuration to the HTTP servers")
    row.loaded(fingerprint, _enabled(new))
    log.info("reloaded %s: %s", new.path, ", ".join(
        f"{k} {' '.join(v)}" for k, v in changes.items() if v) or "no job changed")
    events.emit(None, "service.reload", config=str(new.path), fingerprint=fingerprint,
                added=changes["added"], removed=changes["removed"],
                rescheduled=changes["rescheduled"])
