"""``serve``'s monitoring endpoints, and the admin page inside ``serve``.

- ``/metrics``: Prometheus text format (``prometheus_client``). What the ledger holds is read
  at scrape time by ``LedgerCollector``, so every worker of one ledger tells the same counts;
  poll durations are the process's own (``gateway.service.metrics``).
- ``/healthz``: 200 while the process answers (liveness).
- ``/readyz``: 200 when the ledger answers and no partner is failing; 503 with the reasons
  otherwise (readiness: a load balancer or a systemd watchdog acts on it).

The endpoints carry no token, so they are served on a loopback address only (config
``[metrics] host``) and answer loopback ``Host`` headers only (``hosts``: no DNS rebinding);
the admin page, when ``[web] in_serve`` is set, keeps its own rules
(``gateway.admin.web.server``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.admin.hosts import MISDIRECTED, host_allowed, server_url
from gateway.admin.queries import backlog, reading
from gateway.config import Config
from gateway.config_service import is_loopback
from gateway.errors import FatalError, GatewayError
from gateway.ledger.reads.files import IN_PROGRESS
from gateway.ledger.reads.health import STATES, partner_health
from gateway.ledger.store import Ledger
from gateway.service.mail import abandoned_count, unsent_count
from gateway.service.metrics import REGISTRY

log = logging.getLogger("gateway.monitor")

StartResponse = Callable[..., Any]


def _timestamp(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


class ConfigRef:
    """The configuration the endpoints read: serve swaps it when a SIGHUP reloads the file,
    so that a partner added then is counted and judged at once."""

    def __init__(self, config: Config) -> None:
        self.config = config


class LedgerCollector(Collector):
    """The ledger's counts and each partner's health, read at every scrape."""

    def __init__(self, ref: ConfigRef) -> None:
        self.ref = ref

    @property
    def config(self) -> Config:
        return self.ref.config

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("aimgw_ledger_up", "1 when the ledger answered this scrape")
        try:
            with reading(self.config) as ledger:
                families = [] if ledger is None else list(self._families(ledger))
        except GatewayError as err:
            log.warning("metrics: the ledger did not answer: %s", err)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _grouped(self, ledger: Ledger, name: str, doc: str, labels: list[str],
                 sql: str) -> Metric:
        family = GaugeMetricFamily(name, doc, labels=labels)
        for *values, count in ledger.db.execute(sql).fetchall():
            family.add_metric([str(v) for v in values], float(count))
        return family

    def _families(self, ledger: Ledger) -> Iterator[Metric]:
        yield self._grouped(
            ledger, "aimgw_files", "Files in the ledger by partner and status",
            ["partner", "status"],
            f"SELECT partner, COALESCE(status, '{IN_PROGRESS}'), COUNT(*) FROM files "
            f"GROUP BY partner, COALESCE(status, '{IN_PROGRESS}')")
        yield self._grouped(
            ledger, "aimgw_applications", "Applications by partner and status",
            ["partner", "status"],
            "SELECT f.partner, a.status, COUNT(*) FROM applications a JOIN files f "
            "ON f.file_id = a.file_id GROUP BY f.partner, a.status")
        yield self._grouped(
            ledger, "aimgw_licenses", "Licenses by partner, state and kind",
            ["partner", "state", "kind"],
            "SELECT partner, state, kind, COUNT(*) FROM licenses GROUP BY partner, state, kind")
        yield self._grouped(
            ledger, "aimgw_findings", "Findings by partner, severity and code",
            ["partner", "severity", "code"],
            "SELECT f.partner, x.severity, x.code, COUNT(*) FROM findings x JOIN files f "
            "ON f.file_id = x.file_id GROUP BY f.partner, x.severity, x.code")
        yield self._grouped(
            ledger, "aimgw_in_progress_bytes", "Bytes of files received and not yet finished",
            ["partner"],
            "SELECT partner, SUM(size) FROM files WHERE state != 'DONE' GROUP BY partner")
        yield from self._health(ledger)
        unsent = GaugeMetricFamily("aimgw_mail_unsent", "E-mails queued and not yet sent")
        unsent.add_metric([], unsent_count(ledger))
        yield unsent
        abandoned = GaugeMetricFamily("aimgw_mail_abandoned", "E-mails given up after "
                                      "10 tries (each raised a mail.abandoned event)")
        abandoned.add_metric([], abandoned_count(ledger))
        yield abandoned

    def _health(self, ledger: Ledger) -> Iterator[Metric]:
        now = datetime.now(UTC)
        state = GaugeMetricFamily("aimgw_partner_state", "1 for the partner's state "
                                  "(as `aim-gateway status` says it)", labels=["partner", "state"])
        failing = GaugeMetricFamily("aimgw_partner_failing", "1 while a failure alert is out",
                                    labels=["partner"])
        failures = GaugeMetricFamily("aimgw_partner_failed_polls", "Failed polls in a row",
                                     labels=["partner"])
        last_poll = GaugeMetricFamily("aimgw_partner_last_poll_timestamp_seconds",
                                      "When the partner was last polled", labels=["partner"])
        last_ok = GaugeMetricFamily("aimgw_partner_last_success_timestamp_seconds",
                                    "When a poll of the partner last succeeded",
                                    labels=["partner"])
        waiting = GaugeMetricFamily("aimgw_backlog_files", "Complete files waiting in a local "
                                    "inbox (SFTP partners: not counted)", labels=["partner"])
        unfinished = GaugeMetricFamily("aimgw_unfinished_files",
                                       "Files received and not yet finished", labels=["partner"])
        held = GaugeMetricFamily("aimgw_quarantined_files",
                                 "Files set aside after 3 failures, until released",
                                 labels=["partner"])
        for partner in self.config.partners:
            pid = partner.id
            health = partner_health(ledger, self.config, partner, now, backlog(ledger, partner))
            for name in STATES:
                state.add_metric([pid, name], 1.0 if health.state == name else 0.0)
            failing.add_metric([pid], 1.0 if health.failing else 0.0)
            failures.add_metric([pid], health.failures)
            for family, text in ((last_poll, health.last_poll), (last_ok, health.last_success)):
                moment = _timestamp(text)
                if moment is not None:
                    family.add_metric([pid], moment)
            if health.backlog is not None:
                waiting.add_metric([pid], health.backlog)
            unfinished.add_metric([pid], health.unfinished)
            held.add_metric([pid], health.quarantined)
        yield from (state, failing, failures, last_poll, last_ok, waiting, unfinished, held)


class _ProcessMetrics(Collector):
    """This process's own metrics (poll durations), beside the ledger's."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def not_ready(config: Config) -> list[str]:
    """Why the gateway is not ready; empty when it is (the ledger answers, none failing)."""
    try:
        with reading(config) as ledger:
            if ledger is None:
                return ["the ledger does not exist yet (serve creates it at start)"]
            now = datetime.now(UTC)
            return [f"partner {p.id} is failing: {h.last_error or 'polls fail'}"
                    for p in config.partners
                    if (h := partner_health(ledger, config, p, now, counts=False)).failing]
    except GatewayError as err:
        return [f"the ledger does not answer: {err}"]


class MonitorApp:
    """The WSGI application of /metrics, /healthz and /readyz; ``ref`` holds the
    configuration it reads (swapped by a reload)."""

    def __init__(self, config: Config) -> None:
        self.ref = ConfigRef(config)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(LedgerCollector(self.ref))
        registry.register(_ProcessMetrics())
        self._metrics = make_wsgi_app(registry)

    def __call__(self, environ: dict[str, Any],
                 start_response: StartResponse) -> Iterable[bytes]:
        if not host_allowed(environ.get("HTTP_HOST"), self.ref.config.metrics.host):
            return _text(start_response, "421 Misdirected Request", MISDIRECTED + "\n")
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            reasons = not_ready(self.ref.config)
            if reasons:
                return _text(start_response, "503 Service Unavailable",
                             "not ready\n" + "".join(f"- {r}\n" for r in reasons))
            return _text(start_response, "200 OK", "ready\n")
        return _text(start_response, "404 Not Found",
                     "not found: /metrics, /healthz and /readyz are served here\n")


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    data = body.encode("utf-8")
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(data))), ("Cache-Control", "no-store")])
    return [data]


def make_monitor_server(config: Config, port: int | None = None) -> Any:
    """A bound, not yet running server of the endpoints; FatalError when it must not start."""
    from waitress.server import create_server  # on first use: see background_servers

    host = config.metrics.host
    port = config.metrics.port if port is None else port
    if port is None:
        raise FatalError(f"no [metrics] port in {config.path}")
    if not is_loopback(host):  # config checks it too; never open an unguarded port
        raise FatalError(f"refusing to serve metrics on {host!r}: loopback only")
    try:
        app = MonitorApp(config)
        server = create_server(app, host=host, port=port, threads=2, ident="aim-gateway",
                               clear_untrusted_proxy_headers=True)
    except OSError as err:
        raise FatalError(f"cannot listen on {host}:{port}: {err.strerror}") from err
    # waitress wraps the application (proxy headers): the app itself, for a reload.
    server.monitor_app = app  # type: ignore[union-attr]
    return server


@dataclass(frozen=True)
class Background:
    """The HTTP servers running beside ``serve``: their addresses, and ``reload`` to hand
    them the configuration a SIGHUP took over."""

    servers: list[tuple[str, Any]]

    @property
    def addresses(self) -> list[str]:
        return [f"{what} on {server_url(server)}" for what, server in self.servers]

    def reload(self, config: Config) -> None:
        for _, server in self.servers:
            monitor = getattr(server, "monitor_app", None)
            if isinstance(monitor, MonitorApp):
                monitor.ref.config = config
            else:
                from gateway.admin.web.server import reload_page  # see background_servers

                reload_page(server, config)


@contextmanager
def background_servers(config: Config) -> Iterator[Background]:
    """The HTTP servers ``serve`` runs beside its polls (metrics, the admin page), each bound
    before any work starts (a wrong port fails ``serve`` at once) and closed at the end.

    The HTTP stacks are imported here and in the functions below, never at the top: a
    ``serve`` with neither endpoint configured skips the admin page's (Flask, Jinja: about
    50 ms of CPU at start-up, measured) and waitress's (about 4 ms) imports."""
    servers: list[tuple[str, Any]] = []
    try:
        if config.metrics.port is not None:
            servers.append(("metrics", make_monitor_server(config)))
        if config.web.in_serve:
            from gateway.admin.web.server import make_server

            servers.append(("admin page", make_server(config)))
    except BaseException:
        for _, server in servers:
            server.close()
        raise
    stopping = threading.Event()
    threads = [threading.Thread(target=serve_until, args=(server, stopping), daemon=True,
                                name=f"http-{what}") for what, server in servers]
    for thread in threads:
        thread.start()
    running = Background(servers)
    for address in running.addresses:
        log.info("serving %s", address)
    try:
        yield running
    finally:
        stopping.set()
        for thread in threads:
            thread.join(timeout=5)


def serve_until(server: Any, stopping: threading.Event) -> None:
    """Serve until ``stopping``, then close, all in this thread: a socket closed by another
    thread while this one waits in select() would fail that wait (EBADF)."""
    from waitress import wasyncore

    sockets = getattr(server, "_map", None)
    try:
        while not stopping.is_set():
            wasyncore.loop(timeout=0.2, map=sockets, count=1)
    finally:
        server.close()
        server.task_dispatcher.shutdown(timeout=5)
