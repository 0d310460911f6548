"""The partner guide's lifecycle examples (docs/partner-guide.md, "The license lifecycle") say
what the gateway does: the three XML documents are 1.1 submissions, valid against the
submission XSD; read by the gateway's parser and decided on the days the guide gives, at
the level of ``licensing.decide``, they give the licenses, states, validity and changes the
guide's table shows. The CSV example has the canonical columns and the four of 1.1.
"""

from __future__ import annotations

import csv
import re
from datetime import date
from pathlib import Path

from lifecycle_harness import change_rows, license_states, run_file
from lxml import etree

from gateway.ledger.store import Ledger
from gateway.model import Application
from gateway.parse.xml_file import XmlSubmission
from gateway.schemas import submission_schema

ROOT = Path(__file__).resolve().parents[1]
NS = "{urn:aimgw:license-submission:1}"
DAYS = [date(2026, 12, 4), date(2026, 12, 7), date(2026, 12, 9)]


def section() -> str:
    text = (ROOT / "docs" / "partner-guide.md").read_text()
    start = text.index("## The license lifecycle")
    return text[start:text.index("\n## ", start + 1)]


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", section(), re.S)


def documents() -> list[etree._Element]:
    return [etree.fromstring(b.encode()) for b in blocks("xml")]


def applications(block: str, folder: Path) -> list[Application]:
    """What the gateway's parser reads in the guide's XML ``block``: no XSD error, no finding
    of its own."""
    path = folder / f"example-{len(list(folder.glob('example-*')))}.xml"
    path.write_text(block, encoding="utf-8")
    out = []
    for parsed in XmlSubmission(path).applications():
        assert not parsed.xsd_errors and not parsed.findings, (parsed.xsd_errors,
                                                               parsed.findings)
        out.append(parsed.app)
    return out


def test_the_xml_examples_are_1_1_submissions() -> None:
    docs = documents()
    assert len(docs) == 3
    assert all(d.get("schemaVersion") == "1.1" and d.tag == f"{NS}LicenseSubmission"
               for d in docs)
    schema = submission_schema()
    for d in docs:
        assert schema.validate(d), schema.error_log


def test_the_guides_story_is_what_the_gateway_decides(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        got = [run_file(ledger, applications(block, tmp_path), day)[0]
               for block, day in zip(blocks("xml"), DAYS, strict=True)]
        assert [(d.status, d.number, d.codes) for d in got] == [
            ("LICENSED", "A26000001", []), ("LICENSED", "A26000002", ["I202"]),
            ("CANCELLED", "A26000002", ["I203"])]
        assert [(p.valid_from, p.valid_through) for p in (
            ledger.license_by_number("A26000001"), ledger.license_by_number("A26000002"))
        ] == [("2026-12-04", "2027-02-17"), ("2026-12-07", "2027-02-20")]  # type: ignore[union-attr]
        assert license_states(ledger) == {"A26000001": "SUPERSEDED", "A26000002": "CANCELLED"}
        assert change_rows(ledger) == [("A26000001", "SUPERSEDED", "A26000002", None),
                                       ("A26000002", "CANCELLED", None, "order cancelled")]
        shown = blocks("text")[0].splitlines()
        rows = [c for f in ("20261207-000001", "20261209-000001") for c in ledger.changes_of(f)]
        assert shown == [",".join([c.license_number, c.partner, c.ref, c.change,
                                   c.replaced_by or "", c.change_date, c.reason or ""])
                         for c in rows]
    finally:
        ledger.close()


def test_the_csv_example_has_the_canonical_columns_and_those_of_1_1() -> None:
    [table] = [b for b in blocks("text") if b.startswith("submission_id,")]
    rows = list(csv.reader(table.splitlines()))
    guide = (ROOT / "docs" / "partner-guide.md").read_text()
    canonical = re.search(r"column names `(.*?)`", guide, re.S)
    assert canonical is not None
    names = [c.strip() for c in canonical.group(1).replace("\n", " ").split(",")]
    expected = [n for n in names if n not in ("entry_number", "description")]
    assert rows[0] == [*expected, "action", "license_number", "corrects", "license_kind"]
    assert all(len(r) == len(rows[0]) for r in rows)
    assert [r[-4:] for r in rows[1:]] == [["", "", "A26000001", ""], ["CANCEL", "A26000007",
                                                                       "", ""],
                                          ["", "", "", "LOW_VALUE"]]
