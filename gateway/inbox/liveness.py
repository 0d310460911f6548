"""Whether a process of this machine has ended: a dead worker's lease and temp files need not
be waited for. A process of another machine is never judged (its pid means nothing here)."""

from __future__ import annotations

import os
import socket


def this_host() -> str:
    return socket.gethostname()


def process_ended(host: str, pid: int) -> bool:
    """True when ``pid`` on ``host`` is known to have ended (gone, or a zombie).

    False for another host, for this very process, and for a live process of another user.
    """
    if host != this_host() or pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
