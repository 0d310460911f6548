"""The test seams, in one place: every hook a test can turn on through the environment.

- ``AIMGW_CRASH_AT=<step>``: ``point(step)`` exits hard at that step (the crash tests).
  ``os._exit`` skips every ``finally`` and flush, like ``kill -9`` at that instant.
- ``AIMGW_PAUSE_AT=<step>:<seconds>``: ``pause(step)`` sleeps there, so that a test makes a race
  certain rather than lucky.
- ``AIMGW_POLL_TRACE=<file>``: ``trace_poll`` writes one line per poll held under a lease, so that
  a test can prove no two workers ever polled one partner at once.

The environment is read once per process; unset (production), each hook is one comparison.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import cache

STEPS = (
    "after_fetch",          # input copied to a temp name, nothing recorded
    "after_receipt",        # receipt committed, remote/inbox file untouched
    "after_outputs",        # ack and ACE files published, ledger not committed
    "after_commit",         # ledger committed, input still in work/received
    "after_archive",        # input archived (or in failed/), disposition not done
    "after_disposition",    # everything done for this file
)


@dataclass(frozen=True)
class _Hooks:
    crash_at: str
    pause_at: str
    pause_seconds: float
    poll_trace: str


@cache
def _hooks() -> _Hooks:
    step, _, seconds = os.environ.get("AIMGW_PAUSE_AT", "").partition(":")
    return _Hooks(crash_at=os.environ.get("AIMGW_CRASH_AT", ""), pause_at=step,
                  pause_seconds=float(seconds or 0), poll_trace=os.environ.get(
                      "AIMGW_POLL_TRACE", ""))


def point(step: str) -> None:
    if _hooks().crash_at == step:
        os._exit(86)


def pause(step: str) -> None:
    hooks = _hooks()
    if hooks.pause_at == step:
        time.sleep(hooks.pause_seconds)


def trace_poll(partner: str, worker: str, started: float, ended: float) -> None:
    path = _hooks().poll_trace
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{partner}\t{worker}\t{started:.6f}\t{ended:.6f}\n")
