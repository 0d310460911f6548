"""What each running ``aim-gateway serve`` runs with, in the ledger (issue 14 item 9a).

At its start and at each reload (SIGHUP) a service records the fingerprint of the
configuration file it loaded and the partners it polls; it beats every ``HEARTBEAT_SECONDS``
and closes its row when it stops. The views (``gateway.ledger.reads.health``) compare that with
the configuration they read: a partner the running service does not poll is "not yet served",
and an older fingerprint means the service needs a reload, instead of every view saying "ok".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.ledger.store import Ledger

HEARTBEAT_SECONDS = 10.0
# A service that has not beaten for this long is gone (killed, its machine down): its row
# no longer speaks for a running service.
GONE_AFTER = timedelta(seconds=3 * HEARTBEAT_SECONDS + 5)


def config_fingerprint(path: Path) -> str:
    """The configuration file's identity: its bytes' SHA-256 (cut; not a secret)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ServiceRow:
    """One service as it recorded itself."""

    worker: str  # host:pid:nonce
    started_at: str
    loaded_at: str  # its start or its last reload
    fingerprint: str
    partners: tuple[str, ...]  # the enabled partners it polls

    @property
    def pid(self) -> str:
        return self.worker.split(":")[1] if self.worker.count(":") >= 2 else "?"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def record_load(ledger: Ledger, worker: str, fingerprint: str, partners: list[str],
                now: datetime, *, start: bool = False) -> None:
    """The configuration ``worker`` runs with from ``now`` (its start, or a reload)."""
    with ledger.transaction():
        if start:
            ledger.db.execute("DELETE FROM services WHERE worker = ?", (worker,))
            ledger.db.execute(
                "INSERT INTO services (worker, started_at, loaded_at, seen_at, fingerprint, "
                "partners) VALUES (?, ?, ?, ?, ?, ?)",
                (worker, _iso(now), _iso(now), _iso(now), fingerprint, json.dumps(partners)))
        else:
            ledger.db.execute(
                "UPDATE services SET loaded_at = ?, seen_at = ?, fingerprint = ?, partners = ? "
                "WHERE worker = ?", (_iso(now), _iso(now), fingerprint, json.dumps(partners),
                                     worker))


def beat(ledger: Ledger, worker: str, now: datetime) -> None:
    with ledger.transaction():
        ledger.db.execute("UPDATE services SET seen_at = ? WHERE worker = ?",
                          (_iso(now), worker))


def record_stop(ledger: Ledger, worker: str) -> None:
    """The service stopped: it no longer speaks for what is polled."""
    with ledger.transaction():
        ledger.db.execute("DELETE FROM services WHERE worker = ?", (worker,))


def running(ledger: Ledger, now: datetime) -> list[ServiceRow]:
    """The services that beat recently, newest load first."""
    rows = ledger.db.execute(
        "SELECT worker, started_at, loaded_at, fingerprint, partners FROM services "
        "WHERE seen_at >= ? ORDER BY loaded_at DESC", (_iso(now - GONE_AFTER),)).fetchall()
    return [ServiceRow(r[0], r[1], r[2], r[3], tuple(json.loads(r[4]))) for r in rows]
