"""Ports for the tests' servers, and for "nobody listens there": one place, safe when
pytest-xdist runs the suite in several worker processes.

A port found free by binding to port 0 comes from the kernel's ephemeral range, where any
other process's next bind to port 0 (another worker's proxy or client) can land on it between
our check and our server's bind, or where a test's "nobody listens there" may meet another
worker's server. So each worker takes ports from a block of its own below that range
(20000 + 1000 x worker number, e.g. 20000-20999 for gw0): no other worker and no bind to port
0 hands them out. Within the block, successive calls take successive ports, so a port a test
just stopped using (in TIME_WAIT, say) is not the next one handed out.
"""

from __future__ import annotations

import itertools
import os
import socket

BLOCK = 1000
FIRST = 20_000  # below the kernel's ephemeral range (32768-60999 on Linux by default)


def _block() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1, ...: its own block
    number = int(worker[2:]) if worker[2:].isdigit() else 0
    start = FIRST + BLOCK * (number % 12)  # 12 blocks: 20000-31999, still below 32768
    return range(start, start + BLOCK)


_turn = itertools.count()


def free_port(host: str = "127.0.0.1") -> int:
    """A port of this worker's block that was free a moment ago (callers of a server that
    fails to bind retry, as before)."""
    block = _block()
    for _ in range(len(block)):
        port = block[next(_turn) % len(block)]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {block.start}-{block.stop - 1}")
