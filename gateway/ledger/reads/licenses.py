"""Licenses as admins look them up: one search (``LicenseQuery``) for ``aim-gateway
licenses`` and the web page, one column order, and the applications sent under a ref.

Pure reads in the SQL that SQLite and PostgreSQL share; the callers only render.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import date

from gateway.ledger.db import like
from gateway.ledger.store import Ledger


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


LICENSE_COLUMNS = tuple(f.name for f in fields(LicenseRow))  # the one column order
_SELECT = f"SELECT {', '.join(LICENSE_COLUMNS)} FROM licenses"


@dataclass(frozen=True, slots=True)
class LicenseQuery:
    """Licenses by exact number or ref, by ``text`` (the number, or part of the ref), by part
    of the importer's name (any case), partner and issue dates (inclusive); newest first."""

    number: str = ""
    ref: str = ""
    text: str = ""
    importer: str = ""
    partner: str = ""
    issued_from: date | None = None
    issued_to: date | None = None
    limit: int = 100

    @property
    def empty(self) -> bool:
        return not (self.number or self.ref or self.text or self.importer or self.partner
                    or self.issued_from or self.issued_to)

    def where(self) -> tuple[str, tuple[object, ...]]:
        clauses, params = ["1 = 1"], []
        for column, value in (("license_number", self.number.upper()), ("ref", self.ref),
                              ("partner", self.partner)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.text:
            clauses.append("(license_number = ? OR LOWER(ref) LIKE ? ESCAPE '\\')")
            params += [self.text.upper(), like(self.text)]
        if self.importer:
            clauses.append("LOWER(importer) LIKE ? ESCAPE '\\'")  # % and _ are literal
            params.append(like(self.importer))
        if self.issued_from:
            clauses.append("issue_date >= ?")
            params.append(self.issued_from.isoformat())
        if self.issued_to:
            clauses.append("issue_date <= ?")
            params.append(self.issued_to.isoformat())
        return " AND ".join(clauses), tuple(params)


def list_licenses(ledger: Ledger, query: LicenseQuery) -> list[LicenseRow]:
    where, params = query.where()
    rows = ledger.db.execute(f"{_SELECT} WHERE {where} "
                             "ORDER BY issue_date DESC, license_number DESC LIMIT ?",
                             (*params, query.limit)).fetchall()
    return [LicenseRow(*r) for r in rows]


# One product line of a license: hts, product group, smelt (largest), smelt (second), cast,
# lines, kg, USD (licensing.PRODUCT_FIELDS).
Product = list[object]


def license_detail(ledger: Ledger, number: str) -> tuple[LicenseRow, list[Product]] | None:
    row = ledger.db.execute(f"SELECT {', '.join(LICENSE_COLUMNS)}, products FROM licenses "
                            "WHERE license_number = ?", (number,)).fetchone()
    if row is None:
        return None
    return LicenseRow(*row[:-1]), json.loads(row[-1])


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
