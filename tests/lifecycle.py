"""License lifecycles recorded in a ledger the way ``gateway.licensing.decide`` records them
(guide 5.1b): a correction issues a new license (``replaces`` the old one) and supersedes the
old one through ``Ledger.change_license`` in the file's transaction; a cancellation changes a
license to CANCELLED with its reason. The file that makes them is received and recorded as a
run records it.

Used on ledgers filled by a real run of the sample partner, until the parsers read
``corrects`` and ``<Cancellation>`` (then a real file does the same).
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

from gateway.ledger.licenses import LicenseChange
from gateway.ledger.store import Ledger, Receipt
from gateway.licensing.issuer import LOW_VALUE_SERIES, format_license
from gateway.model import LicenseKind, LicenseSource, LicenseState

# The licenses table's columns in ``add_licenses`` order.
COLUMNS = ("license_number, partner, ref, digest, file_id, issue_date, valid_from, "
           "valid_through, entry_type, port_of_entry, importer, exporter, manufacturer, "
           "country_of_origin, lines, quantity_kg, value_usd, products, kind, source, replaces")
VALIDITY = timedelta(days=75)


class Lifecycle:
    """One file of changes: ``correct``, ``cancel`` and ``issue`` record what its
    applications got; ``close`` records the file as processed."""

    def __init__(self, ledger: Ledger, partner: str, day: date, name: str) -> None:
        self.ledger, self.partner, self.day = ledger, partner, day
        with ledger.transaction():
            self.file_id = ledger.new_file_id(day)
            ledger.add_file(self.file_id, Receipt(partner, name, 100, 0.0, name.encode().hex()
                                                  .ljust(64, "0")[:64]),
                            local_name=f"{self.file_id}__{name}",
                            received_at=f"{day.isoformat()}T09:00:00+00:00", state="DONE")
        self.apps: list[tuple[object, ...]] = []
        self.issued = 0
        self.changes = 0

    def _app(self, ref: str, status: str, number: str) -> None:
        self.apps.append((self.file_id, len(self.apps) + 1, ref, status, number, 0, 1, None))

    def _row(self, number: str) -> list[object]:
        row = self.ledger.db.execute(f"SELECT {COLUMNS} FROM licenses WHERE license_number = ?",
                                     (number,)).fetchone()
        assert row is not None, number
        return list(row)

    def _new_number(self, series: str = "A") -> str:
        return format_license(self.day.year,
                              self.ledger.next_license_sequence(self.day.year, series), series)

    def correct(self, old: str, quantity_kg: str) -> str:
        """Correct license ``old`` with a new quantity: its new license's number."""
        row = self._row(old)
        new = self._new_number()
        with self.ledger.transaction():
            assert self.ledger.change_license(LicenseChange(
                old, self.partner, str(row[2]), LicenseState.SUPERSEDED, new,
                self.day.isoformat(), f"{self.day.isoformat()}T09:00:01+00:00", self.file_id,
                None))
            self.ledger.add_licenses([self._issued_row(row, new, quantity_kg, replaces=old)])
        self.changes += 1
        self._app(str(row[2]), "LICENSED", new)
        return new

    def _issued_row(self, row: list[object], number: str, quantity_kg: str, *,
                    replaces: str | None = None, kind: str = LicenseKind.REGULAR,
                    source: str = LicenseSource.GATEWAY, ref: str | None = None,
                    ) -> tuple[object, ...]:
        products = json.loads(str(row[17]))
        scale = Decimal(quantity_kg) / Decimal(str(row[15]))
        for product in products:  # every product line scaled to the new quantity
            product[6] = str((Decimal(product[6]) * scale).quantize(Decimal("0.001")))
        self.issued += 1
        new = [number, self.partner, ref or row[2], f"digest-{number}", self.file_id,
               self.day.isoformat(), self.day.isoformat(), (self.day + VALIDITY).isoformat(),
               *row[8:15], quantity_kg, row[16], json.dumps(products), kind, source, replaces]
        return tuple(new)

    def cancel(self, number: str, reason: str) -> None:
        row = self._row(number)
        with self.ledger.transaction():
            assert self.ledger.change_license(LicenseChange(
                number, self.partner, str(row[2]), LicenseState.CANCELLED, None,
                self.day.isoformat(), f"{self.day.isoformat()}T09:00:02+00:00", self.file_id,
                reason))
        self.changes += 1
        self._app(str(row[2]), "CANCELLED", number)

    def issue(self, like: str, ref: str, quantity_kg: str, *, low_value: bool = False,
              registered: str | None = None) -> str:
        """A new license for ``ref`` made like license ``like``: low-value (an L number) or
        registered (Commerce's number ``registered``)."""
        row = self._row(like)
        number = registered or self._new_number(LOW_VALUE_SERIES if low_value else "A")
        with self.ledger.transaction():
            self.ledger.add_licenses([self._issued_row(
                row, number, quantity_kg, ref=ref,
                kind=LicenseKind.LOW_VALUE if low_value else LicenseKind.REGULAR,
                source=LicenseSource.COMMERCE if registered else LicenseSource.GATEWAY)])
        self._app(ref, "LICENSED", number)
        return number

    def close(self) -> str:
        licensed = sum(1 for a in self.apps if a[3] == "LICENSED")
        with self.ledger.transaction():
            self.ledger.add_applications(self.apps)
            self.ledger.update_file(
                self.file_id, status="ACCEPTED", format="xml", rule_set_date=self.day.isoformat(),
                processed_at=f"{self.day.isoformat()}T09:00:03+00:00",
                applications=len(self.apps), licensed=licensed, new_licenses=self.issued,
                ack_name=f"ACK-{self.file_id}.xml")
            if self.changes:  # the changes report of a file that made a change
                self.ledger.db.execute("UPDATE files SET changes_name = ? WHERE file_id = ?",
                                       (f"CHG-{self.file_id}.csv", self.file_id))
        return self.file_id
