"""The HTS numbers covered by AIM, as effective-dated editions (guide 2.4; data/SOURCE.md).

The HTS renumbers statistical suffixes (7601.10.60.30 became .40 and .45), so the covered list
is not one list but a series of editions, each in force from its ``effective_from`` until the
next one. ``edition_on`` picks the edition of a processing date: ``check``, ``run`` and
``replay --as-of`` all take it from ``licensing.pipeline.rule_context``, so they agree.
"""

from __future__ import annotations

import csv
from bisect import bisect_right
from dataclasses import dataclass, field, replace
from datetime import date
from functools import cache
from importlib import resources
from typing import NamedTuple

# Licensing started on this date (86 FR 27513); before it nothing is covered.
PROGRAM_START = date(2021, 6, 28)

# AIM covers these headings whole: every statistical suffix under one of their listed 8-digit
# subheadings is an aluminum product of the list, so a suffix a later HTS edition adds is
# covered too (A133).
WHOLE_HEADINGS = ("7601", "7604", "7605", "7606", "7607", "7608", "7609")
# Under 7616.99.51 AIM names two statistical numbers (castings .60, forgings .70), not the
# subheading: its other suffixes are other articles of aluminum, never A133.
AIM_HEADING_PREFIXES = (*WHOLE_HEADINGS, "76169951")

_MANIFEST = "hts-editions.csv"


@dataclass(frozen=True, slots=True)
class CoveredHts:
    hts10: str
    description: str
    product_group: str
    source: str = ""  # the entry's own source (docs/hts-editions.md), when the edition has one


class Coverage(NamedTuple):
    """How an edition covers one HTS number on a processing date."""

    entry: CoveredHts | None  # None: not covered (A131)
    by_subheading: bool = False  # covered because its 8-digit subheading is listed (A133)


NOT_COVERED = Coverage(None)


@dataclass(frozen=True)
class CoveredList:
    """One edition of the covered list, in force from ``effective_from``."""

    items: dict[str, CoveredHts]
    effective_from: date = PROGRAM_START
    edition: str = ""
    source: str = ""
    # 8-digit subheading of a whole heading -> its listed entries, sorted by number (A133).
    subheadings: dict[str, tuple[CoveredHts, ...]] = field(init=False, repr=False,
                                                             compare=False)
    # hts10 -> its Coverage, built once: ``coverage`` runs for every line of every file.
    listed: dict[str, Coverage] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        groups: dict[str, list[CoveredHts]] = {}
        for hts10 in sorted(self.items):
            if hts10.startswith(WHOLE_HEADINGS):
                groups.setdefault(hts10[:8], []).append(self.items[hts10])
        object.__setattr__(self, "subheadings", {k: tuple(v) for k, v in groups.items()})
        object.__setattr__(self, "listed", {k: Coverage(v) for k, v in self.items.items()})

    def in_force(self, on: date) -> bool:
        return on >= self.effective_from

    def coverage(self, hts10: str, on: date) -> Coverage:
        """Whether ``hts10`` needs a license on ``on`` under this edition, and why."""
        if on < self.effective_from:  # not in_force(on)
            return NOT_COVERED
        listed = self.listed.get(hts10)
        if listed is not None:
            return listed
        group = self.subheadings.get(hts10[:8])
        if not group:
            return NOT_COVERED
        stand_in = _nearest(group, hts10)
        # The line keeps its own number (written to the ack and the ACE file as sent).
        return Coverage(replace(stand_in, hts10=hts10, source=f"subheading of {stand_in.hts10}"),
                        by_subheading=True)

    def covered(self, hts10: str, on: date) -> CoveredHts | None:
        """The entry for ``hts10`` if it needs a license on ``on``, else None."""
        return self.coverage(hts10, on).entry

    @staticmethod
    def in_aim_heading(hts10: str) -> bool:
        return hts10.startswith(AIM_HEADING_PREFIXES)


def _nearest(listed: tuple[CoveredHts, ...], hts10: str) -> CoveredHts:
    """The listed entry an unlisted suffix stands in for: the nearest number below it (a split
    or an insertion usually renumbers upward from the suffix it came from), else the first.
    It gives the line its product group and description."""
    below = [e for e in listed if e.hts10 < hts10]
    return below[-1] if below else listed[0]


def _read(name: str) -> list[dict[str, str]]:
    text = resources.files("gateway").joinpath(f"data/{name}").read_text("utf-8")
    return list(csv.DictReader(text.splitlines()))


def _load(row: dict[str, str]) -> CoveredList:
    items = {
        r["hts10"]: CoveredHts(r["hts10"], r["description"], r["product_group"],
                               r.get("source") or "")
        for r in _read(row["file"])
    }
    return CoveredList(items, date.fromisoformat(row["effective_from"]), row["edition"],
                       row["source"])


@cache
def editions() -> tuple[CoveredList, ...]:
    """Every bundled edition, oldest first (loaded once per process)."""
    found = sorted((_load(row) for row in _read(_MANIFEST)), key=lambda e: e.effective_from)
    if not found or len({e.effective_from for e in found}) != len(found):
        raise ValueError(f"gateway/data/{_MANIFEST}: editions need distinct effective dates")
    return tuple(found)


@cache
def _starts() -> tuple[date, ...]:
    return tuple(e.effective_from for e in editions())


def edition_on(on: date) -> CoveredList:
    """The edition in force on the processing date ``on``: the newest that took effect on or
    before it. Before the first one (the program start) it is the first, which covers nothing
    yet (``CoveredList.coverage``)."""
    return editions()[max(bisect_right(_starts(), on) - 1, 0)]


def covered_list() -> CoveredList:
    """The newest edition (tools and tests that want "the list" without a date)."""
    return editions()[-1]
