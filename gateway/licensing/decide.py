"""Phase 2: decide each staged application's status and issue license numbers (guide 5.1/5.2).

Runs inside the ledger transaction that records the result, so numbers are allocated and
recorded together: a crash before the commit leaves no trace and the rerun draws the same
numbers.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from gateway.errors import FatalError
from gateway.findings import finding
from gateway.ledger.licenses import PriorLicense
from gateway.ledger.store import Ledger
from gateway.licensing.results import PENDING, AppOutcome
from gateway.model import AppStatus
from gateway.validate.smelt_cast import a128_findings
from gateway.validate.staging import StagedApplication, legacy_application_digest

MAX_SEQUENCE = 999_999
# 80 % of a year's numbers (rounded down): the first number past it raises one alarm (5.1a).
ALARM_SEQUENCE = MAX_SEQUENCE * 8 // 10


def format_license(year: int, sequence: int) -> str:
    """``A`` + two-digit year of issue + six-digit sequence within that year: ``A21000001``."""
    return f"A{year % 100:02d}{sequence:06d}"


@dataclass
class LicenseIssuer:
    """Draws license numbers from the ledger's counter for the issue year, within the
    partner's daily quota (guide 5.1a)."""

    ledger: Ledger | None  # None: dry run (check), numbers are PENDING
    issue_date: date
    validity_days: int
    quota: int | None = None  # the partner's max_licenses_per_day; None: no quota

    def __post_init__(self) -> None:
        self.year = self.issue_date.year
        self.last = self.ledger.last_license_sequence(self.year) if self.ledger else 0
        self.issued = 0  # new licenses of this file (PENDING ones of a dry run too)
        self.refused = 0  # applications of this file refused for the quota (A109)
        self._issued_today: int | None = None
        self._history: dict[str, bool] = {}

    def within_quota(self, partner_id: str | None) -> bool:
        """Whether one more new license fits the partner's quota for the issue date.

        The licenses issued earlier that day are counted once per file, then this file's are
        added here: a partner's files are processed one at a time (the worker holding the
        partner's lease, on SQLite and PostgreSQL alike), so no other file of this partner
        issues a license meanwhile. Licenses returned again (I201) are no new ones: they
        spend nothing.
        """
        if self.quota is None:
            return True
        if self._issued_today is None:
            self._issued_today = self.ledger.licenses_issued(partner_id, self.issue_date) \
                if self.ledger is not None and partner_id else 0
        return self._issued_today + self.issued < self.quota

    @property
    def running_low(self) -> bool:
        """This file drew a number past 80 % of the year's (the alarm of guide 5.1a)."""
        return self.issued > 0 and self.last > ALARM_SEQUENCE

    def prior_license(self, partner_id: str | None, ref: str | None) -> PriorLicense | None:
        """The license this partner's ref got before, if any (I201 / A104).

        A partner with no license at all (a new partner) needs no lookup per application:
        asked once per file. Licenses issued earlier in the same file are not "before"
        (a ref twice in one file is A105)."""
        if self.ledger is None or not partner_id or not ref:
            return None
        if partner_id not in self._history:
            self._history[partner_id] = self.ledger.has_licenses(partner_id)
        if not self._history[partner_id]:
            return None
        return self.ledger.prior_license(partner_id, ref)

    @property
    def valid_through(self) -> date:
        return self.issue_date + timedelta(days=self.validity_days)

    def next_number(self) -> str:
        self.issued += 1
        if self.ledger is None or self.ledger.readonly:
            return PENDING
        if self.ledger.concurrent:
            # Several workers: the shared counter row, committed at once (a rollback leaves
            # a gap, never a repeat).
            sequence = self.ledger.next_license_sequence(self.year)
        else:
            # One writer: counted here and saved with the licenses in one transaction, so a
            # crash and a rerun draw the same numbers.
            sequence = self.last + 1
        if sequence > MAX_SEQUENCE:
            raise FatalError(f"License numbers for {self.year} are exhausted "
                             f"({MAX_SEQUENCE:,} issued).")
        self.last = sequence
        return format_license(self.year, sequence)

    def save(self) -> None:
        if self.ledger is not None and not self.ledger.readonly and self.issued and \
                not self.ledger.concurrent:
            self.ledger.set_license_sequence(self.year, self.last)


class RepeatedRef(Exception):
    """The one-pass path met a ref twice (A105): redo the file on the two-pass path."""


def same_content(prior: PriorLicense, item: StagedApplication) -> bool:
    """Whether the prior license was issued for this application's content (I201, not A104).

    Licenses issued before issue 10 hold a version-1 digest (lines in file order, numbers as
    written), which cannot be recomputed: it matches the request written as it was then, so
    an identical resend still gets I201 after the upgrade (the same request with its lines
    reordered gets A104 against such a license, as it did before).
    """
    return prior.digest == item.digest or prior.digest == legacy_application_digest(item.app)


def decide_one(item: StagedApplication, ref_count: int, partner_id: str | None,
               issuer: LicenseIssuer) -> AppOutcome:
    """One application's final status; issues its license when it gets a new one."""
    app = item.app
    findings = item.findings
    ref = app.ref
    if ref_count > 1:
        findings.append(finding(
            "A105", f"The ref {ref!r} is used by {ref_count} applications in this file: give "
            "each application its own ref.", ref=ref, field="ref", value=ref,
            source_line=app.source_line))
    prior = issuer.prior_license(partner_id, ref)
    if prior is not None and not same_content(prior, item):
        findings.append(finding(
            "A104", f"The ref {ref!r} was licensed before ({prior.license_number}) with "
            "different content: use a new ref for a new request.", ref=ref, field="ref",
            value=ref, source_line=app.source_line))
    outcome = AppOutcome(item.seq, ref, AppStatus.REJECTED, findings, item.lines)
    if any(f.is_error for f in findings):
        pass
    elif prior is not None:
        outcome.status = AppStatus.LICENSED
        outcome.license_number = prior.license_number
        outcome.valid_from = date.fromisoformat(prior.valid_from)
        outcome.valid_through = date.fromisoformat(prior.valid_through)
        outcome.reused = True
        findings.append(finding(
            "I201", f"This request was licensed before: license {prior.license_number} is "
            "returned; no new license was issued.", ref=ref, value=prior.license_number,
            source_line=app.source_line))
    elif item.exempt or not any(r.covered for r in item.lines):
        outcome.status = AppStatus.NOT_REQUIRED
    elif not issuer.within_quota(partner_id):
        issuer.refused += 1
        findings.append(finding(
            "A109", f"The partner's daily license quota of {issuer.quota} is reached: send the "
            "application again the next day.", ref=ref, value=str(issuer.quota),
            source_line=app.source_line))
    else:
        outcome.status = AppStatus.LICENSED
        outcome.license_number = issuer.next_number()
        outcome.valid_from = issuer.issue_date
        outcome.valid_through = issuer.valid_through
    if outcome.status is AppStatus.LICENSED:
        # Here, where "licensed" is known: only a licensed application's lines reach the ACE
        # file, so only they can miss a 54 record (contract 1.1, A128).
        findings.extend(a128_findings(app, (r.line for r in item.lines if r.covered),
                                      len(findings)))
    return outcome


def decide(items: Iterable[StagedApplication], ref_counts: Counter[str] | None,
           partner_id: str | None, issuer: LicenseIssuer) -> Iterator[
               tuple[StagedApplication, AppOutcome]]:
    """Every application with its final status, issuing licenses as it goes.

    With ``ref_counts`` None (one pass over the file, the normal case) a repeated ref raises
    ``RepeatedRef``: the caller rolls back and decides again with the counts (two passes).
    """
    seen: set[str] = set()
    for item in items:
        ref = item.app.ref
        if ref_counts is not None:
            count = ref_counts[ref] if ref else 1
        elif ref is None:
            count = 1
        elif ref in seen:
            raise RepeatedRef(ref)
        else:
            seen.add(ref)
            count = 1
        yield item, decide_one(item, count, partner_id, issuer)


# The fields of each entry of ``licenses.products`` (a JSON array of arrays, in this order).
PRODUCT_FIELDS = ("hts", "product_group", "smelt_country_largest", "smelt_country_second",
                  "cast_country", "lines", "quantity_kg", "value_usd")


def license_row(item: StagedApplication, outcome: AppOutcome, partner_id: str,
                file_id: str) -> tuple[object, ...]:
    """The ``licenses`` row of a newly issued license.

    Its products are aggregated by (HTS, smelt countries, cast country), what AIM monitors,
    into a JSON array of ``PRODUCT_FIELDS`` arrays.
    """
    app = item.app
    # key -> [product group, line count, quantity, value], summed in place
    groups: dict[tuple[str | None, ...], list[Any]] = {}
    for r in item.lines:
        if r.covered is None:
            continue
        line = r.line
        key = (r.hts10, line.smelt_country_largest, line.smelt_country_second,
               line.cast_country)
        group = groups.get(key)
        if group is None:
            groups[key] = [r.covered.product_group, 1, r.quantity or _ZERO, r.value or _ZERO]
        else:
            group[1] += 1
            group[2] += r.quantity or _ZERO
            group[3] += r.value or _ZERO
    number = outcome.license_number
    assert outcome.valid_from and outcome.valid_through and number
    products = json.dumps(
        [[k[0], g[0], k[1], k[2], k[3], g[1], str(g[2]), str(g[3])]
         for k, g in groups.items()], ensure_ascii=False, separators=(",", ":"))
    return (
        number, partner_id, app.ref, item.digest, file_id, outcome.valid_from.isoformat(),
        outcome.valid_from.isoformat(), outcome.valid_through.isoformat(), app.entry_type,
        app.port_of_entry, app.importer, app.exporter, app.manufacturer, app.country_of_origin,
        sum(g[1] for g in groups.values()), str(sum((g[2] for g in groups.values()), _ZERO)),
        str(sum((g[3] for g in groups.values()), _ZERO)), products,
    )


_ZERO = Decimal(0)
