"""What only the running process knows, for /metrics: how long each poll took.

Everything else /metrics says is read from the ledger at scrape time
(``gateway.admin.monitor``), so that it is the same whichever worker is asked. Poll durations
are this process's own: a histogram per partner, as Prometheus expects from a service.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

# Its own registry, not the library's global one: the monitor serves exactly what it chose.
REGISTRY = CollectorRegistry(auto_describe=True)

# From a quick local poll to an SFTP server at its operation timeout, and a 200 MB file.
POLL_SECONDS = Histogram(
    "aimgw_poll_duration_seconds", "Seconds one poll of a partner took (this process)",
    ["partner"], registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
