"""The license lifecycle end to end through `run --once` (issue 13; guide 5.1a, 5.1b, 7):
what a partner and the transmitter get for an application, its correction and the
cancellation of the correction; goldens of an ack (XML and CSV) with a correction and a
cancellation and of a changes report; ACE records of low-value and registered numbers; the
changes report taken back when its file's commit fails.

The files are contract 1.1's own (``tests/lifecycle_files.py``): ``corrects``,
``<Cancellation>``, ``kind``, ``<LicenseNumber>``, and the CSV columns of 1.1.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
from datetime import date
from pathlib import Path

import pytest
from lifecycle_files import (
    application,
    cancellation,
    csv_application,
    csv_cancellation,
    csv_submission,
    submission,
)
from lxml import etree
from project_config import ProjectConfig

from gateway.config import load_config
from gateway.schemas import ack_schema
from gateway.service import process
from gateway.service.runner import run_once

AS_OF = date(2026, 12, 1)
GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("AIMGW_REGEN_GOLDEN") == "1"
ACK = "{urn:aimgw:license-ack:1}"
TIMES = re.compile(rb"<(ReceivedAt|ProcessedAt)>[^<]*<")


class Project:
    """Partner ``acme`` (licenses from the gateway) and ``broker`` (registered licenses)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        config = ProjectConfig(base)
        config.partner("acme", disposition="keep", filer_code="SMP").inbox("acme")
        config.partner("broker", disposition="keep", filer_code="BRK",
                       license_source="commerce").inbox("broker")
        self.cfg = config.write()

    def send(self, name: str, data: bytes, partner: str = "acme") -> str:
        """Drop one file, run once; the file's id."""
        (self.base / "inbox" / partner / name).write_bytes(data)
        run_once(load_config(self.cfg), AS_OF)
        [(file_id,)] = self.query("SELECT file_id FROM files WHERE remote_name = ?", (name,))
        return str(file_id)

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        db = sqlite3.connect(self.base / "data" / "ledger.sqlite")
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    def ack(self, name: str, partner: str = "acme") -> etree._Element:
        root = etree.parse(str(self.base / "outbox" / partner / f"{name}.ack.xml")).getroot()
        assert ack_schema().validate(root), ack_schema().error_log
        return root

    def outbox(self, folder: str) -> dict[str, bytes]:
        where = self.base / "outbox" / folder
        return {p.name: p.read_bytes() for p in sorted(where.iterdir())} if where.is_dir() \
            else {}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def entries(ack: etree._Element) -> list[tuple[str | None, str | None, str | None, list[str]]]:
    return [(a.get("ref"), a.get("status"), a.findtext(ACK + "LicenseNumber"),
             [f.get("code") or "" for f in a.iter(ACK + "Finding")])
            for a in ack.iter(ACK + "Application")]


def licenses_in_ace(data: bytes) -> list[str]:
    """The license of each 52 record (positions 5-14), in file order."""
    return [r[4:14].rstrip() for r in data.decode("ascii").splitlines() if r.startswith("52")]


def changes_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


# -- the history: an application, its correction, the correction cancelled -----------


def test_application_correction_cancellation(project: Project) -> None:
    first = project.send("life-1.xml", submission("LIFE-1", application("PO-1")))
    second = project.send("life-2.xml", submission(
        "LIFE-2", application("PO-1", corrects="A26000001", quantity="25000")))
    third = project.send("life-3.xml", submission(
        "LIFE-3", cancellation("PO-1", "A26000002", "order cancelled by the buyer")))

    # Three acks.
    assert entries(project.ack("life-1.xml")) == [("PO-1", "LICENSED", "A26000001", [])]
    fixed = project.ack("life-2.xml")
    assert entries(fixed) == [("PO-1", "LICENSED", "A26000002", ["I202"])]
    # A 1.1 submission's ack is a 1.1 one: it counts cancellations, none here.
    assert fixed.get("schemaVersion") == "1.1"
    assert fixed.findtext(f"{ACK}Counts/{ACK}Cancelled") == "0"
    cancelled = project.ack("life-3.xml")
    assert entries(cancelled) == [("PO-1", "CANCELLED", "A26000002", ["I203"])]
    assert cancelled.get("schemaVersion") == "1.1"
    assert cancelled.findtext(f"{ACK}Counts/{ACK}Cancelled") == "1"
    assert cancelled.findtext(f"{ACK}Status") == "ACCEPTED"

    # Two licenses: the first SUPERSEDED, the second CANCELLED.
    assert project.query("SELECT license_number, state, replaces FROM licenses "
                         "ORDER BY 1") == [("A26000001", "SUPERSEDED", None),
                                           ("A26000002", "CANCELLED", "A26000001")]

    # One ACE file per issued license; the cancellation writes none.
    ace = project.outbox("ace")
    assert sorted(ace) == [f"AE-{first}.txt", f"AE-{first}.txt.manifest.json",
                           f"AE-{second}.txt", f"AE-{second}.txt.manifest.json"]
    assert licenses_in_ace(ace[f"AE-{first}.txt"]) == ["A26000001"]
    assert licenses_in_ace(ace[f"AE-{second}.txt"]) == ["A26000002"]

    # Two lines in changes files, each in its own file's report.
    reports = project.outbox("changes")
    assert sorted(reports) == [f"CHG-{second}.csv", f"CHG-{second}.csv.manifest.json",
                               f"CHG-{third}.csv", f"CHG-{third}.csv.manifest.json"]
    assert changes_rows(reports[f"CHG-{second}.csv"]) == [{
        "license_number": "A26000001", "partner": "acme", "ref": "PO-1",
        "change": "SUPERSEDED", "replaced_by": "A26000002", "when": "2026-12-01",
        "reason": ""}]
    assert changes_rows(reports[f"CHG-{third}.csv"]) == [{
        "license_number": "A26000002", "partner": "acme", "ref": "PO-1",
        "change": "CANCELLED", "replaced_by": "", "when": "2026-12-01",
        "reason": "order cancelled by the buyer"}]
    manifest = json.loads(reports[f"CHG-{third}.csv.manifest.json"])
    assert manifest["licenses"] == ["A26000002"] and manifest["record_count"] == 1
    assert manifest["source"] == {"file_id": third, "file_name": "life-3.xml",
                                  "partner": "acme", "submission_id": "LIFE-3"}
    assert project.query("SELECT file_id, changes_name FROM files ORDER BY 1") == [
        (first, None), (second, f"CHG-{second}.csv"), (third, f"CHG-{third}.csv")]


def test_a_cancellation_sent_again_changes_nothing_and_writes_no_report(
        project: Project) -> None:
    project.send("life-1.xml", submission("LIFE-1", application("PO-1")))
    once = project.send("c-1.xml", submission(
        "C-1", cancellation("PO-1", "A26000001", "duplicate order")))
    again = project.send("c-2.xml", submission(
        "C-2", cancellation("PO-1", "A26000001", "duplicate order")))
    assert entries(project.ack("c-2.xml")) == [("PO-1", "CANCELLED", "A26000001", ["I203"])]
    assert sorted(project.outbox("changes")) == [f"CHG-{once}.csv",
                                                 f"CHG-{once}.csv.manifest.json"]
    assert project.query("SELECT changes_name FROM files WHERE file_id = ?", (again,)) == [
        (None,)]
    assert project.query("SELECT COUNT(*) FROM license_changes") == [(1,)]


def test_a_rejected_correction_writes_no_report_and_no_ace(project: Project) -> None:
    first = project.send("life-1.xml", submission("LIFE-1", application("PO-1")))
    project.send("bad.xml", submission(
        "BAD", application("PO-1", corrects="A26999999", quantity="25000")))
    assert entries(project.ack("bad.xml")) == [("PO-1", "REJECTED", None, ["A106"])]
    assert project.outbox("changes") == {}
    assert sorted(project.outbox("ace")) == [f"AE-{first}.txt",
                                             f"AE-{first}.txt.manifest.json"]


def test_a_failed_commit_takes_the_changes_report_back(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.send("life-1.xml", submission("LIFE-1", application("PO-1")))
    real = process.FileProcessor._record
    seen: list[set[str]] = []

    def failing(self: process.FileProcessor, *args: object, **kwargs: object) -> None:
        seen.append(set(project.outbox("changes")))  # published by now, not committed
        raise OSError("disk gone")

    monkeypatch.setattr(process.FileProcessor, "_record", failing)
    (project.base / "inbox" / "acme" / "c.xml").write_bytes(submission(
        "C", cancellation("PO-1", "A26000001", "not needed")))
    run_once(load_config(project.cfg), AS_OF)
    assert len(seen[0]) == 2, seen
    assert project.outbox("changes") == {}  # taken back with the rolled-back change
    assert project.query("SELECT state FROM licenses") == [("ACTIVE",)]
    monkeypatch.setattr(process.FileProcessor, "_record", real)
    run_once(load_config(project.cfg), AS_OF)  # the file's next attempt
    [(file_id,)] = project.query("SELECT file_id FROM files WHERE remote_name = 'c.xml'")
    assert sorted(project.outbox("changes")) == [f"CHG-{file_id}.csv",
                                                 f"CHG-{file_id}.csv.manifest.json"]
    assert project.query("SELECT state FROM licenses") == [("CANCELLED",)]


# -- ACE records of low-value and registered numbers (52 record, positions 5-14) -------------


def test_ace_carries_low_value_and_registered_numbers(project: Project) -> None:
    low = project.send("low.xml", submission("LOW-1", application(
        "PO-7", kind="LOW_VALUE", quantity="1000", value="2550.00")))
    registered = project.send("reg.xml", submission("REG-1", application(
        "PO-8", license_number="CAIM12345")), partner="broker")
    assert entries(project.ack("low.xml")) == [("PO-7", "LICENSED", "L26000001", [])]
    assert entries(project.ack("reg.xml", "broker")) == [
        ("PO-8", "LICENSED", "CAIM12345", ["I204"])]
    ace = project.outbox("ace")
    [r52] = [r for r in ace[f"AE-{low}.txt"].decode().splitlines() if r.startswith("52")]
    assert r52[:14] == "5228L26000001 "
    [r52] = [r for r in ace[f"AE-{registered}.txt"].decode().splitlines()
             if r.startswith("52")]
    assert r52[:14] == "5228CAIM12345 " and len(r52) == 80
    golden(ace[f"AE-{registered}.txt"], "lifecycle-registered.AE.txt")


# -- goldens: one file with a correction and a cancellation -----------------------------------


def golden(actual: bytes, name: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.write_bytes(actual)
    assert actual == path.read_bytes(), name


def test_golden_outputs_of_a_correction_and_a_cancellation(project: Project) -> None:
    project.send("life-1.xml", submission("LIFE-1", application("PO-1"), application("PO-2")))
    second = project.send("life-2.xml", submission(
        "LIFE-2", application("PO-1", corrects="A26000001", quantity="25000"),
        cancellation("PO-2", "A26000002", "=order cancelled, see PO-2")))
    golden(TIMES.sub(rb"<\1>TIME<", (project.base / "outbox" / "acme" /
                                     "life-2.xml.ack.xml").read_bytes()),
           "lifecycle.ack.xml")
    reports = project.outbox("changes")
    golden(reports[f"CHG-{second}.csv"], "lifecycle.CHG.csv")
    golden(reports[f"CHG-{second}.csv.manifest.json"], "lifecycle.CHG.csv.manifest.json")


def test_golden_csv_ack_of_a_correction_and_a_cancellation(project: Project) -> None:
    project.send("life-1.csv", csv_submission("LIFE-1", csv_application("PO-1"),
                                              csv_application("PO-2")))
    project.send("life-2.csv", csv_submission(
        "LIFE-2", csv_application("PO-1", corrects="A26000001", quantity="25000"),
        csv_cancellation("PO-2", "A26000002")))
    data = (project.base / "outbox" / "acme" / "life-2.csv.ack.csv").read_bytes()
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert [[*r[:5], r[7]] for r in rows[2:]] == [
        ["2", "PO-1", "1", "LICENSED", "A26000003", "I202"],
        ["3", "PO-2", "", "CANCELLED", "A26000002", "I203"]]
    golden(data, "lifecycle.ack.csv")


def test_a_failed_pass_takes_back_the_report_a_crashed_attempt_left(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash after the report was published, then an attempt that fails before its outputs
    (here: while deciding): the report names changes that were never made, so it goes."""
    from gateway.licensing import decide

    project.send("life-1.xml", submission("LIFE-1", application("PO-1")))
    left = project.base / "outbox" / "changes" / "CHG-20261201-000002.csv"
    left.parent.mkdir(parents=True)
    left.write_text("license_number,partner,ref,change,replaced_by,when,reason\r\n")
    left.with_name(left.name + ".manifest.json").write_text("{}\n")

    def failing(*args: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(decide, "decide_cancellation", failing)
    (project.base / "inbox" / "acme" / "c.xml").write_bytes(submission(
        "C", cancellation("PO-1", "A26000001", "not needed")))
    run_once(load_config(project.cfg), AS_OF)
    assert project.query("SELECT file_id, state FROM files WHERE remote_name = 'c.xml'") == [
        ("20261201-000002", "RECEIVED")]
    assert project.outbox("changes") == {}
