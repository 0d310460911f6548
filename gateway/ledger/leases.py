"""The partners' leases on a shared ledger (several workers): which worker polls a partner,
taken, renewed, taken over from a dead worker and released on the database's clock.

``LeaseRecords`` is a part of ``gateway.ledger.store.Ledger``, kept here so that the ledger's
module stays one read; it works on the ledger's ``db``.
"""

from __future__ import annotations

from gateway.ledger.db import Database


class LeaseRecords:
    """The leases part of the ledger."""

    db: Database

    def now(self) -> float:
        """Seconds since the epoch by the database's clock: leases of workers on several
        machines are compared on one clock, not on each machine's."""
        return self.db.now()

    def acquire_lease(self, partner: str, owner: str, seconds: float, now: float) -> bool:
        """Take (or renew) the partner's lease if it is free, expired or ours."""
        row = self.db.execute(
            "INSERT INTO partner_lease (partner, owner, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (partner) DO UPDATE SET owner = excluded.owner, "
            "expires_at = excluded.expires_at "
            "WHERE partner_lease.expires_at < ? OR partner_lease.owner = excluded.owner "
            "RETURNING owner", (partner, owner, now + seconds, now)).fetchone()
        return row is not None and row[0] == owner

    def renew_lease(self, partner: str, owner: str, seconds: float, now: float) -> bool:
        """Extend a lease we hold; False when it was lost (expired and taken by another)."""
        cursor = self.db.execute(
            "UPDATE partner_lease SET expires_at = ? WHERE partner = ? AND owner = ?",
            (now + seconds, partner, owner))
        return cursor.rowcount == 1

    def lease_owner(self, partner: str) -> str | None:
        row = self.db.execute("SELECT owner FROM partner_lease WHERE partner = ?",
                              (partner,)).fetchone()
        return row[0] if row else None

    def take_over_lease(self, partner: str, dead_owner: str, owner: str, seconds: float,
                        now: float) -> bool:
        """Replace a lease whose owner is known to be dead (compare-and-swap on the owner)."""
        cursor = self.db.execute(
            "UPDATE partner_lease SET owner = ?, expires_at = ? WHERE partner = ? AND owner = ?",
            (owner, now + seconds, partner, dead_owner))
        return cursor.rowcount == 1

    def release_lease(self, partner: str, owner: str) -> None:
        self.db.execute("DELETE FROM partner_lease WHERE partner = ? AND owner = ?",
                        (partner, owner))
