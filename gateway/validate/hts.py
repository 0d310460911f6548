"""The 66 HTS numbers covered by AIM and their product groups (see data/SOURCE.md)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources

# Licensing started on this date (86 FR 27513); before it nothing is covered.
PROGRAM_START = date(2021, 6, 28)

# Headings of chapter 76 that AIM covers (A132 warns when an HTS is under one of them but is
# not on the list: usually a newer or older HTS edition than the list's).
AIM_HEADING_PREFIXES = ("7601", "7604", "7605", "7606", "7607", "7608", "7609", "76169951")


@dataclass(frozen=True, slots=True)
class CoveredHts:
    hts10: str
    description: str
    product_group: str


@dataclass(frozen=True)
class CoveredList:
    """The covered list in force from ``effective_from``."""

    items: dict[str, CoveredHts]
    effective_from: date = PROGRAM_START

    def covered(self, hts10: str, on: date) -> CoveredHts | None:
        """The entry for ``hts10`` if it needs a license on ``on``, else None."""
        if on < self.effective_from:
            return None
        return self.items.get(hts10)

    @staticmethod
    def in_aim_heading(hts10: str) -> bool:
        return hts10.startswith(AIM_HEADING_PREFIXES)


@cache
def covered_list() -> CoveredList:
    """Load the bundled list once per process."""
    text = resources.files("gateway").joinpath("data/aim-covered-hts.csv").read_text("utf-8")
    items = {
        row["hts10"]: CoveredHts(row["hts10"], row["description"], row["product_group"])
        for row in csv.DictReader(text.splitlines())
    }
    return CoveredList(items)
