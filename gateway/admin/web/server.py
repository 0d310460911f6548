"""Serving the admin pages with waitress: loopback by default, never without a way to sign in.

``make_server`` checks everything before a socket is opened (address, users or token), so a wrong
start fails at once with a message saying what to do, never with an open, unguarded port.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping
from types import FrameType
from typing import Any

from waitress.server import create_server

from gateway.admin.web.app import create_app
from gateway.admin.web.auth import MAKE_TOKEN, guard_from_env
from gateway.admin.web.pages import CONFIG
from gateway.config import Config, load_config
from gateway.config_service import is_loopback
from gateway.errors import FatalError, GatewayError, reload_refusal
from gateway.ledger import users
from gateway.ledger.store import ledger_exists, open_ledger

log = logging.getLogger("gateway.web")

THREADS = 4  # a handful of admins; a reprocess holds one thread while it runs


def make_server(config: Config, host: str | None = None, port: int | None = None,
                environ: Mapping[str, str] | None = None) -> Any:
    """A bound, not yet running waitress server; FatalError when it must not start."""
    web = config.web
    host = host or web.host
    port = web.port if port is None else port
    if not 0 <= port <= 65535:
        raise FatalError(f"port {port} is not a TCP port (0-65535)")
    if not is_loopback(host) and not web.allow_remote:
        raise FatalError(f"refusing to serve the admin page on {host!r}, an address other "
                         "machines may reach: use 127.0.0.1 (the default), or set "
                         f"allow_remote = true in [web] of {config.path}")
    guard = guard_from_env(web.token_env, environ)
    if guard is None and not _has_users(config):
        raise FatalError("nobody could sign in to the web page: add a user with `aim-gateway "
                         "user add NAME --role operator` (or, while the shared token is "
                         f"still accepted, set the environment variable {web.token_env} to "
                         f"the output of `{MAKE_TOKEN}`) and start it again")
    try:
        # ident: no version in the Server header; no proxy headers trusted, so the
        # recorded actor is the real peer address.
        app = create_app(config, guard, host)
        server = create_server(app, host=host, port=port, threads=THREADS,
                               ident="aim-gateway", clear_untrusted_proxy_headers=True)
    except OSError as err:
        raise FatalError(f"cannot listen on {host}:{port}: {err.strerror}") from err
    # waitress wraps the application (proxy headers): the Flask app itself, for a reload.
    server.flask_app = app  # type: ignore[union-attr]
    return server


def reload_page(server: Any, config: Config) -> None:
    """Hand the page a configuration taken over by a reload: each request reads it."""
    server.flask_app.config[CONFIG] = config


def _has_users(config: Config) -> bool:
    if not ledger_exists(config):
        return False
    ledger = open_ledger(config, readonly=True)
    try:
        return users.count(ledger.db) > 0
    finally:
        ledger.close()


def run(server: Any) -> None:
    """Serve until SIGTERM or SIGINT, then close the socket and return. SIGHUP reads the
    configuration file again (partners added since show at once), or keeps the one it runs
    with when the new one does not load."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # leaves waitress's loop; the finally below closes

    def reload(signum: int, frame: FrameType | None) -> None:
        path = server.flask_app.config[CONFIG].path
        try:
            reload_page(server, load_config(path))
        except GatewayError as err:
            log.error("reload of %s refused, still serving the configuration loaded before "
                      "(fix the file, then send SIGHUP again): %s", path, reload_refusal(err))
            return
        log.info("reloaded %s", path)

    previous = signal.signal(signal.SIGTERM, stop)
    previous_hup = signal.signal(signal.SIGHUP, reload)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGHUP, previous_hup)
        server.close()
