"""A partner's files decided against a real ledger, at the level of ``licensing.decide``
(guide 5.1a, 5.1b): each application through the value rules, staged, decided inside one
ledger transaction and recorded as ``service.process.RunPass`` records it (``licenses`` and
``applications`` rows, the counters saved at the end). No parsing, no outputs: the tests of
the lifecycle decisions and their properties drive this.

A cancellation is staged with no findings and no lines, as the rules treat one (only a
missing ref or license number would be A102).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from gateway.findings import Finding
from gateway.ledger.store import Ledger, Receipt
from gateway.licensing.decide import decide, license_row
from gateway.licensing.issuer import LicenseIssuer
from gateway.model import Application, AppStatus, ProductLine
from gateway.validate.hts import edition_on
from gateway.validate.rules import RuleContext, check_application
from gateway.validate.staging import StagedApplication, application_digest

ON = date(2026, 12, 4)  # the processing date of most tests
PARTNER = "acme"
VALIDITY_DAYS = 75


def application(ref: str, on: date = ON, *, qty: str = "24000", value: str = "61200.00",
                hts: str = "7606123045", port: str = "3004", **fields: object) -> Application:
    """A valid regular application for ``ref`` processed on ``on`` (its dates follow ``on``,
    so that it is valid whatever the processing date); ``qty`` and ``value`` make content
    variants; ``fields`` sets ``corrects``, ``kind``, ``license_number``, ..."""
    line = ProductLine("1", hts=hts, smelt_country_largest="CA",
                       smelt_country_second="NOT_APPLICABLE", cast_country="CA",
                       quantity_kg=qty, value_usd=value)
    return Application(
        ref, entry_type="01", importer="ACME ALUMINUM IMPORTS LLC",
        exporter="NORTHERN ROLLING MILLS INC", manufacturer="NORTHERN ROLLING MILLS INC",
        country_of_origin="CA", country_of_export="CA",
        expected_export_date=(on + timedelta(days=6)).isoformat(),
        expected_import_date=(on + timedelta(days=11)).isoformat(), port_of_entry=port,
        lines=[line], **fields)  # type: ignore[arg-type]


def cancellation(ref: str, number: str, reason: str | None = "order cancelled") -> Application:
    return Application(ref, cancel=True, license_number=number, reason=reason)


@dataclass(frozen=True)
class Decision:
    """One application's outcome as a test reads it."""

    status: str
    number: str | None
    replaces: str | None
    reused: bool
    findings: tuple[Finding, ...]

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def message(self, code: str) -> str:
        return next(f.message for f in self.findings if f.code == code)


def staged(apps: Sequence[Application], on: date = ON,
           registered: bool = False) -> list[StagedApplication]:
    """Phase 1 for ``apps``: the value rules' findings and lines, the digest."""
    ctx = RuleContext(on, edition_on(on), registered=registered)
    items = []
    for seq, app in enumerate(apps, 1):
        if app.cancel:
            items.append(StagedApplication(seq, app, [], [], False, application_digest(app)))
            continue
        check = check_application(app, ctx)
        items.append(StagedApplication(seq, app, check.findings, check.lines, check.exempt,
                                       application_digest(app)))
    return items


def received(ledger: Ledger, on: date = ON, partner: str = PARTNER) -> str:
    """A file received (committed): its id."""
    with ledger.transaction():
        file_id = ledger.new_file_id(on)
        ledger.add_file(file_id, Receipt(partner, f"{file_id}.xml", 1, 0.0, file_id),
                        local_name=f"{file_id}.xml", received_at=f"{on.isoformat()}T12:00:00+00:00")
    return file_id


def decide_file(ledger: Ledger, file_id: str, items: Sequence[StagedApplication],
                on: date = ON, partner: str | None = PARTNER, registered: bool = False,
                ref_counts: bool = False, quota: int | None = None) -> list[Decision]:
    """Decide and record one file's applications (the caller holds the transaction).
    ``ref_counts``: the two-pass path (every ref counted first), else the one-pass path,
    which raises ``RepeatedRef`` at a repeated ref."""
    counts = Counter(i.app.ref for i in items if i.app.ref) if ref_counts else None
    issuer = LicenseIssuer(ledger, on, VALIDITY_DAYS, quota, file_id=file_id,
                           registered=registered)
    out = []
    licenses, apps = [], []
    try:  # read ahead and released as ``DecisionCore`` does
        for item, o in decide(issuer.ahead(items, partner), counts, partner, issuer):
            out.append(Decision(o.status.value, o.license_number, o.replaces, o.reused,
                                tuple(o.findings)))
            if ledger.readonly:
                continue
            apps.append((file_id, o.seq, o.ref, o.status.value, o.license_number,
                         int(o.reused), len(item.app.lines), item.digest))
            if o.status is AppStatus.LICENSED and not o.reused:
                assert partner is not None
                licenses.append(license_row(item, o, partner, file_id, registered))
        if not ledger.readonly:
            ledger.add_licenses(licenses)
            ledger.add_applications(apps)
            issuer.save()
    finally:
        issuer.release()
    return out


def run_file(ledger: Ledger, apps: Sequence[Application], on: date = ON, *,
             partner: str = PARTNER, registered: bool = False,
             ref_counts: bool = False, quota: int | None = None) -> list[Decision]:
    """One file received and decided in its own transaction, as ``run`` does."""
    file_id = received(ledger, on, partner)
    with ledger.transaction():
        return decide_file(ledger, file_id, staged(apps, on, registered), on, partner,
                           registered, ref_counts, quota)


def check_file(ledger: Ledger, apps: Sequence[Application], on: date = ON, *,
               partner: str | None = PARTNER, registered: bool = False) -> list[Decision]:
    """The decisions ``check`` shows: ``ledger`` is read-only, nothing is recorded."""
    assert ledger.readonly
    return decide_file(ledger, "", staged(apps, on, registered), on, partner, registered)


# -- what the ledger holds --------------------------------------------------------------------


def license_states(ledger: Ledger) -> dict[str, str]:
    return dict(ledger.db.execute("SELECT license_number, state FROM licenses").fetchall())


def change_rows(ledger: Ledger) -> list[tuple[str, str, str | None, str | None]]:
    """(license, change, replaced_by, reason) of every ``license_changes`` row."""
    return [tuple(r) for r in ledger.db.execute(
        "SELECT license_number, change, replaced_by, reason FROM license_changes "
        "ORDER BY license_number").fetchall()]  # type: ignore[misc]


def counters(ledger: Ledger) -> dict[tuple[str, int], int]:
    return {(s, y): last for s, y, last in ledger.db.execute(
        "SELECT series, year, last FROM license_counter").fetchall()}
