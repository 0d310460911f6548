"""HTS editions (guide 2.4, contract 1.1): the covered list in force on the processing date
decides A131/A132/A133, and the XML acknowledgment names it (``ReferenceEdition``).

Every case runs a whole file through ``check`` (XML, and CSV where the format matters) and
reads the acknowledgment back; each edition's effective date has a near miss on each side.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import OnePartner
from lxml import etree
from test_csv import csv_file, parse_csv_ack
from test_rules import application, submission

from gateway.licensing.pipeline import rule_context
from gateway.schemas import ack_schema
from gateway.validate.hts import PROGRAM_START, edition_on, editions

ACK = "{urn:aimgw:license-ack:1}"
AS_OF = date(2026, 12, 1)

# The editions as docs/hts-editions.md states them (typed here, not read from the gateway).
FIRST, CURRENT = "AIM-HTS-2021", "AIM-HTS-2025"
FIRST_FROM, CURRENT_FROM = date(2021, 6, 28), date(2025, 12, 9)
SPLIT_OLD = "7601106030"  # 2021 list: "Of greater than 99.8 percent aluminum"
SPLIT_NEW = ("7601106040", "7601106045")  # the current HTS numbers of that split
# A statistical suffix no edition lists under a covered subheading (7601.10.60). Made up for
# the test: not a number of any HTS edition we know.
NEW_SUFFIX = "7601106099"


class Checked:
    """One application's outcome in an XML acknowledgment."""

    def __init__(self, data: bytes) -> None:
        root = etree.fromstring(data)
        ack_schema().assertValid(root)
        self.root = root
        (app,) = root.findall(ACK + "Application")
        self.status = app.get("status")
        self.findings = [(f.get("code"), f.get("severity")) for f in app.findall(ACK + "Finding")]
        self.codes = {code for code, _ in self.findings}
        self.products = app.findall(ACK + "Product")
        self.edition = root.findtext(ACK + "ReferenceEdition")


@pytest.fixture
def gw(tmp_path: Path) -> OnePartner:
    return OnePartner(tmp_path, filer=True)


def check_xml(gw: OnePartner, hts: str, on: date = AS_OF) -> Checked:
    data = submission(application(as_of=on, lines=[{"HTS": hts}]))
    _, raw = gw.check_raw(data, "sub.xml", on)
    return Checked(raw)


# --- the problem and its done-when ---------------------------------------------------


@pytest.mark.parametrize("hts", SPLIT_NEW)
def test_current_number_of_the_split_is_licensed_today_xml(gw: OnePartner, hts: str) -> None:
    got = check_xml(gw, hts)
    assert (got.status, got.codes, got.edition) == ("LICENSED", set(), CURRENT)
    (product,) = got.products
    assert (product.get("covered"), product.get("productGroup")) == (
        "true", "Unwrought Aluminum – non-alloy")


@pytest.mark.parametrize("hts", ["7601.10.60.45", "7601.10.6040"])
def test_current_number_of_the_split_is_licensed_today_csv(gw: OnePartner, hts: str) -> None:
    _, raw = gw.check_raw(csv_file({"hts": hts}), "sub.csv", AS_OF)
    ack = parse_csv_ack(raw)
    (row,) = ack.rows
    assert (ack.status, row.status, row.codes) == ("ACCEPTED", "LICENSED", [])
    assert row.license == "PENDING"


def test_suffix_no_edition_lists_under_a_covered_subheading_is_licensed_with_a133(
        gw: OnePartner) -> None:
    got = check_xml(gw, NEW_SUFFIX)
    assert (got.status, got.findings, got.edition) == (
        "LICENSED", [("A133", "WARNING")], CURRENT)
    (product,) = got.products
    assert (product.get("covered"), product.get("productGroup")) == (
        "true", "Unwrought Aluminum – non-alloy")


def test_a133_in_a_csv_ack(gw: OnePartner) -> None:
    _, raw = gw.check_raw(csv_file({"hts": "7601.10.60.99"}), "sub.csv", AS_OF)
    (row,) = parse_csv_ack(raw).rows
    assert (row.status, row.codes) == ("LICENSED", ["A133"])


# --- A131 / A132 / A133 on either side of each edition's effective date -----------------------

DAY = timedelta(days=1)
EDGE_CASES = [
    # (processing date, HTS, status, codes, edition named)
    (FIRST_FROM - DAY, SPLIT_NEW[1], "NOT_REQUIRED", {"A131", "A132"}, FIRST),
    (FIRST_FROM - DAY, SPLIT_OLD, "NOT_REQUIRED", {"A131"}, FIRST),
    (FIRST_FROM, SPLIT_NEW[1], "LICENSED", {"A133"}, FIRST),
    (FIRST_FROM, SPLIT_OLD, "LICENSED", set(), FIRST),
    (CURRENT_FROM - DAY, SPLIT_NEW[0], "LICENSED", {"A133"}, FIRST),
    (CURRENT_FROM - DAY, SPLIT_NEW[1], "LICENSED", {"A133"}, FIRST),
    (CURRENT_FROM - DAY, SPLIT_OLD, "LICENSED", set(), FIRST),
    (CURRENT_FROM, SPLIT_NEW[0], "LICENSED", set(), CURRENT),
    (CURRENT_FROM, SPLIT_NEW[1], "LICENSED", set(), CURRENT),
    (CURRENT_FROM, SPLIT_OLD, "LICENSED", {"A133"}, CURRENT),
    (CURRENT_FROM - DAY, NEW_SUFFIX, "LICENSED", {"A133"}, FIRST),
    (CURRENT_FROM, NEW_SUFFIX, "LICENSED", {"A133"}, CURRENT),
]


@pytest.mark.parametrize(("on", "hts", "status", "codes", "edition"), EDGE_CASES,
                         ids=[f"{on}-{hts}" for on, hts, *_ in EDGE_CASES])
def test_edition_in_force_decides(gw: OnePartner, on: date, hts: str, status: str,
                                  codes: set[str], edition: str) -> None:
    got = check_xml(gw, hts, on)
    assert (got.status, got.codes, got.edition) == (status, codes, edition)


@pytest.mark.parametrize(("hts", "codes", "status"), [
    # A131: not aluminum of an AIM heading; A132 near miss.
    ("7318150000", {"A131"}, "NOT_REQUIRED"),
    ("7602000030", {"A131"}, "NOT_REQUIRED"),
    # A132: under an AIM heading, 8-digit subheading not on the list: no A133.
    ("7606129999", {"A131", "A132"}, "NOT_REQUIRED"),
    # 7616.99.51: AIM names two statistical numbers, not the subheading: another suffix is
    # not covered (A131 + A132), never A133.
    ("7616995190", {"A131", "A132"}, "NOT_REQUIRED"),
    ("7616995160", set(), "LICENSED"),
    # A133 near miss: listed in the edition in force.
    ("7606123045", set(), "LICENSED"),
])
def test_a131_a132_a133_today(gw: OnePartner, hts: str, codes: set[str], status: str) -> None:
    got = check_xml(gw, hts)
    assert (got.status, got.codes) == (status, codes)
    assert all(sev == {"A131": "INFO", "A132": "WARNING"}[c] for c, sev in got.findings)


def test_a133_line_counts_as_covered_next_to_an_uncovered_line(gw: OnePartner) -> None:
    data = submission(application(lines=[{"HTS": NEW_SUFFIX}, {"HTS": "7318150000"}]))
    got = Checked(gw.check_raw(data, "sub.xml", AS_OF)[1])
    assert (got.status, got.codes) == ("LICENSED", {"A131", "A133"})
    assert [p.get("covered") for p in got.products] == ["true", "false"]


# --- the editions as data --------------------------------------------------------------------


def test_editions_are_dated_and_sourced() -> None:
    found = editions()
    assert [(e.edition, e.effective_from) for e in found] == [
        (FIRST, FIRST_FROM), (CURRENT, CURRENT_FROM)]
    assert all(e.source for e in found)
    first, current = found
    assert len(first.items) == 66 and len(current.items) == 67
    assert set(first.items) - set(current.items) == {SPLIT_OLD}
    assert set(current.items) - set(first.items) == set(SPLIT_NEW)
    assert all(item.source for item in current.items.values())


@pytest.mark.parametrize(("on", "edition"), [
    (date(2020, 1, 1), FIRST), (PROGRAM_START - DAY, FIRST), (PROGRAM_START, FIRST),
    (CURRENT_FROM - DAY, FIRST), (CURRENT_FROM, CURRENT), (date(2030, 1, 1), CURRENT)])
def test_edition_on(on: date, edition: str) -> None:
    assert edition_on(on).edition == edition


def test_rule_context_carries_the_edition_in_force(gw: OnePartner) -> None:
    """``check``, ``run`` and ``replay --as-of`` build their rules here: one edition each."""
    for on in (CURRENT_FROM - DAY, CURRENT_FROM):
        assert rule_context(gw.config, on).covered is edition_on(on)


def test_run_names_the_edition_too(gw: OnePartner) -> None:
    outbox = gw.run_raw("sub.xml", submission(application(lines=[{"HTS": SPLIT_NEW[1]}])),
                        AS_OF)
    got = Checked((outbox / "sub.xml.ack.xml").read_bytes())
    assert (got.status, got.codes, got.edition) == ("LICENSED", set(), CURRENT)
    names = [el.tag.removeprefix(ACK) for el in got.root]
    assert names[names.index("RuleSetDate") + 1] == "ReferenceEdition"
    assert got.root.find(ACK + "ReferenceEdition").get("effectiveFrom") == str(CURRENT_FROM)



def test_ack_schema_takes_reference_edition_after_rule_set_date_only() -> None:
    """The 1.1 element is optional (a 1.0 ack stays valid) and has one place."""
    golden = (Path(__file__).parent / "golden" / "pipeline-good.ack.xml").read_bytes()
    golden = golden.replace(b"TIME", b"2026-12-01T09:00:00+00:00")
    line = b'  <ReferenceEdition effectiveFrom="2025-12-09">AIM-HTS-2025</ReferenceEdition>\n'
    assert line in golden
    schema = ack_schema()
    assert schema.validate(etree.fromstring(golden))
    assert schema.validate(etree.fromstring(golden.replace(line, b"")))  # a 1.0 ack
    moved = golden.replace(line, b"").replace(b"  </Counts>\n", b"  </Counts>\n" + line, 1)
    assert not schema.validate(etree.fromstring(moved))
    empty = golden.replace(b">AIM-HTS-2025<", b"><")
    assert not schema.validate(etree.fromstring(empty))


def test_a133_entry_keeps_the_line_number_and_takes_the_group_below() -> None:
    current = edition_on(AS_OF)
    entry, by_subheading = current.coverage(NEW_SUFFIX, AS_OF)
    assert by_subheading and entry is not None
    assert (entry.hts10, entry.product_group, entry.source) == (
        NEW_SUFFIX, "Unwrought Aluminum – non-alloy", "subheading of 7601106090")
    # 7608.10.00: .0030 seamless, .0090 other. Made-up suffixes around them (no HTS has
    # them) take the group of the listed number below, else the first.
    assert current.covered("7608100050", AS_OF).product_group == "Seamless Pipe & Tube"
    assert current.covered("7608100010", AS_OF).product_group == "Seamless Pipe & Tube"
    assert current.covered("7608100095", AS_OF).product_group == "Non-Seamless Pipe & Tube"
    # Not in force yet, or a partly covered subheading: nothing.
    assert current.coverage(NEW_SUFFIX, CURRENT_FROM - DAY) == (None, False)
    assert current.coverage("7616995190", AS_OF) == (None, False)
