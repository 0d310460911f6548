"""Named crash points for the crash tests: ``AIMGW_CRASH_AT=<step>`` exits hard at that step.

``os._exit`` skips every ``finally`` and flush, like ``kill -9`` at that instant. Unset (the
normal case) the check is one dictionary lookup.
"""

from __future__ import annotations

import os
import time

STEPS = (
    "after_fetch",          # input copied to a temp name, nothing recorded
    "after_receipt",        # receipt committed, remote/inbox file untouched
    "after_outputs",        # ack and ACE files published, ledger not committed
    "after_commit",         # ledger committed, input still in work/received
    "after_archive",        # input archived (or in failed/), disposition not done
    "after_disposition",    # everything done for this file
)


def point(step: str) -> None:
    if os.environ.get("AIMGW_CRASH_AT") == step:
        os._exit(86)


def pause(step: str) -> None:
    """``AIMGW_PAUSE_AT=<step>:<seconds>`` sleeps at that step: a test widens a race window
    with it, so that the race is certain rather than lucky. Unset, nothing happens."""
    spec = os.environ.get("AIMGW_PAUSE_AT", "")
    if spec.partition(":")[0] == step:
        time.sleep(float(spec.partition(":")[2] or 0))
