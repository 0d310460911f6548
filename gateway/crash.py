"""The test seams, in one place: every hook a test can turn on through the environment.

- ``AIMGW_CRASH_AT=<step>``: ``point(step)`` exits hard at that step (the crash tests).
  ``os._exit`` skips every ``finally`` and flush, like ``kill -9`` at that instant.
- ``AIMGW_PAUSE_AT=<step>:<seconds>``: ``pause(step)`` and ``point(step)`` sleep there, so that a
  test makes a race certain rather than lucky; ``<step>:@<file>`` waits there until ``<file>``
  exists (the test says when to go on: a condition, not a guessed time).
- ``AIMGW_POLL_TRACE=<file>``: ``trace_poll`` writes one line per poll held under a lease, so that
  a test can prove no two workers ever polled one partner at once.
- ``AIMGW_READ_SHARE=<0..1>``: the reading child (``validate.read_process``) sends this share of
  the applications as read, unchecked, and takes the digests at 0, instead of sharing the work
  by who is behind: so that a test takes each path for certain.

The environment is read once per process; unset (production), each hook is one comparison.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import cache

from gateway.turns import TURNS

# The variables above: a process the gateway starts keeps them (validate.read_process).
ENVIRONMENT = ("AIMGW_CRASH_AT", "AIMGW_PAUSE_AT", "AIMGW_POLL_TRACE", "AIMGW_READ_SHARE")

STEPS = (
    "after_fetch",          # input copied to a temp name, nothing recorded
    "after_receipt",        # receipt committed, remote/inbox file untouched
    "after_changes",        # ACE files and the changes report published, ack not yet
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
    go_on_file: str  # pause until this file exists ("" = sleep pause_seconds)
    poll_trace: str
    read_share: float | None


@cache
def _hooks() -> _Hooks:
    step, _, until = os.environ.get("AIMGW_PAUSE_AT", "").partition(":")
    go_on_file = until[1:] if until.startswith("@") else ""
    return _Hooks(crash_at=os.environ.get("AIMGW_CRASH_AT", ""), pause_at=step,
                  pause_seconds=0.0 if go_on_file else float(until or 0),
                  go_on_file=go_on_file, poll_trace=os.environ.get("AIMGW_POLL_TRACE", ""),
                  read_share=float(share) if (share := os.environ.get("AIMGW_READ_SHARE"))
                  else None)


def point(step: str) -> None:
    hooks = _hooks()
    if hooks.crash_at == step:
        os._exit(86)
    pause(step)


def pause(step: str) -> None:
    hooks = _hooks()
    if hooks.pause_at != step:
        return
    with TURNS.released():  # a pass held here lets the process's other passes go on
        if hooks.go_on_file:
            while not os.path.exists(hooks.go_on_file):
                time.sleep(0.01)
        else:
            time.sleep(hooks.pause_seconds)


def trace_poll(partner: str, worker: str, started: float, ended: float) -> None:
    path = _hooks().poll_trace
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{partner}\t{worker}\t{started:.6f}\t{ended:.6f}\n")


def read_share() -> float | None:
    return _hooks().read_share
