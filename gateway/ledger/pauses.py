"""Partners an admin paused (``aim-gateway pause``, the web page): the runner polls none of
them until it is resumed; every view says who paused it and why (``Pause.words``)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.ledger.db import Database


@dataclass(frozen=True, slots=True)
class Pause:
    partner: str
    paused_at: str  # UTC ISO, as every ledger time
    paused_by: str  # the actor: cli:<login> or web:<who>
    reason: str

    @property
    def words(self) -> str:
        """What every view says of a paused partner."""
        return f"paused by {self.paused_by}: {self.reason}"


_COLUMNS = "partner, paused_at, paused_by, reason"


def pause_of(db: Database, partner: str) -> Pause | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM partner_pause WHERE partner = ?",
                     (partner,)).fetchone()
    return Pause(*row) if row else None


def pauses(db: Database) -> dict[str, Pause]:
    """Every paused partner, by id."""
    return {row[0]: Pause(*row) for row in db.execute(f"SELECT {_COLUMNS} FROM partner_pause")}


def set_pause(db: Database, pause: Pause) -> None:
    """Record ``pause`` (inside the caller's transaction, with its event)."""
    db.execute(f"INSERT INTO partner_pause ({_COLUMNS}) VALUES (?, ?, ?, ?)",
               (pause.partner, pause.paused_at, pause.paused_by, pause.reason))


def clear_pause(db: Database, partner: str) -> None:
    db.execute("DELETE FROM partner_pause WHERE partner = ?", (partner,))
