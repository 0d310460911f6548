"""The entry types of guide 2.1 and what each needs (guide section 6): the one list.

19 CFR 361.101(b): "All entries for consumption of covered aluminum products ... will require
an import license"; 361.103(c)(1)(iii) names the entry type ("Consumption, FTZ") on the
license. Names are CBP's (CATAIR Appendix B, Entry Type Codes). The submission XSD's
documentation and docs/partner-guide.md name the same codes (tests/test_duty_and_entry_types.py
holds them to this table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# What an entry type needs: a license; none, because CBP rejects one on it (A111); none,
# because AIM exempts it (A170).
Need = Literal["license", "ftz_consumption", "exempt"]


@dataclass(frozen=True, slots=True)
class EntryType:
    name: str
    need: Need


ENTRY_TYPES: dict[str, EntryType] = {
    "01": EntryType("consumption, free and dutiable", "license"),
    "02": EntryType("consumption, quota/visa", "license"),
    "03": EntryType("consumption, antidumping/countervailing duty", "license"),
    # CSMS #48923327: from 2021-07-27 ACE rejects license code 28 on a type 06 entry; the
    # license belongs on the FTZ admission (FZ). Contract 1.1: NOT_REQUIRED with A111 (INFO).
    "06": EntryType("consumption, foreign trade zone", "ftz_consumption"),
    "07": EntryType("consumption, quota/visa and antidumping/countervailing duty", "license"),
    "11": EntryType("informal entry", "exempt"),
    "21": EntryType("warehouse entry", "exempt"),
    "22": EntryType("re-warehouse entry", "exempt"),
    "23": EntryType("temporary importation under bond", "exempt"),
    # A later withdrawal for consumption needs the license the warehouse entry did not.
    "31": EntryType("warehouse withdrawal for consumption", "license"),
    "32": EntryType("warehouse withdrawal, quota", "license"),
    "34": EntryType("warehouse withdrawal, antidumping/countervailing duty", "license"),
    "38": EntryType("warehouse withdrawal, quota and antidumping/countervailing duty",
                    "license"),
    "52": EntryType("government, dutiable", "license"),
    "61": EntryType("immediate transportation", "exempt"),
    "62": EntryType("transportation and exportation", "exempt"),
    "63": EntryType("immediate exportation", "exempt"),
    "FZ": EntryType("foreign trade zone admission (e214)", "license"),
}


def entry_type_finding(code: str) -> tuple[str, str] | None:
    """The finding entry type ``code`` gets, with its message: A110 (unknown), A111 (06) or
    A170 (exempt); None when the type needs a license. A111 and A170 make the application
    NOT_REQUIRED."""
    known = ENTRY_TYPES.get(code)
    if known is None:
        return ("A110", f"Entry type {code!r} is not a CBP entry type this gateway knows; use "
                "one of " + ", ".join(ENTRY_TYPES) + ".")
    if known.need == "ftz_consumption":
        return ("A111", "Entry type 06 (FTZ consumption entry) needs no license here: CBP "
                "rejects license code 28 on a type 06 entry (CSMS #48923327); the license "
                "belongs on the FTZ admission (entry type FZ). Nothing was issued.")
    if known.need == "exempt":
        return ("A170", f"Entry type {code} ({known.name}) needs no AIM license; nothing was "
                "issued.")
    return None
