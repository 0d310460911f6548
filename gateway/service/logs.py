"""What the gateway logs to stderr, by command and ``-v`` (one place; ``gateway.cli`` calls it)."""

from __future__ import annotations

import logging


def setup_logging(verbose: int, *, serving: bool) -> None:
    """One place for what goes to stderr. ``serve`` is a service: its start banner and one
    line per file at INFO without -v; every other command only warnings unless -v. -v adds a
    level (INFO, then DEBUG: each event); APScheduler's own loggers only with -vv, so that a
    running service's log is not its scheduler's chatter."""
    steps = int(serving) + verbose
    level = (logging.WARNING, logging.INFO)[steps] if steps < 2 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if verbose >= 2 else
                                              logging.WARNING)
