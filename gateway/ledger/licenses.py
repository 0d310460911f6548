"""The ledger's licenses: numbers drawn per series and year, licenses recorded, and their
lifecycle (guide 5.1a, 5.1b): the one license of a partner's ref that is not SUPERSEDED, a
license found by its number, and each supersession or cancellation recorded once.

``LicenseRecords`` is a part of ``gateway.ledger.store.Ledger``, kept here so that the ledger's
module stays one read; it works on the ledger's ``db``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from gateway.ledger.db import Database
from gateway.model import LicenseState

# Only rows of files before the file id bound to it ("": all): the ledger as ``replay`` reads it.
BEFORE = " AND (? = '' OR file_id < ?)"


@dataclass(frozen=True, slots=True)
class PriorLicense:
    """A license as the lifecycle rules see it (I201, A104, A106, A107): its state is the
    stored one as of the ledger asked (``BEFORE``: changes by later files not yet made)."""

    license_number: str
    digest: str
    valid_from: str
    valid_through: str
    partner: str
    ref: str
    state: str  # ACTIVE, SUPERSEDED or CANCELLED (EXPIRED: see ``state_on``)
    replaces: str | None  # the license this one corrected
    kind: str  # REGULAR or LOW_VALUE
    source: str  # gateway or commerce

    def state_on(self, day: date) -> LicenseState:
        """The state on ``day``: an ACTIVE license past its valid-through date is EXPIRED."""
        if self.state == LicenseState.ACTIVE and self.valid_through < day.isoformat():
            return LicenseState.EXPIRED
        return LicenseState(self.state)


@dataclass(frozen=True, slots=True)
class LicenseChange:
    """One supersession or cancellation (``license_changes``; a line of a changes report)."""

    license_number: str
    partner: str
    ref: str
    change: str  # SUPERSEDED or CANCELLED
    replaced_by: str | None
    change_date: str  # the processing date of the change
    at: str  # when it was recorded (UTC)
    file_id: str  # the file whose correction or cancellation made it
    reason: str | None


_PRIOR_COLUMNS = ("l.license_number, l.digest, l.valid_from, l.valid_through, l.partner, "
                  "l.ref, {state}, l.replaces, l.kind, l.source")
# A license's state as of the files before id ``?`` (replay): a change by a later file was
# not made yet. Two parameters, like BEFORE.
_STATE_BEFORE = ("COALESCE((SELECT c.change FROM license_changes c WHERE c.license_number = "
                 "l.license_number AND (? = '' OR c.file_id < ?)), 'ACTIVE')")



class LicenseRecords:
    """The licenses part of the ledger."""

    db: Database

    def has_licenses(self, partner: str, before: str = "") -> bool:
        return self.db.execute(f"SELECT 1 FROM licenses WHERE partner = ?{BEFORE} LIMIT 1",
                               (partner, before, before)).fetchone() is not None

    def prior_license(self, partner: str, ref: str, before: str = "") -> PriorLicense | None:
        """The partner's license for ``ref`` that is not SUPERSEDED (at most one: the index
        ``licenses_current``), of the files before id ``before`` ("" = every file)."""
        return self.prior_licenses(partner, [ref], before).get(ref)

    def prior_licenses(self, partner: str, refs: Sequence[str],
                       before: str = "") -> dict[str, PriorLicense]:
        """``prior_license`` for several refs in one query (the refs with none are absent).

        A file's applications are looked up a few dozen at a time (``LicenseIssuer.ahead``):
        one round trip per application was a third of a PostgreSQL worker's time (1,000
        lookups: 1.6 s of 7.5 s, profiled on a 24,000-line batch)."""
        if not refs:
            return {}
        marks = ", ".join("?" for _ in refs)
        if not before:
            rows = self.db.execute(
                f"SELECT {_PRIOR_COLUMNS.format(state='l.state')} FROM licenses l WHERE "
                f"l.partner = ? AND l.ref IN ({marks}) AND l.state != 'SUPERSEDED'",
                (partner, *refs)).fetchall()
        else:
            rows = self.db.execute(
                f"SELECT {_PRIOR_COLUMNS.format(state=_STATE_BEFORE)} FROM licenses l WHERE "
                f"l.partner = ? AND l.ref IN ({marks}) AND l.file_id < ? AND "
                f"{_STATE_BEFORE} != 'SUPERSEDED'",
                (before, before, partner, *refs, before, before, before)).fetchall()
        found = [PriorLicense(*row) for row in rows]
        return {prior.ref: prior for prior in found}

    def license_by_number(self, number: str, before: str = "") -> PriorLicense | None:
        """The license ``number``, whoever holds it (A106, A107), of the files before id
        ``before`` ("" = every file), in its state then."""
        row = self.db.execute(
            f"SELECT {_PRIOR_COLUMNS.format(state=_STATE_BEFORE)} FROM licenses l WHERE "
            f"l.license_number = ? AND (? = '' OR l.file_id < ?)",
            (before, before, number, before, before)).fetchone()
        return PriorLicense(*row) if row else None

    def licenses_held(self, numbers: Sequence[str]) -> set[str]:
        """Which of ``numbers`` (one series and year, in order) a license holds: one range
        scan of the primary key instead of a lookup per number. The range may take in
        other numbers (a registered one of 10 characters sorts between two of ours): only
        the ones asked are answered."""
        if not numbers:
            return set()
        held = self.db.execute("SELECT license_number FROM licenses WHERE license_number "
                               "BETWEEN ? AND ?", (numbers[0], numbers[-1])).fetchall()
        return {row[0] for row in held} & set(numbers)

    def change_license(self, change: LicenseChange) -> bool:
        """Record a supersession or cancellation: the license must be ACTIVE, and it changes
        once. False (nothing written) when it is not ACTIVE any more: another worker changed
        it first (on PostgreSQL the UPDATE waits for that worker's commit, then finds the
        state changed). Called inside the file's transaction."""
        cursor = self.db.execute(
            "UPDATE licenses SET state = ? WHERE license_number = ? AND state = 'ACTIVE'",
            (change.change, change.license_number))
        if cursor.rowcount != 1:
            return False
        self.db.execute(
            "INSERT INTO license_changes (license_number, partner, ref, change, replaced_by, "
            "change_date, at, file_id, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (change.license_number, change.partner, change.ref, change.change,
             change.replaced_by, change.change_date, change.at, change.file_id, change.reason))
        return True

    def changes_of(self, file_id: str) -> list[LicenseChange]:
        """The changes a file made (its changes report), by license number."""
        return [LicenseChange(*r) for r in self.db.execute(
            "SELECT license_number, partner, ref, change, replaced_by, change_date, at, "
            "file_id, reason FROM license_changes WHERE file_id = ? ORDER BY license_number",
            (file_id,))]

    def license_history(self, number: str) -> list[LicenseChange]:
        """What became of a license and of the licenses it replaced or that replaced it:
        the changes along its chain of corrections, oldest first."""
        chain = [number]
        row = self.db.execute("SELECT replaces FROM licenses WHERE license_number = ?",
                              (number,)).fetchone()
        seen = {number}
        while row is not None and row[0] and row[0] not in seen:  # back to the first
            chain.insert(0, row[0])
            seen.add(row[0])
            row = self.db.execute("SELECT replaces FROM licenses WHERE license_number = ?",
                                  (row[0],)).fetchone()
        nxt = number
        while True:  # forward to the last
            row = self.db.execute("SELECT replaced_by FROM license_changes WHERE "
                                  "license_number = ?", (nxt,)).fetchone()
            if row is None or not row[0] or row[0] in seen:
                break
            nxt = row[0]
            chain.append(nxt)
            seen.add(nxt)
        marks = ", ".join("?" for _ in chain)
        return [LicenseChange(*r) for r in self.db.execute(
            "SELECT license_number, partner, ref, change, replaced_by, change_date, at, "
            f"file_id, reason FROM license_changes WHERE license_number IN ({marks}) "
            "ORDER BY at, license_number", tuple(chain))]

    def licenses_issued(self, partner: str, day: date, before: str = "") -> int:
        """New licenses issued to the partner on ``day`` (its daily quota, guide 5.1a)."""
        row = self.db.execute("SELECT COUNT(*) FROM licenses WHERE partner = ? AND issue_date "
                              f"= ?{BEFORE}", (partner, day.isoformat(), before, before)).fetchone()
        return int(row[0])

    def last_license_sequence(self, year: int, series: str = "A") -> int:
        row = self.db.execute("SELECT last FROM license_counter WHERE series = ? AND year = ?",
                              (series, year)).fetchone()
        return row[0] if row else 0

    def set_license_sequence(self, year: int, last: int, series: str = "A") -> None:
        self.db.execute(
            "INSERT INTO license_counter (series, year, last) VALUES (?, ?, ?) "
            "ON CONFLICT (series, year) DO UPDATE SET last = excluded.last", (series, year, last)
        )

    def add_licenses(self, rows: Iterable[tuple[object, ...]]) -> None:
        self.db.insert_rows("licenses", (
            "license_number", "partner", "ref", "digest", "file_id", "issue_date", "valid_from",
            "valid_through", "entry_type", "port_of_entry", "importer", "exporter",
            "manufacturer", "country_of_origin", "lines", "quantity_kg", "value_usd", "products",
            "kind", "source", "replaces"), rows)

    def next_license_sequence(self, year: int, series: str = "A", count: int = 1) -> int:
        """Draw ``count`` numbers from the series' counter row of the year, the last of them
        returned (several workers: in its own committed transaction, unique across workers,
        never waiting for a file)."""
        return self.db.next_license_sequence(year, series, count)

    def return_license_sequences(self, year: int, series: str, first: int, last: int) -> bool:
        """Give back the drawn numbers ``first``..``last`` that were not issued, if no one
        drew after them (the counter still at ``last``); False: they stay a gap."""
        return self.db.return_license_sequences(year, series, first, last)
