"""Duty-risk warnings (guide section 6, contract 1.1): A126 and A127.

AIM monitors imports; it does not set duties. But the smelt and cast countries a partner
states on a license are the facts CBP uses for two Section 232 measures, and an importer who
learns of the duty only at entry summary pays it unplanned. So these rules warn (WARNING:
the license is issued as usual) and say which measure applies, with its source:

- A126: Proclamation 10522 of February 24, 2023, 88 FR 13267 (March 2, 2023): 200% ad valorem
  on aluminum articles that are products of Russia (entries from 2023-03-10) and on those
  where any primary aluminum was smelted in Russia or that were cast in Russia (entries from
  2023-04-10; HTS 9903.85.67). The guide dates A126 from 2023-03-10, the first date of the
  proclamation; docs/partner-guide.md says why 2023-04-10 is arguably the exact one.
- A127: Proclamation 10782 of July 10, 2024, 89 FR 57339 (July 15, 2024): aluminum articles
  of Mexico whose primary or secondary smelt country or country of most recent cast is
  China, Russia, Belarus or Iran owe the Section 232 duty (10% then; Proclamation 10522
  still governs Russian smelt). Later proclamations (10895, 2025-03-12) changed the rates, so
  the message names the measure, not a rate in force.

The dates are processing dates, like every rule's (rules.DATED_RULES registers them); CBP
applies the duties by entry date, which the gateway does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from gateway.model import ProductLine

# The smelt and cast fields of a line, in the order a finding names the first that matches.
SMELT_CAST_FIELDS = ("smelt_country_largest", "smelt_country_second", "cast_country")


@dataclass(frozen=True, slots=True)
class DutyRisk:
    """A warning on lines whose smelt or cast country is in ``countries``, for applications
    whose country of origin is in ``origins`` (None: any), from ``valid_from`` on."""

    code: str
    valid_from: date
    origins: frozenset[str] | None
    countries: frozenset[str]
    why: str  # the measure and its source, after the offending fields

    def check(self, line: ProductLine) -> tuple[str, str, str] | None:
        """(field, country, message) for the first offending field of ``line``, else None."""
        countries = self.countries
        # Hot path (every line, for every risk in force): three set lookups say "no" without
        # building the list below (about a third of the line rules' time, measured).
        if line.smelt_country_largest not in countries and \
                line.smelt_country_second not in countries and \
                line.cast_country not in countries:
            return None
        hits = [(name, country) for name in SMELT_CAST_FIELDS
                if (country := getattr(line, name)) in self.countries]
        if not hits:
            return None
        stated = ", ".join(f"{name} {country}" for name, country in hits)
        return hits[0][0], hits[0][1], f"{stated}: {self.why}"


_NOT_A_REJECTION = ("The license is not affected (AIM monitors imports, it does not set "
                    "duties): check the duty with your customs broker before entry.")

DUTY_RISKS = (
    DutyRisk(
        "A126", date(2023, 3, 10), None, frozenset({"RU"}),
        "aluminum smelted or cast in Russia owes the 200% Section 232 duty of Proclamation "
        "10522 (88 FR 13267; HTS 9903.85.67; for smelt or cast in Russia on entries from "
        "2023-04-10, for products of Russia from 2023-03-10). CBP also expects RU as the "
        "secondary smelt country whenever any primary aluminum was smelted in Russia. "
        + _NOT_A_REJECTION),
    DutyRisk(
        "A127", date(2024, 7, 10), frozenset({"MX"}), frozenset({"CN", "RU", "BY", "IR"}),
        "an aluminum article of Mexico smelted or cast in China, Russia, Belarus or Iran "
        "owes the Section 232 duty under Proclamation 10782 (89 FR 57339, entries from "
        "2024-07-10; Russian smelt or cast stays under Proclamation 10522). Later "
        "proclamations changed the rates: see HTS chapter 99 in force. " + _NOT_A_REJECTION),
)


# Every origin some risk is limited to: any other origin gets what no origin gets.
_ORIGINS = frozenset(c for risk in DUTY_RISKS if risk.origins for c in risk.origins)


def duty_risks_for(origin: str | None, active: frozenset[str]) -> tuple[DutyRisk, ...]:
    """The duty risks that can apply to the lines of an application of country of origin
    ``origin``, with the dated rule codes ``active`` on the processing date."""
    # Once per application: cached (0.45 us -> 0.1 us, measured), keyed by the few origins
    # that matter, so that no sent value is ever held.
    return _duty_risks_for(origin if origin in _ORIGINS else None, active)


@lru_cache(maxsize=64)
def risk_countries(risks: tuple[DutyRisk, ...]) -> frozenset[str | None]:
    """Every smelt or cast country that one of ``risks`` names: a line with none of them
    needs no ``check`` (a method call a line and a risk saved, 0.3 us, measured)."""
    return frozenset(c for risk in risks for c in risk.countries)


@lru_cache(maxsize=64)
def _duty_risks_for(origin: str | None, active: frozenset[str]) -> tuple[DutyRisk, ...]:
    return tuple(risk for risk in DUTY_RISKS if risk.code in active
                 and (risk.origins is None or origin in risk.origins))
