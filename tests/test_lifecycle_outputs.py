"""What the gateway writes for the license lifecycle (contract 1.1, guide 5.1b, 7), unit by unit:
the XML and CSV acknowledgment entries of a correction and a cancellation, the version and
counts of an ack, and the changes report (``gateway.outputs.changes``) with its manifest.
End-to-end runs of a lifecycle history are in ``tests/test_lifecycle_run.py``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from gateway.findings import finding
from gateway.ledger.licenses import LicenseChange
from gateway.licensing.results import AppOutcome, FileSummary
from gateway.model import Application, AppStatus, FileStatus, ProductLine
from gateway.outputs import changes
from gateway.outputs.ack_csv import AckCsvWriter, render_csv_ack
from gateway.outputs.ack_xml import AckXmlWriter, render_ack
from gateway.schemas import ack_schema
from gateway.validate.rules import LineResult

ACK = "{urn:aimgw:license-ack:1}"
DAY = date(2026, 12, 1)
AT = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)


def summary(**counts: int) -> FileSummary:
    s = FileSummary(file_id="20261201-000003", partner="acme", file_name="life.xml",
                    sha256="0" * 64, received_at=AT, processed_at=AT, rule_set_date=DAY,
                    status=FileStatus.ACCEPTED, submission_id="LIFE-3")
    for name, value in counts.items():
        setattr(s, name, value)
    return s


def line(source_line: int) -> LineResult:
    return LineResult(ProductLine("1", hts="7606123045", quantity_kg="24000",
                                  value_usd="61200.00", source_line=source_line),
                      "7606123045", None, None)


def correction() -> AppOutcome:
    return AppOutcome(
        1, "PO-1", AppStatus.LICENSED,
        [finding("I202", "This correction replaces license A26000001, which is now SUPERSEDED.",
                 ref="PO-1", field="corrects", value="A26000001", source_line=2)],
        [line(2)], license_number="A26000002", valid_from=DAY,
        valid_through=date(2027, 2, 14), replaces="A26000001")


def cancellation(*, with_dates: bool = True) -> AppOutcome:
    """As the decision gives it: the cancelled license, perhaps with its dates."""
    return AppOutcome(
        2, "PO-2", AppStatus.CANCELLED,
        [finding("I203", "License A26000003 is CANCELLED.", ref="PO-2",
                 field="license_number", value="A26000003", source_line=3)],
        [], license_number="A26000003",
        valid_from=DAY if with_dates else None,
        valid_through=date(2027, 2, 14) if with_dates else None)


def cancel_request(ref: str, number: str, row: int) -> Application:
    return Application(ref=ref, source_line=row, cancel=True, license_number=number)


def request(row: int) -> Application:
    return Application(ref="PO-1", source_line=row)


def parsed(data: bytes) -> etree._Element:
    root = etree.fromstring(data)
    assert ack_schema().validate(root), ack_schema().error_log
    return root


# -- XML acknowledgment ------------------------------------------------------------------------


def test_xml_ack_of_a_correction_and_a_cancellation() -> None:
    root = parsed(render_ack(summary(applications=2, licensed=1, cancelled=1),
                             [(correction(), request(2)),
                              (cancellation(), cancel_request("PO-2", "A26000003", 3))]))
    assert root.get("schemaVersion") == "1.1"
    counts = root.find(ACK + "Counts")
    assert [(c.tag.removeprefix(ACK), c.text) for c in counts] == [
        ("Applications", "2"), ("Licensed", "1"), ("NotRequired", "0"), ("Rejected", "0"),
        ("Cancelled", "1")]
    fixed, cancelled = root.findall(ACK + "Application")
    assert (fixed.get("status"), fixed.findtext(ACK + "LicenseNumber"),
            fixed.findtext(ACK + "ValidFrom")) == ("LICENSED", "A26000002", "2026-12-01")
    assert [f.get("code") for f in fixed.iter(ACK + "Finding")] == ["I202"]
    assert cancelled.get("status") == "CANCELLED"
    assert cancelled.findtext(ACK + "LicenseNumber") == "A26000003"
    # A cancelled license is valid no more: no validity dates, however the decision gave it.
    assert cancelled.find(ACK + "ValidFrom") is None
    assert cancelled.find(ACK + "ValidThrough") is None
    assert cancelled.find(ACK + "Product") is None
    assert [f.get("code") for f in cancelled.iter(ACK + "Finding")] == ["I203"]


def test_xml_ack_without_a_cancellation_stays_1_0() -> None:
    data = render_ack(summary(applications=1, licensed=1), [(correction(), None)])
    root = parsed(data)
    assert root.get("schemaVersion") == "1.0"
    assert b"Cancelled" not in data


@pytest.mark.parametrize("why", ["declared 1.1", "a correction", "a low-value kind",
                                 "a registered number"])
def test_the_ack_of_a_submission_using_1_1_is_1_1_and_counts_cancellations(why: str) -> None:
    """Contract 1.1's Cancelled count is in every ack of a submission that says 1.1 or uses
    what 1.1 added, cancellation or not (a partner reading Counts/Cancelled finds 0)."""
    s = summary(applications=1, licensed=1)
    app = request(1)
    if why == "declared 1.1":
        s.schema_version = "1.1"
    elif why == "a correction":
        app.corrects = "A26000001"
    elif why == "a low-value kind":
        app.kind = "LOW_VALUE"
    else:
        app.license_number = "CAIM1"
    root = parsed(render_ack(s, [(correction(), app)]))
    assert root.get("schemaVersion") == "1.1"
    assert root.findtext(f"{ACK}Counts/{ACK}Cancelled") == "0"
    assert ack_schema().validate(root.getroottree())


@pytest.mark.parametrize(("writer_of", "render"), [(AckXmlWriter, render_ack),
                                                   (AckCsvWriter, render_csv_ack)])
def test_a_streamed_ack_is_the_rendered_one(tmp_path: Path, writer_of: Any,
                                            render: Any) -> None:
    s = summary(applications=2, licensed=1, cancelled=1)
    writer = writer_of(tmp_path / "ack")
    decided = [(correction(), request(2)), (cancellation(), cancel_request("PO-2", "A", 3))]
    for o, app in decided:
        writer.add(o, app)
    writer.finish(s)
    assert (tmp_path / "ack").read_bytes() == render(s, decided)


def rejected_cancellation() -> AppOutcome:
    return AppOutcome(1, "PO-9", AppStatus.REJECTED, [finding(
        "A106", "No license A26999999 of yours for ref PO-9.", ref="PO-9",
        field="license_number", value="A26999999")], [])


def test_xml_ack_of_a_file_with_a_rejected_cancellation_is_1_1(tmp_path: Path) -> None:
    """A 1.1 request gets a 1.1 answer: the Cancelled count, 0 here."""
    writer = AckXmlWriter(tmp_path / "a.ack.xml")
    writer.add(rejected_cancellation(), cancel_request("PO-9", "A26999999", 7))
    writer.finish(summary(applications=1, rejected=1))
    root = parsed((tmp_path / "a.ack.xml").read_bytes())
    assert root.get("schemaVersion") == "1.1"
    assert root.findtext(f"{ACK}Counts/{ACK}Cancelled") == "0"


@pytest.mark.parametrize("number", ["L26000001", "CAIM12345", "X1"])
def test_xml_ack_carries_low_value_and_registered_numbers(number: str) -> None:
    o = correction()
    o.license_number = number
    root = parsed(render_ack(summary(applications=1, licensed=1), [(o, None)]))
    assert root.find(ACK + "Application").findtext(ACK + "LicenseNumber") == number


# -- CSV acknowledgment ------------------------------------------------------------------------


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def test_csv_ack_row_of_a_cancellation() -> None:
    s = summary(applications=2, licensed=1, cancelled=1)
    rows = csv_rows(render_csv_ack(s, [(correction(), request(2)),
                                       (cancellation(), cancel_request("PO-2", "A", 3))]))
    file_row, fixed, cancelled = rows
    assert "1 cancelled" in file_row["messages"]
    assert (fixed["row"], fixed["status"], fixed["license_number"], fixed["codes"]) == (
        "2", "LICENSED", "A26000002", "I202")
    assert (cancelled["row"], cancelled["application_ref"], cancelled["line_no"],
            cancelled["status"], cancelled["license_number"], cancelled["valid_from"],
            cancelled["valid_through"], cancelled["codes"]) == (
        "3", "PO-2", "", "CANCELLED", "A26000003", "", "", "I203")
    assert cancelled["messages"].startswith("I203 License A26000003 is CANCELLED.")


def test_csv_ack_of_a_rejected_cancellation_has_its_row() -> None:
    rows = csv_rows(render_csv_ack(summary(applications=1, rejected=1), [
        (rejected_cancellation(), cancel_request("PO-9", "A26999999", 7))]))
    assert [(r["row"], r["status"], r["codes"]) for r in rows[1:]] == [("7", "REJECTED", "A106")]
    assert rows[0]["messages"].startswith("1 application(s): 0 licensed, 0 not required, "
                                          "1 rejected, 0 cancelled | ")


def test_csv_ack_of_a_file_without_cancellations_reads_as_before() -> None:
    rows = csv_rows(render_csv_ack(summary(applications=1, licensed=1),
                                   [(correction(), request(2))]))
    assert rows[0]["messages"] == ("1 application(s): 1 licensed, 0 not required, "
                                   "0 rejected | file life.xml")




# -- the changes report ------------------------------------------------------------------------


def change(number: str, kind: str, replaced_by: str | None = None,
           reason: str | None = None, ref: str = "PO-1") -> LicenseChange:
    return LicenseChange(number, "acme", ref, kind, replaced_by, "2026-12-01",
                         "2026-12-01T14:00:05+00:00", "20261201-000003", reason)


SOURCE = {"file_id": "20261201-000003", "file_name": "life.xml", "partner": "acme",
          "submission_id": "LIFE-3"}


def test_changes_report_and_manifest(tmp_path: Path) -> None:
    made = [change("A26000001", "SUPERSEDED", "A26000002"),
            change("A26000003", "CANCELLED", reason="=HYPERLINK(\"x\")", ref="-PO-2")]
    manifest = changes.write_changes(tmp_path, "20261201-000003", made, SOURCE)
    assert manifest is not None
    path = tmp_path / "CHG-20261201-000003.csv"
    data = path.read_bytes()
    assert data.decode().splitlines() == [
        "license_number,partner,ref,change,replaced_by,when,reason",
        "A26000001,acme,PO-1,SUPERSEDED,A26000002,2026-12-01,",
        "A26000003,acme,'-PO-2,CANCELLED,,2026-12-01,\"'=HYPERLINK(\"\"x\"\")\"",
    ]
    assert data.endswith(b"\r\n")
    on_disk = json.loads((tmp_path / "CHG-20261201-000003.csv.manifest.json").read_bytes())
    assert on_disk == {"file_name": "CHG-20261201-000003.csv",
                       "sha256": hashlib.sha256(data).hexdigest(), "record_count": 2,
                       "licenses": ["A26000001", "A26000003"], "source": SOURCE}
    assert manifest.to_json() == (tmp_path / "CHG-20261201-000003.csv.manifest.json"
                                  ).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "CHG-20261201-000003.csv", "CHG-20261201-000003.csv.manifest.json"]


def test_changes_report_is_the_same_bytes_when_written_again(tmp_path: Path) -> None:
    made = [change("A26000001", "SUPERSEDED", "A26000002")]
    changes.write_changes(tmp_path, "20261201-000003", made, SOURCE)
    first = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    later = [replace(made[0], at="2026-12-02T09:00:00+00:00")]
    changes.write_changes(tmp_path, "20261201-000003", later, SOURCE)  # recorded at another time
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == first


def test_no_change_no_report_and_a_leftover_is_withdrawn(tmp_path: Path) -> None:
    changes.write_changes(tmp_path, "20261201-000003", [change("A26000001", "CANCELLED")],
                          SOURCE)
    # A rerun after a crash that found nothing to change (another worker changed it first).
    assert changes.write_changes(tmp_path, "20261201-000003", [], SOURCE) is None
    assert list(tmp_path.iterdir()) == []


def test_control_characters_in_a_reason_are_escaped(tmp_path: Path) -> None:
    changes.write_changes(tmp_path, "F", [change("A26000001", "CANCELLED",
                                                 reason="order\ncancelled\x1b[31m")], SOURCE)
    rows = list(csv.reader(io.StringIO((tmp_path / "CHG-F.csv").read_text(), newline="")))
    assert rows[1][6] == "order\\ncancelled\\x1b[31m"
