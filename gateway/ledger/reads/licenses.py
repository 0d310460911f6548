"""Licenses as admins look them up: one search (``LicenseQuery``) for ``aim-gateway
licenses`` and the web page, one column order, a license's history along its corrections
(``license_story``: ``show`` and the license page), the states a partner's status file counts,
and the applications sent under a ref.

A license's state is read on a day (guide 5.1b): ``EXPIRED`` is never stored, it is an
``ACTIVE`` license whose valid-through date is before the day asked (the gateway's processing
date: the callers pass it). Pure reads in the SQL that SQLite and PostgreSQL share; the callers
only render.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import date, timedelta

from gateway.ledger.db import like
from gateway.ledger.licenses import LicenseChange
from gateway.ledger.store import Ledger
from gateway.model import LicenseState

LICENSE_STATES = tuple(s.value for s in LicenseState)  # what a search may ask for
MAX_DAY = date.max.isoformat()


@dataclass(frozen=True, slots=True)
class LicenseRow:
    license_number: str
    partner: str
    ref: str
    importer: str
    exporter: str
    manufacturer: str
    country_of_origin: str
    entry_type: str
    port_of_entry: str
    issue_date: str
    valid_from: str
    valid_through: str
    file_id: str
    lines: int
    quantity_kg: str
    value_usd: str
    state: str  # on the day asked (EXPIRED included); as stored when no day was asked
    kind: str  # REGULAR or LOW_VALUE
    source: str  # gateway (minted here) or commerce (a registered number, sent)
    replaces: str | None  # the license this one corrected
    replaced_by: str | None  # the correction that superseded this one


LICENSE_COLUMNS = tuple(f.name for f in fields(LicenseRow))  # the one column order
# A license's state on the day bound to ``?`` ("": the stored state). The same rule as
# ``PriorLicense.state_on``, in SQL so that a search can sort and cut by it.
STATE_ON = ("CASE WHEN l.state = 'ACTIVE' AND l.valid_through < ? THEN 'EXPIRED' "
            "ELSE l.state END")
_EXPRESSIONS = {"state": STATE_ON, "replaced_by": "c.replaced_by"}
_SELECT = (f"SELECT {', '.join(_EXPRESSIONS.get(c, 'l.' + c) for c in LICENSE_COLUMNS)} "
           "FROM licenses l LEFT JOIN license_changes c ON c.license_number = l.license_number")


def _day(on: date | None) -> str:
    return on.isoformat() if on is not None else ""


@dataclass(frozen=True, slots=True)
class LicenseQuery:
    """Licenses by exact number or ref, by ``text`` (the number, or part of the ref), by part
    of the importer's name (any case), partner, issue dates (inclusive), state on the day
    ``on`` (any case; EXPIRED = ACTIVE past its valid-through date) and ACTIVE ones expiring
    within ``expiring_within`` days of ``on`` (inclusive: 0 = valid through ``on``); newest
    first. Without ``on`` states are the stored ones (nothing is EXPIRED)."""

    number: str = ""
    ref: str = ""
    text: str = ""
    importer: str = ""
    partner: str = ""
    issued_from: date | None = None
    issued_to: date | None = None
    state: str = ""
    expiring_within: int | None = None
    on: date | None = None
    limit: int = 100

    @property
    def empty(self) -> bool:
        return not (self.number or self.ref or self.text or self.importer or self.partner
                    or self.issued_from or self.issued_to or self.state
                    or self.expiring_within is not None)

    def where(self) -> tuple[str, tuple[object, ...]]:
        clauses: list[str] = ["1 = 1"]
        params: list[object] = []
        for column, value in (("license_number", self.number.upper()), ("ref", self.ref),
                              ("partner", self.partner)):
            if value:
                clauses.append(f"l.{column} = ?")
                params.append(value)
        if self.text:
            clauses.append("(l.license_number = ? OR LOWER(l.ref) LIKE ? ESCAPE '\\')")
            params += [self.text.upper(), like(self.text)]
        if self.importer:
            clauses.append("LOWER(l.importer) LIKE ? ESCAPE '\\'")  # % and _ are literal
            params.append(like(self.importer))
        if self.issued_from:
            clauses.append("l.issue_date >= ?")
            params.append(self.issued_from.isoformat())
        if self.issued_to:
            clauses.append("l.issue_date <= ?")
            params.append(self.issued_to.isoformat())
        clause, values = self._state()
        clauses += clause
        params += values
        return " AND ".join(clauses), tuple(params)

    def _state(self) -> tuple[list[str], list[object]]:
        """The state and expiry conditions, written on the stored columns (not STATE_ON) so
        that the index on (state, valid_through) serves them."""
        day, wanted = _day(self.on), self.state.upper()
        clauses: list[str] = []
        params: list[object] = []
        if wanted == LicenseState.ACTIVE:
            clauses.append("l.state = 'ACTIVE' AND l.valid_through >= ?")
            params.append(day)
        elif wanted == LicenseState.EXPIRED:
            clauses.append("l.state = 'ACTIVE' AND l.valid_through < ?")
            params.append(day)
        elif wanted:
            clauses.append("l.state = ?")
            params.append(wanted)
        if self.expiring_within is not None:
            clauses.append("l.state = 'ACTIVE' AND l.valid_through BETWEEN ? AND ?")
            params += [day, _days_after(self.on, self.expiring_within)]
        return clauses, params


def _days_after(on: date | None, days: int) -> str:
    """``on`` + ``days``; the last day there is when that is past it (or no day was asked)."""
    try:
        return (on + timedelta(days=days)).isoformat() if on is not None else MAX_DAY
    except OverflowError:
        return MAX_DAY


def list_licenses(ledger: Ledger, query: LicenseQuery) -> list[LicenseRow]:
    where, params = query.where()
    rows = ledger.db.execute(f"{_SELECT} WHERE {where} "
                             "ORDER BY l.issue_date DESC, l.license_number DESC LIMIT ?",
                             (_day(query.on), *params, query.limit)).fetchall()
    return [LicenseRow(*r) for r in rows]


def count_licenses(ledger: Ledger, query: LicenseQuery) -> int:
    """How many licenses ``query`` matches, its limit aside (a listing says "100 of N")."""
    where, params = query.where()
    return int(ledger.db.execute(f"SELECT COUNT(*) FROM licenses l WHERE {where}",
                                 params).fetchone()[0])


# One product line of a license: hts, product group, smelt (largest), smelt (second), cast,
# lines, kg, USD (licensing.PRODUCT_FIELDS).
Product = list[object]


def license_detail(ledger: Ledger, number: str,
                   on: date | None = None) -> tuple[LicenseRow, list[Product]] | None:
    """License ``number`` in its state on ``on``, with its product lines."""
    row = ledger.db.execute(f"{_SELECT.replace(' FROM', ', l.products FROM', 1)} "
                            "WHERE l.license_number = ?", (_day(on), number)).fetchone()
    if row is None:
        return None
    return LicenseRow(*row[:-1]), json.loads(row[-1])


# -- a license's history ------------------------------------------------------------------------

# Events of one day and file in the order they happen: a correction supersedes the old license
# and issues the new one; a cancellation or an expiry comes after an issue.
EVENT_ORDER = {"SUPERSEDED": 0, "ISSUED": 1, "CANCELLED": 2, "EXPIRED": 3}


@dataclass(frozen=True, slots=True)
class LicenseEvent:
    """One step of a license's life: ISSUED, SUPERSEDED, CANCELLED or EXPIRED."""

    day: str  # YYYY-MM-DD: the issue date, the change's processing date, the first day expired
    event: str
    license_number: str
    file_id: str | None  # the file that issued or changed it (none for an expiry)
    file_name: str | None
    other: str | None  # ISSUED: the license it replaced; SUPERSEDED: the one replacing it
    reason: str | None  # CANCELLED: the partner's reason
    valid_through: str  # of ``license_number``

    @property
    def summary(self) -> str:
        """The event in one sentence, as ``show`` and the license page say it."""
        n, day = self.license_number, self.day
        where = f"file {self.file_id} ({self.file_name})"
        if self.event == "ISSUED":
            return f"{n} issued on {day} by {where}" + (
                f", replacing {self.other}" if self.other else "")
        if self.event == "SUPERSEDED":
            return f"{n} superseded by {self.other} on {day} in {where}"
        if self.event == "CANCELLED":
            return f"{n} cancelled on {day} in {where}" + (
                f": {self.reason}" if self.reason else "")
        return f"{n} expired on {day} (valid through {self.valid_through})"


@dataclass(frozen=True, slots=True)
class LicenseStory:
    """A license on the day asked, its product lines and its history: every license of its
    chain of corrections, issued, superseded, cancelled or expired, oldest first."""

    license: LicenseRow
    products: list[Product]
    history: list[LicenseEvent]


def license_story(ledger: Ledger, number: str, on: date) -> LicenseStory | None:
    """The story of license ``number`` (any case) on the day ``on``; None if unknown."""
    found = license_detail(ledger, number.upper(), on)
    if found is None:
        return None
    lic, products = found
    changes = ledger.license_history(lic.license_number)
    chain = {lic.license_number} | {c.license_number for c in changes} | {
        c.replaced_by for c in changes if c.replaced_by}
    marks = ", ".join("?" for _ in chain)
    issued = ledger.db.execute(
        "SELECT l.license_number, l.issue_date, l.file_id, f.remote_name, l.replaces, "
        "l.state, l.valid_through FROM licenses l JOIN files f ON f.file_id = l.file_id "
        f"WHERE l.license_number IN ({marks})", tuple(sorted(chain))).fetchall()
    through = {row[0]: row[6] for row in issued}
    names = _file_names(ledger, {c.file_id for c in changes})
    history = [LicenseEvent(day, "ISSUED", n, file_id, name, replaces, None, valid)
               for n, day, file_id, name, replaces, _, valid in issued]
    history += [_change_event(c, names.get(c.file_id), through.get(c.license_number, ""))
                for c in changes]
    history += [LicenseEvent((date.fromisoformat(valid) + timedelta(days=1)).isoformat(),
                             "EXPIRED", n, None, None, None, None, valid)
                for n, _, _, _, _, state, valid in issued
                if state == LicenseState.ACTIVE and valid < on.isoformat()]
    history.sort(key=lambda e: (e.day, e.file_id or "", EVENT_ORDER[e.event],
                                e.license_number))
    return LicenseStory(lic, products, history)


def _change_event(change: LicenseChange, name: str | None, valid: str) -> LicenseEvent:
    return LicenseEvent(change.change_date, change.change, change.license_number,
                        change.file_id, name, change.replaced_by, change.reason, valid)


def _file_names(ledger: Ledger, file_ids: set[str]) -> dict[str, str]:
    if not file_ids:
        return {}
    marks = ", ".join("?" for _ in file_ids)
    return dict(ledger.db.execute(f"SELECT file_id, remote_name FROM files WHERE file_id IN "
                                  f"({marks})", tuple(sorted(file_ids))).fetchall())


# -- a partner's licenses in its status file ----------------------------------------------------


def state_counts(ledger: Ledger, partner: str, on: date) -> dict[str, int]:
    """The partner's licenses by state on ``on``: every state of LICENSE_STATES, 0 if none."""
    counts = dict.fromkeys(LICENSE_STATES, 0)
    for state, count in ledger.db.execute(
            f"SELECT {STATE_ON}, COUNT(*) FROM licenses l WHERE l.partner = ? GROUP BY 1",
            (on.isoformat(), partner)).fetchall():
        counts[state] = int(count)
    return counts


def recent_changes(ledger: Ledger, partner: str, limit: int) -> list[LicenseChange]:
    """The partner's latest supersessions and cancellations, newest first: by the day shown
    (``change_date``, the processing date, which an as-of run sets), then by clock time."""
    return [LicenseChange(*r) for r in ledger.db.execute(
        "SELECT license_number, partner, ref, change, replaced_by, change_date, at, file_id, "
        "reason FROM license_changes WHERE partner = ? ORDER BY change_date DESC, at DESC, "
        "license_number LIMIT ?", (partner, limit)).fetchall()]


@dataclass(frozen=True, slots=True)
class RefApplication:
    """One application sent with a ref: what it got, and the error codes that rejected it."""

    ref: str
    partner: str
    status: str
    license_number: str | None
    reused: int
    file_id: str
    remote_name: str
    received_at: str
    codes: tuple[str, ...]


def applications_for_ref(ledger: Ledger, text: str, limit: int) -> list[RefApplication]:
    """Every application with a ref like ``text``, licensed or not, newest first."""
    pattern = like(text)
    apps = ledger.db.execute(
        "SELECT a.ref, f.partner, a.status, a.license_number, a.reused, a.file_id, "
        "f.remote_name, f.received_at FROM applications a JOIN files f USING (file_id) "
        "WHERE LOWER(a.ref) LIKE ? ESCAPE '\\' "
        "ORDER BY f.received_at DESC, a.file_id DESC LIMIT ?", (pattern, limit)).fetchall()
    codes: dict[tuple[str, str], list[str]] = {}
    for file_id, ref, code in ledger.db.execute(
            "SELECT DISTINCT file_id, ref, code FROM findings WHERE severity = 'ERROR' "
            "AND LOWER(ref) LIKE ? ESCAPE '\\' ORDER BY code", (pattern,)):
        codes.setdefault((file_id, ref), []).append(code)
    return [RefApplication(ref, partner, status, number, reused, file_id, name, received,
                           tuple(codes.get((file_id, ref), ())))
            for ref, partner, status, number, reused, file_id, name, received in apps]
