"""Phase 2: decide each staged application's status and issue license numbers (guide 5.1/5.2).

Runs inside the ledger transaction that records the result, so numbers are allocated and
recorded together: a crash before the commit leaves no trace and the rerun draws the same
numbers.
"""

from __future__ import annotations

import _json
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Any

from gateway.caching import short_cache
from gateway.findings import finding
from gateway.licensing.issuer import LOW_VALUE_SERIES, REGULAR_SERIES, LicenseIssuer
from gateway.licensing.lifecycle import decide_cancellation, lifecycle_findings, supersede
from gateway.licensing.results import AppOutcome, any_covered, has_error
from gateway.model import AppStatus, LicenseKind, LicenseSource
from gateway.validate.smelt_cast import a128_findings
from gateway.validate.staging import StagedApplication


class RepeatedRef(Exception):
    """The one-pass path met a ref twice (A105): redo the file on the two-pass path."""


def issue(outcome: AppOutcome, number: str, item: StagedApplication, partner_id: str | None,
          issuer: LicenseIssuer, corrected: str | None) -> None:
    """``outcome`` is LICENSED with the new license ``number``, replacing ``corrected``."""
    outcome.status = AppStatus.LICENSED
    outcome.license_number = number
    outcome.valid_from = issuer.issue_date
    outcome.valid_through = issuer.valid_through
    if corrected is not None:
        supersede(outcome, item, corrected, partner_id, issuer)


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
    if app.cancel:
        return decide_cancellation(item, partner_id, issuer)
    prior = issuer.prior_license(partner_id, ref)
    corrected = lifecycle_findings(item, prior, partner_id, issuer)
    outcome = AppOutcome(item.seq, ref, AppStatus.REJECTED, findings, item.lines)
    if has_error(findings):
        pass
    elif prior is not None and corrected is None:
        outcome.status = AppStatus.LICENSED
        outcome.license_number = prior.license_number
        outcome.valid_from = date.fromisoformat(prior.valid_from)
        outcome.valid_through = date.fromisoformat(prior.valid_through)
        outcome.reused = True
        findings.append(finding(
            "I201", f"This request was licensed before: license {prior.license_number} is "
            "returned; no new license was issued.", ref=ref, value=prior.license_number,
            source_line=app.source_line))
    elif item.exempt or not any_covered(item.lines):
        outcome.status = AppStatus.NOT_REQUIRED
    elif issuer.registered and app.license_number is None:
        # The rules say A102 first; whatever they say, a registered partner's number is never
        # minted here.
        findings.append(finding(
            "A102", "LicenseNumber is required: send the number Commerce's AIM system issued.",
            ref=ref, field="license_number", source_line=app.source_line))
    elif issuer.registered and app.license_number is not None:
        issue(outcome, app.license_number, item, partner_id, issuer, corrected)
        issuer.record(app.license_number, ref)
        findings.append(finding(
            "I204", f"License {app.license_number} was issued by Commerce's AIM system: it is "
            "recorded as sent; the gateway issued no number.", ref=ref, field="license_number",
            value=app.license_number, source_line=app.source_line))
    elif not issuer.within_quota(partner_id):
        issuer.refused += 1
        findings.append(finding(
            "A109", f"The partner's daily license quota of {issuer.quota} is reached: send the "
            "application again the next day.", ref=ref, value=str(issuer.quota),
            source_line=app.source_line))
    else:
        series = LOW_VALUE_SERIES if app.low_value else REGULAR_SERIES
        issue(outcome, issuer.next_number(series), item, partner_id, issuer, corrected)
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
                file_id: str, registered: bool = False) -> tuple[object, ...]:
    """The ``licenses`` row of a newly issued license (``registered``: its number came from
    Commerce's AIM system, guide 5.1a).

    Its products are aggregated by (HTS, smelt countries, cast country), what AIM monitors,
    into a JSON array of ``PRODUCT_FIELDS`` arrays.
    """
    app = item.app
    # key -> [product group, line count, quantity, value], summed in place
    groups: dict[tuple[str | None, ...], list[Any]] = {}
    for r in item.lines:
        covered = r.covered
        if covered is None:
            continue
        line = r.line
        key = (r.hts10, line.smelt_country_largest, line.smelt_country_second,
               line.cast_country)
        group = groups.get(key)
        if group is None:
            groups[key] = [covered.product_group, 1, r.quantity or _ZERO, r.value or _ZERO]
        else:
            group[1] += 1
            group[2] += r.quantity or _ZERO
            group[3] += r.value or _ZERO
    number = outcome.license_number
    assert outcome.valid_from and outcome.valid_through and number
    lines, quantity, value = 0, _ZERO, _ZERO
    products = []
    for (hts, largest, second, cast), (product_group, count, group_kg, group_usd) in \
            groups.items():
        lines += count
        quantity += group_kg
        value += group_usd
        # A Decimal's text needs no JSON escaping: written in as it is.
        products.append(f'{_product_head(hts, product_group, largest, second, cast)}{count},'
                        f'"{group_kg!s}","{group_usd!s}"]')
    valid_from = _iso_date(outcome.valid_from)
    return (
        number, partner_id, app.ref, item.digest, file_id, valid_from, valid_from,
        _iso_date(outcome.valid_through), app.entry_type, app.port_of_entry, app.importer,
        app.exporter, app.manufacturer, app.country_of_origin, lines, str(quantity), str(value),
        f"[{','.join(products)}]", _LOW_VALUE if app.low_value else _REGULAR,
        _COMMERCE if registered else _GATEWAY, outcome.replaces,
    )


# The same two dates on every license of a file.
_iso_date = lru_cache(maxsize=64)(date.isoformat)
# The kinds and sources as plain text: sqlite3 binds a str subclass (an enum member) through
# its adapter look-up, 0.45 us a value (measured), for the same text.
_REGULAR, _LOW_VALUE = LicenseKind.REGULAR.value, LicenseKind.LOW_VALUE.value
_GATEWAY, _COMMERCE = LicenseSource.GATEWAY.value, LicenseSource.COMMERCE.value
_ZERO = Decimal(0)
# What json.dumps(..., ensure_ascii=False, separators=(",", ":")) writes, with one encoder:
# json.dumps builds a new JSONEncoder for every call given options (0.2 s of 0.65 s per
# 50,000 licenses, profiled).
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
# And JSONEncoder.encode builds a new C encoder for every call: the one built here, with the
# arguments JSONEncoder.iterencode gives it, is called directly (0.47 us against 1.33 us a
# license of one product group, measured: 0.09 s of 100,000 licenses). No markers: a list of
# lists of strings, ints and None cannot refer to itself.
_c_products = _json.make_encoder(None, _JSON.default, json.encoder.encode_basestring, None,
                                 _JSON.key_separator, _JSON.item_separator, False, False, True)


def _products_json(products: list[Any]) -> str:
    return "".join(_c_products(products, 0))


@short_cache(maxsize=8192)
def _product_head(hts: str | None, product_group: str, largest: str | None,
                  second: str | None, cast: str | None) -> str:
    """A product's JSON array up to its counts, ``["<hts>",…,"<cast>",``: the same few
    (HTS, countries) come back license after license, so they are encoded once (encoding
    each product whole took 0.65 us)."""
    return _products_json([hts, product_group, largest, second, cast])[:-1] + ","
