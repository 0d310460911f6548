"""Corrections, cancellations and registered numbers (guide 5.1a, 5.1b): the findings that
say whether an application may take its license, and the changes it makes.

A license changes state once: ``ACTIVE`` to ``SUPERSEDED`` (a correction issued its
replacement) or to ``CANCELLED``; ``EXPIRED`` is an ``ACTIVE`` license past its valid-through
date. A ref holds at most one license that is not ``SUPERSEDED`` (its current one).
"""

from __future__ import annotations

from datetime import date

from gateway.findings import Finding, finding
from gateway.ledger.licenses import LicenseChange, PriorLicense
from gateway.ledger.store import utc_stamp
from gateway.licensing.issuer import LicenseIssuer
from gateway.licensing.results import AppOutcome
from gateway.model import LICENSE_NUMBER, AppStatus, LicenseState
from gateway.validate.staging import StagedApplication, legacy_application_digest


def same_content(prior: PriorLicense, item: StagedApplication) -> bool:
    """Whether the prior license was issued for this application's content (I201, not A104).

    Licenses issued before issue 10 hold a version-1 digest (lines in file order, numbers as
    written), which cannot be recomputed: it matches the request written as it was then, so
    an identical resend still gets I201 after the upgrade (the same request with its lines
    reordered gets A104 against such a license, as it did before).
    """
    return prior.digest == item.digest or prior.digest == legacy_application_digest(item.app)


def resent(prior: PriorLicense | None, item: StagedApplication) -> bool:
    """The request this ref's current license was issued for, sent again (I201): the same
    content, and for a correction the same correction (the license replaces the one named).
    A cancelled license is never returned as a license."""
    if prior is None or prior.state == LicenseState.CANCELLED or not same_content(prior, item):
        return False
    return item.app.corrects is None or prior.replaces == item.app.corrects


def lifecycle_findings(item: StagedApplication, prior: PriorLicense | None,
                       partner_id: str | None, issuer: LicenseIssuer) -> str | None:
    """Add A104, A106 or A107 to ``item``'s findings where they apply. Returns the license a
    correction may supersede (None when the application is no correction, or is one sent
    again: then ``prior`` is returned, I201)."""
    app = item.app
    findings = item.findings
    ref = app.ref
    again = resent(prior, item)
    # A changed resend (no correction) of the number the ref's own current license holds is
    # A104 alone: no other application holds it. A correction needs a number of its own.
    own = app.corrects is None and prior is not None and \
        prior.license_number == app.license_number
    if app.license_number is not None and issuer.registered and not again and not own and \
            issuer.held(app.license_number):
        findings.append(finding(
            "A106", f"License number {app.license_number} is held by another application: "
            "send the number Commerce's AIM system issued for this one.", ref=ref,
            field="license_number", value=app.license_number, source_line=app.source_line))
    if again or app.corrects is None:
        if prior is not None and not again:
            findings.append(_a104(item, prior))
        return None
    named = app.corrects
    if any(f.field == "corrects" for f in findings):
        return named  # its shape is an error already (A101): nothing to look up
    if _taken_as_valid(issuer, partner_id, named):
        return named
    target = issuer.license(named)
    problem = _target_problem(target, partner_id, ref, issuer.issue_date, correction=True)
    if problem is not None:
        code, message = problem
        findings.append(finding(code, message, ref=ref, field="corrects", value=named,
                                source_line=app.source_line))
    return named


def _a104(item: StagedApplication, prior: PriorLicense) -> Finding:
    app = item.app
    # A cancelled license cannot be corrected (A107): whatever the content, a new ref it is.
    if prior.state == LicenseState.CANCELLED:
        message = (f"The ref {app.ref!r} was licensed before ({prior.license_number}) and that "
                   "license was cancelled: use a new ref for a new request.")
    else:
        message = (f"The ref {app.ref!r} was licensed before ({prior.license_number}) with "
                   "different content: use a new ref for a new request, or name the license "
                   "in `corrects` to correct it.")
    return finding("A104", message, ref=app.ref, field="ref", value=app.ref,
                   source_line=app.source_line)


def _taken_as_valid(issuer: LicenseIssuer, partner_id: str | None, number: str) -> bool:
    """Whether the license a correction or cancellation names is taken as valid unseen: a
    check without the history (no ledger, or no partner) cannot look it up. A number no
    license can have is not: A106, as a run says, rather than the ack's LicenseNumber (whose
    XSD refuses it)."""
    return not issuer.sees_history(partner_id) and \
        LICENSE_NUMBER.fullmatch(number) is not None


def _target_problem(target: PriorLicense | None, partner_id: str | None, ref: str | None,
                    on: date, *, correction: bool) -> tuple[str, str] | None:
    """A106 or A107 for the license a correction or cancellation names, or None."""
    if target is None or target.partner != partner_id:
        # Another partner's license reads exactly as one that does not exist: whether a
        # number was issued to someone else is none of this partner's business.
        return "A106", "No license of this number was issued to you: name a license issued " \
            "to you for this application's ref."
    if target.ref != ref:
        return "A106", (f"License {target.license_number} was not issued for this ref: name "
                        "the license issued for this application's ref.")
    state = target.state_on(on)
    if state is LicenseState.SUPERSEDED:
        return "A107", (f"License {target.license_number} is SUPERSEDED by a correction: name "
                        "the license that replaced it.")
    if state is LicenseState.EXPIRED:
        return "A107", (f"License {target.license_number} EXPIRED on {target.valid_through}: it "
                        "can be neither corrected nor cancelled; apply anew with a new ref.")
    if state is LicenseState.CANCELLED and correction:
        return "A107", (f"License {target.license_number} is CANCELLED: a cancelled license "
                        "cannot be corrected; apply anew with a new ref.")
    return None


def supersede(outcome: AppOutcome, item: StagedApplication, corrected: str,
              partner_id: str | None, issuer: LicenseIssuer) -> None:
    """The correction's new license (``outcome.license_number``) replaces ``corrected``."""
    app = item.app
    new = outcome.license_number or ""
    outcome.replaces = corrected
    issuer.change(LicenseChange(
        license_number=corrected, partner=partner_id or "", ref=app.ref or "",
        change=LicenseState.SUPERSEDED, replaced_by=new,
        change_date=issuer.issue_date.isoformat(), at=utc_stamp(), file_id=issuer.file_id,
        reason=None))
    outcome.findings.append(finding(
        "I202", f"Correction: license {new} replaces license {corrected}, which is now "
        f"SUPERSEDED; use {new} from now on.", ref=app.ref, field="corrects", value=corrected,
        source_line=app.source_line))


def decide_cancellation(item: StagedApplication, partner_id: str | None,
                        issuer: LicenseIssuer) -> AppOutcome:
    """A cancellation request: CANCELLED with I203 (again when the license already is), or
    REJECTED (A102 from the rules, A105, A106, A107)."""
    app = item.app
    findings = item.findings
    outcome = AppOutcome(item.seq, app.ref, AppStatus.REJECTED, findings, item.lines)
    number = app.license_number
    if any(f.is_error for f in findings) or number is None:
        return outcome
    unseen = _taken_as_valid(issuer, partner_id, number)
    target = None if unseen else issuer.license(number)
    if not unseen:
        problem = _target_problem(target, partner_id, app.ref, issuer.issue_date,
                                  correction=False)
        if problem is not None:
            code, message = problem
            findings.append(finding(code, message, ref=app.ref, field="license_number",
                                    value=number, source_line=app.source_line))
            return outcome
    outcome.status = AppStatus.CANCELLED
    outcome.license_number = number
    if target is not None and target.state == LicenseState.CANCELLED:
        message = f"License {number} was cancelled before: it stays CANCELLED; nothing changed."
    else:
        issuer.change(LicenseChange(
            license_number=number, partner=partner_id or "", ref=app.ref or "",
            change=LicenseState.CANCELLED, replaced_by=None,
            change_date=issuer.issue_date.isoformat(), at=utc_stamp(), file_id=issuer.file_id,
            reason=app.reason))
        message = f"License {number} is CANCELLED: it may no longer be used on an entry summary."
    findings.append(finding("I203", message, ref=app.ref, field="license_number", value=number,
                            source_line=app.source_line))
    return outcome
